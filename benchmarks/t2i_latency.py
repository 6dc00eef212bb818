"""Time NTP and ZipAR windows for the text-to-image families (families.py: Lumina-mGPT, Emu3-Gen, Janus-Pro) at their
real token grids and vocabularies, with random weights and a decoder of chosen size (--dims; --full for the 7B/8B
shape). Times decoding only (tokens, not the image decoder). NTP is measured on a sample of
--ntp-sample passes and extrapolated to the full pass count: every pass attends over the same static
cache of all slots, so its cost does not grow along the sequence (the measured passes say so: see
ms/pass). Prints a Markdown table; --out-md writes it to a file.

python -m benchmarks.t2i_latency --family emu3 --windows 5 7 10
python -m benchmarks.t2i_latency --family lumina --windows 11 14 17 20 --batch-size 1
python -m benchmarks.t2i_latency --family janus --full --windows 8 16 --batch-size 16 --precision bf16
"""
import argparse
import platform
import sys
import time

import torch

from benchmarks.latency import TimedModel
from common.atomic import write_text_atomic
from common.cli import HelpFormatter, add_flag, add_renamed, check_device, check_positive, check_precision, run_main
from common.path_checks import check_output_file
from common.zipar.config import PRECISIONS, DecodeConfig
from common.zipar.engine import decode_steps
from common.zipar.sampling import image_seeds
from families import TEXT_TO_IMAGE, family

PROMPT = "a photo of a red fox sitting in fresh snow at dawn, soft light, high detail"


def build(args, device):
    """(pipeline, size arguments of generate, decoder config): the family's speed_pipeline (families.py) at
    the full shape (--full), the tiny test one (--tiny), or the full one with --dim/--layers/--heads."""
    dims = {} if args.full or args.tiny else args.dims
    return family(args.family).speed(args.tiny, dims, PRECISIONS[args.precision], device)


def timed_decode(pipe, prompts, seeds, config, size, device, max_passes=None):
    """(passes run, wall seconds, forward seconds, seconds of the prefill pass); max_passes: stop early."""
    coded = pipe.coded
    pipe.coded = timed = TimedModel(coded, device)
    try:
        state = pipe.start(prompts, seeds, config, size)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        prefill = 0.0
        with torch.inference_mode():
            for record in decode_steps(timed, state):
                if record.index == 0:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    prefill = time.perf_counter() - start
                if max_passes is not None and record.index + 1 >= max_passes:
                    break
        if device.type == "cuda":
            torch.cuda.synchronize()
        return state.passes_run, time.perf_counter() - start, timed.seconds, prefill
    finally:
        pipe.coded = coded


SHAPE_DEFAULTS = {"dim": 768, "layers": 12, "heads": 12}  # the decoder built without --full or --tiny


def check_args(args) -> dict:
    """Everything cheap, before a model is built; returns the decoding settings shared by every row."""
    shape = [f"--{name.replace('_', '-')}" for name in (*SHAPE_DEFAULTS, "kv_heads") if getattr(args, name) is not None]
    if args.full and args.tiny:
        raise ValueError("--full (the real decoder) and --tiny (the test config) exclude each other; give one")
    if (args.full or args.tiny) and shape:
        raise ValueError(f"--{'full' if args.full else 'tiny'} builds its own decoder shape, so {' and '.join(shape)} "
                         f"would be ignored; drop {'it' if len(shape) == 1 else 'them'} or drop "
                         f"--{'full' if args.full else 'tiny'}")
    for name, default in SHAPE_DEFAULTS.items():
        setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
    check_positive(windows=args.windows, batch_size=args.batch_size, dim=args.dim, layers=args.layers,
                   heads=args.heads, kv_heads=args.kv_heads)
    if args.ntp_sample < 2:
        raise ValueError(f"--ntp-sample {args.ntp_sample} must be >= 2 (the prefill pass, then at least one more)")
    if args.dim % args.heads or args.heads % (args.kv_heads or args.heads):
        raise ValueError(f"--dim {args.dim} must be a multiple of --heads {args.heads}, and --heads a multiple of "
                         f"--kv-heads {args.kv_heads}")
    check_precision(args.precision, check_device(args.device))
    if args.out_md:
        check_output_file(args.out_md, "--out-md", (".md",), "a Markdown table")
    sampling = family(args.family).sampling
    sampling["top_k"] = sampling["top_k"] if args.top_k is None else args.top_k
    for w in args.windows:
        DecodeConfig(window=w, **sampling)  # validated here, not after the model is built
    args.dims = dict(dim=args.dim, n_layers=args.layers, n_heads=args.heads, n_kv_heads=args.kv_heads or args.heads,
                     ffn_hidden=int(args.dim * 8 / 3) // 64 * 64)
    return sampling


def main(args) -> str:
    cfg = check_args(args)
    device = torch.device(args.device)
    torch.manual_seed(0)
    pipe, size, text = build(args, device)
    rows, cols = pipe.grid(size)
    prompts = [PROMPT] * args.batch_size
    seeds = image_seeds(0, torch.arange(args.batch_size, device=device))
    timed_decode(pipe, prompts, seeds, DecodeConfig(window=args.windows[0], **cfg), size, device, max_passes=8)  # warm-up
    ntp_total = rows * cols
    n, wall, fwd, prefill = timed_decode(pipe, prompts, seeds, DecodeConfig(window=None, **cfg), size, device,
                                         args.ntp_sample)
    ntp_seconds = prefill + (wall - prefill) / (n - 1) * (ntp_total - 1)  # the prefill pass, then the rest
    lines = [f"{args.family}: decoder dim {text.dim}, {text.n_layers} layers, {text.n_heads} heads "
             f"({text.n_kv_heads} kv), vocab {text.vocab_size}; {rows}x{cols} grid, batch {args.batch_size}, CFG "
             f"{cfg['cfg_scale']:g}, top-k {cfg['top_k']} (model batch {2 * args.batch_size}), {args.precision}, {device.type} "
             f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
             f"torch {torch.__version__}", "",
             "| setting | passes | passes/NTP | seconds | time/NTP | ms/pass | engine overhead |", "|---|---|---|---|---|---|---|",
             f"| NTP (sampled {n} passes) | {ntp_total} | 1.000 | {ntp_seconds:.1f} (extrapolated) | 1.000 | "
             f"{1000 * (wall - prefill) / (n - 1):.1f} | {1 - fwd / wall:.1%} |"]
    for w in args.windows:
        n, wall, fwd, _ = timed_decode(pipe, prompts, seeds, DecodeConfig(window=w, **cfg), size, device)
        lines.append(f"| w={w} | {n} | {n / ntp_total:.3f} | {wall:.1f} | {wall / ntp_seconds:.3f} | "
                     f"{1000 * wall / n:.1f} | {1 - fwd / wall:.1%} |")
    table = "\n".join(lines)
    print(table)
    if args.out_md:
        write_text_atomic(args.out_md, table + "\n")
    return table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--family", choices=list(TEXT_TO_IMAGE), required=True, help="model family (families.py)")
    p.add_argument("--windows", type=int, nargs="+", required=True, help="ZipAR windows to time")
    add_flag(p, "--batch-size")
    p.add_argument("--ntp-sample", type=int, default=200, help="NTP passes to time (>= 2; extrapolated to the grid)")
    # the shape flags default to None (then SHAPE_DEFAULTS), so that --full and --tiny can refuse given ones
    for name, what in (("dim", "decoder width"), ("layers", "decoder layers"), ("heads", "attention heads")):
        p.add_argument(f"--{name}", type=int, default=None,
                       help=f"{what} (default: {SHAPE_DEFAULTS[name]}; not with --full or --tiny)")
    p.add_argument("--kv-heads", type=int, default=None, help="key/value heads (default: heads; not with --full or --tiny)")
    p.add_argument("--full", action="store_true", help="the real 7B / 8B decoder shape (Janus-Pro: 7B; needs a GPU)")
    p.add_argument("--tiny", action="store_true", help="the tiny test config and grid (tests)")
    p.add_argument("--top-k", type=int, default=None, help="top-k; default the family's preset (families.py)")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="decoder dtype")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    add_flag(p, "--out-md", help="write the Markdown table here")
    add_renamed(p, "--batch", "--batch-size")
    add_renamed(p, "--out", "--out-md")
    return p


if __name__ == "__main__":
    sys.exit(run_main(main, build_parser().parse_args()))
