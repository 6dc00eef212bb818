"""What the processes of a torchrun job share in sample_ddp.py: where each one stands, barriers, and one
verdict on user errors (a rank that fails alone would leave the others waiting at a collective)."""
import os

import torch
import torch.distributed as dist

from common.cli import USER_ERRORS


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) under plain python."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def barrier(distributed: bool, device: torch.device) -> None:
    if distributed and device.type == "cuda":
        dist.barrier(device_ids=[device.index])
    elif distributed:
        dist.barrier()


def agree(distributed: bool, error: str | None) -> None:
    """Every rank learns whether any rank failed (its error line, or None); all then raise the first
    failure, so no rank waits at a barrier for one that has quit."""
    errors = [error]
    if distributed:
        errors = [None] * dist.get_world_size()
        dist.all_gather_object(errors, error)
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        rank, message = failed[0]
        raise ValueError(message if len(errors) == 1 or rank == 0 else f"rank {rank}: {message}")


def attempt(fn, *args):
    """(fn(*args), None), or (None, the message of the user error it raised)."""
    try:
        return fn(*args), None
    except USER_ERRORS as e:
        return None, str(e)
