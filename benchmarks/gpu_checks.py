"""benchmarks/gpu_suite.py's correctness section: token-for-token pairs on the device (repeat runs, w = W vs
NTP, compiled and CUDA-graph steps vs eager, an image alone vs in a batch), and sample_ddp.py under torchrun
vs a plain run."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.gpu_plan import SMOKE, STEPS, Budget, Plan, compile_arg, config_of, gpt_of
from common.determinism import deterministic_kernels
from common.zipar.sampling import image_seeds
from llamagen.generate import generate

ROOT = Path(__file__).resolve().parents[1]


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


def sample_ddp_rows(plan: Plan, device: torch.device, budget: Budget) -> list[dict]:
    """The demo model's first images through torchrun (nccl on a GPU, gloo on a CPU; 1 process) and through a
    plain run: the PNG bytes must be equal."""
    if not budget.fits("sample_ddp under torchrun", 60):
        return []
    with tempfile.TemporaryDirectory() as tmp:
        # one CPU thread a process: the default (all cores) made the CPU smoke run 3x slower on a shared machine
        common = ["--model", "demo", "--num-fid-samples", "4", "--window", "8", "--device", device.type, "--quiet",
                  "--threads", "1"]
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
