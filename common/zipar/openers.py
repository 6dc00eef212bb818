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

`lane` is the opener lane of `scheduler.plan`; `verifications` and `accept` the verification the engine runs on a
pass's distributions, around its one sampler call (which draws a rejected opening's resample too);
`settle` the bookkeeping `scheduler.advance` applies (attempts, rejections, opened rows and windows). An
opener's keys are those of its cell at its draw count (engine._keys), which is its attempt: every
attempt decides the cell once.
"""
from dataclasses import dataclass

import torch

from common.zipar import window
from common.zipar.passes import DRAW, OPEN, VERIFY, PassBatch
from common.zipar.sampling import accepts, residual_distribution
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
    final: torch.Tensor  # row r-1 is complete: the opening is final (a DRAW, or a VERIFY whatever its test)


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
    if sch.config.adaptive:  # a first attempt is pending unless the row above is complete; later ones verify
        kind = torch.full_like(cnt, OPEN).masked_fill_(full, DRAW).masked_fill_(state.attempts > 0, VERIFY)
    else:
        kind = torch.full_like(cnt, DRAW)
    return OpenerLane(active=active, real=real, slot=slot, position=position, source=source, kind=kind, final=full)


def allocate(state: DecodeState, num_codes: int, device: torch.device) -> None:
    """The pending openings' distributions (state.opener_probs), once the code count is known."""
    state.opener_probs = torch.zeros(state.seeds.shape[0], num_codes, device=device)


@dataclass(frozen=True)
class Verifications:
    """A pass's verifications (common.zipar.sampling.verify_draft, split in two): the acceptance test of
    each VERIFY query's pending opening, and what every query draws from, so that the resample after a
    rejection is drawn in the pass's one sampler call: a VERIFY query draws from the residual
    norm(max(0, p_new - p_old)) with its resample uniform, every other query from its distribution
    with its token uniform. Its own draw is needed only where the pending opening is rejected."""

    verify: torch.Tensor  # (B, n) the VERIFY queries
    pending: torch.Tensor  # (B, n) the token each query's cell holds: a VERIFY's pending opening
    passes: torch.Tensor  # (B, n) u < min(1, p_new(pending) / p_old(pending)) (meaningful where verify)
    probs: torch.Tensor  # (B, n, V) what each query draws from
    uniforms: torch.Tensor  # (B, n) the uniform it draws with


def verifications(state: DecodeState, pb: PassBatch, cells: torch.Tensor, probs: torch.Tensor,
                  uniforms: torch.Tensor) -> Verifications:
    """probs (B, n, V) the queries' distributions, cells (B, n) the cells they decide, uniforms (B, n, 3)
    their token, acceptance and resample uniforms (engine._keys). p_old: the distribution of the image's
    opener query in the pass before (state.opener_probs), the one a VERIFY's pending opening was drawn from
    or last verified against."""
    verify = pb.kinds == VERIFY
    p_old = state.opener_probs[:, None]  # (B, 1, V)
    pending = state.tokens.gather(1, cells)  # the pending opening sits in the cell it opens
    passes = accepts(uniforms[..., 1], probs, p_old.expand_as(probs), pending)
    draw_from = torch.where(verify[..., None], residual_distribution(probs, p_old), probs)
    return Verifications(verify=verify, pending=pending, passes=passes, probs=draw_from,
                      uniforms=torch.where(verify, uniforms[..., 2], uniforms[..., 0]))


@dataclass(frozen=True)
class OpenerOutcome:
    """Per image (B,), what the pass's verification decided: the pending opening accepted, or rejected (0/1)."""

    accepted: torch.Tensor
    rejected: torch.Tensor


def accept(state: DecodeState, pb: PassBatch, checks: Verifications, probs: torch.Tensor,
           drawn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, OpenerOutcome]:
    """After the pass's draws (B, n) from `checks.probs`: a VERIFY keeps its pending opening if it passes the
    test, else takes its draw (the resample); an OPEN keeps its draw pending.
    -> (tokens (B, n), accepted (B, n), the images' outcome for `settle`)."""
    ok = checks.verify & checks.passes
    # the next verification compares against this pass's opener query's distribution: the query of the
    # largest kind (OPEN and VERIFY are the largest; at most one). An image without one stores another
    # query's, never read: a VERIFY always follows an opener query in the pass before (the opener runs
    # every pass until its row opens)
    opener = pb.kinds.argmax(1)[:, None, None].expand(-1, 1, probs.shape[-1])
    torch.gather(probs, 1, opener, out=state.opener_probs[:, None])
    outcome = OpenerOutcome(accepted=ok.any(1), rejected=(checks.verify ^ ok).sum(1))
    return torch.where(ok, checks.pending, drawn), ok, outcome


def settle(state: ScheduleState, plan: Plan, outcome: OpenerOutcome | None) -> torch.Tensor:
    """After the pass: count the attempts and rejections, set the window of the rows opened; outcome from
    `accept` (None: fixed windows, where every opener is a DRAW). -> (B, H) rows opened."""
    state.attempts += plan.open_lane
    if outcome is None:
        opened = plan.open_lane
    else:  # an image runs at most one opener: it opens if accepted, or final (the row above complete)
        opened = plan.open_lane & (plan.open_final | outcome.accepted[:, None])
        state.opener_rejections += outcome.rejected
    state.window.copy_(torch.where(opened, plan.above, state.window))
    return opened
