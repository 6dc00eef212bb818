"""The decode's state types, in one place: what a decode holds between passes (DecodeState, its per-image
ScheduleState and RowDrafts), the schedule's constants (Scheduler), what one pass plans (Plan) and what
a row-draft check decides for the schedule (RowsKept), and what a decode reports (PassRecord,
DecodeResult). Data only: the rules over them are functions of the modules above, layered downward:
state <- openers, tree_drafts <- scheduler <- row_drafts <- engine.
"""
from dataclasses import dataclass, replace
from typing import Callable

import torch

from common.zipar.condition import Condition
from common.zipar.config import DecodeConfig
from common.zipar.kv_cache import KVCache
from common.zipar.layout import Layout, SlotMap, TreeShape
from common.zipar.official import active_rule
from common.zipar.passes import PassBatch
from common.zipar.placeholder import Placeholder
from common.zipar.step_buffers import StepBuffers
from common.zipar.tree_nodes import TreeNodes, tree_nodes
from common.zipar.window import first_row_rule, open_rows_bound, queries_per_pass, row_windows, schedule_window


class Scheduler:
    """The constants of one decode's schedule (layout, windows, slot map, queries per pass); the rules
    that plan and advance a ScheduleState with them are the functions of common.zipar.scheduler."""

    def __init__(self, layout: Layout, config: DecodeConfig, device: torch.device | str, queries: int | None = None):
        config.check_grid(layout.cols)
        self.layout, self.config, self.device = layout, config, device
        self.draft_len = config.draft_len
        self.w_min = schedule_window(layout, config.window, config.compat)
        self.row_windows = row_windows(layout, config.window, config.compat, config.first_row)
        official = active_rule(layout.family, config.compat)
        self.reads_unwritten = official is not None and official.reads_unwritten
        serial = first_row_rule(layout, config.first_row, config.compat) == "serial"
        self.num_queries = queries or queries_per_pass(layout, self.w_min, self.draft_len, serial, config.tree_shape)
        # rows that can hold drafts at once: a ring of draft-distribution buffers indexed by r mod this
        self.draft_rows = open_rows_bound(layout, self.w_min, serial)
        width, depths = config.tree_shape  # a candidate tree's slots follow the same ring of rows
        tree = TreeShape(width, depths, self.draft_rows) if width > 1 else None
        self.tree_nodes = tree_nodes(width, depths, device) if tree else None  # (common.zipar.tree_drafts)
        self.slot_map = SlotMap.build(layout, device, tree)
        self.placeholder = Placeholder(config.placeholder, self.slot_map.placeholder_column, layout.end_of_row)
        self.rows = torch.arange(layout.rows, device=device)


@dataclass
class ScheduleState:
    """Per-image schedule state on the decode device; advanced in place by `scheduler.advance`."""

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
class TreePlan:
    """A pass's candidate-tree queries (common.zipar.tree_drafts), besides the PassBatch."""

    query_nodes: torch.Tensor  # (B, Q) the node each query runs, grid row * E + id (the chain's offsets 1..T
    # included), -1 for none
    off_chain: torch.Tensor  # (B, Q) a node off the chain: it writes its tree slot, read by its path below alone
    predicts: torch.Tensor  # (B, Q) the cell whose distribution each query yields (guidance's cfg_interval)
    lane_queries: torch.Tensor  # (B, H, L+1+E) the query running each cell-lane offset, then each node (-1: none)

    def trimmed(self, queries: int) -> "TreePlan":
        return TreePlan(query_nodes=self.query_nodes[:, :queries], off_chain=self.off_chain[:, :queries],
                        predicts=self.predicts[:, :queries], lane_queries=self.lane_queries)


@dataclass(frozen=True)
class Plan:
    """What `scheduler.plan` decided for one pass, per image; lane-level facts `advance` needs."""

    batch: PassBatch
    live: torch.Tensor  # (B, S) live slots in this pass (its own writes included)
    active: torch.Tensor  # (B, Q) real (non-padding) queries
    cell_lane: torch.Tensor  # (B, H) the cell lane of row r ran
    open_lane: torch.Tensor  # (B, H) the opener of row r ran
    open_final: torch.Tensor  # (B, H) row r-1 is complete: an opening of row r is final (common.zipar.openers)
    feeds_last: torch.Tensor  # (B, H) (r, W-1) is fed in this pass
    above: torch.Tensor  # (B, H) tokens of row r-1 before the pass (W for row 0)
    # row drafts only (None without them): what the drafts' checks, visibility and bookkeeping read
    query_rows: torch.Tensor | None  # (B, Q) grid row of each cell-lane query (H for openers, feeds, padding)
    draft_fed: torch.Tensor | None  # (B, Q) the query is fed a row draft (its slot is not live to others)
    draft_slots: torch.Tensor | None  # (B, S) slots written by draft-fed queries in this pass
    cell_queries: torch.Tensor | None  # (B, H) queries of row r's cell lane in this pass
    query_cols: torch.Tensor | None  # (B, Q) grid column each cell-lane query decides (W for the others;
    # drafting ahead only)
    tree: TreePlan | None = None  # a candidate tree's queries (None without one)

    def trimmed(self, queries: int) -> "Plan":
        """The plan with its padding cut to `queries` per image (active queries come first)."""
        b = self.batch
        cut = lambda t: None if t is None else t[:, :queries]  # noqa: E731
        batch = replace(b, slots=cut(b.slots), positions=cut(b.positions), sources=cut(b.sources),
                        sample_rows=cut(b.sample_rows), cells=cut(b.cells), kinds=cut(b.kinds), attempts=cut(b.attempts))
        tree = None if self.tree is None else self.tree.trimmed(queries)
        return replace(self, batch=batch, active=cut(self.active), query_rows=cut(self.query_rows),
                       draft_fed=cut(self.draft_fed), query_cols=cut(self.query_cols), tree=tree)


@dataclass(frozen=True)
class RowsKept:
    """What a pass's row-draft checks decided for the schedule (common.zipar.row_drafts.keep), applied
    by `scheduler.advance`."""

    gain: torch.Tensor  # (B, H) int64 tokens each row's cell lane kept
    drafts: torch.Tensor  # (B, H) int64 drafts each row holds after the pass
    rejected: torch.Tensor  # (B,) int64 rows whose lane a rejected draft cut short
    live_slots: torch.Tensor  # (B, Q) bool: the query's slot (plan.batch.slots) now holds a kept draft's entry


@dataclass
class RowDrafts:
    """The state row drafts own: the ring of the distributions the drafts were drawn from."""

    probs: torch.Tensor  # (B, R*L + 1, V) stored q vectors (Q_STORED entries)
    kinds: torch.Tensor  # (B, R*L + 1) which q each entry holds: Q_STORED, Q_POINT or Q_UNIFORM


@dataclass
class TreeDrafts:
    """The state a candidate tree owns besides its token-buffer columns (common.zipar.tree_drafts)."""

    nodes: TreeNodes  # the tree's geometry
    valid: torch.Tensor  # (B, H, T, K-1) bool: the sibling exists (its draft's q had mass left for it)
    uncached: torch.Tensor  # (B, H) int64 decided tokens before each row's last one with no entry in the cache


@dataclass
class DecodeState:
    """Everything a decode holds between passes; created by `engine.start_decode`, advanced by
    `engine.decode_steps`."""

    layout: Layout
    config: DecodeConfig
    scheduler: Scheduler  # the schedule's constants
    schedule: ScheduleState  # per-image schedule state (device tensors)
    seeds: torch.Tensor  # (B,) int64
    seed_keys: torch.Tensor  # (B,) the seed half of every draw key (common.zipar.sampling.seed_key)
    purposes: torch.Tensor  # (P,) the draw purposes each query's keys are made for: the token, and (adaptive
    # windows, row drafts) the acceptance test and the resample
    tokens: torch.Tensor  # (B, width) int64: grid tokens, end-of-row tokens, placeholder code, trash column
    cache: KVCache
    condition: Condition
    prefix_keys: torch.Tensor | None  # (B_model, S) bool: False for padded condition slots
    min_passes: int  # passes run without asking whether the decode is done (fixed windows: all of them)
    step: Callable  # engine.decode_pass, or its torch.compile'd version
    pass_sizes: list[int] | None  # eager fixed windows: queries of each pass (no padding); else None
    trim_on_host: bool  # eager adaptive on CPU: cut each pass's padding (reading its size back is free there)
    draws: torch.Tensor | None = None  # (B, width) int64 times each cell was drawn: the attempt of its keys
    opener_probs: torch.Tensor | None = None  # (B, V) adaptive: distribution the pending opening was drawn from
    row_drafts: RowDrafts | None = None  # the row drafts' distributions (common.zipar.row_drafts)
    tree_drafts: TreeDrafts | None = None  # a candidate tree's siblings and catch-up (common.zipar.tree_drafts)
    buffers: StepBuffers | None = None  # compiled steps: the caller's buffers kept across decodes of this shape
    passes_run: int = 0
    host_reads: int = 0  # per-image schedules: times the decode read the schedule back to the host


@dataclass(frozen=True)
class PassRecord:
    """What one forward pass did; its tensors are the caller's: later passes do not overwrite them (eager
    steps make them afresh each pass; a compiled step's outputs are copied, as CUDA graphs replay into
    the same memory)."""

    index: int
    batch: PassBatch  # queries: slots, positions, decided cells (leading dim B, or 1 in the prefix pass)
    input_ids: torch.Tensor  # (B_model, Q) token fed per query; -1 for condition-prefix queries
    mask: torch.Tensor  # (B_model, Q, S) bool
    logits: torch.Tensor  # (B_model, Q, V) raw model logits, cond rows first, uncond rows after
    decided: torch.Tensor  # (B, n) tokens decided for batch.cells (drafts included)
    accepted: torch.Tensor | None  # (B, n) adaptive: verification outcome where kinds == VERIFY
    tokens: torch.Tensor  # (B, width) the token buffer after the pass (a copy; row drafts included)
    draws: torch.Tensor  # (B, width) times each buffer column was written (drawn or started) so far (a copy)


@dataclass(frozen=True)
class DecodeResult:
    tokens: torch.Tensor  # (B, H, W) int64
    forward_passes: int  # passes the batch ran (its slowest image)
    image_passes: list[int]  # passes each image needed
    accepted_windows: list[list[int]] | None = None  # adaptive: per image, the window row r+1 was accepted at
    rejections: list[int] | None = None  # adaptive: per image, rejected pending openings (opener_rejections)
    # row drafts: per image, tokens a row's cell lane decided per pass it ran (1 without drafts), over
    # all rows and per row (row 0 first), and the rejected row drafts
    tokens_per_row_pass: list[float] | None = None
    row_tokens_per_pass: list[list[float]] | None = None
    draft_rejections: list[int] | None = None
    host_reads: int = 0  # times the decode loop read the schedule back to the host (0 for fixed windows)
