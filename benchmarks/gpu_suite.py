"""Every GPU figure in one call: correctness on the device, LlamaGen c2i timings (eager, compiled, CUDA
graphs), Lumina-mGPT 7B, Emu3-Gen 8B and Janus-Pro-7B timings, and sample_ddp under torchrun with nccl. Random weights
of the real shapes (nothing to download; speed does not depend on weight values, adaptive acceptance
does: its pass counts here are those of random weights). Jobs run in priority order within --budget-s;
each job is estimated from timings made earlier in the run, and one that would not fit is skipped with
a line saying so. Writes <out-dir>/gpu_<device>.md and .csv (machine, torch and CUDA versions, date).

python -m benchmarks.gpu_suite                                # on one CUDA GPU, about 8 minutes: runs/gpu_suite-<time>/
python -m benchmarks.gpu_suite --update-results              # the same into benchmarks/results/
python -m benchmarks.gpu_suite --smoke --out-dir /tmp/smoke   # the same code paths, tiny shapes, CPU
"""
import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

from benchmarks.ab_runs import ab_rows, parse_setting
from benchmarks.gpu_checks import correctness_rows, sample_ddp_rows
from benchmarks.gpu_plan import GPU, SMOKE, STEPS, Budget
from benchmarks.gpu_report import device_tag, write_report
from benchmarks.gpu_timings import llamagen_jobs, t2i_rows
from benchmarks.outputs import add_output_args, resolve_outputs
from common.cli import HelpFormatter, check_device, check_positive, run_main
from common.path_checks import check_output_dir
from common.zipar.engine import CUDA_GRAPHS
from llamagen.model import GPT_PRESETS

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("correctness", "llamagen", "t2i", "sample_ddp")
OUTPUTS = {"--out-dir": "gpu_<device>.md and .csv"}


def check_args(args) -> torch.device:
    """Everything cheap, before any model is built (one `error:` line, exit status 2): the budget, the
    lists, the output folder and the device: a CUDA GPU, or the CPU for --smoke. Returns the device."""
    if not math.isfinite(args.budget_s) or args.budget_s <= 0:
        raise ValueError(f"--budget-s must be a finite number of seconds > 0, got {args.budget_s}")
    check_positive(windows=args.windows, adaptive=args.adaptive, batches=args.batches)
    unknown = [m for m in args.models or [] if m not in GPT_PRESETS]
    if unknown:
        raise ValueError(f"--models {' '.join(unknown)}: valid: {', '.join(GPT_PRESETS)}")
    if args.ab_settings is not None and len(args.ab_settings) != (1 if args.ab_ref else 2):
        raise ValueError("--ab-settings takes two settings, or one with --ab-ref")
    if args.ab_ref is not None and not (Path(args.ab_ref) / "llamagen" / "generate.py").is_file():
        raise ValueError(f"--ab-ref {args.ab_ref} is not a checkout of this engine (no llamagen/generate.py)")
    check_positive(ab_repeats=args.ab_repeats)
    for setting in args.ab_settings or []:
        parse_setting(setting)
    resolve_outputs(args, "gpu_suite", OUTPUTS)
    check_output_dir(args.out_dir, holds="the report's .md and .csv")
    if args.smoke:
        if args.device not in (None, "cpu"):
            raise ValueError(f"--smoke runs tiny shapes on the CPU, so --device {args.device} would be ignored; "
                             "drop --device, or drop --smoke to measure the GPU")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA device"
        raise ValueError(f"no CUDA device here ({build}, torch {torch.__version__}): the suite measures a GPU; "
                         "--smoke runs its code paths on tiny shapes on the CPU")
    device = check_device(args.device or "cuda")
    if device.type != "cuda":
        raise ValueError(f"--device {args.device}: the suite measures a CUDA GPU; --smoke runs its code paths "
                         "on the CPU")
    return device


def main(args) -> Path:
    device = check_args(args)
    plan = SMOKE if args.smoke else GPU
    chosen = {"windows": args.windows, "adaptive": args.adaptive, "batches": args.batches, "models": args.models}
    overrides = {k: tuple(v) for k, v in chosen.items() if v is not None}
    plan = dataclasses.replace(plan, **overrides) if overrides else plan  # `plan is SMOKE` picks the tiny shapes
    steps = STEPS if args.steps is None else tuple(s.replace("-", " ") for s in args.steps)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    start = time.perf_counter()
    sections = {"correctness": [], "llamagen": [], "t2i": [], "ab": []}
    errors: list[str] = []

    def section(name: str, what: str, rows_of) -> None:
        """Runs one job; an exception becomes a listed error (the rest still runs), and the report is
        rewritten after every job, so a run cut short still leaves what it measured."""
        try:
            sections[name] += rows_of()
        except Exception as e:  # noqa: BLE001 - reported in the output, never swallowed silently
            errors.append(f"{what}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            print(f"error in {errors[-1]}", file=sys.stderr)
        print(f"[{time.perf_counter() - start:.0f} s] {what} done", file=sys.stderr)
        write_report(plan, device, args, sections, errors, budget, start, out_dir)

    want = set(args.sections)
    if args.ab_settings or args.ab_ref:  # the A/B comparison alone
        want = set()
        settings = [parse_setting(s) for s in (args.ab_settings or ["eager/NTP"])]
        if args.ab_ref:
            arms = [("A: this checkout", ROOT, settings[0]), ("B: --ab-ref", Path(args.ab_ref).resolve(), settings[-1])]
        else:
            arms = [(f"{x}: {text}", ROOT, s) for x, text, s in zip("AB", args.ab_settings, settings)]
        common = {"model": plan.models[0], "size": plan.size, "dtype": {"bf16": "bfloat16", "fp32": "float32",
                  "fp16": "float16"}[plan.dtype], "batch": plan.batches[0], "device": str(device),
                  "threads": 1 if args.smoke else torch.get_num_threads(), "compiler": plan.compiler,
                  "graphs": plan.compiler if plan.compiler != "inductor" else CUDA_GRAPHS}
        section("ab", "A/B", lambda: ab_rows(arms, common, args.ab_repeats))
    if "correctness" in want:
        section("correctness", "correctness", lambda: correctness_rows(plan, device, budget))
    # GPU-bound sections before the long LlamaGen grid: its first model at batch 1 leads
    first = dataclasses.replace(plan, models=plan.models[:1], batches=plan.batches[:1])
    if "llamagen" in want:
        section("llamagen", "LlamaGen, first model, first batch", lambda: llamagen_jobs(first, device, budget, steps))
    if "t2i" in want:
        section("t2i", "t2i", lambda: t2i_rows(plan, device, budget))
    if "sample_ddp" in want:
        section("correctness", "sample_ddp", lambda: sample_ddp_rows(plan, device, budget))
    if "llamagen" in want:
        rest = dataclasses.replace(plan, batches=plan.batches[1:])
        section("llamagen", "LlamaGen, first model, larger batches",
                lambda: llamagen_jobs(dataclasses.replace(rest, models=plan.models[:1]), device, budget, steps))
        section("llamagen", "LlamaGen, other models",
                lambda: llamagen_jobs(dataclasses.replace(plan, models=plan.models[1:]), device, budget, steps))
    md = out_dir / f"gpu_{device_tag(device)}.md"
    print(md.read_text())
    return md


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--budget-s", type=float, default=480.0, help="seconds the whole suite may take (default 480)")
    add_output_args(p, OUTPUTS)
    p.add_argument("--device", default=None, help="the CUDA device to measure (default cuda; --smoke: the CPU only)")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks the code paths, no GPU figure")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run (default: all)")
    p.add_argument("--steps", nargs="+", choices=[s.replace(" ", "-") for s in STEPS], default=None,
                   help="LlamaGen step kinds to time (default: all)")
    p.add_argument("--windows", type=int, nargs="+", default=None, help="LlamaGen fixed windows (default: the plan's)")
    p.add_argument("--adaptive", type=int, nargs="*", default=None, help="LlamaGen adaptive w_min (default: the plan's)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="LlamaGen batch sizes (default: the plan's)")
    p.add_argument("--models", nargs="+", default=None, help="LlamaGen models (default: the plan's)")
    p.add_argument("--ab-settings", nargs="+", default=None, metavar="STEP/SETTING",
                   help="A/B only: time these two settings of the first model and batch alternately in one run, "
                        "e.g. eager/NTP eager/16 (STEP eager, compiled, cuda-graphs; SETTING NTP, W, aW adaptive)")
    p.add_argument("--ab-ref", default=None, metavar="PATH",
                   help="A/B only: time the (first) --ab-settings setting, default eager/NTP, in this checkout and in "
                        "the engine checkout at PATH, alternately in one run")
    p.add_argument("--ab-repeats", type=int, default=5, help="A/B: timed decodes per arm (default 5)")
    return p


def cli(argv=None) -> int:
    return run_main(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
