"""benchmarks/gpu_suite.py's timings: LlamaGen c2i whole decodes per (model, batch, step kind, setting), and
Lumina-mGPT, Emu3-Gen and Janus-Pro (NTP on a sampled stretch, extrapolated, and each family's windows)."""
import argparse
import sys
import time

import torch

from benchmarks.gpu_plan import GPU, SMOKE, STEPS, Budget, Plan, compile_arg, config_of, gpt_of, sync
from common.kernel_count import count_decode_passes
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode_steps, start_decode
from common.zipar.sampling import image_seeds
from common.zipar.step_buffers import StepBuffers
from common.zipar.window import num_passes
from families import TEXT_TO_IMAGE
from llamagen.generate import condition_prefix, generate, layout_for


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
