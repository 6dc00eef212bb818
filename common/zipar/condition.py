"""The condition prefix of a decode: what the model reads before the first image token.

One type for every family: LlamaGen's class or caption embeddings, Lumina-mGPT's and Emu3's
left-padded prompts. Rows are model-batch rows: the B conditional rows, then (with CFG) the B
unconditional rows.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Condition:
    """embeddings: (B_model, T, D) input embeddings of the T prefix slots.

    valid: (B_model, T) bool or None; False marks padded slots, which no query reads except the
    slot's own query (LlamaGen t2i's caption mask, FoundationVision/LlamaGen
    autoregressive/models/generate.py; left-padded prompts).
    position_shift: (B_model,) int64 or None, subtracted from the RoPE position of every query of
    that row (clamped at 0): a row left-padded by p slots passes p, so its real tokens sit at
    positions 0, 1, ... as in an unpadded run.
    bidirectional: (B_model, T) bool or None; in the prefix pass, these slots read each other whatever
    their order (the prompt prefill of the released Lumina-mGPT ZipAR code, common.zipar.official); every
    other prefix query reads causally.
    """

    embeddings: torch.Tensor
    valid: torch.Tensor | None = None
    position_shift: torch.Tensor | None = None
    bidirectional: torch.Tensor | None = None

    def __post_init__(self):
        if self.embeddings.dim() != 3:
            raise ValueError(f"condition embeddings must be (B_model, T, D), got {tuple(self.embeddings.shape)}")
        rows, length = self.embeddings.shape[:2]
        if self.valid is not None and tuple(self.valid.shape) != (rows, length):
            raise ValueError(f"condition valid mask must be ({rows}, {length}), got {tuple(self.valid.shape)}")
        if self.position_shift is not None and tuple(self.position_shift.shape) != (rows,):
            raise ValueError(f"condition position_shift must be ({rows},), got {tuple(self.position_shift.shape)}")
        if self.bidirectional is not None and tuple(self.bidirectional.shape) != (rows, length):
            raise ValueError(f"condition bidirectional must be ({rows}, {length}), "
                             f"got {tuple(self.bidirectional.shape)}")

    @property
    def rows(self) -> int:
        return self.embeddings.shape[0]

    @property
    def length(self) -> int:
        return self.embeddings.shape[1]

    @property
    def device(self) -> torch.device:
        return self.embeddings.device


def as_condition(prefix: "Condition | torch.Tensor") -> Condition:
    """A bare (B_model, T, D) tensor is a condition without padding."""
    return prefix if isinstance(prefix, Condition) else Condition(prefix)
