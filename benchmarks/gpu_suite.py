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
import csv
import dataclasses
import datetime
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
from benchmarks.ab_runs import ab_rows, parse_setting
from benchmarks.outputs import add_output_args, resolve_outputs
from common.kernel_count import count_decode_passes
from common.zipar.config import PRECISIONS, DecodeConfig
from common.determinism import deterministic_kernels
from common.cli import HelpFormatter, check_device, check_output_dir, check_positive, run_main
from common.zipar.engine import CUDA_GRAPHS, decode_steps, start_decode
from common.zipar.sampling import image_seeds
from common.zipar.step_buffers import StepBuffers
from common.zipar.window import num_passes
from families import TEXT_TO_IMAGE
from llamagen.checkpoint import build_gpt
from llamagen.generate import condition_prefix, generate, layout_for
from llamagen.model import GPT_PRESETS, random_init_

STEPS = ("eager", "compiled", "cuda graphs")
SECTIONS = ("correctness", "llamagen", "t2i", "sample_ddp")
OUTPUTS = {"--out-dir": "gpu_<device>.md and .csv"}


@dataclasses.dataclass(frozen=True)
class Plan:
    """The shapes one run measures: the real ones on a GPU, tiny ones for --smoke on a CPU."""

    check_model: str
    check_size: int
    models: tuple[str, ...]
    size: int
    batches: tuple[int, ...]
    windows: tuple[int, ...]
    adaptive: tuple[int, ...]
    check_dtypes: tuple[str, ...]
    check_kernels: tuple[bool, ...]  # default kernels (False), deterministic ones (True)
    t2i: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (family, windows, batches)
    t2i_ntp_sample: int
    dtype: str
    compiler: str  # the backend behind "compiled" and "cuda graphs" (smoke: aot_eager, no code generation)


GPU = Plan("GPT-B", 256, ("GPT-L", "GPT-XL"), 384, (1, 8, 32), (8, 12, 16), (12, 16), ("fp32", "bf16"), (False, True),
           tuple((name, f.gpu_windows, f.gpu_batches) for name, f in TEXT_TO_IMAGE.items()), 40, "bf16", "inductor")
SMOKE = Plan("GPT-tiny", 64, ("GPT-tiny",), 64, (1,), (2,), (2,), ("bf16",), (True,),
             tuple((name, (2,), (1,)) for name in TEXT_TO_IMAGE), 3, "bf16", "aot_eager")


class Budget:
    """Seconds left of --budget-s; a job runs only if its estimate fits, else it is listed as skipped."""

    def __init__(self, seconds: float):
        self.deadline, self.skipped = time.perf_counter() + seconds, []

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def fits(self, what: str, estimate: float) -> bool:
        if estimate <= self.left():
            return True
        self.skipped.append(f"{what}: would take about {estimate:.0f} s, {max(self.left(), 0):.0f} s left")
        print(f"skipped {self.skipped[-1]}", file=sys.stderr)
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_arg(step: str, plan: Plan):
    """The engine's compile= value of a step kind (the smoke run compiles with aot_eager)."""
    if step == "eager":
        return False
    if plan.compiler != "inductor":
        return plan.compiler  # no CUDA graphs without a GPU and inductor: the same step, captured by dynamo
    return True if step == "compiled" else CUDA_GRAPHS


def gpt_of(name: str, size: int, dtype: str, device: torch.device):
    gpt = build_gpt(name, size, 16)
    random_init_(gpt, 0)
    return gpt.to(device=device, dtype=PRECISIONS[dtype]).eval()


def config_of(window, adaptive=False) -> DecodeConfig:
    return DecodeConfig(window=window, adaptive=adaptive, cfg_scale=2.0)


# ---------------------------------------------------------------- correctness on the device

def agreement(a: torch.Tensor, b: torch.Tensor) -> str:
    same = (a == b).double().mean().item()
    return "equal" if same == 1.0 else f"differ ({same:.1%} of tokens equal)"


def correctness_rows(plan: Plan, device: torch.device, budget: Budget) -> list[dict]:
    """Token-for-token pairs: two NTP runs, w = W vs NTP, compiled (and CUDA graphs) vs eager for fixed and
    adaptive windows, and image 0 alone vs at position 3 of a batch of 8; fp32 and the plan's low precision,
    with default kernels and with deterministic ones (common/determinism.py)."""
    rows = []
    labels, seeds = torch.arange(8, device=device) % 10, image_seeds(0, torch.arange(8, device=device))
    for dtype in plan.check_dtypes:
        gpt = gpt_of(plan.check_model, plan.check_size, dtype, device)
        W = gpt.grid_size
        for deterministic in plan.check_kernels:
            if not budget.fits(f"correctness {dtype} deterministic={deterministic}", 20 if plan is SMOKE else 60):
                continue
            torch._dynamo.reset()
            with torch.inference_mode(), (deterministic_kernels() if deterministic else _nothing()):
                run = lambda config, compile=False, n=1, first=0: generate(  # noqa: E731
                    gpt, labels[first:first + n], seeds[first:first + n], config, compile=compile).tokens
                ntp = run(config_of(None))
                pairs = [("NTP, run twice", ntp, run(config_of(None))),
                         (f"w = W ({W}) vs NTP", run(config_of(W)), ntp)]
                for step in STEPS[1:]:
                    for adaptive in (False, True):
                        config = config_of(max(W // 2, 1), adaptive)
                        name = f"{step} vs eager, {'adaptive' if adaptive else 'fixed'} {config.window}"
                        try:
                            pairs.append((name, run(config, compile_arg(step, plan)), run(config)))
                        except Exception as e:  # noqa: BLE001 - e.g. CUDA graphs refused: reported as the result
                            pairs.append((name, f"error: {type(e).__name__}: {str(e).splitlines()[0][:160]}", None))
                fixed = config_of(max(W // 2, 1))
                pairs.append(("image 3 alone vs in a batch of 8", run(fixed, first=3), run(fixed, n=8)[3:4]))
            rows += [{"check": name, "dtype": dtype, "kernels": "deterministic" if deterministic else "default",
                      "result": a if isinstance(a, str) else agreement(a, b)} for name, a, b in pairs]
    return rows


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------- LlamaGen c2i timings

def timed_generate(gpt, batch: int, config: DecodeConfig, compile, device, buffers=None) -> tuple[float, object]:
    labels = torch.arange(batch, device=device) % gpt.config.num_classes
    seeds = image_seeds(0, torch.arange(batch, device=device))
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        result = generate(gpt, labels, seeds, config, compile=compile, buffers=buffers)
    sync(device)
    return time.perf_counter() - start, result


def probe_ms_per_pass(gpt, batch: int, compile, device, passes: int = 24) -> tuple[float, float]:
    """(ms per NTP pass, seconds of the first pass: compilation included) over a short NTP stretch; the
    passes after the first half of the stretch are timed (compiled steps run slower for a few passes
    after compiling; CUDA graphs record after a warm-up)."""
    config = config_of(None)
    labels = torch.arange(batch, device=device) % gpt.config.num_classes
    seeds = image_seeds(0, torch.arange(batch, device=device))
    with torch.inference_mode():
        prefix = condition_prefix(gpt, labels, config)
        state = start_decode(gpt, prefix, seeds, layout_for(gpt), config, compile=compile)
        marks = []
        for record in decode_steps(gpt, state):
            sync(device)
            marks.append(time.perf_counter())
            if record.index + 1 >= passes:
                break
    first, half = marks[1] - marks[0], len(marks) // 2
    return 1000 * (marks[-1] - marks[half]) / max(len(marks) - 1 - half, 1), first


def llamagen_jobs(plan: Plan, device: torch.device, budget: Budget, steps=STEPS) -> list[dict]:
    """Per (model, batch, step): NTP, fixed and adaptive windows, whole decodes after one warm-up (which
    compiles, for compiled steps). In priority order: the first model at batch 1, then larger batches,
    then the other models."""
    rows = []
    order = [(m, b) for m in plan.models for b in plan.batches]
    settings = [(None, False)] + [(w, False) for w in plan.windows] + [(w, True) for w in plan.adaptive]
    for model_name, batch in order:
        gpt = None
        for step in steps:
            compile = compile_arg(step, plan)
            if gpt is None:
                if not budget.fits(f"{model_name} build", 10):
                    return rows
                gpt = gpt_of(model_name, plan.size, plan.dtype, device)
                layout = layout_for(gpt)
            if not budget.fits(f"{model_name} batch {batch} {step}: probe", 5 if not compile else 120):
                continue
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            torch._dynamo.reset()  # each compiled step of the run compiles afresh (no recompile-limit hits)
            torch._inductor.metrics.reset()
            try:
                ms, first = probe_ms_per_pass(gpt, batch, compile, device)
                # kernels inductor generated for the step (the probe compiles NTP's); none without inductor
                step_kernels = torch._inductor.metrics.generated_kernel_count if compile else ""
            except Exception as e:  # e.g. CUDA graphs refused by this torch: report it, go on
                rows.append({"model": model_name, "batch": batch, "step": step, "setting": "probe",
                             "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"})
                continue
            ntp_seconds = None
            for window, adaptive in settings:
                name = "NTP" if window is None else f"{'adaptive ' if adaptive else ''}{window}"
                passes = num_passes(layout, window or layout.cols)
                compile_cost = first if compile else 0.0
                estimate = 2 * passes * ms / 1000 + compile_cost  # warm-up + timed decode
                if not budget.fits(f"{model_name} batch {batch} {step} {name}", estimate):
                    continue
                config = config_of(window, adaptive)
                # compiled steps: the timed decode runs on the warm-up's buffers (CUDA graphs replay, no recording)
                buffers = StepBuffers() if compile else None
                warm_s, _ = timed_generate(gpt, batch, config, compile, device, buffers)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds, result = timed_generate(gpt, batch, config, compile, device, buffers)
                mean_passes = sum(result.image_passes) / batch
                kernels = step_kernels  # eager: counted per pass (common/kernel_count.py)
                if not compile:
                    labels = torch.arange(batch, device=device) % gpt.config.num_classes
                    kernels = count_decode_passes(gpt, condition_prefix(gpt, labels, config), image_seeds(
                        0, torch.arange(batch, device=device)), layout, config, 8).kernels
                ntp_seconds = seconds if window is None else ntp_seconds
                rows.append({
                    "model": model_name, "batch": batch, "step": step, "setting": name, "passes": mean_passes,
                    "passes_per_ntp": mean_passes / layout.num_cells,
                    "time_per_ntp": seconds / ntp_seconds if ntp_seconds else "",
                    "ms_per_pass": 1000 * seconds / result.forward_passes, "images_per_s": batch / seconds,
                    "first_decode_s": warm_s, "host_reads": result.host_reads, "kernels_per_pass": kernels,
                    "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else ""})
                print(f"{model_name} b{batch} {step} {name}: {rows[-1]['ms_per_pass']:.2f} ms/pass", file=sys.stderr)
    return rows


# ---------------------------------------------------------------- Lumina-mGPT and Emu3 timings

def t2i_rows(plan: Plan, device: torch.device, budget: Budget) -> list[dict]:
    """NTP on a sampled stretch (extrapolated, as benchmarks/t2i_latency.py does) and each family's windows, at
    each of its batch sizes (Janus-Pro-7B: batch 1 and 16, the release's parallel_size; w = 8 and 16)."""
    from benchmarks.t2i_latency import PROMPT, build, timed_decode
    rows = []
    for family, windows, batches in plan.t2i:
        if not budget.fits(f"{family} build", 30 if plan is GPU else 5):
            continue
        args = argparse.Namespace(family=family, tiny=plan is SMOKE, full=plan is GPU, precision=plan.dtype, dims={})
        torch.manual_seed(0)
        pipe, size, text = build(args, device)
        rows_, cols = pipe.grid(size)
        for batch in batches:
            prompts, seeds = [PROMPT] * batch, image_seeds(0, torch.arange(batch, device=device))
            cfg = TEXT_TO_IMAGE[family].sampling  # the family's preset guidance and top-k
            n, wall, _, prefill = timed_decode(pipe, prompts, seeds, DecodeConfig(window=None, **cfg), size, device,
                                               plan.t2i_ntp_sample)
            ms = 1000 * (wall - prefill) / (n - 1)
            ntp_total = rows_ * cols
            ntp_s = prefill + ms / 1000 * (ntp_total - 1)
            for window in windows:
                passes = num_passes(pipe.layout(size), window)
                if not budget.fits(f"{family} batch {batch} w={window}", passes * ms / 1000 * 1.2):
                    continue
                n_w, wall_w, _, _ = timed_decode(pipe, prompts, seeds, DecodeConfig(window=window, **cfg), size,
                                                 device)
                rows.append({"family": family, "shape": f"dim {text.dim}, {text.n_layers} layers, {rows_}x{cols}",
                             "batch": batch, "ntp_ms_per_pass": ms, "ntp_s_extrapolated": ntp_s, "window": window,
                             "passes": n_w, "passes_per_ntp": n_w / ntp_total, "seconds": wall_w,
                             "time_per_ntp": wall_w / ntp_s, "ms_per_pass": 1000 * wall_w / n_w})
        del pipe
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------- sample_ddp under torchrun

def sample_ddp_rows(plan: Plan, device: torch.device, budget: Budget) -> list[dict]:
    """The demo model's first images through torchrun (nccl on a GPU, gloo on a CPU; 1 process) and through a
    plain run: the PNG bytes must be equal."""
    if not budget.fits("sample_ddp under torchrun", 60):
        return []
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--model", "demo", "--num-fid-samples", "4", "--window", "8", "--device", device.type, "--quiet"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1"]
        runs = {}
        for name, prefix in (("torchrun", torchrun), ("plain", [sys.executable])):
            out = Path(tmp) / name
            proc = subprocess.run([*prefix, str(ROOT / "sample_ddp.py"), *common, "--out-dir", str(out)], cwd=ROOT,
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                return [{"check": f"sample_ddp ({name})", "result": f"failed: {proc.stderr.strip().splitlines()[-1:]}"}]
            runs[name] = {p.name: p.read_bytes() for p in sorted(out.glob("*/*.png"))}
    backend = "nccl" if device.type == "cuda" else "gloo"
    same = runs["torchrun"] == runs["plain"] and len(runs["plain"]) == 4
    return [{"check": f"sample_ddp, torchrun ({backend}, 1 process) vs a plain run, 4 demo PNGs",
             "result": "equal" if same else "differ"}]


# ---------------------------------------------------------------- report

def table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)\n"
    fmt = lambda x: f"{x:.3f}" if isinstance(x, float) else str(x)  # noqa: E731
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    return f"{name}; torch {torch.__version__}{cuda}; {datetime.date.today().isoformat()}"


def device_tag(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu-smoke"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


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


def write_report(plan: Plan, device, args, sections: dict, errors: list, budget: Budget, start: float,
                 out_dir: Path) -> Path:
    correctness, llamagen, t2i = sections["correctness"], sections["llamagen"], sections["t2i"]
    kind = "smoke run (tiny shapes, CPU; the code paths only, no GPU figure)" if args.smoke else "GPU run"
    text = (f"# GPU suite: {machine(device)}\n\n{kind}; {plan.dtype} timings, random weights, CFG 2.0 (LlamaGen) / "
            f"the family preset's (t2i); {time.perf_counter() - start:.0f} s of a {args.budget_s:.0f} s budget. Compiled and "
            f"CUDA-graph steps: {plan.compiler}. `python -m benchmarks.gpu_suite`.\n\n"
            "## Correctness on the device\n\n" + table(correctness, ["check", "dtype", "kernels", "result"]) +
            "\n## LlamaGen c2i (whole decodes; time/NTP against the same model, batch and step)\n\n" +
            table(llamagen, ["model", "batch", "step", "setting", "passes", "passes_per_ntp", "time_per_ntp",
                             "ms_per_pass", "kernels_per_pass", "images_per_s", "first_decode_s", "host_reads",
                             "peak_gib", "error"]) +
            "\nkernels_per_pass: eager, kernels one pass dispatches (common/kernel_count.py, batch as in the row); "
            "compiled steps, kernels inductor generated for the step.\n" +
            "\n## A/B, one run (arms alternated in fresh processes; median and spread over the repeats)\n\n" +
            table(sections["ab"], ["arm", "checkout", "step", "setting", "repeats", "median_ms_per_pass", "min_ms",
                                   "max_ms", "ratio_to_a", "kernels_per_pass", "error"]) +
            "\n## Lumina-mGPT and Emu3-Gen (NTP: a sampled stretch, extrapolated)\n\n" +
            table(t2i, ["family", "shape", "batch", "ntp_ms_per_pass", "ntp_s_extrapolated", "window", "passes",
                        "passes_per_ntp", "seconds", "time_per_ntp", "ms_per_pass"]) +
            "\n## Errors\n\n" + ("".join(f"- {e}\n" for e in errors) or "(none)\n") +
            "\n## Skipped (budget)\n\n" + ("".join(f"- {s}\n" for s in budget.skipped) or "(none)\n"))
    md = out_dir / f"gpu_{device_tag(device)}.md"
    md.write_text(text)
    with open(md.with_suffix(".csv"), "w", newline="") as f:
        rows = ([{"section": "correctness", **r} for r in correctness] + [{"section": "llamagen", **r} for r in llamagen]
                + [{"section": "t2i", **r} for r in t2i] + [{"section": "ab", **r} for r in sections["ab"]])
        fields = list(dict.fromkeys(k for r in rows for k in r)) or ["section"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
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
