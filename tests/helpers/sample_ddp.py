"""Running sample_ddp.py in a subprocess (one process or torchrun) and reading what it wrote."""
import socket
import subprocess
from pathlib import Path

from tests.helpers.processes import run_python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    torchrun = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={free_port()}"] if nproc > 1 else []
    return run_python(["sample_ddp.py", *args], prefix=torchrun)


def run_dir(sample_dir: Path) -> Path:
    (folder,) = [p for p in sample_dir.iterdir() if p.is_dir()]
    return folder


def npz_of(folder: Path, n: int | None = None) -> Path:
    """The run's npz of n images; None: its only one."""
    if n is not None:
        return folder.with_name(f"{folder.name}-n{n}.npz")
    (npz,) = folder.parent.glob(f"{folder.name}-n*.npz")
    return npz


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}
