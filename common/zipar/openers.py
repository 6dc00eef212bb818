"""Row openers (paper sections 3.2-3.3): the query that decides a row's first token, and the adaptive
window's test of it, in one place.

The opener of row r runs once the row above allows (r, 0), at the position that predicts (r, 0)
((r-1, W-1), or the end-of-row token of row r-1). It is fed the real (r-1, W-1) when that row is
complete, else the end-of-row token, else a placeholder (common.zipar.placeholder). Its kind:
  DRAW    fixed windows, or an adaptive opening whose row above is complete: a plain draw.
  OPEN    adaptive, first attempt: the draw is kept pending, its distribution remembered.
  VERIFY  adaptive, each later attempt: the pending opening is tested against the distribution that
          sees one more token of row r-1 (accept with min(1, p_new/p_old), else resample from the
          residual; common.zipar.sampling.verify_draft), until accepted or final (row r-1 complete).
The window an opening is accepted at is what row r then follows row r-1 with. Each attempt overwrites
the previous attempt's cache entry (its slot): a superseded opener is never read again.

`lane` is the opener lane of `scheduler.plan`, `accept` the test the engine runs on a pass's
distributions, `settle` the bookkeeping `scheduler.advance` applies (opened rows, rejections, windows).
"""
from dataclasses import dataclass

import torch

from common.zipar import window
from common.zipar.passes import DRAW, OPEN, VERIFY, PassBatch
from common.zipar.sampling import verify_draft
from common.zipar.state import DecodeState, Plan, Scheduler, ScheduleState


@dataclass(frozen=True)
class OpenerLane:
    """Every row's opener query in a pass (B, H), before packing."""

    active: torch.Tensor  # the opener of row r runs
    real: torch.Tensor  # it is fed the real (r-1, W-1) (row r-1 complete; never with end-of-row tokens)
    slot: torch.Tensor  # cache slot it writes
    position: torch.Tensor  # sequence position it runs at
    source: torch.Tensor  # token-buffer column it is fed
    kind: torch.Tensor  # DRAW, OPEN or VERIFY


def lane(sch: Scheduler, state: ScheduleState, above: torch.Tensor) -> OpenerLane:
    """The opener lane from the state before the pass; above (B, H): tokens of row r-1 (W for row 0)."""
    layout, r, cnt = sch.layout, sch.rows, state.count
    W, N, B = layout.cols, layout.num_cells, cnt.shape[0]
    active = (r >= 1) & (cnt == 0) & window.window_allows(above, torch.zeros_like(cnt), state.window, W)
    full = above == W
    position = sch.slot_map.opener_position(r.clamp(min=1)).expand(B, -1)
    if layout.end_of_row:
        real = torch.zeros_like(full)
        slot = position  # the end-of-row slot
        source = (N + r - 1).expand(B, -1)
    else:
        real = full  # row r-1 is complete: its real last token opens row r
        slot = torch.where(real, position, sch.slot_map.opener_base + (r - 1).clamp(min=0))
        stand_in = sch.placeholder.source((r - 1).clamp(min=0).expand(B, -1), cnt, W)
        source = torch.where(real, r * W - 1, stand_in)
    if sch.config.adaptive:
        kind = torch.where(state.attempts > 0, VERIFY, torch.where(full, DRAW, OPEN))
    else:
        kind = torch.full_like(cnt, DRAW)
    return OpenerLane(active=active, real=real, slot=slot, position=position, source=source, kind=kind)


def queries(batch: PassBatch) -> torch.Tensor:
    """(B | 1, n) the pass's adaptive opener queries (at most one per image)."""
    return (batch.kinds == OPEN) | (batch.kinds == VERIFY)


def allocate(state: DecodeState, num_codes: int, device: torch.device) -> None:
    """The pending openings' distributions (state.opener_probs), once the code count is known."""
    state.opener_probs = torch.zeros(state.seeds.shape[0], num_codes, device=device)


def accept(state: DecodeState, pb: PassBatch, probs: torch.Tensor, drawn: torch.Tensor, is_open: torch.Tensor,
           keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An OPEN keeps its draw pending and remembers its distribution; a VERIFY tests the pending opening
    against the new distribution. probs (B, n, V), drawn (B, n) the queries' fresh draws, is_open (B, n)
    from `queries`, keys (B, n, 3) the token's, acceptance and resample keys (engine._keys).
    -> (tokens (B, n), accepted (B, n), accepted per image (B,))."""
    verify = pb.kinds == VERIFY
    p_open = (probs * is_open[..., None].to(probs.dtype)).sum(1)  # (B, V) the opener's distribution
    cell = (pb.cells * is_open).sum(1, keepdim=True)  # (B, 1)
    pending = state.tokens.gather(1, cell)[:, 0]  # the pending opening sits in the cell it opens
    test_keys = (keys[..., 1:] * is_open[..., None]).sum(1)  # (B, 2) the opener's acceptance and resample keys
    token, ok = verify_draft(p_open, state.opener_probs, pending, test_keys[:, 0], test_keys[:, 1])
    decided = torch.where(verify, token[:, None], drawn)
    # the next verification compares against the distribution of this pass's opener query
    state.opener_probs.copy_(torch.where(is_open.any(1, keepdim=True), p_open, state.opener_probs))
    return decided, verify & ok[:, None], ok & verify.any(1)


def settle(state: ScheduleState, plan: Plan, accepted: torch.Tensor | None, cols: int) -> torch.Tensor:
    """After the pass: count the attempts and rejections, set the window of the rows opened; accepted (B,)
    whether the image's verification (if any) accepted (None: fixed windows). -> (B, H) rows opened."""
    kind = plan.open_kind
    state.attempts += plan.open_lane.long()
    if accepted is None:
        opened = plan.open_lane & (kind == DRAW)
    else:
        final = plan.above == cols
        opened = plan.open_lane & ((kind == DRAW) | ((kind == VERIFY) & (accepted[:, None] | final)))
        state.opener_rejections += (plan.open_lane & (kind == VERIFY) & ~accepted[:, None]).sum(1)
    state.window.copy_(torch.where(opened, plan.above, state.window))
    return opened
