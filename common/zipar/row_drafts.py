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
r runs as far as the row above's decided tokens plus its fed drafts allow (`cell_lanes`;
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
from dataclasses import dataclass

import torch

from common.zipar import window
from common.zipar.passes import CHECK
from common.zipar.sampling import PURPOSE_DRAFT, draw_key_from, key_uniform, verify_draft

__all__ = ["RowDrafts", "allocate", "cell_lanes", "check", "draft_lanes", "keep", "start"]

Q_STORED, Q_POINT, Q_UNIFORM = 0, 1, 2  # a draft's q: its ring vector, the point mass on it, uniform


@dataclass
class RowDrafts:
    """The state row drafts own: the ring of the distributions the drafts were drawn from."""

    probs: torch.Tensor  # (B, R*L + 1, V) stored q vectors (Q_STORED entries)
    kinds: torch.Tensor  # (B, R*L + 1) which q each entry holds: Q_STORED, Q_POINT or Q_UNIFORM


def allocate(state, num_codes: int, device) -> None:
    """The draft-distribution ring (state.row_drafts), once the code count is known (after the prefix pass)."""
    sch = state.scheduler
    entries = sch.draft_rows * sch.draft_len + 1
    state.row_drafts = RowDrafts(probs=torch.zeros(state.seeds.shape[0], entries, num_codes, device=device),
                                 kinds=torch.zeros(state.seeds.shape[0], entries, dtype=torch.int64, device=device))


def _ring_index(scheduler, rows: torch.Tensor, cols: torch.Tensor, write: torch.Tensor) -> torch.Tensor:
    """Ring entry of cell (rows, cols) where `write`, else the scratch entry."""
    L = scheduler.draft_len
    scratch = scheduler.draft_rows * L
    return torch.where(write, (rows % scheduler.draft_rows) * L + cols % L, scratch)


def check(state, plan, probs: torch.Tensor, drawn: torch.Tensor, accept_keys: torch.Tensor,
          residual_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Test every row's drafts in this pass. probs (B, n, V) the queries' distributions, drawn (B, n)
    their fresh draws, accept_keys/residual_keys (B, n) their cells' test keys (PURPOSE_ACCEPT and
    PURPOSE_RESIDUAL at the cell's draws so far). -> (tokens for batch.cells (B, n), first rejected
    column per row (B, H), W if none). Stores q = p_new for the cells that become drafts again."""
    sch, pb = state.scheduler, plan.batch
    W, H = sch.layout.cols, sch.layout.rows
    batch, V = probs.shape[0], probs.shape[-1]
    cells = pb.cells.expand(batch, -1)
    rows = plan.query_rows
    on_row = rows < H  # cell-lane queries
    cols = torch.where(on_row, cells - rows.clamp(max=H - 1) * W, W)
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
    # a checked cell takes the test's outcome: up to the first rejection it is decided; after it, the same
    # outcome is the redraft, maximally coupled to the old draft (kept with probability min(1, p/q), else
    # from the residual), so a draft whose distribution barely moved stays; "independent" redraws afresh
    coupled = is_check if state.config.draft_coupling == "maximal" else is_check & (cols <= first_here)
    tokens = torch.where(coupled, verified, drawn)
    redrafted = on_row & (cols > first_here)  # drafts again, drawn from this pass's p_new
    ring = _ring_index(sch, rows, cols, redrafted)
    state.row_drafts.probs.scatter_(1, ring[..., None].expand(-1, -1, V), probs.to(state.row_drafts.probs.dtype))
    state.row_drafts.kinds.scatter_(1, ring, torch.full_like(ring, Q_STORED))
    return tokens, first[:, :H]


def keep(state, plan, first_rejected: torch.Tensor) -> torch.Tensor:
    """After a pass's tokens are written: (B, H) the tokens each row's cell lane kept, from its first
    rejected column `first_rejected` (W if none; drafting ahead, the last column whose token counts,
    `check`): the row keeps the cells before it and the token there; its later cells become drafts
    (redrawn in this pass). Updates the drafts each row holds, the rejection count and the plan's live
    slots (a kept draft-fed entry becomes live for everyone)."""
    sch, schedule = state.scheduler, state.schedule
    W, H = sch.layout.cols, sch.layout.rows
    cnt = schedule.count
    end = cnt + plan.cell_queries  # one past the last cell decided in this pass
    new_count = torch.where(plan.cell_lane, torch.minimum(first_rejected + 1, end), cnt)
    gain = new_count - cnt
    schedule.drafts.copy_(torch.where(plan.cell_lane, torch.maximum(cnt + schedule.drafts, end) - new_count,
                                      schedule.drafts))
    schedule.draft_rejections += (plan.cell_lane & (first_rejected < W)).sum(1)
    # a draft-fed slot holds a decided token's entry iff that token was kept and is not the
    # row's last decided one (whose entry the next pass writes)
    padded = torch.cat([new_count, torch.zeros_like(new_count[:, :1])], dim=1)  # row H: none
    fed_col = plan.batch.slots - sch.slot_map.cell_start[plan.query_rows.clamp(max=H - 1)]
    kept = plan.draft_fed & (fed_col < padded.gather(1, plan.query_rows) - 1)
    plan.live.scatter_(1, torch.where(kept, plan.batch.slots, sch.slot_map.scratch), True)
    plan.live[:, sch.slot_map.scratch] = False
    return gain


def draft_lanes(scheduler, state) -> tuple[torch.Tensor, torch.Tensor]:
    """Row drafts to start after a pass (state: the ScheduleState): (B, H, L) bool over offsets o (cell
    count + o), True where a new draft goes, and the drafts each row holds then (B, H). A row drafts the
    cells after its decided ones that the window rule lets it decide in the next pass (up to L); drafts
    it already holds (those redrawn after a rejection) stay."""
    W, L = scheduler.layout.cols, scheduler.draft_len
    cnt = state.count
    above = torch.cat([torch.full_like(cnt[:, :1], W), cnt[:, :-1]], dim=1)
    col = cnt[..., None] + torch.arange(L, device=cnt.device)  # (B, H, L)
    base = (cnt[..., None] >= 1) & (col < W)
    if scheduler.config.draft_ahead:  # what the row above's decided tokens and drafts show (`cell_lanes`)
        rows, seen = [], above[:, 0]
        for r in range(scheduler.layout.rows):
            rows.append(base[:, r] & window.window_allows(seen[:, None], col[:, r], state.window[:, r, None], W))
            seen = cnt[:, r] + rows[-1].sum(-1)
        allowed = torch.stack(rows, dim=1)
    else:
        allowed = base & window.window_allows(above[..., None], col, state.window[..., None], W)
    target = allowed.sum(-1)  # a prefix of the offsets: the rule is monotone in the column
    new = allowed & (torch.arange(L, device=cnt.device) >= state.drafts[..., None])
    return new, target


def cell_lanes(scheduler, state, cell, above, o, col) -> torch.Tensor:
    """The scheduler's cell lanes (Scheduler.plan; state: the ScheduleState, cell (B, H) rows whose lane
    runs, above (B, H) the row above's tokens, o (L+1,) offsets, col (B, H, L+1) decided columns):
    (B, H, L+1) the cell lane's offsets that run: o <= the drafts held, inside the row, and allowed
    by the window rule. Offset 0 (fed the last decided token) counts the row above's decided tokens.
    Drafting ahead (DecodeConfig.draft_ahead), offsets >= 1 count the row above's decided tokens
    plus the drafts its lane feeds in this same pass (cnt + its lane - 1), which their queries may
    read (common.zipar.masks.drafts_above_readable); row by row, top down, as each row's reach depends
    on the lane of the row above."""
    W, H = scheduler.layout.cols, scheduler.layout.rows
    base = cell[..., None] & (o <= state.drafts[..., None]) & (col < W)
    if not scheduler.config.draft_ahead:
        return base & window.window_allows(above[..., None], col, state.window[..., None], W)
    lanes, seen = [], above[:, 0]
    for r in range(H):
        reach = torch.where(o == 0, above[:, r, None], seen[:, None])
        lane = base[:, r] & window.window_allows(reach, col[:, r], state.window[:, r, None], W)
        lanes.append(lane)
        seen = state.count[:, r] + (lane.sum(-1) - 1).clamp(min=0)
    return torch.stack(lanes, dim=1)


def _kept_frontier(state, plan, first: torch.Tensor) -> torch.Tensor:
    """Drafting ahead: (B, H) the last column each row decides in this pass, from its first rejected
    column `first` (W if none). A drafted query of row r deciding column c read row r' < r up to
    column c + offsets[r] - offsets[r'] (common.zipar.masks.drafts_above_readable); its token counts only if
    no draft it read was rejected: row r''s first rejection g, where this pass fed it as a draft
    (g <= count + lane - 2), must lie at or beyond that reach. So c <= min over r' < r of
    (g + offsets[r']) - offsets[r], a running minimum down the rows; a query fed the last decided
    token reads no draft of another row, so column `count` always counts. Reads of reads need no
    more: a slot of row r' that row r reads was written by a query whose reach is within row r's."""
    schedule = state.schedule
    cnt, W = schedule.count, state.scheduler.layout.cols
    offsets = schedule.window.cumsum(1)
    big = torch.iinfo(torch.int64).max // 4
    fed = first <= cnt + plan.cell_queries - 2
    seen = torch.where(plan.cell_lane & fed, first + offsets, big).cummin(1).values
    above = torch.cat([torch.full_like(seen[:, :1], big), seen[:, :-1]], dim=1) - offsets
    return torch.minimum(first, torch.maximum(above, cnt)).clamp(max=W)


def _draft_q(state, ring: torch.Tensor, draft: torch.Tensor, V: int) -> torch.Tensor:
    """(B, n, V) the distribution each draft was drawn from, by its ring entry's kind."""
    stored = state.row_drafts.probs.gather(1, ring[..., None].expand(-1, -1, V))
    kind = state.row_drafts.kinds.gather(1, ring)[..., None]
    point = torch.nn.functional.one_hot(draft, V).to(stored.dtype)
    return torch.where(kind == Q_POINT, point, torch.where(kind == Q_UNIFORM, torch.full_like(stored, 1.0 / V), stored))


def start(state) -> None:
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


def _initial_drafts(state, rows, cols, cells, V: int) -> tuple[torch.Tensor, int]:
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
