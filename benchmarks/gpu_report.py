"""benchmarks/gpu_suite.py's report: gpu_<device>.md (the machine, torch and CUDA versions, date, one table per
section, errors, what the budget skipped) and the same rows as .csv, rewritten after every job."""
import csv
import datetime
import platform
import re
import time
from pathlib import Path

import torch

from benchmarks.gpu_plan import Budget, Plan


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
