"""Counting what one eager decode pass dispatches: aten ops, real kernels and host reads, per pass.

A TorchDispatchMode sees the aten ops of a decode run as the engine runs it (inference mode). Composite
ops (CompositeImplicitAutograd: `reshape`, `linear`, SDPA with its mask conversion...) are counted as
the ops they decompose into, what the backend runs, except `rms_norm`, which CUDA runs as one fused
kernel (`_fused_rms_norm`) and the CPU as six: counted as one, as a GPU runs it. An op is
  a real kernel  if it writes an argument in place (`copy_`, `index_copy_`, `scatter_`...) or returns
                 a tensor in new storage, except pure allocations (`empty*`): computing or filling
                 memory, what a GPU runs as a kernel launch (or a copy);
  metadata       otherwise: views, reshapes that alias, `detach`, `alias`: no memory touched;
  a host read    `_local_scalar_dense` (`.item()`, `int(t)`, `bool(t)`): the host waits for the device.
Otherwise the counts are the CPU's dispatches; a CUDA run dispatches the same ops up to the backend
each kernel picks (SDPA's flash or memory-efficient kernel in place of the CPU's). Used by
tests/test_kernel_budget.py and printed beside the timings of benchmarks/gpu_suite.py.
"""
import functools
from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"}
HOST_READS = {"_local_scalar_dense"}
FUSED_ON_CUDA = {"rms_norm"}  # composites counted whole: one kernel on CUDA


def _storages(values) -> set:
    return {t.untyped_storage().data_ptr() for t in tree_flatten(values)[0]
            if isinstance(t, torch.Tensor) and t.device.type != "meta"}


@functools.cache
def _writes_an_argument(func) -> bool:
    return any(a.alias_info is not None and a.alias_info.is_write for a in func._schema.arguments)


@functools.cache
def _decomposed(func) -> bool:
    return func.overloadpacket.__name__ not in FUSED_ON_CUDA and torch._C._dispatch_has_kernel_for_dispatch_key(
        func.name(), "CompositeImplicitAutograd")


class KernelCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while active (see the module docstring for the three classes)."""

    def __init__(self):
        super().__init__()
        self.ops, self.kernels, self.host_reads = Counter(), Counter(), 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _decomposed(func):
            with self:  # count what it decomposes into
                return func.decompose(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.ops[name] += 1
        if name in HOST_READS:
            self.host_reads += 1
        elif name not in ALLOCATIONS and (_writes_an_argument(func) or _storages(out) - _storages((args, kwargs))):
            self.kernels[name] += 1
        return out

    @property
    def total_ops(self) -> int:
        return sum(self.ops.values())

    @property
    def total_kernels(self) -> int:
        return sum(self.kernels.values())


@dataclass(frozen=True)
class PassCounts:
    """Per-pass means over the counted decode passes (the prefix pass excluded)."""

    passes: int
    ops: float
    kernels: float
    host_reads: float
    kernels_by_op: dict  # op name -> kernels per pass

    def line(self) -> str:
        return f"{self.ops:.0f} aten ops, {self.kernels:.0f} kernels, {self.host_reads:.2f} host reads per pass"


def count_decode_passes(model, condition, seeds, layout, config, passes: int, fixed_tokens=None) -> PassCounts:
    """Count the first `passes` decode passes after the prefix pass of an eager decode, run as a GPU runs
    it: every pass padded to one shape (no per-pass trimming on the host, which only a CPU does), the
    host reads of per-image schedules included where they fall."""
    from common.zipar.engine import decode_steps, start_decode

    with torch.inference_mode():
        state = start_decode(model, condition, seeds, layout, config, fixed_tokens)
        state.pass_sizes, state.trim_on_host = None, False
        steps = decode_steps(model, state)
        next(steps)  # the prefix pass
        counter, counted = KernelCounter(), 0
        for _ in range(passes):
            with counter:
                record = next(steps, None)
            if record is None:
                break
            counted += 1
    n = max(counted, 1)
    return PassCounts(passes=counted, ops=counter.total_ops / n, kernels=counter.total_kernels / n,
                      host_reads=counter.host_reads / n,
                      kernels_by_op={k: v / n for k, v in counter.kernels.most_common()})
