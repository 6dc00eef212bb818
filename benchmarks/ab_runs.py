"""One-run A/B timing for benchmarks/gpu_suite.py: two arms (two settings of this checkout, or one
setting in this checkout and in another one, `--ab-ref PATH`) timed alternately, A B A B ..., in
fresh worker processes of one process group on the same device, several repeats; reported as median
and spread (min..max) per arm and the ratio of medians. Only a ratio measured this way is a
comparison: figures from two runs or two harnesses are not.

A worker uses only what every checkout of this engine has (llamagen.checkpoint.build_gpt,
llamagen.model.random_init_, llamagen.generate.generate, common.zipar.config.DecodeConfig), so an
older checkout can be the reference; where the checkout has common/kernel_count.py, the worker also
counts the kernels of its eager passes.
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = r'''
import json, sys, time, torch
from common.zipar.config import DecodeConfig
from llamagen.checkpoint import build_gpt
from llamagen.generate import generate
from llamagen.model import random_init_
a = json.loads(sys.argv[1])
device = torch.device(a["device"])
torch.set_num_threads(a["threads"])
gpt = build_gpt(a["model"], a["size"], 16)
random_init_(gpt, 0)
gpt = gpt.to(device=device, dtype=getattr(torch, a["dtype"])).eval()
config = DecodeConfig(window=a["window"], adaptive=a["adaptive"], cfg_scale=2.0)
labels = torch.arange(a["batch"], device=device) % gpt.config.num_classes
seeds = torch.arange(a["batch"], device=device)
compile = {"eager": False, "compiled": a["compiler"], "cuda graphs": a["graphs"]}[a["step"]]
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
out = {}
with torch.inference_mode():
    generate(gpt, labels, seeds, config, compile=compile)  # warm-up (and compilation)
    sync()
    start = time.perf_counter()
    result = generate(gpt, labels, seeds, config, compile=compile)
    sync()
    out["ms_per_pass"] = 1000 * (time.perf_counter() - start) / result.forward_passes
    out["passes"] = result.forward_passes
try:
    from common.kernel_count import count_decode_passes
    from llamagen.generate import condition_prefix, layout_for
    if a["step"] == "eager":
        counts = count_decode_passes(gpt, condition_prefix(gpt, labels, config), seeds, layout_for(gpt), config, 8)
        out["kernels_per_pass"] = counts.kernels
except ImportError:
    pass
print("AB " + json.dumps(out))
'''


def parse_setting(text: str) -> dict:
    """"STEP/SETTING": STEP eager, compiled or cuda-graphs; SETTING NTP, a window W or aW (adaptive)."""
    step, _, setting = text.partition("/")
    step = step.replace("-", " ")
    if step not in ("eager", "compiled", "cuda graphs") or not setting:
        raise ValueError(f"an A/B setting is STEP/SETTING (STEP eager, compiled or cuda-graphs; SETTING NTP, W "
                         f"or aW), got {text!r}")
    adaptive = setting.startswith("a")
    digits = setting[1:] if adaptive else setting
    if setting != "NTP" and not digits.isdigit():
        raise ValueError(f"an A/B setting's window is NTP, W or aW, got {setting!r}")
    return {"step": step, "window": None if setting == "NTP" else int(digits), "adaptive": adaptive}


def run_arm(root: Path, args: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(root)), timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("AB ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200]}
    return json.loads(lines[-1][3:])


def ab_rows(arms: list[tuple[str, Path, dict]], common: dict, repeats: int, timeout: float = 600) -> list[dict]:
    """arms: (label, checkout root, setting) x 2, timed alternately `repeats` times each."""
    samples = {label: [] for label, _, _ in arms}
    kernels, errors = {}, {}
    for _ in range(repeats):
        for label, root, setting in arms:
            r = run_arm(root, {**common, **setting}, timeout)
            if "error" in r:
                errors[label] = r["error"]
                continue
            samples[label].append(r["ms_per_pass"])
            kernels.setdefault(label, r.get("kernels_per_pass", ""))
    rows = []
    for label, root, setting in arms:
        ms = samples[label]
        rows.append({"arm": label, "checkout": str(root), "step": setting["step"],
                     "setting": "NTP" if setting["window"] is None else
                     f"{'adaptive ' if setting['adaptive'] else ''}{setting['window']}",
                     "repeats": len(ms), "median_ms_per_pass": statistics.median(ms) if ms else "",
                     "min_ms": min(ms) if ms else "", "max_ms": max(ms) if ms else "",
                     "kernels_per_pass": kernels.get(label, ""), "error": errors.get(label, "")})
    a, b = rows[0]["median_ms_per_pass"], rows[1]["median_ms_per_pass"]
    if a and b:
        rows[1]["ratio_to_a"] = b / a
    return rows
