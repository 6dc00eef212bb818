"""Deterministic kernels, for run-to-run equal tokens on a GPU (`--deterministic`).

On a CPU our decodes are already deterministic. On a GPU two things can change a token: kernels whose
reduction order varies from run to run (atomics in split-K matmuls, some attention backends), and
kernels that differ with the pass's shape (a window's passes have other query counts than NTP's; a
batch of 8 has another shape than a batch of 1). This mode removes the first: same shapes, same
tokens. It cannot remove the second in bf16/fp16, where a different kernel rounds differently;
`benchmarks/gpu_suite.py` measures which pairs agree on the device.
"""
import os
from contextlib import contextmanager

import torch


def use_deterministic_kernels() -> None:
    """Process-wide: cuBLAS with a fixed workspace (must precede the first cuBLAS call), torch's
    deterministic algorithms (warn only: integer scatter-adds, exact in any order, have no flagged
    deterministic twin), no cuDNN autotuning, no TF32, and the math attention backend (one fixed
    reduction order; flash and memory-efficient kernels tile by shape)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_math_sdp(True)
    if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
        torch.backends.cuda.enable_cudnn_sdp(False)


@contextmanager
def deterministic_kernels():
    """use_deterministic_kernels() for the body only: every switch it sets is restored afterwards."""
    cuda = torch.backends.cuda
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32, cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(),
             cuda.math_sdp_enabled())
    try:
        use_deterministic_kernels()
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[4], saved[5]
        cuda.enable_flash_sdp(saved[6])
        cuda.enable_mem_efficient_sdp(saved[7])
        cuda.enable_math_sdp(saved[8])
