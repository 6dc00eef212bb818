"""Time NTP and ZipAR windows (fixed and adaptive) for a LlamaGen preset with random weights (speed
does not depend on weight values for fixed windows; adaptive acceptance does, so use the demo model
or real weights for adaptive numbers that mean something). Reports passes, seconds per image, ms per
pass, the share of time spent outside the model's forward (engine overhead), images/s and ratios to
NTP measured in the same run; prints a Markdown table and optionally writes a CSV.

python -m benchmarks.latency --gpt-model GPT-B --image-size 384 --windows 8 12 16 --batch-size 1
"""
import argparse
import platform
import statistics
import sys
import time

import torch

from common.atomic import write_csv_atomic
from common.cli import (HelpFormatter, add_flag, add_renamed, check_device, check_positive, check_precision, run_main,
                        set_threads)
from common.path_checks import check_input_file, check_output_file
from common.zipar.config import PRECISIONS, DecodeConfig
from common.zipar.sampling import image_seeds
from llamagen.checkpoint import build_gpt, load_gpt_weights
from llamagen.generate import generate
from llamagen.model import GPT_PRESETS, random_init_
from llamagen.presets import check_image_size


class TimedModel:
    """Wraps the model and accumulates the wall time of its forward calls (synchronised on CUDA)."""

    def __init__(self, model, device):
        self.model, self.device, self.seconds = model, device, 0.0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, *args):
        self._sync()
        start = time.perf_counter()
        out = self.model(*args)
        self._sync()
        self.seconds += time.perf_counter() - start
        return out


def time_config(gpt, config, batch, repeats, device, compile=False):
    """(passes, wall times, forward times, last result) over `repeats` runs after one warm-up.
    compile: torch.compile the engine's decode pass (model included); the forward is then inside
    the compiled graph and not timed separately (forward times are NaN)."""
    labels = torch.arange(batch, device=device) % gpt.config.num_classes
    seeds = image_seeds(0, torch.arange(batch, device=device))
    generate(gpt, labels, seeds, config, compile=compile)  # warm-up (and compilation)
    times, forward_times, passes, result = [], [], 0, None
    for _ in range(repeats):
        timed = gpt if compile else TimedModel(gpt, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = generate(timed, labels, seeds, config, compile=compile)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        forward_times.append(float("nan") if compile else timed.seconds)
        passes = sum(result.image_passes) / batch if config.adaptive else result.forward_passes
    return passes, times, forward_times, result


def mean_accepted_window(result) -> float | str:
    """Adaptive runs: accepted window averaged over rows and images ('' for fixed windows)."""
    if result.accepted_windows is None:
        return ""
    return statistics.mean(w for image in result.accepted_windows for w in image)


def fmt(x) -> str:
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def mean_rejections(result) -> float | str:
    return "" if result.rejections is None else statistics.mean(result.rejections)


def settings(args) -> list[tuple[str, DecodeConfig]]:
    """(row name, config) of NTP, the fixed windows and the adaptive ones; each config validated here."""
    out = [(None, False)] + [(w, False) for w in args.windows] + [(w, True) for w in args.adaptive_windows]
    return [("NTP" if w is None else f"{'adaptive ' if adaptive else ''}{w}",
             DecodeConfig(window=w, adaptive=adaptive, cfg_scale=args.cfg_scale, top_k=args.top_k))
            for w, adaptive in out]


def check_args(args) -> list[tuple[str, DecodeConfig]]:
    """Everything cheap, before a model is built: counts, the device, files, the settings, the CSV path."""
    check_positive(windows=args.windows, adaptive_windows=args.adaptive_windows, batch_size=args.batch_size,
                   repeats=args.repeats, image_size=args.image_size, downsample=args.downsample)
    if args.image_size % args.downsample:
        raise ValueError(f"--image-size {args.image_size} must be a multiple of --downsample {args.downsample}")
    check_precision(args.precision, check_device(args.device))
    check_image_size(args.gpt_model, args.image_size, args.gpt_ckpt is not None, "without --gpt-ckpt")
    if args.gpt_ckpt:
        check_input_file(args.gpt_ckpt, "--gpt-ckpt", "checkpoint file")
    if args.out_csv:
        check_output_file(args.out_csv, "--out-csv", (".csv",), "a CSV table")
    configs = settings(args)
    for _, config in configs:
        config.check_grid(args.image_size // args.downsample)
    set_threads(args)
    return configs


def main(args):
    configs = check_args(args)
    device = torch.device(args.device)
    gpt = build_gpt(args.gpt_model, args.image_size, args.downsample)
    if args.gpt_ckpt:
        load_gpt_weights(gpt, args.gpt_ckpt, args.gpt_model)
    else:
        random_init_(gpt, 0)
    gpt = gpt.to(device=device, dtype=PRECISIONS[args.precision]).eval()
    rows = []
    for name, config in configs:
        passes, times, forward_times, result = time_config(gpt, config, args.batch_size, args.repeats, device,
                                                           args.compile)
        med = statistics.median(times)
        overhead = statistics.median(1 - f / t for f, t in zip(forward_times, times))
        rows.append({"setting": name, "passes": passes, "median_s": med, "min_s": min(times), "max_s": max(times),
                     "s_per_image": med / args.batch_size, "ms_per_pass": 1000 * med / passes,
                     "engine_overhead": overhead, "images_per_s": args.batch_size / med,
                     "accepted_window": mean_accepted_window(result), "rejections": mean_rejections(result)})
    ntp = rows[0]
    for r in rows:
        r["pass_ratio"] = r["passes"] / ntp["passes"]
        r["time_ratio"] = r["median_s"] / ntp["median_s"]
    grid = args.image_size // args.downsample
    weights = args.gpt_ckpt or "random weights"
    print(f"{args.gpt_model} ({weights}), {grid}x{grid} grid, batch {args.batch_size}, {args.precision}, "
          f"cfg {args.cfg_scale}, compile {args.compile}, {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads), torch {torch.__version__}, median of {args.repeats}\n")
    print("| setting | passes | passes/NTP | time/NTP | s/image (median) | min-max s | ms/pass | engine overhead "
          "| images/s | accepted window | rejections/image |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['passes']:.1f} | {r['pass_ratio']:.3f} | {r['time_ratio']:.3f} | "
              f"{r['s_per_image']:.3f} | {r['min_s']:.2f}-{r['max_s']:.2f} | {r['ms_per_pass']:.1f} | "
              f"{100 * r['engine_overhead']:.1f}% | {r['images_per_s']:.2f} | {fmt(r['accepted_window'])} | "
              f"{fmt(r['rejections'])} |")
    if args.out_csv:
        write_csv_atomic(args.out_csv, rows, list(rows[0]))
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--gpt-model", choices=list(GPT_PRESETS), default="GPT-B", help="GPT preset")
    p.add_argument("--image-size", type=int, default=384, help="image size in pixels")
    p.add_argument("--downsample", type=int, default=16, help="VQ downsample factor (16 for VQ-16)")
    p.add_argument("--windows", type=int, nargs="+", default=[8, 12, 16], help="ZipAR windows to time besides NTP")
    p.add_argument("--adaptive-windows", type=int, nargs="*", default=[], help="adaptive w_min values to time")
    add_flag(p, "--gpt-ckpt", help="load these weights instead of random ones (e.g. the demo model)")
    add_flag(p, "--batch-size")
    p.add_argument("--cfg-scale", type=float, default=2.0, help="CFG scale (> 1 doubles the model batch)")
    p.add_argument("--top-k", type=int, default=0, help="top-k (0 = off)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting after one warm-up")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="GPT dtype")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    add_flag(p, "--threads")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the engine's decode pass (fullgraph; fixed and adaptive windows)")
    add_flag(p, "--out-csv", help="also write the rows to this CSV file")
    add_renamed(p, "--batch", "--batch-size")
    add_renamed(p, "--csv", "--out-csv")
    return p


if __name__ == "__main__":
    sys.exit(run_main(main, build_parser().parse_args()))
