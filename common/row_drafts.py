"""Speculative Jacobi drafting along rows (SJD: Teng et al. 2024, "Accelerating Auto-regressive
Text-to-Image Generation with Training-free Speculative Jacobi Decoding"), composed with ZipAR.

ZipAR advances several rows per pass; within a row it decides one token per pass. With draft_len
L > 0 every open row also carries up to L draft tokens after its decided ones (cells count ..
count+k-1, in the token buffer). Its cell lane (common.scheduler) then runs the last decided token
plus the drafts: query o is fed (r, count+o-1) and yields p_new for (r, count+o). Left to right, the
draft at each cell is kept with probability min(1, p_new(x) / q(x)), q the distribution it was drawn
from (common.sampling.verify_draft); at the first rejection the cell takes a draw from
norm(max(0, p_new - q)) and the cells after it are redrawn from this pass's p_new (conditioned on
the rejected draft: they stay drafts, with q = that p_new). If every draft is kept, the query after
the last one draws one more token. Each kept token and each resample is an exact draw from the
model's distribution given the decided tokens, as in speculative decoding: a draft's value and q
are fixed before the pass that tests it, and its test uses fresh counter-based uniforms.

The window rule counts decided tokens only: a row drafts, checks and decides only cells the rule
lets it decide in that pass (given the rows above's decided tokens), so every decided token sees
at least what plain ZipAR shows it. A draft's cache entry is visible only to later queries of its
own row in the same pass (scheduler.visibility_mask); its slot becomes live for everyone only if
the draft is kept, and a rejected draft's slot is rewritten before anyone reads it.

New draft positions (a row's cells that the window newly allows, up to L ahead) start from a
uniformly random code, as SJD's "random" initialisation (tyshiwo1/Accelerating-T2I-AR-with-SJD,
scheduler/jacobi_iteration_lumina_mgpt.py, used for Lumina-mGPT and Emu3). SJD stores a one-hot q
for such a token (acceptance p(x)); we store q uniform, equally exact and accepted with
min(1, V p(x)) >= p(x). SJD's LlamaGen test starts new positions from the token to their left
("repeat_horizon", one-hot q); that policy is not implemented here.

Randomness is counter-based, keyed by (seed, cell, purpose, attempt), attempt = how many times the
cell was drawn before (DecodeState.draws): without drafts every cell is drawn once, attempt 0.
Draft distributions live in a ring of rows (scheduler.draft_rows: the most rows open at once),
indexed (r mod R, column mod L), plus one scratch entry.
"""
import torch

from common.sampling import PURPOSE_ACCEPT, PURPOSE_DRAFT, PURPOSE_RESIDUAL, draw_key, key_uniform, verify_draft
from common.scheduler import CHECK

__all__ = ["allocate", "check", "start"]


def allocate(state, num_codes: int, device) -> None:
    """The draft-distribution ring, once the code count is known (after the prefix pass)."""
    sch = state.scheduler
    entries = sch.draft_rows * sch.draft_len + 1
    state.row_draft_probs = torch.zeros(state.seeds.shape[0], entries, num_codes, device=device)


def _ring_index(scheduler, rows: torch.Tensor, cols: torch.Tensor, write: torch.Tensor) -> torch.Tensor:
    """Ring entry of cell (rows, cols) where `write`, else the scratch entry."""
    L = scheduler.draft_len
    scratch = scheduler.draft_rows * L
    return torch.where(write, (rows % scheduler.draft_rows) * L + cols % L, scratch)


def check(state, plan, probs: torch.Tensor, drawn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Test every row's drafts in this pass. probs (B, n, V) the queries' distributions, drawn (B, n)
    their fresh draws. -> (tokens for batch.cells (B, n), first rejected column per row (B, H), W if
    none). Stores q = p_new for the cells that become drafts again (after a rejection)."""
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
    q = state.row_draft_probs.gather(1, ring[..., None].expand(-1, -1, V))
    attempt = state.draws.gather(1, cells)
    key = lambda purpose: draw_key(state.seeds, cells, purpose, attempt)  # noqa: E731
    resampled, kept = verify_draft(probs, q, draft, key(PURPOSE_ACCEPT), key(PURPOSE_RESIDUAL))
    rejected = is_check & ~kept
    first = torch.full((batch, H + 1), W, dtype=torch.int64, device=cells.device)
    first.scatter_reduce_(1, rows, torch.where(rejected, cols, W), reduce="amin")
    first_here = first.gather(1, rows)
    tokens = torch.where(is_check & (cols < first_here), draft,
                         torch.where(is_check & (cols == first_here), resampled, drawn))
    redrafted = on_row & (cols > first_here)  # drafts again, drawn from this pass's p_new
    ring = _ring_index(sch, rows, cols, redrafted)
    state.row_draft_probs.scatter_(1, ring[..., None].expand(-1, -1, V), probs.to(state.row_draft_probs.dtype))
    return tokens, first[:, :H]


def start(state) -> None:
    """Start the new draft positions the window now allows (a uniformly random code, q uniform; see
    the module docstring), after the prefix pass and after every decode pass."""
    sch, schedule = state.scheduler, state.schedule
    W, H, L = sch.layout.cols, sch.layout.rows, sch.draft_len
    new, target = sch.draft_lanes(schedule)  # (B, H, L), (B, H)
    batch, V = state.seeds.shape[0], state.row_draft_probs.shape[-1]
    rows = sch.rows[:, None].expand(H, L).expand(batch, -1, -1)
    cols = schedule.count[..., None] + torch.arange(L, device=new.device)
    cells = torch.where(new, rows * W + cols, sch.trash).reshape(batch, -1)
    attempt = state.draws.gather(1, cells)
    code = (key_uniform(draw_key(state.seeds, cells, PURPOSE_DRAFT, attempt)) * V).long().clamp(max=V - 1)
    state.tokens.scatter_(1, cells, code)
    state.draws.scatter_add_(1, cells, torch.ones_like(cells))
    ring = _ring_index(sch, rows, cols, new).reshape(batch, -1)
    uniform = torch.full((batch, ring.shape[1], V), 1.0 / V, dtype=state.row_draft_probs.dtype, device=new.device)
    state.row_draft_probs.scatter_(1, ring[..., None].expand(-1, -1, V), uniform)
    schedule.drafts.copy_(target)
