"""The one decode loop: runs a ZipAR schedule (paper sections 3.2-3.3) with any model fitting `Decoder`.

`decode_steps` is a generator over an explicit DecodeState that yields one PassRecord per forward
pass (notebooks and tests iterate it); `decode` runs it to the end. Per pass: the schedule says
which queries run (shared by the batch for fixed windows, per image for adaptive windows); gather
the input tokens, run one forward over all of them, then guide, filter and sample every decided
query in one call and scatter the tokens. Fixed windows need no host-device synchronisation inside
the loop; adaptive windows read back one small tensor of acceptance flags per pass.
"""
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch

from common.adaptive import AdaptiveSchedule
from common.config import DecodeConfig
from common.kv_cache import KVCache
from common.placeholder import MEAN_INPUT, fixed_token, mean_embedding
from common.plan import DRAFT, VERIFY, FixedSchedule, PassBatch, placeholder_column, token_buffer_width
from common.sampling import (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_TOKEN, draw_key, filter_logits, guide,
                             gumbel_argmax, verify_draft)
from common.schedule import Layout


class Decoder(Protocol):
    """What the engine needs from a model family (see e.g. llamagen.model.Transformer)."""

    def new_cache(self, batch: int, num_slots: int, device) -> KVCache: ...

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor: ...  # (B, Q) -> (B, Q, D)

    def __call__(self, x: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                 cache: KVCache) -> torch.Tensor: ...  # (B, Q, D) -> fp32 logits (B, Q, V)


@dataclass
class DecodeState:
    """Everything a decode holds between passes; created by `start_decode`, advanced by `decode_steps`."""

    layout: Layout
    config: DecodeConfig
    schedule: FixedSchedule | AdaptiveSchedule
    seeds: torch.Tensor  # (B,) int64
    tokens: torch.Tensor  # (B, width + 1) int64: grid tokens, fixed tokens, placeholder code, trash column
    cache: KVCache
    prefix_keys: torch.Tensor | None = None  # (B_model, S) bool: False for padded condition slots
    position_shift: torch.Tensor | None = None  # (B_model,) int64: subtracted from every position of that row
    draft_probs: torch.Tensor | None = None  # (B, V) adaptive: distribution the current draft follows
    mean_input: torch.Tensor | None = None  # (D,) placeholder "mean": set after the prefix pass
    passes_run: int = 0


@dataclass(frozen=True)
class PassRecord:
    """What one forward pass did; the tensors are the ones the engine used, not copies."""

    index: int
    batch: PassBatch  # queries: slots, positions, decided cells (leading dim B, or 1 if shared)
    input_ids: torch.Tensor  # (B_model, Q) token fed per query; -1 for condition-prefix queries
    mask: torch.Tensor  # (1 | B_model, Q, S) bool
    logits: torch.Tensor  # (B_model, Q, V) raw model logits, cond rows first, uncond rows after
    decided: torch.Tensor  # (B, n) tokens decided for batch.cells (drafts included)
    accepted: torch.Tensor | None  # (B, n) adaptive: verification outcome where kinds == VERIFY


@dataclass(frozen=True)
class DecodeResult:
    tokens: torch.Tensor  # (B, H, W) int64
    forward_passes: int  # passes the batch ran (its slowest image)
    image_passes: list[int]  # passes each image needed
    accepted_windows: list[list[int]] | None = None  # adaptive: per image, the window row r+1 was accepted at
    rejections: list[int] | None = None  # adaptive: per image, rejected drafts


def cfg_active(cells: torch.Tensor, cfg_interval: float) -> torch.Tensor:
    """Whether guidance applies to each raster cell: LlamaGen's decode step i makes token i+1 and
    drops CFG once i > cfg_interval, so token n is guided iff n <= cfg_interval + 1."""
    if cfg_interval < 0:
        return torch.ones_like(cells, dtype=torch.bool)
    return cells <= cfg_interval + 1


def start_decode(model: Decoder, seeds: torch.Tensor, layout: Layout, config: DecodeConfig,
                 fixed_tokens: torch.Tensor | None = None, device=None,
                 prefix_valid: torch.Tensor | None = None, static_shapes: bool = False,
                 position_shift: torch.Tensor | None = None) -> DecodeState:
    """Plan the decode and allocate its token buffer and KV cache.

    seeds: (B,) int64, one per image. fixed_tokens: (H,) end-of-row token ids for layouts with them.
    prefix_valid: (B_model, T) bool, per model-batch row (cond rows, then uncond rows with CFG):
    False marks padded condition slots, which no query reads except the slot's own query (LlamaGen
    t2i's caption mask, FoundationVision/LlamaGen autoregressive/models/generate.py).
    static_shapes: pad fixed-window passes to one shape (for torch.compile / CUDA graphs).
    position_shift: (B_model,) int64, subtracted from the RoPE position of every query of that row
    (clamped at 0): a row whose prefix is left-padded by p slots passes p, so its real tokens sit at
    positions 0, 1, ... as in an unpadded run (Lumina-mGPT / Emu3 prompts of different lengths,
    CFG branches with their own prefix). Slots, masks and the schedule are unchanged.
    """
    device = torch.device(device if device is not None else seeds.device)
    batch = seeds.shape[0]
    if config.adaptive:
        schedule = AdaptiveSchedule(layout, config, batch, device)
    else:
        schedule = FixedSchedule(layout, config, batch, device, static_shapes)
    width = token_buffer_width(layout)
    tokens = torch.zeros(batch, width + 1, dtype=torch.int64, device=device)
    if layout.end_of_row:
        if fixed_tokens is None or tuple(fixed_tokens.shape) != (layout.rows,):
            raise ValueError(f"an end-of-row layout needs fixed_tokens of shape ({layout.rows},)")
        tokens[:, layout.num_cells:layout.num_cells + layout.rows] = fixed_tokens.to(device)
    if (code := fixed_token(config.placeholder)) is not None:
        tokens[:, placeholder_column(layout)] = code
    model_batch = 2 * batch if config.uses_cfg else batch
    prefix_keys = None
    if prefix_valid is not None:
        if tuple(prefix_valid.shape) != (model_batch, layout.prefix_len):
            raise ValueError(f"prefix_valid must be ({model_batch}, {layout.prefix_len}), got {tuple(prefix_valid.shape)}")
        prefix_keys = torch.ones(model_batch, schedule.num_slots, dtype=torch.bool, device=device)
        prefix_keys[:, :layout.prefix_len] = prefix_valid.to(device)
    if position_shift is not None:
        if tuple(position_shift.shape) != (model_batch,):
            raise ValueError(f"position_shift must be ({model_batch},), got {tuple(position_shift.shape)}")
        position_shift = position_shift.to(device=device, dtype=torch.int64)
    return DecodeState(layout, config, schedule, seeds.to(device), tokens,
                       model.new_cache(model_batch, schedule.num_slots, device), prefix_keys, position_shift)


def _for_model(t: torch.Tensor, cfg: bool) -> torch.Tensor:
    """Per-image tensors are repeated for the unconditional half; shared ones (leading 1) broadcast."""
    return torch.cat([t, t]) if cfg and t.shape[0] > 1 else t


def decode_steps(model: Decoder, state: DecodeState, prefix: torch.Tensor) -> Iterator[PassRecord]:
    """Run the remaining passes of `state`, yielding one PassRecord per forward pass.

    prefix: (B_model, T, D) condition embeddings, B_model = 2B with CFG ([cond; uncond]), else B.
    """
    config, layout = state.config, state.layout
    batch, cfg = state.seeds.shape[0], config.uses_cfg
    model_batch = 2 * batch if cfg else batch
    if prefix.shape[0] != model_batch or prefix.shape[1] != layout.prefix_len:
        raise ValueError(f"prefix must be ({model_batch}, {layout.prefix_len}, D) for batch {batch}"
                         f"{' with CFG' if cfg else ''}, got {tuple(prefix.shape)}")
    while (pb := state.schedule.next_pass()) is not None:
        k = state.passes_run
        if pb.is_prefix:
            x = prefix[:, pb.slots[0]]
            input_ids = torch.full((model_batch, pb.slots.shape[1]), -1, dtype=torch.int64, device=prefix.device)
        else:
            input_ids = state.tokens.gather(1, pb.sources.expand(batch, -1))
            input_ids = torch.cat([input_ids, input_ids]) if cfg else input_ids
            x = model.embed_tokens(input_ids)
            if state.mean_input is not None:  # placeholder "mean": its column is fed the mean embedding
                is_mean = _for_model(pb.sources == placeholder_column(layout), cfg).expand_as(input_ids)
                x = torch.where(is_mean[..., None], state.mean_input.to(x.dtype), x)
                input_ids = input_ids.masked_fill(is_mean, MEAN_INPUT)
        mask = _for_model(pb.mask, cfg)
        if state.prefix_keys is not None:
            mask = mask & state.prefix_keys[:, None, :]
            if pb.is_prefix:  # a padded condition slot's own query still reads itself
                own = torch.zeros_like(mask)
                own[:, torch.arange(mask.shape[1]), pb.slots[0]] = True
                mask = mask | own
        positions = _for_model(pb.positions, cfg)
        if state.position_shift is not None:
            positions = (positions - state.position_shift[:, None]).clamp(min=0)
        logits = model(x, positions, _for_model(pb.slots, cfg), mask, state.cache)
        if pb.is_prefix:
            _check_placeholder(model, state, logits.shape[-1], prefix.device)
        rows = _for_model(pb.sample_rows, cfg).expand(model_batch, -1)
        cells = pb.cells.expand(batch, -1)
        chosen = logits.gather(1, rows[..., None].expand(-1, -1, logits.shape[-1]))  # (B_model, n, V)
        if cfg:
            chosen = guide(chosen[:batch], chosen[batch:], config.cfg_scale, cfg_active(cells, config.cfg_interval))
        chosen = filter_logits(chosen, config.temperature, config.top_k, config.top_p)
        decided = gumbel_argmax(chosen, draw_key(state.seeds, cells, PURPOSE_TOKEN))
        accepted = None
        if pb.kinds is not None:
            decided, accepted = _open_rows(state, pb, chosen, decided, cells)
        state.tokens.scatter_(1, cells, decided)
        state.passes_run = k + 1
        record = PassRecord(k, pb, input_ids, mask, logits, decided, accepted)
        if accepted is not None:
            state.schedule.observe(accepted.cpu().numpy())  # the one sync adaptive decoding needs
        yield record


def _check_placeholder(model: Decoder, state: DecodeState, num_codes: int, device) -> None:
    """Once the code count is known (the prefix pass's logits): check a "token:<id>" code, and
    compute the "mean" placeholder's embedding over the codes the model samples."""
    policy = state.config.placeholder
    code = fixed_token(policy)
    if code is not None and code >= num_codes:
        raise ValueError(f"placeholder {policy!r}: the model samples codes 0..{num_codes - 1}")
    if policy == "mean" and not state.layout.end_of_row:
        state.mean_input = mean_embedding(model.embed_tokens, num_codes, device)


def _open_rows(state: DecodeState, pb: PassBatch, filtered: torch.Tensor, drawn: torch.Tensor,
               cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive row openings (common.adaptive): DRAFT entries keep their draw and remember its
    distribution; VERIFY entries test the current draft against the new distribution."""
    probs = torch.softmax(filtered, dim=-1)  # (B, n, V): the distributions sampling uses
    if state.draft_probs is None:
        state.draft_probs = torch.zeros(probs.shape[0], probs.shape[-1], device=probs.device)
    kinds = pb.kinds
    q = state.draft_probs[:, None].expand_as(probs)
    draft = state.tokens.gather(1, cells)  # the current draft sits in the cell it drafts
    attempts = pb.attempts
    verified, accepted = verify_draft(probs, q, draft, draw_key(state.seeds, cells, PURPOSE_ACCEPT, attempts),
                                      draw_key(state.seeds, cells, PURPOSE_RESIDUAL, attempts))
    decided = torch.where(kinds == VERIFY, verified, drawn)
    opener = (kinds == DRAFT) | (kinds == VERIFY)  # at most one per image and pass
    if opener.any():
        weights = opener.float()[..., None]
        has = opener.any(dim=1)[:, None]
        # the next verification compares against the distribution of this pass's opener query
        state.draft_probs = torch.where(has, (probs * weights).sum(1), state.draft_probs)
    return decided, accepted & (kinds == VERIFY)


def decode(model: Decoder, prefix: torch.Tensor, seeds: torch.Tensor, layout: Layout, config: DecodeConfig,
           fixed_tokens: torch.Tensor | None = None, prefix_valid: torch.Tensor | None = None,
           static_shapes: bool = False, position_shift: torch.Tensor | None = None,
           on_pass: Callable[[PassRecord], None] | None = None) -> DecodeResult:
    """Decode to the end: (B, H, W) tokens, pass counts and, when adaptive, acceptance telemetry.
    on_pass, if given, is called with each pass's record (progress bars)."""
    state = start_decode(model, seeds, layout, config, fixed_tokens, prefix.device, prefix_valid, static_shapes,
                         position_shift)
    for record in decode_steps(model, state, prefix):
        if on_pass is not None:
            on_pass(record)
    grid = state.tokens[:, :layout.num_cells].reshape(-1, layout.rows, layout.cols)
    report = state.schedule.report()
    return DecodeResult(grid, state.passes_run, report["image_passes"], report.get("accepted_windows"),
                        report.get("rejections"))

