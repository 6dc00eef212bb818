"""What every command-line script shares: the default model precision and the one-line error exit."""
import json
import sys
from typing import Callable

from common.checkpoint import CheckpointError
from common.config import DecodeConfig
from common.engine import DecodeResult
from common.schedule import Layout, num_passes

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
        sys.stderr.write(f"error: {e}\n")  # one write: lines of concurrent ranks never interleave
        sys.stderr.flush()
        return 2
    return 0


def end_of_row_report(result: DecodeResult, config: DecodeConfig, rows: int, cols: int, ntp_official: int,
                      seconds: float, files: list[str]) -> dict:
    """The --json report of the text-to-image CLIs (end-of-row layouts): passes against NTP in our engine
    (end-of-row tokens ride along) and in the official loop (one pass per generated token)."""
    report = {
        "forward_passes": result.forward_passes,
        "ntp_passes": num_passes(Layout(rows, cols, 1, end_of_row=True), cols),
        "ntp_passes_official": ntp_official,
        "seconds": round(seconds, 4),
        "grid": [rows, cols],
        "window": config.window_for(cols),
        "image_passes": result.image_passes,
        "files": files,
    }
    if config.adaptive:
        report["adaptive"] = True
        report["accepted_window"] = [{"mean": sum(w) / len(w), "min": min(w), "max": max(w)} if w else None
                                     for w in result.accepted_windows]
        report["rejections"] = result.rejections
    return report


def print_report(report: dict, as_json: bool, out) -> None:
    if as_json:
        print(json.dumps(report))
    else:
        rows, cols = report["grid"]
        print(f"{report['forward_passes']} forward passes (NTP: {report['ntp_passes']} engine, "
              f"{report['ntp_passes_official']} official) in {report['seconds']:.2f}s on a {rows}x{cols} grid; "
              f"saved {len(report['files'])} images to {out}", file=sys.stderr)
