"""Convert a checkpoint to .safetensors: its weights alone, in a file that loads without running code.

Why: every loader here reads checkpoints with torch.load(weights_only=True), which refuses a file that also
pickles Python objects beyond tensors (a Lightning .ckpt's hyper-parameters, a training config class), since
unpickling those can run arbitrary code. This is the knowing, one-off escape hatch: with --trust-pickle the
file is unpickled once with torch.load(weights_only=False) (only for files from a source you trust), its
state dict is written as safetensors, and from then on that file is the one you pass. Without --trust-pickle
it reads the file with the same safe loader as the rest and converts only files that load safely.

The weights: --key if given, else the first of state_dict, model, module, ema that holds a dict of tensors,
else the file's top level if it holds tensors only. Weights holding NaN or inf are refused (every loader here
refuses them), and nothing is written.

python -m common.convert vqgan.ckpt --trust-pickle                # writes vqgan.safetensors (suffix replaced)
python -m common.convert c2i_B_256.pt --key ema --out c2i_B_256_ema.safetensors
"""
import argparse
import sys
from pathlib import Path

import torch

from common.atomic import atomic_path
from common.weights.checkpoint import CheckpointError, check_finite, checkpoint_format, read_checkpoint
from common.cli import HelpFormatter, run_main
from common.path_checks import check_input_file, check_output_file

CONTAINERS = ("state_dict", "model", "module", "ema")  # Lightning keeps its weights under "state_dict"
WHAT = "checkpoint to convert"


def load_trusting_pickle(path: Path) -> object:
    """torch.load(weights_only=False): runs whatever code the file's pickle names."""
    if not path.is_file():
        raise FileNotFoundError(f"{WHAT}: checkpoint file not found: {path}")
    if checkpoint_format(path, WHAT) == "safetensors":  # holds no pickle: nothing to trust
        return read_checkpoint(path, WHAT)
    sys.stderr.write(f"warning: --trust-pickle unpickles {path}, which runs code from the file: "
                     f"use it only on files from a trusted source\n")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated, corrupt, or a class whose module is not installed
        raise CheckpointError(f"{WHAT}: cannot read checkpoint {path}: {type(e).__name__}: {e}") from None


def _non_tensors(d: dict) -> list[str]:
    """The entries safetensors cannot store, as `'key' (type)`."""
    return [f"{k!r} ({type(v).__name__})" for k, v in d.items()
            if not (isinstance(k, str) and isinstance(v, torch.Tensor))]


def _is_weights(value) -> bool:
    return isinstance(value, dict) and bool(value) and not _non_tensors(value)


def find_state_dict(ckpt, key: str | None, path: Path) -> tuple[dict, str | None]:
    """(the weights, the key they sit under; None for the top level)."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a dict of weights")
    found = sorted(map(str, ckpt))[:12]
    if key is not None:
        if key not in ckpt:
            raise CheckpointError(f"{path} has no key {key!r}; keys found: {found}")
        value = ckpt[key]
        if not isinstance(value, dict) or not value:
            raise CheckpointError(f"{path}: {key!r} holds {type(value).__name__ if value else 'nothing'}, "
                                  f"not a dict of tensors")
        if _non_tensors(value):
            raise CheckpointError(f"{path}: {key!r} holds non-tensor entries {_non_tensors(value)[:8]}; "
                                  f"safetensors stores tensors only")
        return value, key
    for name in CONTAINERS:
        if _is_weights(ckpt.get(name)):
            return ckpt[name], name
    if _is_weights(ckpt):
        return ckpt, None
    raise CheckpointError(f"{path} holds no dict of tensors under any of {list(CONTAINERS)} and non-tensor "
                          f"entries at its top level {_non_tensors(ckpt)[:8]}; keys found: {found}; "
                          f"choose the weights with --key")


def safetensors_ready(state: dict) -> dict:
    """Contiguous CPU tensors that share no storage (safetensors refuses shared or strided tensors); a tensor
    whose storage an earlier one already uses is cloned."""
    seen, out = set(), {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone(memory_format=torch.contiguous_format) if storage in seen else tensor.contiguous()
        seen.add(out[name].untyped_storage().data_ptr())
    return out


def write_atomically(state: dict, out: Path, metadata: dict) -> None:
    """Whole or not at all (common.atomic): an interrupted run or a full disk never leaves a partial `out`."""
    from safetensors.torch import save_file
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def main(args: argparse.Namespace) -> Path:
    path = Path(args.file)
    check_input_file(path, WHAT, "checkpoint file")
    out = Path(args.out) if args.out is not None else path.with_suffix(".safetensors")
    if out.resolve() == path.resolve():
        raise ValueError(f"--out {out} is the input file itself; choose another --out")
    if out.exists() and not args.force:
        raise ValueError(f"{out} already exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out: folder not found: {out.parent}")
    check_output_file(out, "--out", (".safetensors",), "the format written; loaders read safetensors by its name")
    ckpt = load_trusting_pickle(path) if args.trust_pickle else read_checkpoint(path, WHAT)
    state, key = find_state_dict(ckpt, args.key, path)
    # refused, not warned about: every loader refuses a weight holding NaN or inf, so the file would be of no use
    for name, tensor in state.items():
        check_finite(tensor, name, WHAT, path)
    write_atomically(safetensors_ready(state), out, {"format": "pt", "source": path.name, "key": key or "."})
    # other candidate weights (a training checkpoint's "model" next to its "ema"): say they were left out
    others = [name for name in CONTAINERS if name != key and _is_weights(ckpt.get(name))]
    print(f"wrote {out}: {len(state)} tensors from {f'key {key!r}' if key else 'the top level'} of {path}"
          + (f"; also holds {others}, choose with --key" if others else ""), file=sys.stderr)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m common.convert", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("file", help="checkpoint to convert (.pt, .pth, .ckpt, .bin)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load with torch.load(weights_only=False), which runs code from the file: "
                        "only for files from a source you trust")
    p.add_argument("--key", default=None,
                   help=f"the key holding the weights; default the first of {', '.join(CONTAINERS)} "
                        f"holding tensors, else the top level")
    p.add_argument("--out", default=None, help="output file, ending in .safetensors; default FILE with its suffix "
                                               "replaced by .safetensors (vqgan.ckpt -> vqgan.safetensors)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return p


def cli(argv=None) -> int:
    return run_main(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
