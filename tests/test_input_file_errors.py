"""Input files that are not what a flag expects get one specific line (which file, what was wrong, what
is expected) and exit status 2 before any image: prompt files and caption features, damaged or
mis-shaped weights in every loader, and the sample files and labels evaluate.py scores."""
import math
import re

import numpy as np
import pytest
import torch

import evaluate
import sample_ddp
from common import convert
from common.prompts import collect_prompts, read_prompt_file
from emu3.generate import cli as emu3_cli
from llamagen.presets import DEMO
from llamagen.sample import cli as sample_cli
from llamagen.sample_t2i import cli as sample_t2i_cli
from lumina_mgpt.generate import cli as lumina_cli
from tests.helpers.errors import EMU3, ONE_DIGIT, T2I, one_line


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
