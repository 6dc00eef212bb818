"""Time NTP and ZipAR windows (fixed and adaptive) for a LlamaGen preset with random weights (speed
does not depend on weight values for fixed windows; adaptive acceptance does, so use the demo model
or real weights for adaptive numbers that mean something). Reports passes, seconds per image, ms per
pass, the share of time spent outside the model's forward (engine overhead), images/s and ratios to
NTP measured in the same run; prints a Markdown table and optionally writes a CSV.

python benchmarks/latency.py --gpt-model GPT-B --image-size 384 --windows 8 12 16 --batch 1
"""
import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config import PRECISIONS, DecodeConfig  # noqa: E402
from common.sampling import image_seeds  # noqa: E402
from llamagen.checkpoint import build_gpt, load_gpt_weights  # noqa: E402
from llamagen.generate import generate  # noqa: E402
from llamagen.model import GPT_PRESETS, random_init_  # noqa: E402



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


def main(args):
    device = torch.device(args.device)
    gpt = build_gpt(args.gpt_model, args.image_size, args.downsample)
    if args.gpt_ckpt:
        load_gpt_weights(gpt, args.gpt_ckpt, args.gpt_model)
    else:
        random_init_(gpt, 0)
    gpt = gpt.to(device=device, dtype=PRECISIONS[args.precision]).eval()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    settings = [(None, False)] + [(w, False) for w in args.windows] + [(w, True) for w in args.adaptive_windows]
    for window, adaptive in settings:
        config = DecodeConfig(window=window, adaptive=adaptive, cfg_scale=args.cfg_scale, top_k=args.top_k)
        passes, times, forward_times, result = time_config(gpt, config, args.batch, args.repeats, device, args.compile)
        med = statistics.median(times)
        overhead = statistics.median(1 - f / t for f, t in zip(forward_times, times))
        name = "NTP" if window is None else f"{'adaptive ' if adaptive else ''}{window}"
        rows.append({"setting": name, "passes": passes, "median_s": med, "min_s": min(times), "max_s": max(times),
                     "s_per_image": med / args.batch, "ms_per_pass": 1000 * med / passes,
                     "engine_overhead": overhead, "images_per_s": args.batch / med,
                     "accepted_window": mean_accepted_window(result), "rejections": mean_rejections(result)})
    ntp = rows[0]
    for r in rows:
        r["pass_ratio"] = r["passes"] / ntp["passes"]
        r["time_ratio"] = r["median_s"] / ntp["median_s"]
    grid = args.image_size // args.downsample
    weights = args.gpt_ckpt or "random weights"
    print(f"{args.gpt_model} ({weights}), {grid}x{grid} grid, batch {args.batch}, {args.precision}, "
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
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpt-model", choices=list(GPT_PRESETS), default="GPT-B", help="GPT preset")
    p.add_argument("--image-size", type=int, default=384, help="image size in pixels")
    p.add_argument("--downsample", type=int, default=16, help="VQ downsample factor (16 for VQ-16)")
    p.add_argument("--windows", type=int, nargs="+", default=[8, 12, 16], help="ZipAR windows to time besides NTP")
    p.add_argument("--adaptive-windows", type=int, nargs="*", default=[], help="adaptive w_min values to time")
    p.add_argument("--gpt-ckpt", default=None, help="load these weights instead of random ones (e.g. the demo model)")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--cfg-scale", type=float, default=2.0, help="CFG scale (> 1 doubles the model batch)")
    p.add_argument("--top-k", type=int, default=0, help="top-k (0 = off)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting after one warm-up")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="GPT dtype")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the engine's decode pass (fullgraph; fixed and adaptive windows)")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    main(p.parse_args())
