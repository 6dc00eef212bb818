"""What one forward pass runs: its queries (PassBatch) and the kind of each query's decision.
Planned by the scheduler (common.zipar.scheduler), run by the engine (common.zipar.engine)."""
from dataclasses import dataclass

import torch

# what a query's logits decide: nothing, a token, a row draft's check, an adaptive opener's first attempt
# (kept pending), a later attempt verifying it; last, so that kinds >= OPEN are the adaptive opener queries
PAD, DRAW, CHECK, OPEN, VERIFY = 0, 1, 2, 3, 4
PREFIX_SOURCE = -1  # the query's input is the condition embedding at its slot


@dataclass(frozen=True)
class PassBatch:
    """One forward pass: queries per image (leading dim B), padded to one shape."""

    is_prefix: bool  # the condition prefix pass: inputs are the prefix embeddings at `slots`
    slots: torch.Tensor  # (B | 1, Q) cache slots written
    positions: torch.Tensor  # (B | 1, Q) sequence positions
    sources: torch.Tensor  # (B | 1, Q) token-buffer columns fed (PREFIX_SOURCE in the prefix pass)
    sample_rows: torch.Tensor  # (B | 1, n) queries whose logits decide a cell
    cells: torch.Tensor  # (B | 1, n) the cell each decides (the trash column for padding and feeds)
    kinds: torch.Tensor  # (B | 1, n) PAD/DRAW/CHECK/OPEN/VERIFY
    # (B, n) times each query's cell was drawn before the pass, the attempt every key of the query is made at
    # (an opener's: its attempt, as each attempt decides the cell once); set by the engine, None in a plan
    attempts: torch.Tensor | None = None
