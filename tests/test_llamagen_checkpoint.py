"""Tests for llamagen/checkpoint.py, common/weights/checkpoint.py and the llamagen.sample CLI (CPU, seconds).

Container layouts from /work/shared/reference/llamagen.md section 2.2: GPT weights bare (FSDP) or
under "model" / "module" / "state_dict", an optional `freqs_cis` and pickled `args` Namespace;
VQ weights under "ema" (preferred) or "model". Loading must never execute pickled code.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from common.weights.checkpoint import CheckpointError
from llamagen.checkpoint import build_gpt, load_gpt_weights, load_vq
from llamagen.model import Transformer, gpt_config, random_init_
from llamagen.sample import cli
from common.models.vq import VQModel, vq_config
from tests.helpers.processes import run_python

GRID = 4


def _gpt(preset: str = "GPT-tiny", seed: int | None = 0) -> Transformer:
    model = Transformer(gpt_config(preset), grid_size=GRID)
    if seed is not None:
        random_init_(model, seed)
        with torch.no_grad():  # distinctive norm weights so a skipped load is visible
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.uniform_(0.5, 1.5)
    return model


def _freqs_cis(model: Transformer, grid: int = GRID) -> torch.Tensor:
    c = model.config
    return torch.randn(c.cls_token_num + grid * grid, c.head_dim // 2, 2)


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _sd(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- GPT round trips

def _official_layout(model):
    return {"model": _sd(model), "freqs_cis": _freqs_cis(model), "args": argparse.Namespace(image_size=64),
            "steps": 1000}


CONTAINERS = {
    "official-ddp": _official_layout,
    "ddp-with-freqs-inside": lambda m: {"model": {**_sd(m), "freqs_cis": _freqs_cis(m)},
                                        "args": argparse.Namespace(image_size=64)},
    "bare": _sd,
    "bare-with-freqs": lambda m: {**_sd(m), "freqs_cis": _freqs_cis(m)},
    "module": lambda m: {"module": _sd(m)},
    "state_dict": lambda m: {"state_dict": _sd(m)},
    "orig_mod": lambda m: {"model": {f"_orig_mod.{k}": v for k, v in _sd(m).items()}},
    "bare-orig_mod": lambda m: {f"_orig_mod.{k}": v for k, v in _sd(m).items()},
}


@pytest.mark.parametrize("layout", list(CONTAINERS))
def test_gpt_round_trip(tmp_path, layout):
    src = _gpt(seed=1)
    path = tmp_path / "ckpt.pt"
    torch.save(CONTAINERS[layout](src), path)
    dst = _gpt(seed=2)
    load_gpt_weights(dst, path, "GPT-tiny")
    _assert_same(src, dst)


def test_gpt_round_trip_bf16_keeps_model_dtype(tmp_path):
    src = _gpt(seed=1)
    path = tmp_path / "bf16.pt"
    torch.save({"model": {k: v.bfloat16() for k, v in _sd(src).items()}}, path)
    dst = _gpt(seed=2)
    load_gpt_weights(dst, path, "GPT-tiny")
    for k, v in dst.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, src.state_dict()[k].bfloat16().float()), k


def test_model_container_preferred_over_module(tmp_path):
    a, b = _gpt(seed=1), _gpt(seed=2)
    path = tmp_path / "both.pt"
    torch.save({"module": _sd(b), "model": _sd(a)}, path)
    dst = _gpt(seed=3)
    load_gpt_weights(dst, path, "GPT-tiny")
    _assert_same(a, dst)


def test_build_gpt_grid_and_bad_size():
    assert build_gpt("GPT-tiny", 64, 16).grid_size == 4
    with pytest.raises(ValueError, match="250"):
        build_gpt("GPT-tiny", 250, 16)


# ----------------------------------------------------------------------------- GPT errors

def _expect_error(model, path, preset, *needles, exc=CheckpointError):
    with pytest.raises(exc) as info:
        load_gpt_weights(model, path, preset)
    msg = str(info.value)
    for needle in (preset, str(path), *needles):
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def test_missing_key(tmp_path):
    sd = _sd(_gpt())
    del sd["layers.1.feed_forward.w3.weight"]
    path = tmp_path / "missing.pt"
    torch.save({"model": sd}, path)
    _expect_error(_gpt(seed=None), path, "GPT-tiny", "layers.1.feed_forward.w3.weight")


def test_unexpected_key(tmp_path):
    sd = _sd(_gpt())
    sd["layers.0.attention.kv_cache.k_cache"] = torch.zeros(1, 4, 8, 16)
    path = tmp_path / "extra.pt"
    torch.save({"model": sd}, path)
    _expect_error(_gpt(seed=None), path, "GPT-tiny", "layers.0.attention.kv_cache.k_cache")


def test_wrong_shape_other_preset(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save({"model": _sd(_gpt())}, path)
    dst = _gpt("GPT-tiny-gqa", seed=5)
    before = _sd(dst)
    _expect_error(dst, path, "GPT-tiny-gqa", "layers.0.attention.wqkv.weight")
    for k, v in dst.state_dict().items():  # nothing was half-loaded
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("where", ["top-level", "in-state-dict", "bare"])
def test_freqs_cis_of_other_grid(tmp_path, where):
    src = _gpt()
    rope = _freqs_cis(src, grid=6)
    ckpt = {"top-level": {"model": _sd(src), "freqs_cis": rope},
            "in-state-dict": {"model": {**_sd(src), "freqs_cis": rope}},
            "bare": {**_sd(src), "freqs_cis": rope}}[where]
    path = tmp_path / "grid6.pt"
    torch.save(ckpt, path)
    msg = _expect_error(_gpt(seed=None), path, "GPT-tiny", "freqs_cis")
    assert "image size" in msg


def test_truncated_file(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": _sd(_gpt())}, good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    _expect_error(_gpt(seed=None), bad, "GPT-tiny")


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "c2i_B_256.pt"
    _expect_error(_gpt(seed=None), path, "GPT-tiny", exc=FileNotFoundError)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pt"
    torch.save({"optimizer": {"lr": 1.0}, "steps": 3}, path)
    _expect_error(_gpt(seed=None), path, "GPT-tiny", "model")


_MARKER: list[str] = []


def _side_effect(path: str):
    """What the malicious pickle would run: writes a marker file."""
    Path(path).write_text("executed")
    return {}


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_side_effect, (self.marker,))


def test_code_executing_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _sd(_gpt()), "args": _Evil(marker)}, path)
    assert not marker.exists()
    _expect_error(_gpt(seed=None), path, "GPT-tiny")
    assert not marker.exists(), "checkpoint loading executed pickled code"
    # sanity: an unrestricted load really would run it, so the test above can fail
    torch.load(path, weights_only=False)
    assert marker.exists()


# ----------------------------------------------------------------------------- VQ

def _vq(seed: int) -> VQModel:
    torch.manual_seed(seed)
    model = VQModel(vq_config("VQ-tiny"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # norms/biases differ from defaults too
    return model


def test_vq_round_trip_model(tmp_path):
    src = _vq(1)
    path = tmp_path / "vq.pt"
    torch.save({"model": _sd(src), "args": argparse.Namespace(image_size=64)}, path)
    dst = load_vq("VQ-tiny", path)
    assert not dst.training
    _assert_same(src, dst)


def test_vq_prefers_ema(tmp_path):
    ema, raw = _vq(1), _vq(2)
    path = tmp_path / "vq_ema.pt"
    torch.save({"model": _sd(raw), "ema": _sd(ema), "optimizer": {}}, path)
    _assert_same(ema, load_vq("VQ-tiny", path))


def test_vq_random_when_no_path():
    assert isinstance(load_vq("VQ-tiny", None), VQModel)


def test_vq_missing_key(tmp_path):
    sd = _sd(_vq(1))
    key = "quantize.embedding.weight" if "quantize.embedding.weight" in sd else sorted(sd)[0]
    del sd[key]
    path = tmp_path / "vq_missing.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as info:
        load_vq("VQ-tiny", path)
    for needle in ("VQ-tiny", str(path), key):
        assert needle in str(info.value)


# ----------------------------------------------------------------------------- CLI

BAD_ARGS = {
    "window-0": (["--window", "0"], "window"),
    "class-out-of-range": (["--class-labels", "1000"], "1000"),
    "image-size": (["--image-size", "250"], "250"),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_cli_rejects_in_process(case, capsys):
    extra, needle = BAD_ARGS[case]
    rc = cli(["--gpt-model", "GPT-B", "--random-init", "--device", "cpu", *extra])
    out, err = capsys.readouterr()
    assert rc != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_cli_missing_checkpoints_in_process(capsys):
    rc = cli(["--gpt-model", "GPT-B", "--gpt-ckpt", "/nonexistent.pt", "--vq-path", "/nonexistent.pt",
              "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc != 0 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "/nonexistent.pt" in lines[0], err


def _run_cli(*args):
    return run_python(["-m", "llamagen.sample", *args])


def test_cli_subprocess_errors_are_one_line():
    for args in (["--gpt-model", "GPT-B", "--random-init", "--device", "cpu", "--class-labels", "1000"],
                 ["--gpt-ckpt", "/nonexistent.pt", "--vq-path", "/nonexistent.pt", "--device", "cpu"]):
        proc = _run_cli(*args)
        assert proc.returncode != 0, proc
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
        assert proc.stdout == ""


def test_cli_random_init_success(tmp_path, capsys):
    out_png = tmp_path / "g.png"
    rc = cli(["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init", "--image-size", "8",
              "--class-labels", "1", "2", "--window", "2", "--json", "--out", str(out_png), "--device", "cpu",
              "--cfg-scale", "1.5"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out)
    assert report["grid"] == [4, 4]
    assert report["window"] == 2
    assert report["forward_passes"] == 2 * 4 + (4 - 2) * 2  # ZipAR: row 0 whole, later rows start w apart
    assert report["ntp_passes"] == 16
    tokens = torch.tensor(report["tokens"])
    assert tokens.shape == (2, 4, 4)
    assert tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 64
    assert report["out"] == str(out_png)
    assert out_png.is_file()
    with Image.open(out_png) as img:
        img.load()
        # two 8x8 images in one row, torchvision make_grid padding 2
        assert img.size == (2 * (8 + 2) + 2, 8 + 2 + 2)
        assert img.mode == "RGB"
    assert "random" in err  # the noise warning goes to stderr, not into the JSON


@pytest.mark.parametrize("flags,passes,rule", [([], 2 * 4 + 2 * 2, "serial"), (["--first-row", "serial"], 12, "serial"),
                                               (["--first-row", "early"], 3 * 2 + 4, "early")])
def test_cli_first_row_rule(flags, passes, rule, tmp_path, capsys):
    """LlamaGen's default is the serial first row (2W + (H-2)w passes); --first-row early opens row 1 after w tokens."""
    rc = cli(["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init", "--image-size", "8",
              "--class-labels", "1", "--window", "2", "--json", "--out", str(tmp_path / "g.png"), *flags])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out)
    assert (report["forward_passes"], report["first_row"]) == (passes, rule)


def test_cli_first_row_early_with_compat_is_one_line(tmp_path, capsys):
    rc = cli(["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init", "--image-size", "8",
              "--class-labels", "1", "--window", "2", "--compat", "official", "--first-row", "early",
              "--out", str(tmp_path / "g.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--first-row early" in err[0], err
