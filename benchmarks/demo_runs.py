"""What the demo-model quality benchmarks (benchmarks/tradeoff.py, benchmarks/sampling_sweep.py) share: their
run flags and checks (samples, groups, seeds, threads, the demo's files, output files, --part), sampling one
setting over every image in batches, and scoring its tokens (class accuracy, digits-FID, agreement with NTP,
each with its spread over equal groups of the samples)."""
import argparse
import statistics
import time

import torch

from common.cli import add_flag, check_positive, set_threads
from common.path_checks import check_input_file, check_output_file
from common.metrics import paired_agreement
from llamagen.generate import generate
from llamagen.presets import DEMO, DEMO_DIR


def run_setting(gpt, config, labels, seeds, batch_size):
    tokens, passes, windows, rejections, drafts = [], [], [], [], {"rate": [], "rows": [], "rejections": []}
    start = time.perf_counter()
    for lo in range(0, len(labels), batch_size):
        r = generate(gpt, labels[lo:lo + batch_size], seeds[lo:lo + batch_size], config)
        tokens.append(r.tokens)
        passes += r.image_passes
        if r.accepted_windows is not None:
            windows += [w for image in r.accepted_windows for w in image]
            rejections += r.rejections
        if r.tokens_per_row_pass is not None:
            drafts["rate"] += r.tokens_per_row_pass
            drafts["rows"] += r.row_tokens_per_pass
            drafts["rejections"] += r.draft_rejections
    return torch.cat(tokens), passes, time.perf_counter() - start, windows, rejections, drafts


def score(scorer, tokenizer, tokens, labels, reference, num_groups):
    grey = tokenizer.codes_to_grey(tokens.flatten(1), tuple(tokens.shape[1:]))
    whole = scorer.score(grey, labels)
    agree = paired_agreement(tokens, reference)
    groups = torch.arange(len(labels)).chunk(num_groups)
    per_group = [scorer.score(grey[g], labels[g]) for g in groups]
    std = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    return {"accuracy": whole["accuracy"], "accuracy_std": std([g["accuracy"] for g in per_group]),
            "digits_fid": whole["digits_fid"], "digits_fid_std": std([g["digits_fid"] for g in per_group]),
            "agreement": agree.mean().item(), "agreement_std": std([agree[g].mean().item() for g in groups])}


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags every demo-model quality benchmark shares: samples, seeds, threads and the demo's files."""
    p.add_argument("--num-samples", type=int, default=500, help="images per setting (a multiple of --groups)")
    p.add_argument("--groups", type=int, default=5, help="equal groups of samples whose metric std is the spread")
    add_flag(p, "--batch-size", default=100)
    p.add_argument("--seed", type=int, default=0, help="global seed; image i uses seed (seed, i)")
    add_flag(p, "--threads", default=1, help="torch CPU threads (1: timings that hold up when the machine is shared)")
    p.add_argument("--gpt-ckpt", default=DEMO.gpt_ckpt, help="demo GPT checkpoint")
    p.add_argument("--tokenizer", default=DEMO.vq_ckpt, help="demo tokenizer spec")
    p.add_argument("--classifier", default=str(DEMO_DIR / "digit_classifier.pt"), help="digit classifier")


def check_run_args(args) -> None:
    """The demo-model benchmarks' shared flags (add_run_args), before any work; sets the thread count."""
    check_positive(num_samples=args.num_samples, groups=args.groups, batch_size=args.batch_size)
    if args.num_samples % args.groups or args.num_samples < 2 * args.groups:
        raise ValueError(f"--num-samples {args.num_samples} must be a multiple of --groups {args.groups} with at "
                         "least 2 samples a group (a digits-FID needs 2)")
    for flag, path, what in (("--gpt-ckpt", args.gpt_ckpt, "checkpoint file"), ("--tokenizer", args.tokenizer,
                             "tokenizer spec"), ("--classifier", args.classifier, "classifier checkpoint")):
        check_input_file(path, flag, what)
    for name in ("windows", "adaptive_windows", "placeholder_windows", "compat_windows", "draft_lens",
                 "draft_windows", "window"):
        if hasattr(args, name):
            check_positive(**{name: getattr(args, name)})
    set_threads(args)


def check_outputs(args, **paths) -> None:
    """--out-md, --out-csv, --out-png: writable files with their suffixes, before the run."""
    for kind, path in paths.items():
        check_output_file(path, f"--out-{kind}", (f".{kind}",), {"md": "a Markdown table", "csv": "a CSV table",
                                                                 "png": "the plot"}[kind])


def run_name(benchmark: str, args) -> str:
    """The default run folder's prefix: one per --part, so parts started together never share a folder."""
    return benchmark if args.part is None else f"{benchmark}-part{args.part[0]}of{args.part[1]}"


def part_arg(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 1/2), got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"K/N needs 1 <= K <= N, got {text!r}")
    return k, n
