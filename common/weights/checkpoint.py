"""Reading checkpoint files safely and loading them exactly.

`torch.load(weights_only=True)` always (a checkpoint must never run code), with `argparse.Namespace`
allow-listed because LlamaGen's training scripts pickle their args next to the weights
(FoundationVision/LlamaGen, autoregressive/train/train_c2i.py). Loads are strict: a missing,
unexpected or mis-shaped key, or one holding NaN or inf, is an error that names what was loaded, the file
and the first such key.
A file that is empty, not a checkpoint at all, or pickles objects a safe load refuses gets its own one-line
message; for the last, `python -m common.convert FILE --trust-pickle` is the knowing way out.
"""
import argparse
import pickle
import re
import shlex
import zipfile
from pathlib import Path

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as asked."""


def checkpoint_format(path: Path, what: str) -> str:
    """'zip', 'pickle' or 'safetensors', from the first bytes. torch.load's own errors for an empty or a text
    file are misleading (with mmap it blames `_use_new_zipfile_serialization`), so those are named here."""
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        raise CheckpointError(f"{what}: {path} is empty (0 bytes), not a checkpoint")
    if head.startswith(b"PK\x03\x04") or zipfile.is_zipfile(path):  # torch.save's zip (the magic alone: truncated)
        return "zip"
    if head[0] == 0x80:  # pickle's PROTO opcode: torch.save(..., _use_new_zipfile_serialization=False)
        return "pickle"
    # safetensors: an 8-byte little-endian header length, then the JSON header. By name too, so that a damaged
    # one gets safetensors' own error, which says what is wrong.
    if head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size:
        return "safetensors"
    if path.suffix == ".safetensors":
        return "safetensors"
    raise CheckpointError(f"{what}: {path} is not a torch checkpoint (a .pt/.pth zip archive or .safetensors)")


def read_checkpoint(path: str | Path, what: str) -> dict:
    """Load a .pt/.pth/.safetensors file onto the CPU without running code; it must hold a dict (weights, or
    containers of them): a list or one bare tensor is refused here, for every loader."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what}: {path} is a folder; expected a checkpoint file (.pt, .pth, .safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"{what}: checkpoint file not found: {path}")
    kind = checkpoint_format(path, what)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        with torch.serialization.safe_globals([argparse.Namespace]):  # mmap needs the zip format
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except Exception as e:
        if isinstance(e, pickle.UnpicklingError) and "weights only load failed" in str(e).lower():
            raise CheckpointError(_pickled_objects(path, what, str(e))) from None
        # truncated or corrupt
        raise CheckpointError(f"{what}: cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what}: {path} holds {_kind(ckpt)}, not a dict of weights (a state dict, or one "
                              "under a key such as 'model')")
    return ckpt


def _kind(value) -> str:
    """What a checkpoint entry is, for messages: 'a list', 'a tensor of shape (3, 4)'."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _pickled_objects(path: Path, what: str, reason: str) -> str:
    """Objects beyond tensors (a Lightning .ckpt's hyper-parameters, a config class): unpickling them can run
    code, so the way out is a one-off conversion to safetensors that the user chooses knowingly."""
    found = re.search(r"GLOBAL (\S+)", reason)  # the first refused class, as torch names it
    return (f"{what}: {path} holds pickled Python objects{f' ({found[1]})' if found else ''} that a safe load "
            f"(torch.load weights_only=True) refuses; if it comes from a source you trust, run "
            f"`python -m common.convert {shlex.quote(str(path))} --trust-pickle`, which writes "
            f"{path.with_suffix('.safetensors')} next to it, and pass that file instead")


def unwrap_state_dict(ckpt: dict, containers: tuple[str, ...], what: str, path) -> dict:
    """The weights: under the first present container key, or the dict itself if it holds tensors only."""
    for key in containers:
        if key in ckpt:
            if not isinstance(ckpt[key], dict):
                raise CheckpointError(f"{what}: {path} holds {_kind(ckpt[key])} under {key!r}, not a dict of weights")
            return ckpt[key]
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise CheckpointError(f"{what}: {path} holds neither bare weights nor any of {list(containers)}; "
                          f"top-level keys: {sorted(ckpt)[:8]}")


def load_exact(model: nn.Module, state: dict, what: str, path) -> None:
    """Copy `state` into `model`, requiring identical keys and shapes; raises CheckpointError otherwise."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{what}: {path} is missing key {key!r} ({len(state)} keys in file, "
                                  f"{len(expected)} expected): wrong preset or model type?")
        if not isinstance(state[key], torch.Tensor):
            raise CheckpointError(f"{what}: {path} key {key!r} holds {_kind(state[key])}, not a tensor")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{what}: {path} key {key!r} has shape {tuple(state[key].shape)}, "
                                  f"expected {tuple(tensor.shape)}: wrong preset?")
        check_finite(state[key], key, what, path)
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{what}: {path} has unexpected key {key!r}: wrong preset or model type?")
    model.load_state_dict(state, strict=True)


def check_finite(tensor: torch.Tensor, key: str, what: str, path) -> None:
    """Refuse a weight holding NaN or inf: every image would come out as noise or NaN pixels, silently.
    One pass over the weights at load (for a 7B model in bf16, seconds on a CPU)."""
    if tensor.is_floating_point() or tensor.is_complex():
        bad = ~torch.isfinite(tensor)
        if bad.any():
            raise CheckpointError(f"{what}: {path} key {key!r} holds {int(bad.sum())} non-finite value(s) "
                                  f"(NaN or inf) of {tensor.numel()}: a damaged or diverged checkpoint")
