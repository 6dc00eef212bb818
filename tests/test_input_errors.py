"""Unusual input gets one specific line (what was wrong, what is expected) and exit status 2 before the
work, or a documented behaviour: non-finite numbers, drafts longer than a row, devices torch lacks, caption
feature and prompt files, flags that contradict each other, damaged weights, evaluate.py's inputs and the
benchmarks' arguments and output paths."""
import argparse
import math
import re

import numpy as np
import pytest
import torch

import evaluate
import sample_ddp
from common import convert
from common.cli import HelpFormatter
from common.zipar.config import DecodeConfig
from common.zipar.sampling import PURPOSE_TOKEN, draw_key, image_seeds, key_uniform, sample_logits, sample_probs
from common.prompts import collect_prompts, read_prompt_file
from emu3.generate import cli as emu3_cli
from llamagen.presets import DEMO
from llamagen.sample import cli as sample_cli
from llamagen.sample_t2i import cli as sample_t2i_cli
from lumina_mgpt.generate import build_parser as lumina_parser
from lumina_mgpt.generate import cli as lumina_cli
from tests.helpers.llamagen import tiny_gpt
from tests.helpers.processes import run_benchmark

ONE_DIGIT = ["--class-labels", "3", "--window", "8", "--quiet"]
EMU3 = ["--random-init", "--config", "tiny", "--prompt", "a cat", "--ratio", "4:3", "--window", "2", "--quiet"]
T2I = ["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init", "--image-size", "8",
       "--caption-dim", "8", "--quiet"]


def one_line(cli, argv, capsys) -> str:
    """The error line of a CLI run that must fail with exit status 2 (and print nothing else)."""
    code = cli([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("warning: ", "--random-init: "))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- decoding settings


@pytest.mark.parametrize("flag,field,value,rule", [
    ("--cfg-scale", "cfg_scale", math.nan, "> 0"),
    ("--cfg-scale", "cfg_scale", math.inf, "> 0"),
    ("--temperature", "temperature", math.inf, ">= 0"),
    ("--temperature", "temperature", math.nan, ">= 0"),
    ("--top-p", "top_p", math.nan, "in (0, 1]"),
    ("--cfg-interval", "cfg_interval", math.nan, ">= -1"),
])
def test_non_finite_numbers_are_refused_with_the_flag_name(flag, field, value, rule, tmp_path, capsys):
    with pytest.raises(ValueError) as e:
        DecodeConfig(window=4, **{field: value})
    assert str(e.value).startswith(f"{flag} must be a finite number {rule}") and str(e.value).endswith(f"got {value}")
    err = one_line(sample_cli, [*ONE_DIGIT, flag, str(value), "--out", tmp_path / "x.png"], capsys)
    assert f"{flag} must be a finite number" in err and not (tmp_path / "x.png").exists()


def test_range_errors_name_flags_not_fields():
    for kwargs, flag in ((dict(top_p=0.0), "--top-p"), (dict(top_k=-1), "--top-k"), (dict(window=0), "--window"),
                         (dict(draft_len=-1), "--draft-len"), (dict(cfg_scale=0.0), "--cfg-scale")):
        with pytest.raises(ValueError, match=f"^{flag} "):
            DecodeConfig(**kwargs)


def test_a_draft_longer_than_a_row_is_refused_where_the_grid_is_known(tmp_path, capsys, monkeypatch):
    """A row of W tokens has at most W - 1 cells to draft after its first decided one: longer drafts decide
    the same tokens in the same passes, so they are refused, in the engine and in each CLI."""
    from llamagen.generate import generate
    gpt = tiny_gpt(3)
    with pytest.raises(ValueError, match="--draft-len 3 on a grid 3 tokens wide.*use --draft-len 2 or less"):
        generate(gpt, torch.tensor([1]), torch.tensor([2]), DecodeConfig(window=1, draft_len=3))
    assert generate(gpt, torch.tensor([1]), torch.tensor([2]), DecodeConfig(window=1, draft_len=2)).forward_passes
    err = one_line(sample_cli, [*ONE_DIGIT, "--draft-len", "24", "--out", tmp_path / "x.png"], capsys)
    assert "use --draft-len 23 or less" in err
    assert "--draft-len 99 on a grid" in one_line(emu3_cli, [*EMU3, "--draft-len", "99", "--out-dir", tmp_path / "e"],
                                                 capsys)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = tmp_path / "s"
    err = one_line(sample_ddp.cli, ["--window", "2", "--num-fid-samples", "1", "--draft-len", "30", "--out-dir", out],
                   capsys)
    assert "use --draft-len 23 or less" in err and not list(out.rglob("args.json"))


@pytest.mark.parametrize("device", ["mps", "xpu"])
def test_devices_this_torch_lacks_are_one_line(device, tmp_path, capsys):
    from common.cli import OTHER_BACKENDS
    if OTHER_BACKENDS[device]():
        pytest.skip(f"this torch has a usable {device} backend")
    err = one_line(sample_cli, [*ONE_DIGIT, "--device", device, "--out", tmp_path / "x.png"], capsys)
    assert f"no usable {device} backend" in err and "--device cpu" in err


@pytest.mark.parametrize("scale", ["3e38", "1e300", "10001"])
def test_cfg_scales_that_overflow_fp32_are_refused_up_front(scale, tmp_path, capsys):
    err = one_line(sample_cli, [*ONE_DIGIT, "--cfg-scale", scale, "--out", tmp_path / "x.png"], capsys)
    assert "--cfg-scale must be a finite number > 0 and <= 10000" in err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("vocab", [130, 256])
def test_the_sampler_never_leaves_the_vocabulary_whatever_the_logits(vocab):
    """Rows of NaN, +inf, -inf, zeros or negative numbers draw a code in [0, V); a row with no finite positive
    mass draws uniformly (floor(u V)); a row with some keeps its draw among its finite positive entries."""
    u = key_uniform(draw_key(torch.arange(64), torch.arange(50).expand(64, -1), PURPOSE_TOKEN))  # (64, 50)
    rows = torch.randn(8, vocab)
    rows[0] = math.nan
    rows[1, 3], rows[1, vocab - 1] = math.inf, math.inf  # softmax gives NaN
    rows[2] = -math.inf
    rows[3, 5] = math.nan
    logits = rows[:, None, None].expand(-1, 64, 50, -1)
    drawn = sample_logits(logits, torch.zeros(8, 64, 50, dtype=torch.int64) + draw_key(
        torch.arange(64), torch.arange(50).expand(64, -1), PURPOSE_TOKEN))
    assert ((drawn >= 0) & (drawn < vocab)).all()
    uniform = (u * vocab).long()
    for row in range(4):  # no finite softmax mass: the uniform fallback
        assert torch.equal(drawn[row], uniform)
    probs = torch.rand(4, vocab)
    probs[0, :vocab // 2] = -1.0  # negative entries carry no mass
    probs[1] = 0.0
    probs[2, 7] = math.inf
    probs[3, :] = 0.0
    probs[3, vocab - 1] = 1e-30  # the only mass sits in the padded last block (vocab 130)
    out = sample_probs(probs[:, None].expand(-1, 50, -1), u[:4])
    assert ((out >= 0) & (out < vocab)).all()
    assert (out[0] >= vocab // 2).all() and torch.equal(out[1], (u[1] * vocab).long())
    assert (out[2] != 7).all() and (out[3] == vocab - 1).all()


@pytest.mark.parametrize("mode", [dict(window=1), dict(window=1, adaptive=True), dict(window=2, draft_len=2)])
def test_a_model_whose_logits_are_nan_or_inf_still_decodes_codes_of_its_vocabulary(mode):
    from llamagen.generate import generate
    gpt = tiny_gpt(3, vocab_size=130)
    with torch.no_grad():
        gpt.output.weight[::2] = math.inf  # +-inf logits, and NaN where an input feature is 0
        gpt.output.weight[1] = math.nan
    result = generate(gpt, torch.tensor([1, 2]), image_seeds(0, torch.arange(2)), DecodeConfig(cfg_scale=4.0, **mode))
    assert ((result.tokens >= 0) & (result.tokens < 130)).all()


# ----------------------------------------------------------------------------- sizes, counts and threads


def test_image_sizes_are_bounded_by_the_grid_before_any_model_is_built(tmp_path, capsys):
    from llamagen.loader import MAX_GRID, image_grid
    assert image_grid(MAX_GRID * 16, "VQ-16") == MAX_GRID
    with pytest.raises(ValueError, match=f"at most {MAX_GRID}x{MAX_GRID} tokens \\({MAX_GRID * 16} px with VQ-16\\)"):
        image_grid((MAX_GRID + 1) * 16, "VQ-16")
    for cli, argv in ((sample_cli, ["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init",
                                    "--class-labels", "1"]), (sample_t2i_cli, [*T2I[:5], "--caption-dim", "8"])):
        err = one_line(cli, [*argv, "--image-size", "160000", "--out", tmp_path / "x.png"], capsys)
        assert "--image-size 160000: a 80000x80000-token grid; at most 128x128 tokens" in err


@pytest.mark.parametrize("argv,needle", [
    (["--num-fid-samples", "1000000000000"], "--num-fid-samples 1000000000000: at most 2**32 images"),
    (["--num-fid-samples", "4000000000"], "--num-fid-samples 4000000000 at --image-size-eval 96: the npz holds 1.11e+05 GB"),
    (["--num-fid-samples", "2", "--image-size-eval", "100000"], "--image-size-eval must be in 1..4096, got 100000"),
])
def test_sample_counts_and_eval_sizes_are_bounded_before_the_run_folder_is_written(argv, needle, tmp_path, capsys,
                                                                                   monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(sample_ddp, "load_sampler", lambda *a: pytest.fail("ran past the checks"))
    err = one_line(sample_ddp.cli, [*argv, "--window", "2", "--out-dir", tmp_path / "o"], capsys)
    assert needle in err and not (tmp_path / "o").exists()


def test_the_npz_must_fit_the_hosts_memory(monkeypatch):
    from common.run_folder import check_npz_fits
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1000}  # a host of 4.1 MB
    monkeypatch.setattr("common.run_folder.os.sysconf", pages.__getitem__)
    check_npz_fits(148, 96)  # 4.09 MB of pixels
    with pytest.raises(ValueError, match="--num-fid-samples 149 at --image-size-eval 96: the npz holds 0.00412 GB"):
        check_npz_fits(149, 96)


# ----------------------------------------------------------------------------- prompts and captions


def test_a_prompt_longer_than_the_models_context_is_one_line_before_any_image(tmp_path, capsys, monkeypatch):
    path = tmp_path / "p.txt"
    path.write_text("a cat\n" + "a very long prompt " * 42_000 + "\n")  # an 800 kB line
    err = one_line(emu3_cli, [*EMU3[:3], "--prompts-file", path, "--out-dir", tmp_path / "e"], capsys)
    assert "prompt 2 (797999 characters) is" in err and "the model's context is 9216 tokens" in err
    assert not (tmp_path / "e").exists()
    err = one_line(lumina_cli, ["--random-init", "--config", "tiny", "--prompts-file", path, "--out-dir",
                                tmp_path / "l"], capsys)
    assert "in the lumina-mgpt template; the model's context is 4096 tokens" in err and not (tmp_path / "l").exists()
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    err = one_line(sample_ddp.cli, ["--model", "emu3-gen", "--random-init", "--config", "tiny", "--prompts-file", path,
                                    "--num-fid-samples", "2", "--out-dir", tmp_path / "s"], capsys)
    assert "prompt 2 (797999 characters)" in err and not list((tmp_path / "s").rglob("args.json"))


def test_prompt_file_lines_are_prompt_indices(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a cat\n  a dog  \r\n\n\n")  # trailing blank lines end the file; no index moves
    assert read_prompt_file(path) == ["a cat", "a dog"]
    path.write_text("a cat\n\na dog\n")
    with pytest.raises(ValueError, match=f"--prompts-file {path}: line 2 is blank.*prompt i is line i \\+ 1"):
        read_prompt_file(path)
    with pytest.raises(ValueError, match="--prompt number 2 is empty"):
        collect_prompts(["a cat", " "], None)


def test_a_binary_prompt_file_is_named(tmp_path, capsys):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a cat\n\x80\x03\xff\xfe")
    err = one_line(emu3_cli, [*EMU3[:3], "--prompts-file", path, "--out-dir", tmp_path / "e"], capsys)
    assert f"--prompts-file {path} is not UTF-8 text (byte 6, line 2" in err
    path.write_bytes(b"a cat\x00\x00\x00")
    assert "NUL bytes" in one_line(emu3_cli, [*EMU3[:3], "--prompts-file", path, "--out-dir", tmp_path / "e"], capsys)


@pytest.mark.parametrize("content,needle", [
    (b"", "cannot read"), (b"0.1 0.2 0.3\n", "cannot read"), (None, "must hold one tensor"),
])
def test_caption_feature_files_that_are_not_features(content, needle, tmp_path, capsys):
    path = tmp_path / "f.npy" if content is not None else tmp_path / "f.pt"
    if content is None:
        torch.save({"features": torch.zeros(2, 8)}, path)
    else:
        path.write_bytes(content)
    err = one_line(sample_t2i_cli, [*T2I, "--caption-features", path, "--out", tmp_path / "g.png"], capsys)
    assert f"--caption-features: {path}" in err or f"--caption-features: cannot read {path}" in err
    assert needle in err


def test_caption_features_and_prompts_conflict(tmp_path, capsys):
    path = tmp_path / "f.npy"
    np.save(path, np.zeros((1, 4, 8), dtype=np.float32))
    err = one_line(sample_t2i_cli, [*T2I, "--caption-features", path, "--prompt", "a cat", "--out", tmp_path / "g.png"],
                   capsys)
    assert "--caption-features are the captions" in err and "--prompt" in err


# ----------------------------------------------------------------------------- flags that contradict each other


def test_two_spellings_with_different_values_are_refused(capsys):
    parser = lumina_parser()
    assert parser.parse_args(["--cfg", "2", "--cfg-scale", "2"]).cfg_scale == 2.0  # the same value: fine
    for argv in (["--cfg", "2", "--cfg-scale", "5"], ["--cfg-scale", "5", "--cfg", "2"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1
        assert err[0].endswith("are two spellings of one setting with different values; give one of them")
    assert lumina_parser().parse_args([]).cfg_scale == 3.0 and lumina_parser().parse_args(["--cfg", "4"]).cfg_scale == 4.0
    assert lumina_parser().parse_args(["--cfg-scale", "5", "--cfg-scale", "2"]).cfg_scale == 2.0  # one spelling


@pytest.mark.parametrize("cli,argv,flag", [
    (sample_cli, [*ONE_DIGIT, "--random-init", "--gpt-ckpt", DEMO.gpt_ckpt], "--gpt-ckpt"),
    (sample_t2i_cli, [*T2I, "--vq-path", DEMO.gpt_ckpt, "--caption-features", "F"], "--vq-path"),
    (emu3_cli, [*EMU3, "--model-path", "."], "--model-path"),
    (lumina_cli, ["--random-init", "--config", "tiny", "--prompt", "a", "--vq-path", "."], "--vq-path"),
    (sample_ddp.cli, ["--random-init", "--num-fid-samples", "1", "--ckpt-dir", "."], "--ckpt-dir"),
])
def test_random_init_refuses_the_files_it_would_ignore(cli, argv, flag, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    np.save(tmp_path / "f.npy", np.zeros((1, 4, 8), dtype=np.float32))
    argv = [tmp_path / "f.npy" if a == "F" else a for a in argv]
    out = ["--out", tmp_path / "x.png"] if cli in (sample_cli, sample_t2i_cli) else ["--out-dir", tmp_path / "o"]
    err = one_line(cli, [*argv, *out], capsys)
    assert f"--random-init builds random weights and reads no files, so {flag} would be ignored" in err


def test_a_folder_given_for_a_file_is_called_a_folder(tmp_path, capsys, monkeypatch):
    err = one_line(sample_cli, [*ONE_DIGIT, "--gpt-ckpt", tmp_path, "--out", tmp_path / "x.png"], capsys)
    assert f"--gpt-ckpt {tmp_path} is a folder; expected a checkpoint file" in err
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    err = one_line(sample_ddp.cli, ["--num-fid-samples", "1", "--gpt-ckpt", tmp_path, "--out-dir", tmp_path / "o"],
                   capsys)
    assert "is a folder; expected a checkpoint file" in err
    (tmp_path / "file").write_text("x")
    err = one_line(emu3_cli, [*EMU3[3:], "--model-path", tmp_path / "file", "--out-dir", tmp_path / "e"], capsys)
    assert "--model-path" in err and "is a file; expected a folder" in err


def test_convert_writes_safetensors_only(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    err = one_line(convert.cli, [path, "--out", tmp_path / "model.txt"], capsys)
    assert "--out" in err and "must end in .safetensors" in err and not (tmp_path / "model.txt").exists()


# ----------------------------------------------------------------------------- damaged weights


def test_non_finite_weights_are_refused_at_load_with_the_tensor_name(tmp_path, capsys):
    ckpt = torch.load(DEMO.gpt_ckpt, weights_only=True)
    name = sorted(k for k, v in ckpt["model"].items() if v.is_floating_point())[3]
    ckpt["model"][name].view(-1)[5] = math.nan
    torch.save(ckpt, tmp_path / "nan.pt")
    err = one_line(sample_cli, [*ONE_DIGIT, "--gpt-ckpt", tmp_path / "nan.pt", "--out", tmp_path / "x.png"], capsys)
    assert f"key {name!r} holds 1 non-finite value(s)" in err and str(tmp_path / "nan.pt") in err


@pytest.mark.parametrize("content,kind", [([torch.ones(2)], "a list"), (torch.ones(3, 4), "a tensor of shape (3, 4)"),
                                          ({"model": [1, 2]}, "a list under 'model'")])
def test_a_checkpoint_that_is_not_a_dict_of_weights_is_one_line_in_every_loader(content, kind, tmp_path, capsys,
                                                                                monkeypatch):
    from common.weights.checkpoint import CheckpointError
    from llamagen.checkpoint import load_vq
    from lumina_mgpt.vqgan import load_vqgan
    from tests.helpers.files import write_vqgan
    path = tmp_path / "w.pt"
    torch.save(content, path)
    needle = f"{path} holds {kind}"
    err = one_line(sample_cli, [*ONE_DIGIT, "--gpt-ckpt", path, "--out", tmp_path / "x.png"], capsys)
    assert needle in err and not (tmp_path / "x.png").exists()
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    err = one_line(sample_ddp.cli, [*ONE_DIGIT[2:], "--num-fid-samples", "1", "--gpt-ckpt", path,
                                    "--out-dir", tmp_path / "o"], capsys)
    assert needle in err and not list((tmp_path / "o").rglob("args.json"))
    assert needle in one_line(evaluate.cli, [samples(tmp_path / "s.npz"), "--digits", "--classifier", path], capsys)
    with pytest.raises(CheckpointError, match=re.escape(f"VQ preset VQ-tiny: {needle}")):
        load_vq("VQ-tiny", path)
    write_vqgan(tmp_path / "vqgan", {})
    (tmp_path / "vqgan" / "vqgan.ckpt").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match=re.escape(f"Chameleon VQGAN: {tmp_path / 'vqgan' / 'vqgan.ckpt'} ")):
        load_vqgan(tmp_path / "vqgan")
    code, err = convert.cli([str(path), "--out", str(tmp_path / "c.safetensors")]), capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "error: " in err


def test_non_finite_weights_in_safetensors_shards(tmp_path):
    from common.weights.checkpoint import CheckpointError
    from common.weights.hf_shards import load_shards
    from tests.helpers.files import write_shards
    model = torch.nn.Linear(3, 2)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["bias"][1] = math.inf
    write_shards(state, tmp_path)
    with pytest.raises(CheckpointError, match="key 'bias' holds 1 non-finite value"):
        load_shards(model, tmp_path, "tiny")


# ----------------------------------------------------------------------------- evaluate.py


def samples(path, n=4, size=96, grey=True):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 1 if grey else 3), dtype=np.uint8)
    np.savez(path, arr_0=np.repeat(x, 3, -1) if grey else x)
    return path


@pytest.mark.parametrize("case,needle", [
    ("text", "cannot read sample file"), ("empty", "holds 0 image(s); FID needs at least 2"),
    ("one", "holds 1 image(s)"), ("colour-256", "holds 256x256 images"), ("colour-96", "holds colour images"),
    ("reference", "would be ignored"), ("folder", "is a folder"),
])
def test_evaluate_refuses_what_it_cannot_score(case, needle, tmp_path, capsys):
    path = tmp_path / "s.npz"
    if case == "text":
        path.write_text("not an archive")
    elif case in ("empty", "one"):
        np.savez(path, arr_0=np.zeros((0 if case == "empty" else 1, 96, 96, 3), np.uint8))
    elif case == "colour-256":
        samples(path, size=256, grey=False)
    elif case == "colour-96":
        samples(path, grey=False)
    else:
        samples(path)
    argv = [tmp_path if case == "folder" else path, *([path] if case == "reference" else []), "--digits"]
    assert needle in one_line(evaluate.cli, argv, capsys)


@pytest.mark.parametrize("labels,needle", [
    ([99, 1, 2, 3], "1 label(s) outside the classifier's classes 0..9 (e.g. 99)"),
    ([0, -1, 2, 3], "outside the classifier's classes 0..9 (e.g. -1)"),
    ([990, 991, 992, 993], "4 label(s) outside"),
    ([0.0, 1.0, 2.0, 3.0], "holds float64 labels; --digits needs integer classes 0..9"),
    (["0", "1", "2", "3"], "holds <U1 labels"),
    ([True, False, True, False], "holds bool labels"),
])
def test_evaluate_digits_labels_must_be_the_classifiers_classes(labels, needle, tmp_path, capsys):
    path = samples(tmp_path / "s.npz")
    with np.load(path) as f:
        np.savez(path, arr_0=f["arr_0"], arr_1=np.array(labels))
    assert needle in one_line(evaluate.cli, [path, "--digits"], capsys)
    with np.load(path) as f:
        np.savez(path, arr_0=f["arr_0"], arr_1=np.array([9, 0, 3, 3], dtype=np.uint8))  # any integer dtype
    assert evaluate.cli([str(path), "--digits"]) == 0


# ----------------------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("name,args,needle", [
    ("latency.py", ["--windows", "0"], "--windows 0 must be >= 1"),
    ("latency.py", ["--batch-size", "0"], "--batch-size 0 must be >= 1"),
    ("latency.py", ["--batch", "-1"], "--batch was renamed; use --batch-size"),
    ("latency.py", ["--repeats", "0"], "--repeats 0 must be >= 1"),
    ("latency.py", ["--threads", "-1"], "--threads must be >= 1"),
    ("latency.py", ["--out-csv", "FILE/x.csv"], "is a file, not a folder"),
    ("latency.py", ["--out-csv", "x.txt"], "must end in .csv"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "0"], "--windows 0 must be >= 1"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "4", "--out-md", "FILE/t.md"], "is a file, not a folder"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "4", "--tiny", "--kv-heads", "3"],
     "--tiny builds its own decoder shape, so --kv-heads would be ignored"),
    ("t2i_latency.py", ["--family", "lumina", "--windows", "4", "--full", "--dim", "64", "--heads", "4"],
     "--full builds its own decoder shape, so --dim and --heads would be ignored; drop them"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "4", "--full", "--tiny"], "exclude each other"),
    ("engine_overhead.py", ["--grids", "abc"], "--grids 'abc': a grid is its side in tokens"),
    ("engine_overhead.py", ["--batch-sizes", "0"], "--batch-sizes 0 must be >= 1"),
    ("sampling_sweep.py", ["--temperatures", "-1"], "temperature -1.0: --temperature must be a finite number >= 0"),
    ("sampling_sweep.py", ["--cfg-scales", "nan"], "--cfg-scale must be a finite number"),
    ("tradeoff.py", ["--out-png", "x.txt"], "--out-png x.txt: the file name must end in .png"),
    ("tradeoff.py", ["--windows", "0"], "--windows 0 must be >= 1"),
    ("exactness_at_scale.py", ["--run-dir", "FILE"], "--run-dir"),
    ("exactness_at_scale.py", ["--run-dir", "r", "--num-samples", "0"], "--num-samples 0 must be >= 1"),
    ("exactness_at_scale.py", ["--run-dir", "r", "--out-md", "x.txt"], "--out-md x.txt: the file name must end in .md"),
    ("draft_tree_passes.py", ["--widths", "1", "0"], "--widths 0 must be >= 1"),
    ("draft_tree_passes.py", ["--tree-depth", "0"], "--tree-depth 0 must be >= 1"),
])
def test_benchmark_arguments_fail_before_the_run(name, args, needle, tmp_path, capsys, monkeypatch):
    (tmp_path / "FILE").write_text("a file where a folder should be")
    args = [str(tmp_path / a) if a.startswith("FILE") else a for a in args]
    if name in ("sampling_sweep.py", "tradeoff.py"):
        args += ["--out-md", tmp_path / "o.md", "--out-csv", tmp_path / "o.csv"]
        args += ["--out-png", tmp_path / "o.png"] if name == "tradeoff.py" and "--out-png" not in args else []
    import llamagen.checkpoint
    monkeypatch.setattr(llamagen.checkpoint, "load_gpt_weights", lambda *a: pytest.fail("ran past the checks"))
    assert run_benchmark(name.removesuffix(".py"), args, monkeypatch) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


# ----------------------------------------------------------------------------- --help


def test_help_shows_defaults():
    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--window", type=int, default=16, help="ZipAR window")
    p.add_argument("--cfg-scale", type=float, default=None, help="default per model")
    p.add_argument("--quiet", action="store_true", help="no bar")
    text = p.format_help()
    assert "ZipAR window (default: 16)" in text and "default per model\n" in text and "no bar\n" in text
    for build in (sample_ddp.build_parser, lumina_parser, evaluate.build_parser):
        assert "(default: " in build().format_help()
