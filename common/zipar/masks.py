"""The visibility rule, the one attention mask every decode pass uses (fixed, adaptive, drafted, official
schedules alike): which cache slots each query reads. Which slots are live is the scheduler's business
(common.zipar.scheduler); this module only turns liveness and positions into the mask."""
import torch


def visibility_mask(live: torch.Tensor, slot_positions: torch.Tensor, positions: torch.Tensor,
                    own_drafts: tuple | None = None) -> torch.Tensor:
    """The visibility rule: (rows, Q, S) bool, True = attend: a query reads the live slots at
    positions <= its own, and the row drafts its own grid row wrote in this pass at positions <= its
    own (never another row's drafts). live (rows, S), slot_positions (S,), positions (rows, Q);
    own_drafts = (draft_slots (rows, S) bool, slot_rows (S,), query_rows (rows, Q)) when drafting."""
    earlier = slot_positions.to(torch.int32) <= positions.to(torch.int32)[..., None]
    readable = live[:, None, :]
    if own_drafts is not None:
        draft_slots, slot_rows, query_rows = own_drafts
        readable = readable | (draft_slots[:, None, :] & (slot_rows == query_rows[..., None]))
    return readable & earlier
