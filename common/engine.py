"""The one decode loop: executes a ZipAR plan (paper section 3.2) with any model that fits `Decoder`.

`decode_steps` is a generator over an explicit DecodeState that yields one PassRecord per forward
pass (notebooks and tests iterate it); `decode` runs it to the end and returns tokens and counts.
Per pass: gather the input tokens, build the mask from the plan's slot tables, run one forward over
all queries of the pass, guide/filter/sample every sampled query in one call, scatter the tokens.
No host-device synchronisation happens inside the loop.
"""
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from common.config import DecodeConfig
from common.kv_cache import KVCache
from common.plan import PREFIX_SOURCE, Plan, SlotTables, attention_mask, build_plan, token_buffer_width
from common.sampling import PURPOSE_TOKEN, draw_key, filter_logits, gumbel_argmax, guide
from common.schedule import Layout, decode_pass_table, row_windows


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
    plan: Plan
    tables: SlotTables
    seeds: torch.Tensor  # (B,) int64
    tokens: torch.Tensor  # (B, cells + fixed) int64: decoded grid tokens, then fixed tokens
    cache: KVCache
    next_pass: int = 0


@dataclass(frozen=True)
class PassRecord:
    """What one forward pass did; the tensors are the ones the engine used, not copies."""

    index: int
    slots: torch.Tensor  # (Q,)
    positions: torch.Tensor  # (Q,)
    input_ids: torch.Tensor  # (B_model, Q) token fed per query; -1 for condition-prefix queries
    mask: torch.Tensor  # (Q, S) bool
    logits: torch.Tensor  # (B_model, Q, V) raw model logits, cond rows first, uncond rows after
    cells: torch.Tensor  # (n,) grid cells sampled in this pass
    sampled: torch.Tensor  # (B, n) their tokens


@dataclass(frozen=True)
class DecodeResult:
    tokens: torch.Tensor  # (B, H, W) int64
    forward_passes: int


def make_plan(layout: Layout, config: DecodeConfig) -> Plan:
    windows = row_windows(layout, config.window_for(layout.cols), config.compat)
    return build_plan(layout, decode_pass_table(layout, windows), config.placeholder, config.compat)


def cfg_active(cells: torch.Tensor, cfg_interval: float) -> torch.Tensor:
    """Whether guidance applies to each raster cell: LlamaGen's decode step i makes token i+1 and
    drops CFG once i > cfg_interval, so token n is guided iff n <= cfg_interval + 1."""
    if cfg_interval < 0:
        return torch.ones_like(cells, dtype=torch.bool)
    return cells <= cfg_interval + 1


def start_decode(model: Decoder, seeds: torch.Tensor, layout: Layout, config: DecodeConfig,
                 fixed_tokens: torch.Tensor | None = None, device=None) -> DecodeState:
    """Plan the decode and allocate its token buffer and KV cache.

    seeds: (B,) int64, one per image. fixed_tokens: (H,) end-of-row token ids for layouts with them.
    """
    device = torch.device(device if device is not None else seeds.device)
    batch = seeds.shape[0]
    plan = make_plan(layout, config)
    tokens = torch.zeros(batch, token_buffer_width(layout), dtype=torch.int64, device=device)
    if layout.end_of_row:
        if fixed_tokens is None or tuple(fixed_tokens.shape) != (layout.rows,):
            raise ValueError(f"an end-of-row layout needs fixed_tokens of shape ({layout.rows},)")
        tokens[:, layout.num_cells:] = fixed_tokens.to(device)
    model_batch = 2 * batch if config.uses_cfg else batch
    return DecodeState(layout, config, plan, SlotTables.from_plan(plan, device), seeds.to(device), tokens,
                       model.new_cache(model_batch, plan.num_slots, device))


def decode_steps(model: Decoder, state: DecodeState, prefix: torch.Tensor) -> Iterator[PassRecord]:
    """Run the remaining passes of `state`, yielding one PassRecord per forward pass.

    prefix: (B_model, T, D) condition embeddings, B_model = 2B with CFG ([cond; uncond]), else B.
    """
    config, layout, device = state.config, state.layout, state.tokens.device
    batch = state.seeds.shape[0]
    model_batch = 2 * batch if config.uses_cfg else batch
    if prefix.shape[0] != model_batch or prefix.shape[1] != layout.prefix_len:
        raise ValueError(f"prefix must be ({model_batch}, {layout.prefix_len}, D) for batch {batch}"
                         f"{' with CFG' if config.uses_cfg else ''}, got {tuple(prefix.shape)}")
    to_dev = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    for k in range(state.next_pass, state.plan.num_passes):
        q = state.plan.passes[k]
        slots, positions, sources = to_dev(q.slots), to_dev(q.positions), to_dev(q.sources)
        sampled_rows = to_dev((q.outputs >= 0).nonzero()[0])
        cells = to_dev(q.outputs[q.outputs >= 0])
        if k == 0:
            assert (q.sources == PREFIX_SOURCE).all()
            x = prefix[:, q.slots]
            input_ids = torch.full((model_batch, len(q.slots)), -1, dtype=torch.int64, device=device)
        else:
            input_ids = state.tokens[:, sources]
            if config.uses_cfg:
                input_ids = torch.cat([input_ids, input_ids])
            x = model.embed_tokens(input_ids)
        mask = attention_mask(state.tables, k, positions)
        logits = model(x, positions, slots, mask, state.cache)
        chosen = logits[:, sampled_rows]  # (B_model, n, V)
        if config.uses_cfg:
            chosen = guide(chosen[:batch], chosen[batch:], config.cfg_scale, cfg_active(cells, config.cfg_interval))
        chosen = filter_logits(chosen, config.temperature, config.top_k, config.top_p)
        sampled = gumbel_argmax(chosen, draw_key(state.seeds, cells.expand(batch, -1), PURPOSE_TOKEN))
        state.tokens[:, cells] = sampled
        state.next_pass = k + 1
        yield PassRecord(k, slots, positions, input_ids, mask, logits, cells, sampled)


def decode(model: Decoder, prefix: torch.Tensor, seeds: torch.Tensor, layout: Layout, config: DecodeConfig,
           fixed_tokens: torch.Tensor | None = None) -> DecodeResult:
    """Decode to the end: (B, H, W) tokens and the number of forward passes the model ran."""
    state = start_decode(model, seeds, layout, config, fixed_tokens, device=prefix.device)
    passes = sum(1 for _ in decode_steps(model, state, prefix))
    grid = state.tokens[:, :layout.num_cells].reshape(-1, layout.rows, layout.cols)
    return DecodeResult(grid, passes)
