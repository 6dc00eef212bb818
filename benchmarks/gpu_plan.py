"""What a benchmarks/gpu_suite.py run measures and how: the plans (real shapes on a GPU, tiny ones for
--smoke on a CPU), the step kinds, the time budget, and the model and decoding settings every job shares."""
import dataclasses
import sys
import time

import torch

from common.zipar.config import PRECISIONS, DecodeConfig
from common.zipar.engine import CUDA_GRAPHS
from families import TEXT_TO_IMAGE
from llamagen.checkpoint import build_gpt
from llamagen.model import random_init_

STEPS = ("eager", "compiled", "cuda graphs")


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
