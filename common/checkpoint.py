"""Reading checkpoint files safely and loading them exactly.

`torch.load(weights_only=True)` always (a checkpoint must never run code), with `argparse.Namespace`
allow-listed because LlamaGen's training scripts pickle their args next to the weights
(FoundationVision/LlamaGen, autoregressive/train/train_c2i.py). Loads are strict: a missing,
unexpected or mis-shaped key is an error that names what was loaded, the file and the first key.
"""
import argparse
from pathlib import Path

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as asked."""


def read_checkpoint(path: str | Path, what: str) -> dict:
    """Load a .pt/.pth/.safetensors file onto the CPU without running code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # truncated, corrupt or not a checkpoint at all
        raise CheckpointError(f"{what}: cannot read checkpoint {path}: {type(e).__name__}: {e}") from None


def unwrap_state_dict(ckpt: dict, containers: tuple[str, ...], what: str, path) -> dict:
    """The weights: under the first present container key, or the dict itself if it holds tensors only."""
    for key in containers:
        if key in ckpt:
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
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{what}: {path} key {key!r} has shape {tuple(state[key].shape)}, "
                                  f"expected {tuple(tensor.shape)}: wrong preset?")
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{what}: {path} has unexpected key {key!r}: wrong preset or model type?")
    model.load_state_dict(state, strict=True)
