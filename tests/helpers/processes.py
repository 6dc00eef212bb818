"""Running a repository command in a fresh Python process, as a user would from the repository root.

One OpenMP thread per process: on a shared 2-core machine spinning threads made these runs 10-30x slower.
The timeout only guards against a hang; it is no speed check (a loaded machine may be slow).
"""
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("WORLD_SIZE", None)
HANG_TIMEOUT = 1800


def run_python(args: list[str], prefix: list[str] = ()) -> subprocess.CompletedProcess:
    """`python ARGS` (after PREFIX, e.g. a torchrun launcher's module and flags) in the repository root."""
    return subprocess.run([sys.executable, *prefix, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=HANG_TIMEOUT, check=False)


def run_benchmark(name: str, args: list, monkeypatch) -> int:
    """`python -m benchmarks.NAME ARGS` in this process (the documented command); its exit status."""
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    with warnings.catch_warnings(), pytest.raises(SystemExit) as done:
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before, by another test
        runpy.run_module(f"benchmarks.{name}", run_name="__main__", alter_sys=True)
    return done.value.code
