"""Bad checkpoint files give one specific line, and `python -m common.convert` is the way out for pickled ones."""
import json
import os
import pickle
import shlex
import types
from pathlib import Path

import pytest
import torch

from common import convert
from common.weights.checkpoint import CheckpointError, read_checkpoint
from llamagen.demo_tokenizer import IntensityTokenizer
from tests.helpers.processes import run_python

WHAT = "GPT preset demo"


def _read_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, WHAT)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _pickled(path: Path, weights: dict) -> Path:
    """A Lightning-style file: weights under "state_dict" next to a pickled object weights_only refuses."""
    torch.save({"state_dict": weights, "hyper_parameters": types.SimpleNamespace(lr=0.1)}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # the premise: a safe load really refuses this file
    return path


def _convert(capsys, *argv) -> tuple[int, str]:
    code = convert.cli([str(a) for a in argv])
    return code, capsys.readouterr().err


def _assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- read_checkpoint


def test_empty_file(tmp_path):
    path = tmp_path / "c2i_B_256.pt"
    path.touch()
    assert _read_error(path) == f"{WHAT}: {path} is empty (0 bytes), not a checkpoint"


def test_text_file(tmp_path):
    path = tmp_path / "c2i_B_256.pt"
    path.write_text("404: Not Found\n")  # what a failed download often leaves
    msg = _read_error(path)
    assert msg.startswith(f"{WHAT}: {path} is not a torch checkpoint")
    assert ".safetensors" in msg and "_use_new_zipfile_serialization" not in msg


def test_pickled_objects_name_the_converter(tmp_path):
    path = _pickled(tmp_path / "vqgan.ckpt", {"w": torch.ones(2)})
    msg = _read_error(path)
    assert f"{WHAT}: {path} holds pickled Python objects" in msg
    assert "types.SimpleNamespace" in msg and "weights_only=True" in msg
    assert f"`python -m common.convert {shlex.quote(str(path))} --trust-pickle`" in msg
    assert str(tmp_path / "vqgan.safetensors") in msg


def test_truncated_zip_still_cannot_read(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(4)}, good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[:60])
    assert f"{WHAT}: cannot read checkpoint {bad}: " in _read_error(bad)


def test_legacy_pickle_and_safetensors_by_content(tmp_path):
    from safetensors.torch import save_file
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    legacy = tmp_path / "legacy.pt"
    torch.save(weights, legacy, _use_new_zipfile_serialization=False)  # mmap refuses this format
    _assert_same(read_checkpoint(legacy, WHAT), weights)
    named_pt = tmp_path / "really_safetensors.pt"
    save_file(weights, str(named_pt))
    _assert_same(read_checkpoint(named_pt, WHAT), weights)


# ----------------------------------------------------------------------------- common.convert


def test_convert_refuses_pickle_without_trust(tmp_path, capsys):
    path = _pickled(tmp_path / "vqgan.ckpt", {"w": torch.ones(2)})
    code, err = _convert(capsys, path)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "--trust-pickle" in err
    assert sorted(os.listdir(tmp_path)) == ["vqgan.ckpt"]  # no output, no temp file


def test_convert_exit_status_from_the_command_line(tmp_path):
    path = _pickled(tmp_path / "vqgan.ckpt", {"w": torch.ones(2)})
    run = run_python(["-m", "common.convert", str(path)])
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "--trust-pickle" in run.stderr and not (tmp_path / "vqgan.safetensors").exists()


def test_convert_with_trust_pickle(tmp_path, capsys):
    weights = {"encoder.w": torch.randn(3, 2), "decoder.b": torch.arange(4, dtype=torch.int64),
               "half": torch.ones(2, dtype=torch.bfloat16)}
    path = _pickled(tmp_path / "vqgan.ckpt", weights)
    code, err = _convert(capsys, path, "--trust-pickle")
    assert code == 0, err
    assert "warning: " in err and "trusted source" in err and "'state_dict'" in err
    out = tmp_path / "vqgan.safetensors"
    _assert_same(read_checkpoint(out, WHAT), weights)
    assert sorted(os.listdir(tmp_path)) == ["vqgan.ckpt", "vqgan.safetensors"]


def test_convert_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    out = tmp_path / "model.safetensors"
    out.write_text("precious")
    code, err = _convert(capsys, path)
    assert code == 2 and "already exists" in err and "--force" in err
    assert out.read_text() == "precious"
    code, err = _convert(capsys, path, "--force")
    assert code == 0, err
    _assert_same(read_checkpoint(out, WHAT), {"w": torch.ones(2)})


def test_convert_key_selection(tmp_path, capsys):
    model, ema = {"w": torch.zeros(3)}, {"w": torch.ones(3)}
    path = tmp_path / "c2i.pt"
    torch.save({"model": model, "ema": ema, "steps": 7}, path)  # loads safely: no --trust-pickle needed
    code, err = _convert(capsys, path)
    assert code == 0, err
    assert "'model'" in err and "['ema']" in err  # says which it took and what it left
    _assert_same(read_checkpoint(tmp_path / "c2i.safetensors", WHAT), model)
    out = tmp_path / "ema.safetensors"
    code, err = _convert(capsys, path, "--key", "ema", "--out", out)
    assert code == 0, err
    _assert_same(read_checkpoint(out, WHAT), ema)
    code, err = _convert(capsys, path, "--key", "optimizer", "--out", tmp_path / "x.safetensors")
    assert code == 2 and "'optimizer'" in err and "'ema'" in err and "'steps'" in err


def test_convert_refuses_non_tensors(tmp_path, capsys):
    path = tmp_path / "train.pt"
    torch.save({"state_dict": {"w": torch.ones(2), "step": 3}, "epoch": 1}, path)
    code, err = _convert(capsys, path, "--key", "state_dict")
    assert code == 2 and err.count("\n") == 1 and "'step' (int)" in err
    code, err = _convert(capsys, path)  # no candidate holds tensors only
    assert code == 2 and "'epoch'" in err and "'state_dict'" in err and "--key" in err
    assert sorted(os.listdir(tmp_path)) == ["train.pt"]


def test_convert_shared_and_strided_tensors(tmp_path, capsys):
    base = torch.arange(12.0)
    weights = {"all": base, "head": base[:4], "grid_t": base.view(3, 4).t()}  # one storage, one strided view
    path = tmp_path / "tied.pt"
    torch.save(weights, path)
    code, err = _convert(capsys, path)
    assert code == 0, err
    _assert_same(read_checkpoint(tmp_path / "tied.safetensors", WHAT), weights)


# ----------------------------------------------------------------------------- demo tokenizer spec


@pytest.mark.parametrize("kind", ["binary", "text", "wrong-json"])
def test_demo_tokenizer_not_a_spec(tmp_path, kind):
    path = tmp_path / "tokenizer.pt"
    if kind == "binary":
        torch.save({"w": torch.ones(2)}, path)
    elif kind == "text":
        path.write_text("levels = 16\n")
    else:
        path.write_text(json.dumps({"type": "vq", "levels": 16}))
    with pytest.raises(ValueError) as info:
        IntensityTokenizer.load(path)
    assert str(info.value).startswith(f"{path} is not a demo tokenizer spec (a JSON file like "
                                      f"checkpoints/demo/tokenizer.json): ")


def test_demo_tokenizer_round_trip(tmp_path):
    path = tmp_path / "tokenizer.json"
    IntensityTokenizer(levels=8, pixel_scale=2).save(path)
    tok = IntensityTokenizer.load(path)
    assert (tok.levels, tok.pixel_scale) == (8, 2)
