"""Running a repository command in a fresh Python process, as a user would from the repository root.

One OpenMP thread per process: on a shared 2-core machine spinning threads made these runs 10-30x slower.
The timeout only guards against a hang; it is no speed check (a loaded machine may be slow).
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("WORLD_SIZE", None)
HANG_TIMEOUT = 1800


def run_python(args: list[str], prefix: list[str] = ()) -> subprocess.CompletedProcess:
    """`python ARGS` (after PREFIX, e.g. a torchrun launcher's module and flags) in the repository root."""
    return subprocess.run([sys.executable, *prefix, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=HANG_TIMEOUT, check=False)
