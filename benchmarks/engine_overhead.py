"""Host-side cost of the decoding engine per forward pass, measured with a null model whose forward
is one tiny matmul (embedding dim 8, so the model costs almost nothing): what remains is the engine's
own work per pass (scheduling, masks, gathers, guidance, filtering, sampling, acceptance, and any
host-device synchronisation). Fixed and adaptive windows, several batch sizes and grids.

Times the first `--passes` decode passes after the prefill (the steady state of a decode: several
rows active), median of `--repeats`, and prints a Markdown table of microseconds per pass.

python -m benchmarks.engine_overhead --batch-sizes 1 32 128 --grids 24 48 90:eol
"""
import argparse
import platform
import statistics
import sys
import time

import torch

from common.cli import (HelpFormatter, add_flag, add_renamed, check_device, check_positive,
                        run_main, set_threads)
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode_steps, start_decode
from common.zipar.kv_cache import KVCache
from common.zipar.sampling import image_seeds
from common.zipar.layout import Layout


class NullModel:
    """Fits common.zipar.engine.Decoder; logits = embedding @ projection (dim 8): input-dependent, nearly free."""

    def __init__(self, vocab: int, device, dim: int = 8):
        g = torch.Generator().manual_seed(0)
        self.table = torch.randn(vocab + 1, dim, generator=g).to(device)
        self.proj = torch.randn(dim, vocab, generator=g).to(device)
        self.dim = dim

    def new_cache(self, batch, num_slots, device):
        return KVCache(1, batch, 1, num_slots, self.dim, torch.float32, device)

    def embed_tokens(self, ids):
        return self.table[ids.clamp(min=0)]

    def __call__(self, x, positions, slots, mask, cache):
        return (x @ self.proj).float()


def grid_layout(spec: str) -> Layout:
    """'24' -> a 24x24 LlamaGen layout; '90:eol' -> 90x90 with end-of-row tokens (Lumina-mGPT, Emu3)."""
    size, colon, kind = spec.partition(":")
    if not size.isdigit() or int(size) < 1 or (colon and kind != "eol"):
        raise ValueError(f"--grids {spec!r}: a grid is its side in tokens, optionally with ':eol' for "
                         "end-of-row tokens (e.g. 24, 90:eol)")
    return Layout(rows=int(size), cols=int(size), prefix_len=1, end_of_row=kind == "eol")


def time_passes(model, layout, config, batch, passes, device, compile):
    seeds = image_seeds(0, torch.arange(batch))
    rows = 2 * batch if config.uses_cfg else batch
    condition = model.table[torch.zeros(rows, layout.prefix_len, dtype=torch.int64, device=device)]
    fixed = torch.full((layout.rows,), model.table.shape[0] - 1, dtype=torch.int64) if layout.end_of_row else None
    state = start_decode(model, condition, seeds.to(device), layout, config, fixed, compile=compile)
    steps = decode_steps(model, state)
    next(steps)  # the prefill
    ran, start = 0, None
    for _ in steps:
        if ran == 1:  # the first decode pass is not timed (compilation, allocation)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        ran += 1
        if ran > passes:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    timed = ran - 1
    return (time.perf_counter() - start) / max(timed, 1) if start is not None else float("nan")


def check_args(args) -> list[Layout]:
    """Everything cheap, before any timing: counts, grids, the device, the settings."""
    check_positive(batch_sizes=args.batch_sizes, window=args.window, vocab=args.vocab, passes=args.passes,
                   repeats=args.repeats)
    layouts = [grid_layout(spec) for spec in args.grids]
    check_device(args.device)
    for adaptive in (False, True):
        DecodeConfig(window=args.window, adaptive=adaptive, cfg_scale=args.cfg_scale, top_k=args.top_k)
    set_threads(args)
    return layouts


def main(args):
    layouts = check_args(args)
    device = torch.device(args.device)
    model = NullModel(args.vocab, device)
    print(f"null model (vocab {args.vocab}), window {args.window}, cfg {args.cfg_scale}, first {args.passes} decode "
          f"passes, median of {args.repeats}, {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads), torch {torch.__version__}, compile {args.compile}\n")
    print("| grid | batch | fixed (us/pass) | adaptive (us/pass) |")
    print("|---|---|---|---|")
    for layout in layouts:
        for batch in args.batch_sizes:
            cells = []
            for adaptive in (False, True):
                config = DecodeConfig(window=args.window, adaptive=adaptive, cfg_scale=args.cfg_scale, top_k=args.top_k)
                times = [time_passes(model, layout, config, batch, args.passes, device, args.compile)
                         for _ in range(args.repeats)]
                cells.append(f"{1e6 * statistics.median(times):.0f}")
            eol = " + end-of-row" if layout.end_of_row else ""
            print(f"| {layout.rows}x{layout.cols}{eol} | {batch} | {cells[0]} | {cells[1]} |", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--grids", nargs="+", default=["24", "48", "90:eol"], help="grid sizes; ':eol' adds end-of-row tokens")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128], metavar="N",
                   help="images per decode, one row of the table each")
    p.add_argument("--window", type=int, default=16, help="ZipAR window (w_min when adaptive)")
    p.add_argument("--vocab", type=int, default=64, help="codes the null model samples")
    p.add_argument("--cfg-scale", type=float, default=2.0, help="CFG scale (> 1 doubles the model batch)")
    p.add_argument("--top-k", type=int, default=0, help="top-k (0 = off)")
    p.add_argument("--passes", type=int, default=60, help="decode passes timed per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell")
    add_flag(p, "--threads", default=1, help="torch CPU threads (>= 1)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the engine's per-pass step")
    add_renamed(p, "--batches", "--batch-sizes")
    return p


if __name__ == "__main__":
    sys.exit(run_main(main, build_parser().parse_args()))
