"""Loading Hugging Face model folders (safetensors: one model.safetensors or shards through
model.safetensors.index.json; torch pickles, as some releases ship: pytorch_model.bin or shards through
pytorch_model.bin.index.json, read without running code and memory-mapped) into a model tensor by tensor,
so a 7B/8B model never has a second full copy in host RAM.

`empty_model` builds the module on the meta device and allocates it once in the target dtype;
`load_shards` then copies each stored tensor into its parameter (casting to the model's dtype) and
requires the exact key set: an unknown, missing or mis-shaped key, or one holding NaN or inf, is a
CheckpointError naming it.
"""
import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from common.weights.checkpoint import CheckpointError, check_finite, read_checkpoint

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
BIN_INDEX_NAME = "pytorch_model.bin.index.json"
BIN_SINGLE_NAME = "pytorch_model.bin"


def read_config_json(folder: str | Path, what: str) -> dict:
    """A Hugging Face folder's config.json."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{what}: {path} is not JSON: {e}") from None


def shard_files(folder: str | Path, what: str) -> dict[str, list[str]]:
    """{shard path: [stored keys]} from the index, or the single model file; files checked to exist.
    safetensors first; a folder without them is read as torch pickles (pytorch_model.bin[.index.json])."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: model folder not found: {folder}")
    for index_name, single_name in ((INDEX_NAME, SINGLE_NAME), (BIN_INDEX_NAME, BIN_SINGLE_NAME)):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"{what}: {index} is not a weight index ({type(e).__name__}: {e})") from None
            shards: dict[str, list[str]] = {}
            for key, name in weight_map.items():
                shards.setdefault(str(folder / name), []).append(key)
            for path in shards:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"{what}: shard {path} listed in {index_name} is missing")
            return shards
        if (folder / single_name).is_file():
            with open_shard(folder / single_name, what) as f:
                return {str(folder / single_name): list(f.keys())}
    raise FileNotFoundError(f"{what}: {folder} has none of {INDEX_NAME}, {SINGLE_NAME}, {BIN_INDEX_NAME}, "
                            f"{BIN_SINGLE_NAME}")


class _PickledShard:
    """A torch pickle shard with safetensors' reading interface (keys, get_tensor)."""

    def __init__(self, state: dict):
        self.state = state

    def keys(self):
        return self.state.keys()

    def get_tensor(self, key: str) -> torch.Tensor:
        return self.state[key]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.state = None


def open_shard(path: str | Path, what: str):
    """A shard to read keys and tensors from (a context manager): safetensors' safe_open, or a torch pickle
    loaded with weights_only=True (memory-mapped where it is a zip archive, as torch.save writes)."""
    if str(path).endswith(".safetensors"):
        from safetensors import safe_open
        return safe_open(str(path), framework="pt")
    return _PickledShard(read_checkpoint(path, what))


class _NoNormalInit(TorchFunctionMode):
    """normal_ (the tensor method and nn.init's) as a no-op: on the meta device it is torch's Python
    reference, whose first call imports torch._dynamo (about 2 s a process); meta tensors hold no
    values to initialise anyway."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.normal_, nn.init.normal_):
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def empty_model(factory: Callable[[], nn.Module], dtype: torch.dtype, device) -> nn.Module:
    """The module allocated once, uninitialised, in `dtype` on `device` (weights must be loaded next)."""
    with torch.device("meta"), _NoNormalInit():
        model = factory()
    return model.to(dtype).to_empty(device=device)


def load_shards(model: nn.Module, folder: str | Path, what: str,
                rename: Callable[[str], str] = lambda key: key,
                adapt: Callable[[str, torch.Tensor, torch.Size], torch.Tensor] | None = None,
                skip: Callable[[str], bool] = lambda key: False) -> None:
    """Copy every stored tensor into model's parameter `rename(stored key)`, shard by shard.

    skip(stored key): drop that key by name, unread (another model's weights in the same folder, a
    tokenizer's encoder side); callers say why where they pass it.

    adapt(name, tensor, expected shape) may reshape a stored tensor whose layout legitimately differs
    (it returns the tensor unchanged otherwise); the shape is checked after it.
    """
    params = dict(model.state_dict(keep_vars=True))
    loaded: set[str] = set()
    for path, keys in shard_files(folder, what).items():
        with open_shard(path, what) as f:
            stored = set(f.keys())
            for key in keys:
                if skip(key):
                    continue
                if key not in stored:
                    raise CheckpointError(f"{what}: {path} lacks key {key!r} that the index assigns to it")
                name = rename(key)
                if name not in params:
                    raise CheckpointError(f"{what}: {path} has unexpected key {key!r} (as {name!r}): wrong config?")
                tensor = f.get_tensor(key)
                target = params[name]
                if adapt is not None:
                    tensor = adapt(name, tensor, target.shape)
                if tuple(tensor.shape) != tuple(target.shape):
                    raise CheckpointError(f"{what}: key {key!r} has shape {tuple(tensor.shape)}, expected "
                                          f"{tuple(target.shape)}: wrong config?")
                check_finite(tensor, key, what, path)
                with torch.no_grad():
                    target.copy_(tensor)
                loaded.add(name)
                del tensor
    missing = [name for name in params if name not in loaded]
    if missing:
        raise CheckpointError(f"{what}: {folder} is missing key {missing[0]!r} ({len(missing)} missing of "
                              f"{len(params)}): wrong config or incomplete download?")
