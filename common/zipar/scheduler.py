"""The one ZipAR scheduler (paper sections 3.2-3.3): which queries every forward pass runs, for
fixed and adaptive windows alike, computed on the decode device from per-image state tensors.
`plan` and `advance` are functions of the schedule's constants (common.zipar.state.Scheduler) and its
state, with no host synchronisation.

State per image (common.zipar.state.ScheduleState): decided tokens per row, the window each row follows the row above
with, opener attempts per row, whether each row's last token is in the cache, which cache slots are
live. Each pass, every row offers three candidate queries ("lanes"), computed for all rows at once:
  cell    row r holds c tokens (1 <= c < W) and the row above allows (r, c) by the window rule
          (common.zipar.window.window_allows, looked up at call time so that
          the rule has exactly one definition): feed (r, c-1), decide (r, c).
  opener  row r holds none and the row above allows (r, 0): the query that decides (r, 0), a plain
          draw with fixed windows, a pending opening verified pass by pass with adaptive ones; its
          lane, test and bookkeeping are common.zipar.openers.
  feed    row r is complete and its last token is not in the cache yet: feed it (keys/values only).
With row drafts (draft_len L, common.zipar.row_drafts) the cell lane is up to L + 1 queries: offset o is
fed (r, c+o-1), a draft for o >= 1, and decides (r, c+o) (a CHECK of the draft there, or a DRAW
after the last draft), for each cell the window rule allows (`cell_lanes`; the drafts a row starts
after a pass: `draft_lanes`). A draft-fed query's slot is visible
only to its own row's later queries in the pass (common.zipar.masks), and live for all once kept.
The active lanes of an image are packed, in increasing position, into `Scheduler.num_queries` slots
(bound derived in common.zipar.window.queries_per_pass); the rest is inert padding that writes a scratch slot nobody
reads and decides the token buffer's trash column. So every decode pass has one shape, no per-image
Python runs and nothing is read back to the host.

Fixed windows are the special case "every opening accepted at its first chance": same lanes, same
window rule, same placeholder rule, same visibility rule. compat="official" (the family's released
code, common.zipar.official) differs only in its row windows (common.zipar.window) and, where its rule says so
(LlamaGen: the released code attends to unwritten, zero cache entries), in which slots start live:
every regular slot.

Slots: common.zipar.layout.SlotMap.
Visibility (common.zipar.masks.visibility_mask): a query reads the live slots at positions <= its own.
A slot is live from the pass that writes it (the tokens written in a pass were decided in earlier
ones); a placeholder opener stops being live when the real (r-1, W-1) is fed. Only opener slots are
ever rewritten, by the next attempt of the same opening, which replaces the entry for every later
query.
"""
import functools

import torch

from common.zipar import openers, tree_drafts, window
from common.zipar.config import DecodeConfig
from common.zipar.layout import Layout
from common.zipar.passes import CHECK, DRAW, PAD, PREFIX_SOURCE, PassBatch
from common.zipar.state import Plan, RowsKept, Scheduler, ScheduleState, TreeDrafts


def initial_state(sch: Scheduler, batch: int) -> ScheduleState:
    H, dev = sch.layout.rows, sch.device
    zeros = lambda: torch.zeros(batch, H, dtype=torch.int64, device=dev)  # noqa: E731
    windows = torch.tensor([sch.layout.cols] + sch.row_windows, dtype=torch.int64, device=dev)
    live = sch.slot_map.regular.expand(batch, -1).clone() if sch.reads_unwritten else \
        torch.zeros(batch, sch.slot_map.num_slots, dtype=torch.bool, device=dev)
    per_image = lambda: torch.zeros(batch, dtype=torch.int64, device=dev)  # noqa: E731
    return ScheduleState(count=zeros(), window=windows.expand(batch, -1).clone(), attempts=zeros(),
                         fed_last=torch.zeros(batch, H, dtype=torch.bool, device=dev), live=live,
                         image_passes=per_image(), opener_rejections=per_image(),
                         pass_index=torch.zeros((), dtype=torch.int64, device=dev), drafts=zeros(),
                         row_passes=zeros(), row_gain=zeros(), draft_rejections=per_image())


def prefix_pass(sch: Scheduler, state: ScheduleState) -> PassBatch:
    """Pass 0: the condition prefix; its last query decides (0, 0)."""
    T, dev = sch.layout.prefix_len, sch.device
    slots = torch.arange(T, device=dev)[None]
    state.live[:, :T] = True
    one = lambda v: torch.tensor([[v]], dtype=torch.int64, device=dev)  # noqa: E731
    return PassBatch(is_prefix=True, slots=slots, positions=slots, sources=torch.full_like(slots, PREFIX_SOURCE),
                     sample_rows=one(T - 1), cells=one(0), kinds=one(DRAW), attempts=one(0))


def after_prefix(state: ScheduleState) -> None:
    state.count[:, 0] = 1
    state.image_passes.fill_(1)
    state.pass_index.fill_(1)


def plan(sch: Scheduler, state: ScheduleState, tree: TreeDrafts | None = None) -> Plan:
    """The next decode pass's queries for every image, from the state before the pass, padded
    to `num_queries` per image (`Plan.trimmed` cuts the padding). tree: a candidate tree's state; its
    lanes (nodes off the chain, catch-up feeds: common.zipar.tree_drafts) follow the feeds."""
    layout = sch.layout
    H, W = layout.rows, layout.cols
    r, start = sch.rows, sch.slot_map.cell_start
    scratch, trash = sch.slot_map.scratch, sch.slot_map.trash
    cnt = state.count
    B = cnt.shape[0]
    above = torch.cat([torch.full_like(cnt[:, :1], W), cnt[:, :-1]], dim=1)  # (B, H)

    cell = (cnt >= 1) & (cnt < W) & window.window_allows(above, cnt, state.window, W)
    # the cell lane, offsets o = 0..L: fed (r, c+o-1) (o >= 1: a draft), decides (r, c+o): a CHECK of
    # the draft there, or a DRAW after the last draft; each decided cell the window rule allows
    L = sch.draft_len
    o = torch.arange(L + 1, device=cnt.device)
    col = cnt[..., None] + o  # (B, H, L+1) decided column
    # without drafts the lane is the one query `cell` allows: no draft-only terms then
    lane = cell_lanes(sch, state, cell, above, o, col) if L else cell[..., None]
    cell_slot = start[:, None] + col - 1
    cell_kind = torch.where(o < state.drafts[..., None], CHECK, DRAW) if L else torch.full_like(col, DRAW)
    lanes_of = lambda t: t.reshape(B, -1)  # noqa: E731  (B, H, L+1) -> (B, H*(L+1))

    opens = openers.lane(sch, state, above)
    opener, real = opens.active, opens.real

    # row r-1's last token fed by row r's opener, at row r-1
    fed_by_opener = torch.cat([(opener & real)[:, 1:], torch.zeros_like(real[:, :1])], dim=1)
    feed = (r < H - 1) & (cnt == W) & ~state.fed_last & ~fed_by_opener
    last_slot = start + W - 1

    # lanes (B, (L+3)H): cells, openers, feeds
    rows_of_cells = r[:, None].expand(H, L + 1)
    active = torch.cat([lanes_of(lane), opener, feed], dim=1)
    slot = torch.cat([lanes_of(cell_slot), opens.slot, last_slot.expand(B, -1)], dim=1)
    pos = torch.cat([lanes_of(cell_slot), opens.position, last_slot.expand(B, -1)], dim=1)
    src = torch.cat([lanes_of(r[:, None] * W + col - 1), opens.source, (r * W + W - 1).expand(B, -1)], dim=1)
    out = torch.cat([lanes_of(r[:, None] * W + col), (r * W).expand(B, -1), torch.full_like(cnt, trash)], 1)
    kind = torch.cat([lanes_of(cell_kind.expand(B, -1, -1)), opens.kind, torch.full_like(cnt, PAD)], dim=1)
    if tree is not None:  # each tree lane decides nothing (the trash column): tree_drafts.verify decides
        extra = tree_drafts.lanes(sch, cnt, lane, tree)
        active, slot, pos, src = (torch.cat([t, lanes_of(extra[k])], 1)
                                  for t, k in ((active, "active"), (slot, "slot"), (pos, "pos"), (src, "src")))
        out = torch.cat([out, torch.full_like(lanes_of(extra["slot"]), trash)], dim=1)
        kind = torch.cat([kind, torch.full_like(lanes_of(extra["slot"]), PAD)], dim=1)

    big = sch.slot_map.num_slots + 1  # inactive lanes sort last
    order = torch.argsort(torch.where(active, pos, big), dim=1)[:, :sch.num_queries]
    take = lambda t: t.gather(1, order)  # noqa: E731
    on = take(active)
    slots = torch.where(on, take(slot), scratch)
    positions = torch.where(on, take(pos), 0)
    sources = torch.where(on, take(src), 0)
    cells = torch.where(on, take(out), trash)
    kinds = torch.where(on, take(kind), PAD)
    query_rows = query_cols = draft_fed = draft_slots = None  # row drafts only
    if L:
        row_of = torch.cat([rows_of_cells.reshape(1, -1).expand(B, -1), torch.full_like(cnt, H),
                            torch.full_like(cnt, H)], dim=1)
        fed_draft = torch.cat([lanes_of((o >= 1).expand(B, H, -1)), torch.zeros_like(opener),
                               torch.zeros_like(feed)], dim=1)
        if tree is not None:  # tree lanes: no row of their own for the chain's rules, not chain drafts
            row_of = torch.cat([row_of, torch.full_like(lanes_of(extra["slot"]), H)], dim=1)
            fed_draft = torch.cat([fed_draft, torch.zeros_like(lanes_of(extra["active"]))], dim=1)
        query_rows = torch.where(on, take(row_of), H)
        draft_fed = on & take(fed_draft)
    if sch.config.draft_ahead:
        query_cols = torch.where(on & (query_rows < H), take(out) - query_rows.clamp(max=H - 1) * W, W)

    tree_plan = None
    if tree is not None:
        cell_lanes_end = H * (L + 1) + 2 * H  # cell lanes, openers, feeds; then the tree's lanes
        none = torch.full_like(cnt, -1)
        nodes = torch.cat([lanes_of(tree_drafts.chain_nodes(sch, L + 1, tree.nodes).expand(B, -1, -1)), none, none,
                           lanes_of(extra["node"])], dim=1)
        predicts = torch.cat([out[:, :cell_lanes_end], lanes_of(extra["predicts"])], dim=1)
        tree_plan = tree_drafts.plan_queries(nodes, predicts, active, order, on, take, cell_lanes_end, (H, L + 1),
                                             tree.nodes.depths, trash)
    feeds_last = feed | fed_by_opener
    writes = on & ~draft_fed if L else on
    if tree_plan is not None:  # a node off the chain is read by the nodes below it alone
        writes = writes & ~tree_plan.off_chain
    live = _live_after(sch, state, opener, real, feeds_last, slots, writes)
    if L:
        draft_slots = torch.zeros_like(live).scatter_(1, torch.where(draft_fed, slots, scratch), True)
        draft_slots[:, scratch] = False
    sample_rows = torch.arange(slots.shape[1], device=cnt.device).expand(B, -1)
    batch = PassBatch(is_prefix=False, slots=slots, positions=positions, sources=sources, sample_rows=sample_rows,
                      cells=cells, kinds=kinds)
    return Plan(batch=batch, live=live, active=on, cell_lane=cell, open_lane=opener, open_final=opens.final,
                feeds_last=feeds_last, above=above, query_rows=query_rows, draft_fed=draft_fed,
                draft_slots=draft_slots, cell_queries=lane.sum(-1) if L else None, query_cols=query_cols,
                tree=tree_plan)


def draft_lanes(scheduler: Scheduler, state: ScheduleState) -> tuple[torch.Tensor, torch.Tensor]:
    """Row drafts to start after a pass (common.zipar.row_drafts.start): (B, H, L) bool over offsets o (cell
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


def cell_lanes(scheduler: Scheduler, state: ScheduleState, cell: torch.Tensor, above: torch.Tensor, o: torch.Tensor,
               col: torch.Tensor) -> torch.Tensor:
    """The cell lanes of `plan` with row drafts (cell (B, H) rows whose lane
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


def _live_after(sch: Scheduler, state: ScheduleState, opener: torch.Tensor, real: torch.Tensor,
                feeds_last: torch.Tensor, slots: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """The live slots in this pass: placeholders retired, this pass's writes added."""
    layout, W, r = sch.layout, sch.layout.cols, sch.rows
    live = state.live.clone()
    if not layout.end_of_row and layout.rows > 1:
        # a placeholder shadows the real slot it stands for (unwritten; live zeros in compat mode)
        stands_for = sch.slot_map.cell_start[(r - 1).clamp(min=0)] + W - 1
        live.scatter_(1, torch.where(opener & ~real, stands_for, sch.slot_map.scratch), False)
        # the real (r-1, W-1) retires row r's placeholder opener
        live[:, sch.slot_map.opener_base:sch.slot_map.opener_end] &= ~feeds_last[:, :-1]
    live.scatter_(1, slots, on)
    live[:, sch.slot_map.scratch] = False
    return live


def advance(sch: Scheduler, state: ScheduleState, plan: Plan, verdicts: openers.OpenerOutcome | None,
            kept: RowsKept | None = None) -> None:
    """Update the state in place after the pass's tokens are decided. verdicts: adaptive windows, what each
    image's opener verification (if any) decided (common.zipar.openers.accept).
    kept: with row drafts, what the checks decided (common.zipar.row_drafts.keep); else each lane
    that ran gains one token."""
    gain = plan.cell_lane.long() if kept is None else kept.gain
    state.row_passes += plan.cell_lane.long()
    state.row_gain += gain
    opened = openers.settle(state, plan, verdicts)
    state.count += gain + opened.long()
    state.fed_last |= plan.feeds_last
    state.live.copy_(plan.live)
    if kept is not None:  # a kept draft-fed entry becomes live for everyone
        scratch = sch.slot_map.scratch
        state.live.scatter_(1, torch.where(kept.live_slots, plan.batch.slots, scratch), True)
        state.live[:, scratch] = False
        state.drafts.copy_(kept.drafts)
        state.draft_rejections += kept.rejected
    state.image_passes.copy_(torch.where(plan.active.any(1), state.pass_index + 1, state.image_passes))
    state.pass_index += 1


def done(sch: Scheduler, state: ScheduleState) -> torch.Tensor:
    return (state.count == sch.layout.cols).all()


def passes_left_bound(sch: Scheduler, state: ScheduleState) -> torch.Tensor:
    """() int64: a lower bound on the passes the batch still needs, 0 iff every image is done. A
    row gains at most L + 1 tokens a pass (one without row drafts; an opening decides one), and
    row r+1 completes at least one pass after row r (its last cell needs row r complete), so
    row k still needs ceil((W - count) / (L + 1)) passes and the last row H-1-k more. The decode
    reads it once per stretch of passes it guarantees, instead of a "done" flag every pass."""
    W, H, L = sch.layout.cols, sch.layout.rows, sch.draft_len
    own = (W - state.count + L) // (L + 1)  # (B, H)
    rows_below = H - 1 - sch.rows
    return torch.where(state.count < W, own + rows_below, 0).max()


@functools.lru_cache(maxsize=64)
def fixed_dry_run(layout: Layout, config: DecodeConfig) -> tuple[tuple[int, ...], bool]:
    """A fixed-window schedule run once on the CPU without a model (a pure function of its arguments,
    so it is remembered: a sampling job decodes many batches with one layout and config): the real
    queries of each pass, and whether any opener is fed the placeholder column."""
    host = Scheduler(layout, config, "cpu")
    state = initial_state(host, 1)
    after_prefix(state)
    sizes, column = [0], host.slot_map.placeholder_column  # the prefix pass is sized by the condition
    reads_column = False
    while not bool(done(host, state)):
        step = plan(host, state)
        sizes.append(int(step.active.sum()))
        reads_column |= bool(((step.batch.sources == column) & step.active).any())
        advance(host, state, step, None)
    return tuple(sizes), reads_column


def fixed_pass_sizes(layout: Layout, config: DecodeConfig) -> tuple[int, ...]:
    """The real queries of each pass of a fixed-window schedule."""
    return fixed_dry_run(layout, config)[0]


def reads_placeholder(layout: Layout, config: DecodeConfig) -> bool:
    """Whether the schedule may feed an opener from the placeholder column: per-image schedules
    (adaptive windows, row drafts) may; a fixed one iff its dry run does (NTP and wide windows never)."""
    return config.per_image_schedule or fixed_dry_run(layout, config)[1]
