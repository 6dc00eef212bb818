"""The one ZipAR scheduler (paper sections 3.2-3.3): which queries every forward pass runs, for
fixed and adaptive windows alike, computed on the decode device from per-image state tensors.

State per image (ScheduleState): decided tokens per row, the window each row follows the row above
with, opener attempts per row, whether each row's last token is in the cache, which cache slots are
live. Each pass, every row offers three candidate queries ("lanes"), computed for all rows at once:
  cell    row r holds c tokens (1 <= c < W) and the row above allows (r, c) by the window rule
          (common.zipar.window.window_allows, looked up at call time so that
          the rule has exactly one definition): feed (r, c-1), decide (r, c).
  opener  row r holds none and the row above allows (r, 0): the query at the position that predicts
          (r, 0) ((r-1, W-1), or the end-of-row token of row r-1). Fed the real (r-1, W-1) when that
          row is complete, else the end-of-row token, else a placeholder (common.zipar.placeholder).
          Fixed windows: the opening is a plain draw. Adaptive windows: the first is an OPEN (its
          draw kept pending), each later pass re-runs it as a VERIFY against a window one token larger, until accepted (or
          final, when row r-1 is complete); the window an opening is accepted at is what row r then
          follows row r-1 with. Each attempt overwrites the previous attempt's entry (its slot):
          a superseded opener is never read again, so one slot per row holds them all.
  feed    row r is complete and its last token is not in the cache yet: feed it (keys/values only).
With row drafts (draft_len L, common.zipar.row_drafts) the cell lane is up to L + 1 queries: offset o is
fed (r, c+o-1), a draft for o >= 1, and decides (r, c+o) (a CHECK of the draft there, or a DRAW
after the last draft), for each cell the window rule allows. A draft-fed query's slot is visible
only to its own row's later queries in the pass (common.zipar.masks), and live for all once kept.
The active lanes of an image are packed, in increasing position, into `queries_per_pass` slots
(bound derived in `queries_per_pass`); the rest is inert padding that writes a scratch slot nobody
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
from dataclasses import dataclass, replace

import torch

from common.zipar import row_drafts, window
from common.zipar.config import DecodeConfig
from common.zipar.layout import Layout, SlotMap
from common.zipar.official import active_rule
from common.zipar.passes import CHECK, DRAW, OPEN, PAD, PREFIX_SOURCE, VERIFY, PassBatch
from common.zipar.placeholder import Placeholder
from common.zipar.window import first_row_rule, row_windows, schedule_window


def queries_per_pass(layout: Layout, window: int, draft_len: int = 0, serial_first_row: bool = False) -> int:
    """The most queries one image can run in a decode pass with (minimum) window w < W and L =
    draft_len row drafts (a row's cell lane is then at most L + 1 queries).

    Once open, a row gains one token per pass until complete, so before any pass a row holding
    c' >= 1 tokens is at least w behind the row above (its last cell needed c' - 1 + w above, and
    that row has grown since; drafts do not change this, the window rule counts decided tokens):
    the rows holding 1..W-1 tokens, and an opener (which needs >= w tokens above it), stack at
    most 1 + (W-1) // w deep (at most H rows), each with at most L + 1 queries. A row's last token
    is fed in the pass after the row completes, and rows complete in distinct passes (a row's last
    cell needs the row above complete): one feed more. With w >= W (next-token prediction) a pass
    runs one row's cells, or one opener fed the real last token; with end-of-row tokens the opener
    and the feed of the row above are separate queries: 2.
    """
    W = layout.cols
    w = min(window, W)
    if w >= W:
        return max(draft_len + 1, 2 if layout.end_of_row else 1)
    return open_rows_bound(layout, w, serial_first_row) * (draft_len + 1) + 1


def open_rows_bound(layout: Layout, window: int, serial_first_row: bool = False) -> int:
    """The most rows holding 1..W-1 decided tokens (or opening) at once (see `queries_per_pass`)."""
    rows = max(layout.rows - 1, 1) if serial_first_row else layout.rows
    return min(rows, 1 + (layout.cols - 1) // max(window, 1))


@dataclass
class ScheduleState:
    """Per-image schedule state on the decode device; advanced in place by `Scheduler.advance`."""

    count: torch.Tensor  # (B, H) int64 decided tokens per row
    window: torch.Tensor  # (B, H) int64 window row r follows row r-1 with (adaptive: w_min until accepted)
    attempts: torch.Tensor  # (B, H) int64 opener queries run for row r
    fed_last: torch.Tensor  # (B, H) bool: (r, W-1) is in the cache
    live: torch.Tensor  # (B, S) bool: slots queries may read
    image_passes: torch.Tensor  # (B,) int64 passes each image has needed so far
    opener_rejections: torch.Tensor  # (B,) int64 rejected pending openings (adaptive windows)
    pass_index: torch.Tensor  # () int64 the next pass's index
    drafts: torch.Tensor  # (B, H) int64 row drafts after the decided tokens: cells count .. count+drafts-1
    row_passes: torch.Tensor  # (B, H) int64 passes in which row r ran its cell lane
    row_gain: torch.Tensor  # (B, H) int64 tokens row r's cell lane decided (its opening not counted)
    draft_rejections: torch.Tensor  # (B,) int64 row-passes cut short by a rejected draft (drafting ahead: one it read)


@dataclass(frozen=True)
class Plan:
    """What `Scheduler.plan` decided for one pass, per image; lane-level facts `advance` needs."""

    batch: PassBatch
    live: torch.Tensor  # (B, S) live slots in this pass (its own writes included)
    active: torch.Tensor  # (B, Q) real (non-padding) queries
    cell_lane: torch.Tensor  # (B, H) the cell lane of row r ran
    open_lane: torch.Tensor  # (B, H) the opener of row r ran
    open_kind: torch.Tensor  # (B, H)
    feeds_last: torch.Tensor  # (B, H) (r, W-1) is fed in this pass
    above: torch.Tensor  # (B, H) tokens of row r-1 before the pass (W for row 0)
    # row drafts only (None without them): what the drafts' checks, visibility and bookkeeping read
    query_rows: torch.Tensor | None  # (B, Q) grid row of each cell-lane query (H for openers, feeds, padding)
    draft_fed: torch.Tensor | None  # (B, Q) the query is fed a row draft (its slot is not live to others)
    draft_slots: torch.Tensor | None  # (B, S) slots written by draft-fed queries in this pass
    cell_queries: torch.Tensor | None  # (B, H) queries of row r's cell lane in this pass
    query_cols: torch.Tensor | None  # (B, Q) grid column each cell-lane query decides (W for the others;
    # drafting ahead only)

    def trimmed(self, queries: int) -> "Plan":
        """The plan with its padding cut to `queries` per image (active queries come first)."""
        b = self.batch
        cut = lambda t: None if t is None else t[:, :queries]  # noqa: E731
        batch = replace(b, slots=cut(b.slots), positions=cut(b.positions), sources=cut(b.sources),
                        sample_rows=cut(b.sample_rows), cells=cut(b.cells), kinds=cut(b.kinds), attempts=cut(b.attempts))
        return replace(self, batch=batch, active=cut(self.active), query_rows=cut(self.query_rows),
                       draft_fed=cut(self.draft_fed), query_cols=cut(self.query_cols))


class Scheduler:
    """The constants of one decode's schedule (layout, windows, slot map); the state lives in a
    ScheduleState. `plan` and `advance` are tensor functions without host synchronisation."""

    def __init__(self, layout: Layout, config: DecodeConfig, device, queries: int | None = None):
        config.check_grid(layout.cols)
        self.layout, self.config, self.device = layout, config, device
        self.slot_map = SlotMap.build(layout, device)
        self.placeholder = Placeholder(config.placeholder, self.slot_map.placeholder_column, layout.end_of_row)
        self.draft_len = config.draft_len
        self.w_min = schedule_window(layout, config.window, config.compat)
        self.row_windows = row_windows(layout, config.window, config.compat, config.first_row)
        official = active_rule(layout.family, config.compat)
        self.reads_unwritten = official is not None and official.reads_unwritten
        serial = first_row_rule(layout, config.first_row, config.compat) == "serial"
        self.num_queries = queries or queries_per_pass(layout, self.w_min, self.draft_len, serial)
        # rows that can hold drafts at once: a ring of draft-distribution buffers indexed by r mod this
        self.draft_rows = open_rows_bound(layout, self.w_min, serial)
        self.rows = torch.arange(layout.rows, device=device)

    def initial_state(self, batch: int) -> ScheduleState:
        H, dev = self.layout.rows, self.device
        zeros = lambda: torch.zeros(batch, H, dtype=torch.int64, device=dev)  # noqa: E731
        windows = torch.tensor([self.layout.cols] + self.row_windows, dtype=torch.int64, device=dev)
        live = self.slot_map.regular.expand(batch, -1).clone() if self.reads_unwritten else \
            torch.zeros(batch, self.slot_map.num_slots, dtype=torch.bool, device=dev)
        per_image = lambda: torch.zeros(batch, dtype=torch.int64, device=dev)  # noqa: E731
        return ScheduleState(count=zeros(), window=windows.expand(batch, -1).clone(), attempts=zeros(),
                             fed_last=torch.zeros(batch, H, dtype=torch.bool, device=dev), live=live,
                             image_passes=per_image(), opener_rejections=per_image(),
                             pass_index=torch.zeros((), dtype=torch.int64, device=dev), drafts=zeros(),
                             row_passes=zeros(), row_gain=zeros(), draft_rejections=per_image())

    def prefix_pass(self, state: ScheduleState) -> PassBatch:
        """Pass 0: the condition prefix; its last query decides (0, 0)."""
        T, dev = self.layout.prefix_len, self.device
        slots = torch.arange(T, device=dev)[None]
        state.live[:, :T] = True
        one = lambda v: torch.tensor([[v]], dtype=torch.int64, device=dev)  # noqa: E731
        return PassBatch(is_prefix=True, slots=slots, positions=slots, sources=torch.full_like(slots, PREFIX_SOURCE),
                         sample_rows=one(T - 1), cells=one(0), kinds=one(DRAW), attempts=one(0))

    def after_prefix(self, state: ScheduleState) -> None:
        state.count[:, 0] = 1
        state.image_passes.fill_(1)
        state.pass_index.fill_(1)

    def plan(self, state: ScheduleState) -> Plan:
        """The next decode pass's queries for every image, from the state before the pass, padded
        to `num_queries` per image (`Plan.trimmed` cuts the padding)."""
        layout = self.layout
        H, W, N = layout.rows, layout.cols, layout.num_cells
        r, start = self.rows, self.slot_map.cell_start
        scratch, trash = self.slot_map.scratch, self.slot_map.trash
        cnt, att = state.count, state.attempts
        B = cnt.shape[0]
        above = torch.cat([torch.full_like(cnt[:, :1], W), cnt[:, :-1]], dim=1)  # (B, H)

        cell = (cnt >= 1) & (cnt < W) & window.window_allows(above, cnt, state.window, W)
        # the cell lane, offsets o = 0..L: fed (r, c+o-1) (o >= 1: a draft), decides (r, c+o): a CHECK of
        # the draft there, or a DRAW after the last draft; each decided cell the window rule allows
        L = self.draft_len
        o = torch.arange(L + 1, device=cnt.device)
        col = cnt[..., None] + o  # (B, H, L+1) decided column
        # without drafts the lane is the one query `cell` allows: no draft-only terms then
        lane = row_drafts.cell_lanes(self, state, cell, above, o, col) if L else cell[..., None]
        cell_slot = start[:, None] + col - 1
        cell_kind = torch.where(o < state.drafts[..., None], CHECK, DRAW) if L else torch.full_like(col, DRAW)
        lanes_of = lambda t: t.reshape(B, -1)  # noqa: E731  (B, H, L+1) -> (B, H*(L+1))

        opener = (r >= 1) & (cnt == 0) & window.window_allows(above, torch.zeros_like(cnt), state.window, W)
        full = above == W
        open_pos = self.slot_map.opener_position(r.clamp(min=1)).expand(B, -1)
        if layout.end_of_row:
            real = torch.zeros_like(full)
            open_slot = open_pos  # the end-of-row slot
            open_src = (N + r - 1).expand(B, -1)
        else:
            real = full  # row r-1 is complete: its real last token opens row r
            open_slot = torch.where(real, open_pos, self.slot_map.opener_base + (r - 1).clamp(min=0))
            stand_in = self.placeholder.source((r - 1).clamp(min=0).expand(B, -1), cnt, W)
            open_src = torch.where(real, r * W - 1, stand_in)
        if self.config.adaptive:
            open_kind = torch.where(att > 0, VERIFY, torch.where(full, DRAW, OPEN))
        else:
            open_kind = torch.full_like(cnt, DRAW)

        # row r-1's last token fed by row r's opener, at row r-1
        fed_by_opener = torch.cat([(opener & real)[:, 1:], torch.zeros_like(real[:, :1])], dim=1)
        feed = (r < H - 1) & (cnt == W) & ~state.fed_last & ~fed_by_opener
        last_slot = start + W - 1

        # lanes (B, (L+3)H): cells, openers, feeds
        rows_of_cells = r[:, None].expand(H, L + 1)
        active = torch.cat([lanes_of(lane), opener, feed], dim=1)
        slot = torch.cat([lanes_of(cell_slot), open_slot, last_slot.expand(B, -1)], dim=1)
        pos = torch.cat([lanes_of(cell_slot), open_pos, last_slot.expand(B, -1)], dim=1)
        src = torch.cat([lanes_of(r[:, None] * W + col - 1), open_src, (r * W + W - 1).expand(B, -1)], dim=1)
        out = torch.cat([lanes_of(r[:, None] * W + col), (r * W).expand(B, -1), torch.full_like(cnt, trash)], 1)
        kind = torch.cat([lanes_of(cell_kind.expand(B, -1, -1)), open_kind, torch.full_like(cnt, PAD)], dim=1)

        big = self.slot_map.num_slots + 1  # inactive lanes sort last
        order = torch.argsort(torch.where(active, pos, big), dim=1)[:, :self.num_queries]
        take = lambda t: t.gather(1, order)  # noqa: E731
        on = take(active)
        slots = torch.where(on, take(slot), scratch)
        positions = torch.where(on, take(pos), 0)
        sources = torch.where(on, take(src), 0)
        cells = torch.where(on, take(out), trash)
        kinds = torch.where(on, take(kind), PAD)
        if self.config.adaptive:  # opener attempts key the adaptive tests; 0 elsewhere
            attempts = torch.where(on, take(torch.cat([torch.zeros_like(lanes_of(col)), att, torch.zeros_like(cnt)], 1)), 0)
        else:
            attempts = torch.zeros_like(cells)
        query_rows = query_cols = draft_fed = draft_slots = None  # row drafts only
        if L:
            row_of = torch.cat([rows_of_cells.reshape(1, -1).expand(B, -1), torch.full_like(cnt, H),
                                torch.full_like(cnt, H)], dim=1)
            fed_draft = torch.cat([lanes_of((o >= 1).expand(B, H, -1)), torch.zeros_like(opener),
                                   torch.zeros_like(feed)], dim=1)
            query_rows = torch.where(on, take(row_of), H)
            draft_fed = on & take(fed_draft)
        if self.config.draft_ahead:
            query_cols = torch.where(on & (query_rows < H), take(out) - query_rows.clamp(max=H - 1) * W, W)

        feeds_last = feed | fed_by_opener
        live = self._live_after(state, opener, real, feeds_last, slots, on & ~draft_fed if L else on)
        if L:
            draft_slots = torch.zeros_like(live).scatter_(1, torch.where(draft_fed, slots, scratch), True)
            draft_slots[:, scratch] = False
        sample_rows = torch.arange(slots.shape[1], device=cnt.device).expand(B, -1)
        batch = PassBatch(is_prefix=False, slots=slots, positions=positions, sources=sources, sample_rows=sample_rows,
                          cells=cells, kinds=kinds, attempts=attempts)
        return Plan(batch=batch, live=live, active=on, cell_lane=cell, open_lane=opener, open_kind=open_kind,
                    feeds_last=feeds_last, above=above, query_rows=query_rows, draft_fed=draft_fed,
                    draft_slots=draft_slots, cell_queries=lane.sum(-1) if L else None, query_cols=query_cols)

    def _live_after(self, state, opener, real, feeds_last, slots, on) -> torch.Tensor:
        """The live slots in this pass: placeholders retired, this pass's writes added."""
        layout, W, r = self.layout, self.layout.cols, self.rows
        live = state.live.clone()
        if not layout.end_of_row and layout.rows > 1:
            # a placeholder shadows the real slot it stands for (unwritten; live zeros in compat mode)
            stands_for = self.slot_map.cell_start[(r - 1).clamp(min=0)] + W - 1
            live.scatter_(1, torch.where(opener & ~real, stands_for, self.slot_map.scratch), False)
            # the real (r-1, W-1) retires row r's placeholder opener
            live[:, self.slot_map.opener_base:self.slot_map.scratch] &= ~feeds_last[:, :-1]
        live.scatter_(1, slots, on)
        live[:, self.slot_map.scratch] = False
        return live

    def advance(self, state: ScheduleState, plan: Plan, accepted: torch.Tensor | None,
                row_gain: torch.Tensor | None = None) -> None:
        """Update the state in place after the pass's tokens are decided. accepted: (B,) whether the
        image's opener verification (if any) accepted the pending opening. row_gain: (B, H) with row
        drafts, the tokens each row's cell lane kept (common.zipar.row_drafts.keep); else one per lane."""
        W = self.layout.cols
        gain = plan.cell_lane.long() if row_gain is None else row_gain
        state.row_passes += plan.cell_lane.long()
        state.row_gain += gain
        kind = plan.open_kind
        if accepted is None:
            opened = plan.open_lane & (kind == DRAW)
            rejected = torch.zeros_like(state.opener_rejections)
        else:
            final = plan.above == W
            opened = plan.open_lane & ((kind == DRAW) | ((kind == VERIFY) & (accepted[:, None] | final)))
            rejected = (plan.open_lane & (kind == VERIFY) & ~accepted[:, None]).sum(1)
        state.count += gain + opened.long()
        state.window.copy_(torch.where(opened, plan.above, state.window))
        state.attempts += plan.open_lane.long()
        state.fed_last |= plan.feeds_last
        state.live.copy_(plan.live)
        state.opener_rejections += rejected
        state.image_passes.copy_(torch.where(plan.active.any(1), state.pass_index + 1, state.image_passes))
        state.pass_index += 1

    def done(self, state: ScheduleState) -> torch.Tensor:
        return (state.count == self.layout.cols).all()

    def passes_left_bound(self, state: ScheduleState) -> torch.Tensor:
        """() int64: a lower bound on the passes the batch still needs, 0 iff every image is done. A
        row gains at most L + 1 tokens a pass (one without row drafts; an opening decides one), and
        row r+1 completes at least one pass after row r (its last cell needs row r complete), so
        row k still needs ceil((W - count) / (L + 1)) passes and the last row H-1-k more. The decode
        reads it once per stretch of passes it guarantees, instead of a "done" flag every pass."""
        W, H, L = self.layout.cols, self.layout.rows, self.draft_len
        own = (W - state.count + L) // (L + 1)  # (B, H)
        rows_below = H - 1 - self.rows
        return torch.where(state.count < W, own + rows_below, 0).max()


@functools.lru_cache(maxsize=64)
def fixed_dry_run(layout: Layout, config: DecodeConfig) -> tuple[tuple[int, ...], bool]:
    """A fixed-window schedule run once on the CPU without a model (a pure function of its arguments,
    so it is remembered: a sampling job decodes many batches with one layout and config): the real
    queries of each pass, and whether any opener is fed the placeholder column."""
    host = Scheduler(layout, config, "cpu")
    state = host.initial_state(1)
    host.after_prefix(state)
    sizes, column = [0], host.slot_map.placeholder_column  # the prefix pass is sized by the condition
    reads_column = False
    while not bool(host.done(state)):
        plan = host.plan(state)
        sizes.append(int(plan.active.sum()))
        reads_column |= bool(((plan.batch.sources == column) & plan.active).any())
        host.advance(state, plan, None)
    return tuple(sizes), reads_column


def fixed_pass_sizes(layout: Layout, config: DecodeConfig) -> tuple[int, ...]:
    """The real queries of each pass of a fixed-window schedule."""
    return fixed_dry_run(layout, config)[0]


def reads_placeholder(layout: Layout, config: DecodeConfig) -> bool:
    """Whether the schedule may feed an opener from the placeholder column: per-image schedules
    (adaptive windows, row drafts) may; a fixed one iff its dry run does (NTP and wide windows never)."""
    return config.per_image_schedule or fixed_dry_run(layout, config)[1]
