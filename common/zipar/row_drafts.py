"""Speculative Jacobi drafting along rows (SJD: Teng et al. 2024, "Accelerating Auto-regressive
Text-to-Image Generation with Training-free Speculative Jacobi Decoding"), composed with ZipAR.

ZipAR advances several rows per pass; within a row it decides one token per pass. With draft_len
L > 0 every open row also carries up to L draft tokens after its decided ones (cells count ..
count+k-1, in the token buffer). Its cell lane (common.zipar.scheduler) then runs the last decided token
plus the drafts: query o is fed (r, count+o-1) and yields p_new for (r, count+o). Left to right, the
draft at each cell is kept with probability min(1, p_new(x) / q(x)), q the distribution it was drawn
from (common.zipar.sampling.verify_draft); at the first rejection the cell takes a draw from
norm(max(0, p_new - q)) and the cells after it are redrawn from this pass's p_new (conditioned on
the rejected draft: they stay drafts, with q = that p_new), a Jacobi iteration. If every draft is
kept, the query after the last one draws one more token. Each kept token and each resample is an
exact draw from the model's distribution given the decided tokens, as in speculative decoding: a
draft's value and q are fixed before the pass that tests it, and its test uses fresh counter-based
uniforms.

A redraft is coupled to the draft it replaces (DecodeConfig.draft_coupling, DRAFT_COUPLINGS):
- "maximal" (default): the same test as a check, min(1, p_new(x)/q(x)) else the residual, is the
  maximal coupling of the old draft x ~ q with a draw of p_new: the redraft follows p_new exactly and
  equals x with probability 1 - TV(q, p_new), so a draft whose distribution barely moved stays and
  the drafts after it keep their context (the coupling of Speculative Coupled Decoding, So et al.
  2025). Its keys are the cell's keys at that attempt; the next check, one attempt later, draws fresh
  ones. Exact because a cell's draft never enters its own context, only later cells'.
- "independent": a fresh draw from p_new (SJD).

The window rule counts decided tokens only: a row drafts, checks and decides only cells the rule
lets it decide in that pass (given the rows above's decided tokens), so every decided token sees
at least what plain ZipAR shows it. A draft's cache entry is visible only to later queries of its
own row in the same pass (common.zipar.masks.visibility_mask); its slot becomes live for everyone only if
the draft is kept, and a rejected draft's slot is rewritten before anyone reads it.

Drafting ahead (DecodeConfig.draft_ahead) lets a row run on the row above's drafts of the same pass.
A query fed a draft of row r and deciding (r, c) also reads, of each row r' < r, the drafts fed in
this pass up to the column its windows reach, c + w_r'+1 + ... + w_r (common.zipar.masks.
drafts_above_readable): exactly what plain ZipAR shows it there, decided or drafted. The lane of row
r runs as far as the row above's decided tokens plus its fed drafts allow (scheduler.cell_lanes;
the query fed the last decided token still needs decided tokens above, as its entry is live for
everyone). After the pass a token counts only if no draft it read was rejected (`_kept_frontier`);
the cells after are drafts again (redrawn as after a rejection). Guarantee, as without drafting
ahead: each decided token is an exact draw of the model given the tokens it read, all decided, a
superset of what plain ZipAR shows it; not plain ZipAR's joint distribution, whose contexts are
fixed by the schedule (neither is drafting without it: rows see what the others decided by then).

New draft positions (a row's cells that the window newly allows, up to L ahead) start by a policy
(DecodeConfig.draft_init, common.zipar.config.DRAFT_INITS):
- "above": the decided token directly above, (r-1, c), with q the point mass on it (acceptance
  p_new(x)). The window rule guarantees (r-1, c) is decided wherever row r may draft c; row 0 has
  no row above and repeats its left token. This is the 2-D prior ZipAR rests on (a token's
  neighbours above predict it), used as a draft.
- "left": the token before the row's first new draft, repeated (point-mass q): SJD's LlamaGen
  initialisation ("repeat_horizon" in tyshiwo1/Accelerating-T2I-AR-with-SJD).
- "random": a uniformly random code with q uniform, as SJD's "random" initialisation (same
  repository, scheduler/jacobi_iteration_lumina_mgpt.py, for Lumina-mGPT and Emu3), which stores a
  one-hot q; a uniform q is equally exact and accepted with min(1, V p(x)) >= p(x).
Every policy is exact: the acceptance test corrects any q a draft was really drawn from. A point-mass
or uniform q is stored as its kind (RowDrafts.kinds), not as a V-vector: only Jacobi redrafts keep
their p_new in the ring.

Randomness is counter-based, keyed by (seed, cell, purpose, attempt), attempt = how many times the
cell was drawn before (DecodeState.draws): without drafts every cell is drawn once, attempt 0.
Draft distributions live in a ring of rows (scheduler.draft_rows: the most rows open at once),
indexed (r mod R, column mod L), plus one scratch entry, held by one RowDrafts object (its kinds say per entry which q holds).
"""
import torch

from common.zipar import tree_drafts
from common.zipar.passes import CHECK
from common.zipar.sampling import PURPOSE_DRAFT, draw_key_from, key_uniform, verify_draft
from common.zipar.scheduler import draft_lanes
from common.zipar.state import DecodeState, Plan, RowDrafts, RowsKept, Scheduler

__all__ = ["allocate", "check", "draft_distributions", "keep", "start"]

Q_STORED, Q_POINT, Q_UNIFORM = 0, 1, 2  # a draft's q: its ring vector, the point mass on it, uniform


def allocate(state: DecodeState, num_codes: int, device: torch.device) -> None:
    """The draft-distribution ring (state.row_drafts), once the code count is known (after the prefix pass)."""
    sch = state.scheduler
    entries = sch.draft_rows * sch.draft_len + 1
    state.row_drafts = RowDrafts(probs=torch.zeros(state.seeds.shape[0], entries, num_codes, device=device),
                                 kinds=torch.zeros(state.seeds.shape[0], entries, dtype=torch.int64, device=device))


def _ring_index(scheduler: Scheduler, rows: torch.Tensor, cols: torch.Tensor, write: torch.Tensor) -> torch.Tensor:
    """Ring entry of cell (rows, cols) where `write`, else the scratch entry."""
    L = scheduler.draft_len
    scratch = scheduler.draft_rows * L
    return torch.where(write, (rows % scheduler.draft_rows) * L + cols % L, scratch)


def check(state: DecodeState, plan: Plan, probs: torch.Tensor, drawn: torch.Tensor, accept_keys: torch.Tensor,
          residual_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Test every row's drafts in this pass. probs (B, n, V) the queries' distributions, drawn (B, n)
    their fresh draws, accept_keys/residual_keys (B, n) their cells' test keys (PURPOSE_ACCEPT and
    PURPOSE_RESIDUAL at the cell's draws so far). -> (tokens for batch.cells (B, n), first rejected
    column per row (B, H), W if none (with a candidate tree: the last column decided), and with a tree
    (B, H) one past the last column decided on the chain's own queries, else None). Stores q = p_new
    for the cells that become drafts again."""
    sch, pb = state.scheduler, plan.batch
    W, H = sch.layout.cols, sch.layout.rows
    batch, V = probs.shape[0], probs.shape[-1]
    cells = pb.cells.expand(batch, -1)
    rows = plan.query_rows
    on_row = rows < H  # cell-lane queries
    cols = torch.where(on_row, cells - rows.clamp(max=H - 1) * W, W)
    chain_end = None
    if plan.tree is not None:  # the candidate tree decides the rows (common.zipar.tree_drafts)
        tokens, redrafts, last, chain_end = tree_drafts.verify(state, plan, probs, drawn, draft_distributions)
        first = torch.cat([last, torch.full_like(last[:, :1], W)], dim=1)
        if state.config.draft_ahead:  # rows below read the chain's entries, valid up to chain_end
            first[:, :H] = _kept_frontier(state, plan, last, chain_end)
        first_here = first.gather(1, rows)
        # the cells after the decided ones: rule 3's coupled redraft, or (independent) a fresh draw
        fresh = redrafts if state.config.draft_coupling == "maximal" else drawn
        tokens = torch.where(cols > first_here, fresh, tokens)
    else:
        is_check = pb.kinds == CHECK
        draft = state.tokens.gather(1, cells)
        ring = _ring_index(sch, rows, cols, is_check)
        q = _draft_q(state, ring, draft, V)
        verified, kept = verify_draft(probs, q, draft, accept_keys, residual_keys)
        rejected = is_check & ~kept
        first = torch.full((batch, H + 1), W, dtype=torch.int64, device=cells.device)
        first.scatter_reduce_(1, rows, torch.where(rejected, cols, W), reduce="amin")
        if state.config.draft_ahead:
            first[:, :H] = _kept_frontier(state, plan, first[:, :H])
        first_here = first.gather(1, rows)
        # a checked cell takes the test's outcome: up to the first rejection it is decided; after it, the
        # same outcome is the redraft, maximally coupled to the old draft (kept with probability
        # min(1, p/q), else from the residual), so a draft whose distribution barely moved stays;
        # "independent" redraws afresh
        coupled = is_check if state.config.draft_coupling == "maximal" else is_check & (cols <= first_here)
        tokens = torch.where(coupled, verified, drawn)
    redrafted = on_row & (cols > first_here)  # drafts again, drawn from this pass's p_new
    ring = _ring_index(sch, rows, cols, redrafted)
    state.row_drafts.probs.scatter_(1, ring[..., None].expand(-1, -1, V), probs.to(state.row_drafts.probs.dtype))
    state.row_drafts.kinds.scatter_(1, ring, torch.full_like(ring, Q_STORED))
    return tokens, first[:, :H], chain_end


def keep(state: DecodeState, plan: Plan, first_rejected: torch.Tensor, chain_end: torch.Tensor | None = None) -> RowsKept:
    """After a pass's tokens are written, what the checks decided for the schedule (applied by
    common.zipar.scheduler.advance), from each row's first rejected column `first_rejected` (B, H) (W if
    none; drafting ahead, the last column whose token counts, `check`): the row keeps the cells before it
    and the token there; its later cells become drafts (redrawn in this pass). -> the tokens each row's
    cell lane kept, the drafts it holds, the rows cut short, and the draft-fed slots now holding a kept
    token's entry (live for everyone from the next pass). chain_end (B, H), with a candidate tree: one
    past the last column decided on the chain's own queries (`check`); the entries after it hold other
    tokens than the decided ones and stay dead (common.zipar.tree_drafts)."""
    sch, schedule = state.scheduler, state.schedule
    W, H = sch.layout.cols, sch.layout.rows
    cnt = schedule.count
    end = cnt + plan.cell_queries  # one past the last cell decided in this pass
    new_count = torch.where(plan.cell_lane, torch.minimum(first_rejected + 1, end), cnt)
    drafts = torch.where(plan.cell_lane, torch.maximum(cnt + schedule.drafts, end) - new_count, schedule.drafts)
    rejected = (plan.cell_lane & (first_rejected < W)).sum(1)
    # a draft-fed slot holds a decided token's entry iff that token was kept and is not the
    # row's last decided one (whose entry the next pass writes)
    padded = torch.cat([new_count, torch.zeros_like(new_count[:, :1])], dim=1)  # row H: none
    fed_col = plan.batch.slots - sch.slot_map.cell_start[plan.query_rows.clamp(max=H - 1)]
    kept = plan.draft_fed & (fed_col < padded.gather(1, plan.query_rows) - 1)
    if chain_end is not None:
        kept = kept & (fed_col < torch.cat([chain_end, torch.zeros_like(chain_end[:, :1])], 1).gather(1, plan.query_rows))
    return RowsKept(gain=new_count - cnt, drafts=drafts, rejected=rejected, live_slots=kept)


def _kept_frontier(state: DecodeState, plan: Plan, first: torch.Tensor, read_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Drafting ahead: (B, H) the last column each row decides in this pass, from its first rejected
    column `first` (W if none). A drafted query of row r deciding column c read row r' < r up to
    column c + offsets[r] - offsets[r'] (common.zipar.masks.drafts_above_readable); its token counts only if
    no draft it read was rejected: row r''s first rejection g, where this pass fed it as a draft
    (g <= count + lane - 2), must lie at or beyond that reach. So c <= min over r' < r of
    (g + offsets[r']) - offsets[r], a running minimum down the rows; a query fed the last decided
    token reads no draft of another row, so column `count` always counts. Reads of reads need no
    more: a slot of row r' that row r reads was written by a query whose reach is within row r's.
    read_valid (B, H), with a candidate tree: the first column whose fed draft's entry does not hold the
    decided token (the walk rejected it or left the chain there, tree_drafts.verify), in the role g
    plays for the rows below (without a tree it is `first`)."""
    schedule = state.schedule
    cnt, W = schedule.count, state.scheduler.layout.cols
    offsets = schedule.window.cumsum(1)
    big = torch.iinfo(torch.int64).max // 4
    g = first if read_valid is None else read_valid
    fed = g <= cnt + plan.cell_queries - 2
    seen = torch.where(plan.cell_lane & fed, g + offsets, big).cummin(1).values
    above = torch.cat([torch.full_like(seen[:, :1], big), seen[:, :-1]], dim=1) - offsets
    return torch.minimum(first, torch.maximum(above, cnt)).clamp(max=W)


def draft_distributions(state: DecodeState, rows: torch.Tensor, cols: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """(..., V) the distribution each row draft at grid (rows, cols) (...) was drawn from, where `held`
    (it holds one; elsewhere the scratch entry's)."""
    V, W = state.row_drafts.probs.shape[-1], state.scheduler.layout.cols
    batch = state.seeds.shape[0]
    ring = _ring_index(state.scheduler, rows, cols, held).reshape(batch, -1)
    cells = torch.where(held, rows * W + cols, state.scheduler.slot_map.trash).reshape(batch, -1)
    return _draft_q(state, ring, state.tokens.gather(1, cells), V).view(*held.shape, V)


def _draft_q(state: DecodeState, ring: torch.Tensor, draft: torch.Tensor, V: int) -> torch.Tensor:
    """(B, n, V) the distribution each draft was drawn from, by its ring entry's kind."""
    stored = state.row_drafts.probs.gather(1, ring[..., None].expand(-1, -1, V))
    kind = state.row_drafts.kinds.gather(1, ring)[..., None]
    point = torch.nn.functional.one_hot(draft, V).to(stored.dtype)
    return torch.where(kind == Q_POINT, point, torch.where(kind == Q_UNIFORM, torch.full_like(stored, 1.0 / V), stored))


def start(state: DecodeState) -> None:
    """Start the new draft positions the window now allows (by DecodeConfig.draft_init; see the
    module docstring), after the prefix pass and after every decode pass."""
    sch, schedule = state.scheduler, state.schedule
    W, H, L = sch.layout.cols, sch.layout.rows, sch.draft_len
    new, target = draft_lanes(sch, schedule)  # (B, H, L), (B, H)
    batch, V = state.seeds.shape[0], state.row_drafts.probs.shape[-1]
    rows = sch.rows[:, None].expand(H, L).expand(batch, -1, -1)
    cols = schedule.count[..., None] + torch.arange(L, device=new.device)
    cells = torch.where(new, rows * W + cols, sch.slot_map.trash).reshape(batch, -1)
    code, kind = _initial_drafts(state, rows, cols, cells, V)
    state.tokens.scatter_(1, cells, code)
    state.draws.scatter_add_(1, cells, torch.ones_like(cells))
    ring = _ring_index(sch, rows, cols, new).reshape(batch, -1)
    state.row_drafts.kinds.scatter_(1, ring, torch.full_like(ring, kind))
    schedule.drafts.copy_(target)


def _initial_drafts(state: DecodeState, rows: torch.Tensor, cols: torch.Tensor, cells: torch.Tensor,
                    V: int) -> tuple[torch.Tensor, int]:
    """New drafts' codes (B, H*L) at `cells` and the kind of their q."""
    init, W = state.config.draft_init, state.scheduler.layout.cols
    if init == "random":
        attempt = state.draws.gather(1, cells)
        code = (key_uniform(draw_key_from(state.seed_keys, cells, PURPOSE_DRAFT, attempt)) * V).long().clamp(max=V - 1)
        return code, Q_UNIFORM
    # the token before the row's first new draft: decided or a draft it keeps (count >= 1 where it drafts)
    left = rows * W + (state.schedule.count + state.schedule.drafts - 1).clamp(min=0)[..., None]
    source = left if init == "left" else torch.where(rows >= 1, (rows - 1) * W + cols, left)
    return state.tokens.gather(1, source.reshape(cells.shape)), Q_POINT
