"""Running sample_ddp.py in a subprocess (one process or torchrun) and reading what it wrote."""
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the demo model is tiny: more threads only contend
ENV.pop("WORLD_SIZE", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], nproc: int = 1, timeout: float = 600) -> subprocess.CompletedProcess:
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={free_port()}"] if nproc > 1 else [sys.executable]
    return subprocess.run([*torchrun, "sample_ddp.py", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout, check=False)


def run_dir(sample_dir: Path) -> Path:
    (folder,) = [p for p in sample_dir.iterdir() if p.is_dir()]
    return folder


def npz_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".npz")


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}
