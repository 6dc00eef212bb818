"""Helpers the text-to-image families share: prompt files, and batching prompts of different lengths.

`left_pad` puts every model-batch row's prefix ids flush right in one (B_model, T) tensor: padded slots
are marked invalid (no query reads them: common.condition.Condition.valid) and each row's positions are
shifted by its pad count (Condition.position_shift), so every row runs at positions 0, 1, ... as an
unpadded single-prompt run would.
"""
from pathlib import Path

import torch


def read_prompt_file(path: str | Path, flag: str = "--prompts-file") -> list[str]:
    """One prompt per non-empty line (surrounding whitespace stripped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: file not found: {path}")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{flag} {path} holds no prompt (one per line expected)")
    return prompts


def collect_prompts(prompt: list[str] | None, prompts_file: str | None) -> list[str]:
    """--prompt TEXT (repeatable), then the lines of --prompts-file FILE; at least one."""
    prompts = list(prompt or []) + (read_prompt_file(prompts_file) if prompts_file else [])
    if not prompts:
        raise ValueError("pass --prompt TEXT (repeatable) or --prompts-file FILE (one prompt per line)")
    return prompts


def left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (ids (B_model, T), valid (B_model, T) bool, shift (B_model,) int64 pad count per row)."""
    if not rows or not all(rows):
        raise ValueError("every prefix needs at least one token")
    T = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (T - len(r)) + list(r) for r in rows], dtype=torch.int64, device=device)
    shift = torch.tensor([T - len(r) for r in rows], dtype=torch.int64, device=device)
    valid = torch.arange(T, device=device)[None, :] >= shift[:, None]
    return ids, valid, shift
