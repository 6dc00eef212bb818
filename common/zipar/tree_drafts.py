"""The candidate tree in the engine (exact proactive drafting, common.zipar.draft_tree): the state it
owns, its siblings, its queries and its verification, around the row drafts' chain (common.zipar.row_drafts).

With a tree of width K and T tree depths (DecodeConfig.tree_shape), a row whose cell lane runs also
runs every path through the candidates of its first T drafts (common.zipar.tree_nodes), in the same
pass, each node a query of its own in a cache slot of its own (common.zipar.layout.TreeSlots) that
only the nodes below it on its path read (common.zipar.masks.tree_readable). Candidate 0 of a depth is
the chain's draft, so the all-0 paths are the chain's own queries; candidates 1..K-1 (`draw_siblings`)
are drawn, after the pass before, without replacement from the draft's q, with keys of their own
(PURPOSE_SIBLING at the cell's draws so far, candidate k as the key's index), and held in the token
buffer's sibling columns. `verify` decides the row by draft_tree.verify_tree from the nodes'
distributions, with the chain's keys for candidate 0 (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_TOKEN
at the cell's draws) and PURPOSE_SIBLING_ACCEPT for the siblings.

Entries. The chain's queries write the cells' own slots; a node off the chain writes its tree slot,
rewritten every pass and never live. When the walk stays on the chain the kept draft-fed entries
become live as without a tree (row_drafts.keep); when it leaves the chain through a sibling, the
cells it decides from there on have no entry of their own in the cache (their cell slots hold the
chain's entries for other tokens, not live). Nothing is moved: those decided tokens are fed again
in the next pass, each in its own cell slot ("catch-up" queries, live at once, like the feed of a
complete row's last token), beside the query fed the row's last decided token as always. A walk
off the chain decides at most T + 1 cells, so at most T catch-up queries a row.
"""
import torch

from common.zipar.draft_tree import siblings, verify_tree
from common.zipar.masks import tree_readable
from common.zipar.sampling import (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_SIBLING, PURPOSE_SIBLING_ACCEPT,
                                   PURPOSE_TOKEN, draw_key_from, key_uniform)
from common.zipar.state import DecodeState, Plan, Scheduler, TreeDrafts, TreePlan
from common.zipar.tree_nodes import TreeNodes, level_start

__all__ = ["allocate", "chain_nodes", "draw_siblings", "lanes", "plan_queries",
           "settle", "verify", "visibility"]


def allocate(state: DecodeState, nodes: TreeNodes, device: torch.device) -> None:
    """The tree's state (state.tree_drafts), after the prefix pass."""
    tree = state.scheduler.slot_map.tree.shape
    batch, H = state.seeds.shape[0], state.scheduler.layout.rows
    state.tree_drafts = TreeDrafts(
        nodes=nodes, valid=torch.zeros(batch, H, tree.depths, tree.width - 1, dtype=torch.bool, device=device),
        uncached=torch.zeros(batch, H, dtype=torch.int64, device=device))


def _busy_rows(scheduler: Scheduler, busy: torch.Tensor) -> torch.Tensor:
    """(B, R) grid rows, those where `busy` (B, H) first, in order. R = Scheduler.draft_rows, the most
    rows holding drafts (or running a cell lane) at once, so every busy row is among them: the tree's
    V-wide work runs on these R rows alone, in one shape every pass."""
    return torch.argsort((~busy).to(torch.int8), dim=1, stable=True)[:, :scheduler.draft_rows]


def _at(rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B, H, ...) -> (B, R, ...) at grid rows `rows` (B, R)."""
    return t.gather(1, rows.view(*rows.shape, *(1,) * (t.dim() - 2)).expand(*rows.shape, *t.shape[2:]))


def draw_siblings(state: DecodeState, draft_q) -> None:
    """After the drafts of the next pass are set (row_drafts.start): candidates 1..K-1 of each row's first
    T drafts, drawn without replacement from the draft's q (draft_tree.siblings), written to the token
    buffer's sibling columns (draws counted there too), their validity to state.tree_drafts.valid.
    draft_q(state, rows, cols, held) -> (B, R, T, V) the q of each draft (row_drafts)."""
    sch, schedule, tree = state.scheduler, state.schedule, state.scheduler.slot_map.tree
    K, T = tree.shape.width, tree.shape.depths
    W = sch.layout.cols
    batch = state.seeds.shape[0]
    busy = _busy_rows(sch, schedule.drafts > 0)  # (B, R) the rows holding drafts among them
    rows = busy[..., None].expand(-1, -1, T)  # (B, R, T)
    count, drafts = _at(busy, schedule.count)[..., None], _at(busy, schedule.drafts)[..., None]
    cols = count + torch.arange(T, device=rows.device)
    held = (cols < count + drafts) & (cols < W)
    cells = torch.where(held, rows * W + cols, sch.slot_map.trash)
    q = draft_q(state, rows, cols, held)  # (B, R, T, V)
    draft = state.tokens.gather(1, cells.reshape(batch, -1)).view(cells.shape)
    attempt = state.draws.gather(1, cells.reshape(batch, -1)).view(cells.shape)
    k = torch.arange(1, K, device=rows.device)
    keys = draw_key_from(state.seed_keys, cells[..., None], PURPOSE_SIBLING, attempt[..., None], index=k)
    codes, valid = siblings(q, draft, key_uniform(keys))  # (B, R, T, K-1)
    valid = valid & held[..., None]
    state.tree_drafts.valid.zero_().scatter_(1, busy[..., None, None].expand_as(valid), valid)
    # rows sharing a ring entry never hold drafts at once (the draft ring's bound): only one writes its columns
    columns = torch.where(held[..., None], tree.sibling_columns(busy), sch.slot_map.trash)  # (B, R, T, K-1)
    state.tokens.scatter_(1, columns.reshape(batch, -1), codes.reshape(batch, -1))
    state.draws.scatter_add_(1, columns.reshape(batch, -1), torch.ones_like(columns.reshape(batch, -1)))


def lanes(scheduler: Scheduler, count: torch.Tensor, lane: torch.Tensor, tree_drafts: TreeDrafts) -> dict:
    """The tree's lanes for Scheduler.plan, (B, H, T) catch-up feeds then (B, H, E) nodes per row (the
    nodes on the chain never run here: they are the cell lane's offsets 1..T). count (B, H) decided
    tokens, lane (B, H, L+1) the cell lane's offsets that run. Returns the lanes' active, slot, pos,
    src (token-buffer column fed), node (grid row * E + node id, -1 for catch-up) and predicts (the
    cell whose distribution the query yields, for guidance; the trash column for catch-up)."""
    slot_map, layout = scheduler.slot_map, scheduler.layout
    nodes, tree = tree_drafts.nodes, slot_map.tree.shape
    K, T, E = tree.width, tree.depths, tree.nodes
    W, trash, dev = layout.cols, slot_map.trash, count.device
    r = scheduler.rows[:, None]  # (H, 1)
    start = slot_map.cell_start[:, None]
    # catch-up: decided cells count-1-j, j = 1..T, whose entries are not in the cache
    j = torch.arange(1, T + 1, device=dev)
    col = (count[..., None] - 1 - j).clamp(min=0)  # (B, H, T)
    # (the last row's, once complete, would be read by nobody: as the feed lane, it runs no query then)
    last_done = (scheduler.rows == layout.rows - 1) & (count == W)
    catch = (j <= tree_drafts.uncached[..., None]) & ~last_done[..., None]
    # nodes: the digits of each path, depth 1 first (0 past the node's depth), and whether each exists
    s = torch.arange(T, device=dev)
    digit = (nodes.path[:, None] // K ** (nodes.depth[:, None] - 1 - s).clamp(min=0)) % K  # (E, T)
    digit = torch.where(s < nodes.depth[:, None], digit, 0)
    exists = torch.cat([torch.ones_like(tree_drafts.valid[..., :1]), tree_drafts.valid], dim=-1)  # (B, H, T, K)
    B = count.shape[0]
    path_ok = exists[:, :, s, digit].all(-1) if T else exists.new_ones(B, layout.rows, E)  # (B, H, E)
    depth_runs = lane.gather(2, nodes.depth.expand(B, layout.rows, -1))  # the chain's offset t runs
    node_col = count[..., None] + nodes.depth - 1  # (B, H, E) the cell whose candidate the node is fed
    sibling = tree_drafts.nodes.candidate > 0
    sib_col = slot_map.tree.sibling_columns(scheduler.rows)  # (H, T, K-1)
    fed_sibling = sib_col[:, nodes.depth - 1, (nodes.candidate - 1).clamp(min=0)]  # (H, E)
    return {
        "active": torch.cat([catch, depth_runs & path_ok & ~nodes.on_chain], dim=2),
        "slot": torch.cat([start + col, slot_map.tree.node_slots(scheduler.rows).expand(B, -1, -1)], dim=2),
        "pos": torch.cat([start + col, start + node_col], dim=2),
        "src": torch.cat([r * W + col, torch.where(sibling, fed_sibling, r * W + node_col)], dim=2),
        "node": torch.cat([torch.full_like(col, -1), (r * E + torch.arange(E, device=dev)).expand(B, -1, -1)], dim=2),
        "predicts": torch.cat([torch.full_like(col, trash), (r * W + node_col + 1).clamp(max=trash)], dim=2),
    }


def plan_queries(nodes: torch.Tensor, predicts: torch.Tensor, active: torch.Tensor, order: torch.Tensor,
                 on: torch.Tensor, take, first_tree_lane: int, cell_lanes: tuple[int, int], catch_up: int,
                 trash: int) -> TreePlan:
    """The TreePlan of a pass from Scheduler.plan's lanes: nodes, predicts, active (B, lanes) in lane
    order (cell lanes (H, L+1) first, the tree's lanes (`lanes`: H x (T catch-up + E nodes)) from
    `first_tree_lane`), `order` (B, Q) the lanes packed into queries, `on` (B, Q) real queries,
    take(lanes tensor) -> packed."""
    B = nodes.shape[0]
    H, offsets = cell_lanes
    lane = torch.arange(nodes.shape[1], device=nodes.device)
    rank = torch.full_like(nodes, -1).scatter_(1, order, torch.arange(order.shape[1], device=nodes.device).expand(B, -1))
    rank = torch.where(active, rank, -1)
    node_ranks = rank[:, first_tree_lane:].view(B, H, -1)[..., catch_up:]
    return TreePlan(query_nodes=torch.where(on, take(nodes), -1),
                    off_chain=on & take((lane >= first_tree_lane) & (nodes >= 0)),
                    predicts=torch.where(on, take(predicts), trash),
                    lane_queries=torch.cat([rank[:, :H * offsets].view(B, H, offsets), node_ranks], dim=-1))


def visibility(scheduler: Scheduler, plan: Plan) -> tuple[torch.Tensor, tuple]:
    """A pass's tree reads (B, Q, S) (masks.tree_readable: each tree query reads the nodes on its path),
    and (query rows, query columns, reads) for masks.drafts_above_readable: drafting ahead, a node off
    the chain reads the rows above's drafts as the chain's query deciding its column does."""
    slot_map, W = scheduler.slot_map, scheduler.layout.cols
    tree = plan.tree
    slot_nodes = torch.full_like(plan.live, -1, dtype=torch.int64).scatter_(1, plan.batch.slots, tree.query_nodes)
    slot_nodes[:, slot_map.scratch] = -1
    reads = tree_readable(tree.query_nodes, slot_nodes, scheduler.tree_nodes.ancestors)
    if plan.query_cols is None:
        return reads, (plan.query_rows, plan.query_cols, plan.draft_fed)
    rows = torch.where(tree.off_chain, tree.query_nodes.div(scheduler.tree_nodes.count, rounding_mode="floor"),
                       plan.query_rows)
    cols = torch.where(tree.off_chain, tree.predicts - rows * W, plan.query_cols)
    return reads, (rows, cols, plan.draft_fed | tree.off_chain)


def chain_nodes(scheduler: Scheduler, offsets: int, nodes: TreeNodes) -> torch.Tensor:
    """(H, offsets) the node of the cell lane's offsets 1..T (grid row * E + id of the all-0 path of
    depth t), -1 at the others."""
    ids = torch.tensor([level_start(nodes.width, t) if 1 <= t <= nodes.depths else -1 for t in range(offsets)],
                       device=scheduler.rows.device)
    return torch.where(ids >= 0, scheduler.rows[:, None] * nodes.count + ids, -1)


def verify(state: DecodeState, plan: Plan, probs: torch.Tensor, drawn: torch.Tensor, draft_q) -> tuple[torch.Tensor, ...]:
    """Decide every row whose cell lane ran by draft_tree.verify_tree. probs (B, n, V) the queries'
    distributions, drawn (B, n) their draws (kept where no tree decides), draft_q as in `draw_siblings`.
    -> (tokens for batch.cells (B, n): decided, then redrafted along the chain; redrafts (B, n) the
    redraft of every cell (draft_tree rule 3: a cell cut off by drafting ahead takes it); last (B, H)
    the last column each row decided (W where the lane ran to its end with every draft accepted);
    chain_end (B, H) one past the last column decided on the chain's own queries (their entries hold
    the decided tokens))."""
    sch, schedule, td = state.scheduler, state.schedule, state.tree_drafts
    K, T, E = td.nodes.width, td.nodes.depths, td.nodes.count
    W, L = sch.layout.cols, sch.draft_len
    B, Q, V = probs.shape
    dev = probs.device
    busy = _busy_rows(sch, plan.cell_lane)  # (B, R): the rows a pass decides are among these
    R = busy.shape[1]
    cnt = _at(busy, schedule.count)
    m = _at(busy, torch.where(plan.cell_lane, plan.cell_queries, 0))  # the depths each row may decide
    held_drafts = _at(busy, schedule.drafts)
    drafts = torch.minimum(held_drafts, m)
    lane_queries = _at(busy, plan.tree.lane_queries)
    chain_q, node_q = lane_queries[..., :L + 1], lane_queries[..., L + 1:]
    on_chain = torch.tensor([level_start(K, t) for t in range(1, T + 1)], device=dev)
    node_q = node_q.index_copy(2, on_chain, chain_q[..., 1:T + 1])
    order = torch.cat([chain_q[..., :1], node_q, chain_q[..., T + 1:]], dim=2)  # verify_tree's layout
    dist = probs.gather(1, order.clamp(min=0).reshape(B, -1, 1).expand(-1, -1, V)).reshape(B * R, -1, V)
    levels = [dist[:, :1]] + [dist[:, 1 + level_start(K, t):1 + level_start(K, t + 1)] for t in range(1, T + 1)]
    rows = busy[..., None].expand(-1, -1, L + 1)
    cols = cnt[..., None] + torch.arange(L + 1, device=dev)  # (B, R, L+1)
    cells = torch.where(cols < W, rows * W + cols, sch.slot_map.trash)
    flat = lambda t: t.reshape(B, -1)  # noqa: E731
    draft = state.tokens.gather(1, flat(cells)).view(cells.shape)[..., :L]
    attempt = state.draws.gather(1, flat(cells)).view(cells.shape)
    held = cols[..., :L] < (cnt + held_drafts)[..., None]
    q = draft_q(state, rows[..., :L], cols[..., :L], held)  # (B, R, L, V)
    # the cells' test, resample and token uniforms in one hash (B, R, L+1, 3), the siblings' tests (B, R, T, K-1)
    purposes = torch.tensor([PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_TOKEN], device=dev)
    u = key_uniform(draw_key_from(state.seed_keys, cells[..., None], purposes, attempt[..., None]))
    u_sibling = key_uniform(draw_key_from(state.seed_keys, cells[..., :T, None], PURPOSE_SIBLING_ACCEPT,
                                          attempt[..., :T, None], index=torch.arange(1, K, device=dev)))
    sib_cols = sch.slot_map.tree.sibling_columns(busy)  # (B, R, T, K-1)
    sib = state.tokens.gather(1, flat(sib_cols)).view(sib_cols.shape)
    cands = torch.cat([draft[..., :T, None], sib], dim=-1)
    tree_valid = _at(busy, td.valid)
    valid = torch.cat([torch.ones_like(tree_valid[..., :1]), tree_valid], dim=-1)
    by_row = lambda t: t.reshape(B * R, *t.shape[2:])  # noqa: E731
    out = verify_tree(levels, dist[:, 1 + E:], by_row(draft), by_row(q), by_row(cands), by_row(valid),
                      by_row(drafts), by_row(m), by_row(u[..., :L, 0]), by_row(u_sibling), by_row(u[..., :L, 1]),
                      by_row(u[..., 2]))
    tokens, n = out["tokens"].view(B, R, L + 1), out["n"].view(B, R)
    accepted, winner = out["accepted"].view(B, R, L), out["winner"].view(B, R, T)
    t = torch.arange(L, device=dev)
    chain_ok = accepted & ((t >= T) | (winner.gather(2, t.clamp(max=max(T - 1, 0)).expand(B, R, -1)) == 0))
    # the rows that decide nothing keep their count and W (nothing rejected)
    chain_end = schedule.count.scatter(1, busy, cnt + chain_ok.long().cumprod(2).sum(2))
    rejected = ((t < n[..., None]) & (t < drafts[..., None]) & ~accepted).any(2)
    last = torch.where((n < m) | rejected, cnt + n - 1, W)  # W: the lane ran to its end, every draft kept
    last = torch.full_like(schedule.count, W).scatter(1, busy, last)
    index = flat(torch.where(chain_q >= 0, chain_q, Q))
    per_query = lambda t: torch.cat([drawn, torch.zeros_like(drawn[:, :1])], 1).scatter_(1, index, flat(t))[:, :Q]  # noqa: E731
    return per_query(tokens), per_query(out["redrafts"].view(B, R, L + 1)), last, chain_end


def settle(state: DecodeState, plan: Plan, gain: torch.Tensor, chain_end: torch.Tensor) -> None:
    """After row_drafts.keep (gain (B, H) the tokens each row's lane kept, chain_end from `verify`): the
    decided tokens before each row's last one whose entries are not in the cache (a walk that left the
    chain decided them), fed again by the next pass's catch-up."""
    new_count = state.schedule.count + gain
    uncached = torch.where(plan.cell_lane, (new_count - 1 - chain_end).clamp(min=0), 0)
    state.tree_drafts.uncached.copy_(uncached)
