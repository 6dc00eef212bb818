"""Where a benchmark writes its tables: a run folder of its own by default (runs/NAME-YYYYmmdd-HHMMSS/ under
the working directory, git-ignored), benchmarks/results/ (the committed tables the docs quote) only with
--update-results, and any file an --out-* flag names. A trial run therefore never replaces a published
result."""
import argparse
import time
from pathlib import Path

from common.cli import SHARED_FLAGS, add_flag

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = Path("runs")


def add_output_args(p: argparse.ArgumentParser, files: dict[str, str]) -> None:
    """files: each output flag -> its file name in benchmarks/results/ (e.g. {"--out-md": "tradeoff.md"}; for
    --out-dir, a folder flag, what the folder receives)."""
    for flag, name in files.items():
        where = (f"the folder of {name} (default: a new run folder, runs/<benchmark>-<time>/)" if flag == "--out-dir"
                 else f"write {name} here (default: a new run folder, runs/<benchmark>-<time>/{name})")
        if flag in SHARED_FLAGS:
            add_flag(p, flag, default=None, help=where)
        else:
            p.add_argument(flag, default=None, metavar="FILE", help=where)
    p.add_argument("--update-results", action="store_true",
                   help=f"write {', '.join(files.values())} into benchmarks/results/, replacing the committed "
                        "results the docs quote, instead of into a new run folder")


def resolve_outputs(args: argparse.Namespace, benchmark: str, files: dict[str, str]) -> Path:
    """Fill each output flag left unset: benchmarks/results/NAME with --update-results, else
    runs/BENCHMARK-TIME/NAME. Returns the folder used for the unset ones."""
    folder = RESULTS if args.update_results else RUNS / f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}"
    for flag, name in files.items():
        dest = flag[2:].replace("-", "_")
        if getattr(args, dest) is None:
            setattr(args, dest, str(folder if flag == "--out-dir" else folder / name))
    return folder
