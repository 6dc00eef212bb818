"""Unusual flags and numbers get one specific line (what was wrong, what is expected) and exit status 2
before the work, or a documented behaviour: non-finite numbers, drafts longer than a row, devices torch
lacks, logits that are not numbers, sizes and counts, flags that contradict each other. Input files (prompt
and caption feature files, damaged weights, evaluate.py's samples): tests/test_input_file_errors.py."""
import argparse
import math

import numpy as np
import pytest
import torch

import evaluate
import sample_ddp
from common import convert
from common.cli import HelpFormatter
from common.zipar.config import DecodeConfig
from common.zipar.sampling import PURPOSE_TOKEN, draw_key, image_seeds, key_uniform, sample_logits, sample_probs
from emu3.generate import cli as emu3_cli
from llamagen.presets import DEMO
from llamagen.sample import cli as sample_cli
from llamagen.sample_t2i import cli as sample_t2i_cli
from lumina_mgpt.generate import build_parser as lumina_parser
from lumina_mgpt.generate import cli as lumina_cli
from tests.helpers.errors import EMU3, ONE_DIGIT, T2I, one_line
from tests.helpers.llamagen import tiny_gpt


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
