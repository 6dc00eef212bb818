"""The visibility rule, the one attention mask every decode pass uses (fixed, adaptive, drafted, official
schedules alike): which cache slots each query reads. Which slots are live is the scheduler's business
(common.zipar.scheduler); this module only turns liveness and positions into the mask."""
import torch


def visibility_mask(live: torch.Tensor, slot_positions: torch.Tensor, positions: torch.Tensor,
                    own_drafts: tuple | None = None, drafts_above: torch.Tensor | None = None) -> torch.Tensor:
    """The visibility rule: (rows, Q, S) bool, True = attend: a query reads the live slots at
    positions <= its own, and the row drafts its own grid row wrote in this pass at positions <= its
    own; another row's drafts only where `drafts_above` (drafting ahead: `drafts_above_readable`)
    allows. live (rows, S), slot_positions (S,), positions (rows, Q); own_drafts = (draft_slots
    (rows, S) bool, slot_rows (S,), query_rows (rows, Q)) when drafting; drafts_above (rows, Q, S)."""
    earlier = slot_positions.to(torch.int32) <= positions.to(torch.int32)[..., None]
    readable = live[:, None, :]
    if own_drafts is not None:
        draft_slots, slot_rows, query_rows = own_drafts
        readable = readable | (draft_slots[:, None, :] & (slot_rows == query_rows[..., None]))
        if drafts_above is not None:
            readable = readable | (draft_slots[:, None, :] & drafts_above)
    return readable & earlier


def drafts_above_readable(slot_rows: torch.Tensor, slot_cols: torch.Tensor, query_rows: torch.Tensor,
                          query_cols: torch.Tensor, reads: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Drafting ahead: (rows, Q, S) the rows above's cells a query may read as drafts of this pass. A
    drafted query (`reads`) deciding (r, c) reads row r' < r up to the column its window reaches,
    c + w_r'+1 + ... + w_r (the cells plain ZipAR shows it there), and nothing of rows below.
    slot_rows/slot_cols (S,): each cell slot's grid row and column (H and 0 for other slots);
    query_rows/query_cols (rows, Q); offsets (rows, H + 1): cumulative row windows, offsets[:, r] =
    w_0 + ... + w_r (column H unused)."""
    reach = query_cols + offsets.gather(1, query_rows)  # (rows, Q): c + offsets[r]
    above = slot_rows < query_rows[..., None]
    return reads[..., None] & above & (slot_cols + offsets[:, slot_rows][:, None, :] < reach[..., None])
