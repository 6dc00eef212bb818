"""The one decode loop: runs the ZipAR scheduler (common.zipar.scheduler; paper sections 3.2-3.3) with any
model fitting `Decoder`.

`decode_steps` is a generator over an explicit DecodeState that yields one PassRecord per forward
pass (notebooks and tests iterate it); `decode` runs it to the end. A decode pass is one function,
`decode_pass`: plan the queries of every image on the device, gather their input tokens, run one
forward over all of them, guide, filter and sample every query, run the adaptive acceptance test,
scatter the tokens and advance the schedule. Every decode pass has one shape, so the whole step
can be compiled once (`compile=True`: torch.compile(fullgraph=True)) and, on a GPU, served by
CUDA graphs (`compile="reduce-overhead"`). Nothing in it reads back to the host. Fixed windows run
the precomputed pass count (the schedule's critical path) with no synchronisation at all; per-image
schedules (adaptive windows, row drafts) run at least the pass count of their minimum window, then
read back a lower bound on the passes still needed (`scheduler.passes_left_bound`) and run that many
before reading again: a few reads per decode instead of one per pass, and never an extra pass.
Eager decodes on a CPU, where compute grows with the queries and a read-back costs nothing, skip
padding: fixed-window passes run at their precomputed sizes, adaptive ones at the busiest image's.
"""
from typing import Callable, Iterator, Protocol

import torch

from common.zipar.condition import Condition, as_condition
from common.zipar.config import DecodeConfig
from common.zipar.kv_cache import KVCache
from common.zipar.masks import drafts_above_readable, visibility_mask
from common.zipar.official import prompt_attention
from common.zipar import openers, row_drafts, scheduler, tree_drafts
from common.zipar.sampling import (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_TOKEN, draw_key_from, filter_logits,
                                   guide, key_uniform, sample_probs, seed_key)
from common.zipar.layout import Layout
from common.zipar.window import num_passes
from common.zipar.passes import PassBatch
from common.zipar.state import DecodeResult, DecodeState, PassRecord, Scheduler
from common.zipar.step_buffers import StepBuffers, mark_static


class Decoder(Protocol):
    """What the engine needs from a model family (see e.g. llamagen.model.Transformer)."""

    def new_cache(self, batch: int, num_slots: int, device) -> KVCache: ...

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor: ...  # (B, Q) -> (B, Q, D)

    def __call__(self, x: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                 cache: KVCache) -> torch.Tensor: ...  # (B, Q, D) -> fp32 logits (B, Q, V)


def cfg_active(cells: torch.Tensor, cfg_interval: float) -> torch.Tensor:
    """Whether guidance applies to each raster cell: LlamaGen's decode step i makes token i+1 and
    drops CFG once i > cfg_interval, so token n is guided iff n <= cfg_interval + 1."""
    if cfg_interval < 0:
        return torch.ones_like(cells, dtype=torch.bool)
    return cells <= cfg_interval + 1


def start_decode(model: Decoder, condition: Condition | torch.Tensor, seeds: torch.Tensor, layout: Layout,
                 config: DecodeConfig, fixed_tokens: torch.Tensor | None = None,
                 compile: bool | str = False, buffers: StepBuffers | None = None) -> DecodeState:
    """Plan the decode and allocate its token buffer and KV cache.

    condition: the prefix (common.zipar.condition; a bare (B_model, T, D) tensor is one without padding),
    B_model = 2B with CFG ([cond; uncond]), else B. seeds: (B,) int64, one per image.
    fixed_tokens: (H,) end-of-row token ids for layouts with them. compile: torch.compile the decode
    pass (fullgraph, static shapes; see `compiled_step`): one compilation per decode shape, the same tokens.
    buffers: compiled steps only, the caller's StepBuffers for this decode shape
    (common.zipar.step_buffers): decodes after the first then run the step on the same addresses
    (CUDA graphs replay without recording again).
    """
    condition = as_condition(condition)
    if (prompt_attention(layout.family, config.compat, config.prompt_attention) == "bidirectional") != \
            (condition.bidirectional is not None):
        raise ValueError(f"the condition's bidirectional slots must be given exactly when the prompt attention is "
                         f"bidirectional (compat={config.compat!r}, prompt_attention={config.prompt_attention!r}, "
                         f"family {layout.family!r})")
    device = condition.device
    batch, cfg = seeds.shape[0], config.uses_cfg
    model_batch = 2 * batch if cfg else batch
    if condition.rows != model_batch or condition.length != layout.prefix_len:
        raise ValueError(f"the condition must be ({model_batch}, {layout.prefix_len}, D) for batch {batch}"
                         f"{' with CFG' if cfg else ''}, got {tuple(condition.embeddings.shape)}")
    sch = Scheduler(layout, config, device)
    tokens = torch.zeros(batch, sch.slot_map.token_buffer_width, dtype=torch.int64, device=device)
    if layout.end_of_row:
        if fixed_tokens is None or tuple(fixed_tokens.shape) != (layout.rows,):
            raise ValueError(f"an end-of-row layout needs fixed_tokens of shape ({layout.rows},)")
        tokens[:, layout.num_cells:layout.num_cells + layout.rows] = fixed_tokens.to(device)
    sch.placeholder.fill(tokens)
    prefix_keys = None
    if condition.valid is not None:
        prefix_keys = torch.ones(model_batch, sch.slot_map.num_slots, dtype=torch.bool, device=device)
        prefix_keys[:, :layout.prefix_len] = condition.valid.to(device)
    min_passes = _min_passes(layout, config)
    step = decode_pass
    per_image = config.per_image_schedule
    pass_sizes = None if compile or per_image else scheduler.fixed_pass_sizes(layout, config)
    trim_on_host = per_image and not compile and device.type == "cpu"
    if compile:
        step = compiled_step(compile)
    # fixed windows: one schedule shared by the batch (leading dim 1); adaptive or drafting: one per image
    schedule = scheduler.initial_state(sch, batch if per_image else 1)
    tests = config.adaptive or config.draft_len > 0
    purposes = [PURPOSE_TOKEN, PURPOSE_ACCEPT, PURPOSE_RESIDUAL] if tests else [PURPOSE_TOKEN]
    seeds = seeds.to(device)
    return DecodeState(layout=layout, config=config, scheduler=sch, schedule=schedule, seeds=seeds,
                       seed_keys=seed_key(seeds), purposes=torch.tensor(purposes, device=device), tokens=tokens,
                       cache=model.new_cache(model_batch, sch.slot_map.num_slots, device),
                       condition=condition, prefix_keys=prefix_keys, min_passes=min_passes, step=step,
                       pass_sizes=pass_sizes, trim_on_host=trim_on_host, draws=torch.zeros_like(tokens),
                       buffers=buffers)


CUDA_GRAPHS = "reduce-overhead"  # compile= value: inductor with CUDA graphs (torch.compile's mode)


def compiled_step(compile: bool | str) -> Callable:
    """torch.compile'd decode_pass: True is inductor; CUDA_GRAPHS is inductor whose graphs replay by CUDA
    graphs on a GPU (the step's tensors are updated in place and marked static: common.zipar.step_buffers);
    any other value is a dynamo backend (its name, or the backend itself)."""
    if compile == CUDA_GRAPHS:
        return torch.compile(decode_pass, fullgraph=True, dynamic=False, mode=CUDA_GRAPHS)
    backend = "inductor" if compile is True else compile
    return torch.compile(decode_pass, fullgraph=True, dynamic=False, backend=backend)


def _min_passes(layout: Layout, config: DecodeConfig) -> int:
    """Passes every decode runs before asking whether it is done (fixed windows: exactly this many).
    With row drafts a row decides at most L + 1 tokens a pass, and each row completes in a later
    pass than the row above (its last cell needs that row complete): row 0 alone needs the prefix
    pass and ceil((W-1) / (L+1)) more, and each further row at least one."""
    if config.draft_len == 0:
        return num_passes(layout, config.window, config.compat, config.first_row)
    return 1 + -(-(layout.cols - 1) // (config.draft_len + 1)) + layout.rows - 1


def _for_model(t: torch.Tensor, cfg: bool) -> torch.Tensor:
    """(B, ...) per-image tensors are repeated for the unconditional half; (1, ...) tensors are
    shared by every model-batch row and broadcast (fixed windows: one schedule for the batch)."""
    return torch.cat([t, t]) if cfg and t.shape[0] > 1 else t


def _per_row(t: torch.Tensor, batch: int, cfg: bool) -> torch.Tensor:
    """(1 | B, ...) -> (B_model, ...) materialised."""
    t = t.expand(batch, *t.shape[1:])
    return torch.cat([t, t]) if cfg else t


def _positions(state: DecodeState, positions: torch.Tensor) -> torch.Tensor:
    """(B | 1, Q) -> (B_model, Q) RoPE positions, shifted per row for left-padded conditions."""
    positions = _per_row(positions, state.seeds.shape[0], state.config.uses_cfg)
    shift = state.condition.position_shift
    return positions if shift is None else (positions - shift.to(positions.device)[:, None]).clamp(min=0)


def _keys(state: DecodeState, cells: torch.Tensor, attempts: torch.Tensor) -> torch.Tensor:
    """(B, n, P) every key a query may draw with this pass, one hash for all `state.purposes` (the token's,
    and the tests': acceptance, resample), at `attempts` (B | 1, n): the times the cell was drawn before.
    An adaptive opener's is its attempt (each attempt decides the cell once), a draft check's the draws
    of its cell."""
    return draw_key_from(state.seed_keys, cells[..., None], state.purposes, attempts[..., None])


def _probs(state: DecodeState, logits: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Guide and filter the queries' logits (B_model, n, V) deciding cells (B, n) -> probs (B, n, V)."""
    config, batch = state.config, cells.shape[0]
    if config.uses_cfg:
        logits = guide(logits[:batch], logits[batch:], config.cfg_scale, cfg_active(cells, config.cfg_interval))
    return torch.softmax(filter_logits(logits, config.temperature, config.top_k, config.top_p), dim=-1)


def _write_tokens(state: DecodeState, cells: torch.Tensor, tokens: torch.Tensor) -> None:
    state.tokens.scatter_(1, cells, tokens)
    state.draws.scatter_add_(1, cells, torch.ones_like(cells))


def prefix_pass(model: Decoder, state: DecodeState) -> PassRecord:
    """Pass 0: the condition prefix; its last query decides (0, 0)."""
    layout = state.layout
    prefix = state.condition.embeddings
    model_batch, batch = prefix.shape[0], state.seeds.shape[0]
    pb, slot_map = scheduler.prefix_pass(state.scheduler, state.schedule), state.scheduler.slot_map
    mask = visibility_mask(state.schedule.live[:1], slot_map.slot_positions, pb.positions)
    if state.prefix_keys is not None:  # padded condition slots: read by no query but their own
        own = torch.eye(layout.prefix_len, slot_map.num_slots, dtype=torch.bool, device=mask.device)
        mask = mask & (state.prefix_keys[:, None, :] | own)
    if state.condition.bidirectional is not None:  # these slots read each other in any order
        both = torch.zeros(model_batch, slot_map.num_slots, dtype=torch.bool, device=mask.device)
        both[:, :layout.prefix_len] = state.condition.bidirectional.to(mask.device)
        mask = mask | (both[:, :layout.prefix_len, None] & both[:, None, :])
    logits = model(prefix, _positions(state, pb.positions), pb.slots, mask, state.cache)
    num_codes = logits.shape[-1]
    state.scheduler.placeholder.prepare(model.embed_tokens, num_codes, prefix.device,
                                        scheduler.reads_placeholder(layout, state.config))
    if state.config.adaptive:
        openers.allocate(state, num_codes, prefix.device)
    cells = pb.cells.expand(batch, -1)
    probs = _probs(state, logits[:, -1:], cells)
    decided = sample_probs(probs, key_uniform(_keys(state, cells, pb.attempts)[..., 0]))
    _write_tokens(state, cells, decided)
    scheduler.after_prefix(state.schedule)
    if state.config.draft_len:
        row_drafts.allocate(state, num_codes, prefix.device)
        row_drafts.start(state)
    if state.scheduler.tree_nodes is not None:
        tree_drafts.allocate(state, state.scheduler.tree_nodes, prefix.device)
        tree_drafts.draw_siblings(state, row_drafts.draft_distributions)
    input_ids = torch.full((model_batch, layout.prefix_len), -1, dtype=torch.int64, device=prefix.device)
    return PassRecord(index=0, batch=pb, input_ids=input_ids, mask=mask, logits=logits, decided=decided,
                      accepted=None, tokens=state.tokens.clone(), draws=state.draws.clone())


def decode_pass(model: Decoder, state: DecodeState) -> tuple:
    """One decode pass for the whole batch, as tensors only (the unit torch.compile captures):
    returns (PassBatch fields..., input_ids, mask, logits, decided, accepted)."""
    config, sch = state.config, state.scheduler
    cfg, batch, slot_map = config.uses_cfg, state.seeds.shape[0], sch.slot_map
    plan = scheduler.plan(sch, state.schedule, state.tree_drafts)
    if state.pass_sizes is not None:  # eager fixed windows: the pass's precomputed size
        plan = plan.trimmed(state.pass_sizes[state.passes_run])
    elif state.trim_on_host:  # compute grows with the queries on a CPU: run no more than the busiest image
        plan = plan.trimmed(int(plan.active.sum(1).max()))
    pb = plan.batch
    cells = pb.cells.expand(batch, -1)
    input_ids = _per_row(state.tokens.gather(1, pb.sources.expand(batch, -1)), batch, cfg)
    x = model.embed_tokens(input_ids)
    # padding is fed column 0, never the placeholder column
    x, input_ids = sch.placeholder.feed(x, input_ids, lambda column: pb.sources == column)
    # built at model-batch rows directly: cheaper than repeating a (B, Q, S) mask for the CFG half
    own_drafts, drafts_above, tree = None, None, None
    if config.draft_len:
        own_drafts = (_for_model(plan.draft_slots, cfg), slot_map.slot_rows, _for_model(plan.query_rows, cfg))
    reads_above = (plan.query_rows, plan.query_cols, plan.draft_fed)  # drafting ahead: who reads the drafts above
    if plan.tree is not None:  # a tree query reads the nodes on its path (common.zipar.tree_drafts)
        tree, reads_above = tree_drafts.visibility(sch, plan)
        tree = _for_model(tree, cfg)
    if config.draft_ahead:
        window = state.schedule.window
        offsets = torch.cat([window.cumsum(1), torch.zeros_like(window[:, :1])], dim=1)
        drafts_above = drafts_above_readable(slot_map.slot_rows, slot_map.slot_cols,
                                             *(_for_model(t, cfg) for t in (*reads_above, offsets)))
    mask = visibility_mask(_for_model(plan.live, cfg), slot_map.slot_positions, _for_model(pb.positions, cfg),
                           own_drafts, drafts_above, tree)
    if state.prefix_keys is not None:
        mask = mask & state.prefix_keys[:, None, :]
    logits = model(x, _positions(state, pb.positions), _for_model(pb.slots, cfg), mask, state.cache)
    attempts = state.draws.gather(1, cells)  # (B, n)
    keys = _keys(state, cells, attempts)
    uniforms = key_uniform(keys)  # (B, n, P)
    probs = _probs(state, logits, cells if plan.tree is None else plan.tree.predicts)
    accepted, verdicts, first_rejected, chain_end = None, None, None, None
    if config.adaptive:  # one sampler call draws the tokens and the verifications' resamples
        checks = openers.verifications(state, pb, cells, probs, uniforms)
        drawn = sample_probs(checks.probs, checks.uniforms)
        decided, accepted, verdicts = openers.accept(state, pb, checks, probs, drawn)
    else:
        decided = sample_probs(probs, uniforms[..., 0])
    if config.draft_len:
        decided, first_rejected, chain_end = row_drafts.check(state, plan, probs, decided, keys[..., 1], keys[..., 2])
    _write_tokens(state, cells, decided)
    kept = row_drafts.keep(state, plan, first_rejected, chain_end) if config.draft_len else None
    if plan.tree is not None:
        tree_drafts.settle(state, plan, kept.gain, chain_end)
    scheduler.advance(sch, state.schedule, plan, verdicts, kept)
    if config.draft_len:
        row_drafts.start(state)
    if plan.tree is not None:
        tree_drafts.draw_siblings(state, row_drafts.draft_distributions)
    return (pb.slots, pb.positions, pb.sources, pb.sample_rows, pb.cells, pb.kinds, attempts,
            input_ids, mask, logits, decided, accepted)


def decode_steps(model: Decoder, state: DecodeState) -> Iterator[PassRecord]:
    """Run the remaining passes of `state`, yielding one PassRecord per forward pass."""
    if state.passes_run == 0:
        record = prefix_pass(model, state)
        state.passes_run = 1
        if state.step is not decode_pass:  # every state tensor now exists (drafts allocate in the prefix pass)
            if state.buffers is not None:
                state.buffers.adopt(state)
            mark_static(state)
        yield record
    target = state.min_passes
    while True:
        while state.passes_run < target:
            outputs = state.step(model, state)
            if state.step is not decode_pass:  # a replayed graph rewrites its outputs in the next pass
                outputs = tuple(None if t is None else t.clone() for t in outputs)
            (slots, positions, sources, sample_rows, cells, kinds, attempts,
             input_ids, mask, logits, decided, accepted) = outputs
            batch = PassBatch(is_prefix=False, slots=slots, positions=positions, sources=sources,
                              sample_rows=sample_rows, cells=cells, kinds=kinds, attempts=attempts)
            record = PassRecord(index=state.passes_run, batch=batch, input_ids=input_ids, mask=mask, logits=logits,
                                decided=decided, accepted=accepted, tokens=state.tokens.clone(),
                                draws=state.draws.clone())
            state.passes_run += 1
            yield record
        if not state.config.per_image_schedule:
            return
        # per-image schedules: one read per stretch of passes the schedule guarantees, not one per pass
        left = int(scheduler.passes_left_bound(state.scheduler, state.schedule))
        state.host_reads += 1
        if left == 0:
            return
        target = state.passes_run + left


def decode(model: Decoder, condition: Condition | torch.Tensor, seeds: torch.Tensor, layout: Layout,
           config: DecodeConfig, fixed_tokens: torch.Tensor | None = None,
           on_pass: Callable[[PassRecord], None] | None = None, compile: bool | str = False,
           buffers: StepBuffers | None = None) -> DecodeResult:
    """Decode to the end: (B, H, W) tokens, pass counts and, when adaptive, acceptance telemetry.
    on_pass, if given, is called with each pass's record (progress bars)."""
    state = start_decode(model, condition, seeds, layout, config, fixed_tokens, compile, buffers)
    for record in decode_steps(model, state):
        if on_pass is not None:
            on_pass(record)
    grid = state.tokens[:, :layout.num_cells].reshape(-1, layout.rows, layout.cols)
    schedule = state.schedule
    adaptive, drafting = config.adaptive, config.draft_len > 0
    passes, gain = schedule.row_passes.double(), schedule.row_gain.double()
    return DecodeResult(
        tokens=grid, forward_passes=state.passes_run, image_passes=schedule.image_passes.expand(grid.shape[0]).tolist(),
        accepted_windows=schedule.window[:, 1:].tolist() if adaptive else None,
        rejections=schedule.opener_rejections.tolist() if adaptive else None,
        tokens_per_row_pass=(gain.sum(1) / passes.sum(1).clamp(min=1)).tolist() if drafting else None,
        row_tokens_per_pass=(gain / passes.clamp(min=1)).tolist() if drafting else None,
        draft_rejections=schedule.draft_rejections.tolist() if drafting else None, host_reads=state.host_reads)
