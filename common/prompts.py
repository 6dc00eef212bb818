"""Helpers the text-to-image families share: prompt files, and batching prompts of different lengths.

`left_pad` puts every model-batch row's prefix ids flush right in one (B_model, T) tensor: padded slots
are marked invalid (no query reads them: common.zipar.condition.Condition.valid) and each row's positions are
shifted by its pad count (Condition.position_shift), so every row runs at positions 0, 1, ... as an
unpadded single-prompt run would.
"""
from pathlib import Path

import torch


def read_prompt_file(path: str | Path, flag: str = "--prompts-file") -> list[str]:
    """One prompt per line, surrounding whitespace stripped, UTF-8. Line k (from 1) is prompt k - 1 of
    the file, so that a prompt index (sample_ddp.py's arr_1, a PNG's label) is its line number minus 1:
    a blank line before the last prompt is refused rather than skipped (skipping would shift every later
    index) or kept (an empty prompt is no caption). Blank lines at the end of the file are ignored."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; expected a text file, one prompt per line")
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{flag} {path} is not UTF-8 text (byte {e.start}, line {line}: "
                         f"{data[e.start:e.start + 1]!r}); expected a text file, one prompt per line") from None
    if "\0" in text:
        raise ValueError(f"{flag} {path} holds NUL bytes: a binary file, not one prompt per line")
    lines = [line.strip() for line in text.split("\n")]  # not splitlines(): it also breaks at \f, \x1c, ...
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"{flag} {path} holds no prompt (one per line expected)")
    blank = [k + 1 for k, line in enumerate(lines) if not line]
    if blank:
        raise ValueError(f"{flag} {path}: line {blank[0]} is blank ({len(blank)} blank line(s) before the last "
                         "prompt); prompt i is line i + 1, so remove blank lines or give them text")
    return lines


def collect_prompts(prompt: list[str] | None, prompts_file: str | None) -> list[str]:
    """--prompt TEXT (repeatable), then the lines of --prompts-file FILE; at least one, none empty."""
    empty = [k for k, text in enumerate(prompt or [], 1) if not text.strip()]
    if empty:
        raise ValueError(f"--prompt number {empty[0]} is empty; give every --prompt some text")
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
