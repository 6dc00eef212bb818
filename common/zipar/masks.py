"""The visibility rule, the one attention mask every decode pass uses (fixed, adaptive, drafted, official
schedules alike): which cache slots each query reads. Which slots are live is the scheduler's business
(common.zipar.scheduler); this module only turns liveness and positions into the mask."""
import torch


def visibility_mask(live: torch.Tensor, slot_positions: torch.Tensor, positions: torch.Tensor,
                    own_drafts: tuple | None = None, drafts_above: torch.Tensor | None = None,
                    tree: torch.Tensor | None = None) -> torch.Tensor:
    """The visibility rule: (rows, Q, S) bool, True = attend: a query reads the live slots at
    positions <= its own, and the row drafts its own grid row wrote in this pass at positions <= its
    own; another row's drafts only where `drafts_above` (drafting ahead: `drafts_above_readable`)
    allows; with a candidate tree, the nodes on its own path (`tree_readable`), whatever their slots'
    positions. live (rows, S), slot_positions (S,), positions (rows, Q); own_drafts = (draft_slots
    (rows, S) bool, slot_rows (S,), query_rows (rows, Q)) when drafting (a tree node off the chain
    has no row there: it reads its row's drafts through `tree` alone); drafts_above (rows, Q, S);
    tree (rows, Q, S)."""
    earlier = slot_positions.to(torch.int32) <= positions.to(torch.int32)[..., None]
    readable = live[:, None, :]
    if own_drafts is not None:
        draft_slots, slot_rows, query_rows = own_drafts
        readable = readable | (draft_slots[:, None, :] & (slot_rows == query_rows[..., None]))
        if drafts_above is not None:
            readable = readable | (draft_slots[:, None, :] & drafts_above)
    readable = readable & earlier
    return readable if tree is None else readable | tree


def tree_readable(query_nodes: torch.Tensor, slot_nodes: torch.Tensor, ancestors: torch.Tensor) -> torch.Tensor:
    """A candidate tree's visibility: (rows, Q, S) bool, a tree query reads the slots of the nodes on
    its own path (its ancestors and itself, common.zipar.tree_nodes) in its own grid row, written in
    this pass, and no sibling's or cousin's. query_nodes (rows, Q), slot_nodes (rows, S): the node
    each query runs and each slot holds in this pass, as grid row * E + node id, -1 for none;
    ancestors (E, E) bool (TreeNodes.ancestors)."""
    E = ancestors.shape[0]
    q_row, q_node = query_nodes.div(E, rounding_mode="floor"), query_nodes.remainder(E)
    s_row, s_node = slot_nodes.div(E, rounding_mode="floor"), slot_nodes.remainder(E)
    on_path = ancestors[q_node[..., None], s_node[:, None, :]]  # (rows, Q, S)
    both = (query_nodes >= 0)[..., None] & (slot_nodes >= 0)[:, None, :]
    return both & on_path & (q_row[..., None] == s_row[:, None, :])


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
