"""CFG-scale and temperature sweeps on the demo model for NTP and adaptive ZipAR (the CPU analogue of
the ZipAR paper's Tables 4-5): does ZipAR move the best sampling setting?

Two one-dimensional sweeps around the demo default (cfg 2.0, temperature 1.0): cfg scales at
temperature 1.0, then temperatures at cfg 2.0; same labels and seeds as benchmarks/tradeoff.py.

python -m benchmarks.sampling_sweep --num-samples 500                    # into a new runs/sampling_sweep-<time>/
python -m benchmarks.sampling_sweep --num-samples 500 --update-results   # the committed benchmarks/results/
"""
import argparse
import csv
import statistics
import sys

import torch

from benchmarks import demo_runs
from benchmarks.outputs import add_output_args, resolve_outputs
from common.atomic import write_csv_atomic, write_text_atomic
from common.cli import HelpFormatter, run_main
from common.zipar.config import DecodeConfig
from common.zipar.sampling import image_seeds
from llamagen.checkpoint import load_gpt_weights
from llamagen.demo_classifier import DigitScorer
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.model import Transformer, gpt_config
from llamagen.presets import DEMO

COLUMNS = ["method", "cfg_scale", "temperature", "passes_mean", "accuracy", "accuracy_std", "digits_fid",
           "digits_fid_std", "agreement", "agreement_std"]


def grid(args) -> list[tuple[float, float]]:
    points = [(c, 1.0) for c in args.cfg_scales] + [(args.base_cfg, t) for t in args.temperatures]
    return list(dict.fromkeys(points))  # the shared (base cfg, 1.0) point once


OUTPUTS = {"--out-md": "sampling_sweep.md", "--out-csv": "sampling_sweep.csv"}


@torch.inference_mode()
def main(args) -> list[dict]:
    demo_runs.check_run_args(args)
    resolve_outputs(args, demo_runs.run_name("sampling_sweep", args), OUTPUTS)
    demo_runs.check_outputs(args, md=args.out_md, csv=args.out_csv)
    for cfg_scale, temperature in grid(args):  # validated (finite, in range) before the model loads
        try:
            DecodeConfig(window=args.window, adaptive=args.adaptive, cfg_scale=cfg_scale, temperature=temperature)
        except ValueError as e:
            raise ValueError(f"--cfg-scales/--temperatures point cfg {cfg_scale}, temperature {temperature}: "
                             f"{e}") from None
    gpt = Transformer(gpt_config("demo"), grid_size=DEMO.image_size).eval()
    load_gpt_weights(gpt, args.gpt_ckpt, "demo")
    tokenizer, scorer = IntensityTokenizer.load(args.tokenizer), DigitScorer.load(args.classifier)
    n = args.num_samples
    labels, seeds = torch.arange(n) % gpt.config.num_classes, image_seeds(args.seed, torch.arange(n))
    rows = []
    points = grid(args)
    if args.part:
        k, n = args.part
        points = points[k - 1::n]
    for cfg_scale, temperature in points:
        sampling = dict(cfg_scale=cfg_scale, temperature=temperature)
        reference = None
        zipar = f"{'adaptive' if args.adaptive else 'fixed'} {args.window}"
        for method, config in (("NTP", DecodeConfig(window=None, **sampling)),
                               (zipar, DecodeConfig(window=args.window, adaptive=args.adaptive, **sampling))):
            tokens, passes, *_ = demo_runs.run_setting(gpt, config, labels, seeds, args.batch_size)
            reference = tokens if reference is None else reference  # agreement with NTP at the same setting
            rows.append({"method": method, "cfg_scale": cfg_scale, "temperature": temperature,
                         "passes_mean": statistics.mean(passes),
                         **demo_runs.score(scorer, tokenizer, tokens, labels, reference, args.groups)})
            print(f"{method} cfg {cfg_scale} T {temperature}: {rows[-1]['digits_fid']:.1f}", file=sys.stderr)
    write(rows, args)
    return rows


def markdown(rows, args) -> str:
    head = (f"Demo model, {args.num_samples} samples per setting; spread = std over {args.groups} groups. "
            "Agreement: tokens equal to NTP's at the same setting and seed.\n\n"
            "| method | cfg | temperature | passes | class accuracy | digits-FID | agreement with NTP |\n"
            "|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['method']} | {r['cfg_scale']} | {r['temperature']} | {r['passes_mean']:.1f} | "
        f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | {r['digits_fid']:.1f} ± {r['digits_fid_std']:.1f} | "
        f"{r['agreement']:.3f} |\n" for r in rows)


def write(rows, args):
    write_text_atomic(args.out_md, markdown(rows, args))
    write_csv_atomic(args.out_csv, rows, COLUMNS)
    print(markdown(rows, args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    demo_runs.add_run_args(p)
    p.add_argument("--window", "--w-min", dest="window", type=int, default=16,
                   help="ZipAR's window (w_min with --adaptive), with the default first row and placeholder")
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=False,
                   help="adaptive windows (--window is w_min) or fixed ones")
    p.add_argument("--part", type=demo_runs.part_arg, default=None, metavar="K/N",
                   help="run the K-th of N round-robin parts of the sampling settings; merge with --from-csv")
    p.add_argument("--from-csv", nargs="+", default=None, metavar="CSV", help="run nothing: merge these tables")
    p.add_argument("--cfg-scales", type=float, nargs="*", default=[1.5, 2.0, 3.0, 4.0, 6.0], help="at temperature 1")
    p.add_argument("--base-cfg", type=float, default=2.0, help="cfg scale of the temperature sweep")
    p.add_argument("--temperatures", type=float, nargs="*", default=[0.7, 0.85, 1.0], help="at --base-cfg")
    add_output_args(p, OUTPUTS)
    return p


def read_rows(paths) -> list[dict]:
    """Rows of --part runs, in the sweep's order (cfg scales at temperature 1, then temperatures)."""
    rows = [r for path in paths for r in csv.DictReader(open(path, newline=""))]
    for r in rows:
        r.update({k: float(v) for k, v in r.items() if k != "method"})
    return rows


if __name__ == "__main__":
    a = build_parser().parse_args()
    if a.from_csv:
        resolve_outputs(a, demo_runs.run_name("sampling_sweep", a), OUTPUTS)
        order = {point: i for i, point in enumerate(grid(a))}
        write(sorted(read_rows(a.from_csv), key=lambda r: (order[(r["cfg_scale"], r["temperature"])],
                                                           r["method"] != "NTP")), a)
    else:
        sys.exit(run_main(main, a))
