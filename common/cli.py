"""What every command-line script shares: the default model precision and the one-line error exit."""
import sys
from typing import Callable

from common.checkpoint import CheckpointError

# bad input a user can fix: reported as one line, exit status 2 (no traceback)
USER_ERRORS = (ValueError, FileNotFoundError, CheckpointError)


def default_precision(device: str) -> str:
    """bf16 on CUDA, fp32 elsewhere (CPU bf16 matmuls are slow and fp16 is unsupported there)."""
    return "bf16" if device.startswith("cuda") else "fp32"


def run_main(main: Callable, args) -> int:
    """main(args); a USER_ERRORS exception becomes `error: ...` on stderr and exit status 2."""
    try:
        main(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
