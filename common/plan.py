"""The query plan of a decode: per forward pass, which cache slots are fed with which tokens, and
which grid cell each query's logits sample; plus the per-slot tables from which masks are built.

Pure functions of (layout, pass table, placeholder policy, compat). The engine only executes a plan.

Slots (= cache indices):
  [0, T)                          condition prefix
  T + r*stride + c                grid cell (r, c); c == W is row r's end-of-row token (if any)
  T + H*stride + r                placeholder that stands for cell (r, W-1) (layouts without
                                  end-of-row tokens only), with the position of (r, W-1)
A regular slot's position is its index, whether or not it is ever written.

Rows without an end-of-row token (LlamaGen): cell (r+1, 0) is predicted by the query at the
position of (r, W-1). If that cell is not decoded yet when row r+1 opens, a placeholder
(common.placeholder) is fed there in a slot of its own. The real token is fed in the pass after it
is decoded; from that pass on, queries see the real entry and stop seeing the placeholder. No slot
is ever written twice, so every logit equals an uncached forward over the entries the query saw.
"""
from dataclasses import dataclass

import numpy as np
import torch

from common.placeholder import placeholder_source
from common.schedule import Layout, decode_pass_table, row_windows

NEVER = np.iinfo(np.int64).max // 2
PAD, DRAW, DRAFT, VERIFY = 0, 1, 2, 3  # kinds of decided queries (DRAFT/VERIFY: adaptive row openings)
PREFIX_SOURCE = -1  # the query's input is the condition embedding at its slot


@dataclass(frozen=True)
class PassQueries:
    """The queries of one forward pass, in increasing position."""

    slots: np.ndarray  # (Q,) cache slot each query writes
    positions: np.ndarray  # (Q,) sequence position (RoPE, raster order)
    sources: np.ndarray  # (Q,) token-buffer column fed as input, or PREFIX_SOURCE
    outputs: np.ndarray  # (Q,) grid cell (r*W + c) sampled from the query's logits, or -1


@dataclass(frozen=True)
class Plan:
    layout: Layout
    passes: list[PassQueries]
    slot_positions: np.ndarray  # (S,)
    vis_from: np.ndarray  # (S,) first pass in which the slot may be read
    vis_until: np.ndarray  # (S,) first pass in which it may no longer be read
    hide_from: np.ndarray  # (S,) compat only: pass range in which a placeholder shadows the slot
    hide_until: np.ndarray  # (S,)

    @property
    def num_slots(self) -> int:
        return len(self.slot_positions)

    @property
    def num_passes(self) -> int:
        return len(self.passes)


def placeholder_column(layout: Layout) -> int:
    """Token-buffer column holding the "token:<id>" placeholder code (or marking "mean")."""
    return layout.num_cells + (layout.rows if layout.end_of_row else 0)


def token_buffer_width(layout: Layout) -> int:
    """Columns of the engine's token buffer: the grid cells, one end-of-row token per row (if any),
    the placeholder column. The column after them is the trash column padding writes."""
    return placeholder_column(layout) + 1


def build_plan(layout: Layout, table: np.ndarray, placeholder: str = "above", compat: str | None = None) -> Plan:
    """Turn a pass table (see common.schedule.decode_pass_table) into per-pass queries and slot tables."""
    H, W, T = layout.rows, layout.cols, layout.prefix_len
    N = layout.num_cells
    num_regular = T + H * layout.row_stride
    num_slots = num_regular + (0 if layout.end_of_row else H)
    pos = np.zeros(num_slots, dtype=np.int64)
    pos[:num_regular] = np.arange(num_regular)  # also for slots never written (the last cell's)
    written = np.full(num_slots, NEVER, dtype=np.int64)
    retired = np.full(num_slots, NEVER, dtype=np.int64)
    hide_from = np.full(num_slots, NEVER, dtype=np.int64)
    hide_until = np.full(num_slots, NEVER, dtype=np.int64)
    regular = np.ones(num_slots, dtype=bool)
    regular[num_regular:] = False  # placeholder slots
    events = []  # (pass, slot, source, output)

    def query(k, slot, position, source, output):
        pos[slot] = position
        written[slot] = k
        events.append((k, slot, source, output))

    for t in range(T):
        query(0, t, t, PREFIX_SOURCE, 0 if t == T - 1 else -1)
    for r in range(H):
        for c in range(W - 1):
            query(table[r, c + 1], layout.cell_position(r, c), layout.cell_position(r, c), r * W + c, r * W + c + 1)
        if r == H - 1:
            break  # the last token is never fed back
        last, opens = layout.cell_position(r, W - 1), table[r + 1, 0]
        real_fed = table[r, W - 1] + 1
        if layout.end_of_row:
            query(real_fed, last, last, r * W + W - 1, -1)  # its logits would predict the fixed end-of-row token
            eol = layout.cell_position(r, W)
            query(opens, eol, eol, N + r, (r + 1) * W)
        elif opens >= real_fed:
            query(opens, last, last, r * W + W - 1, (r + 1) * W)
        else:
            ph = num_regular + r
            decided = (table < opens).sum(axis=1)  # tokens of each row decided before the opening pass
            source = placeholder_source(placeholder, r, decided, W, placeholder_column(layout))
            query(opens, ph, last, source, (r + 1) * W)
            query(real_fed, last, last, r * W + W - 1, -1)
            retired[ph] = real_fed
            hide_from[last], hide_until[last] = opens, real_fed
    if compat == "official":
        # the paper code attends to every slot up to the query's position, written or not (zeros),
        # and writes the placeholder into the real slot, which shadows it until the real token comes
        vis_from = np.where(regular, 0, written)
    else:
        vis_from = written
        hide_from[:] = NEVER
        hide_until[:] = NEVER
    # unused placeholder slots (rows whose last token came in time) keep position 0 and NEVER visibility
    events.sort(key=lambda e: (e[0], pos[e[1]]))
    num_passes = int(table.max()) + 1
    passes, i = [], 0
    for k in range(num_passes):
        j = i
        while j < len(events) and events[j][0] == k:
            j += 1
        block = np.array([e[1:] for e in events[i:j]], dtype=np.int64).reshape(-1, 3)
        passes.append(PassQueries(block[:, 0], pos[block[:, 0]], block[:, 1], block[:, 2]))
        i = j
    assert i == len(events), "a query was scheduled after the last pass"
    return Plan(layout, passes, pos, vis_from, retired, hide_from, hide_until)


@dataclass(frozen=True)
class SlotTables:
    """The plan's per-slot tables as tensors on the decode device."""

    positions: torch.Tensor
    vis_from: torch.Tensor
    vis_until: torch.Tensor
    hide_from: torch.Tensor
    hide_until: torch.Tensor

    @classmethod
    def from_plan(cls, plan: Plan, device) -> "SlotTables":
        as_t = lambda a: torch.as_tensor(a, dtype=torch.int64, device=device)  # noqa: E731
        return cls(as_t(plan.slot_positions), as_t(plan.vis_from), as_t(plan.vis_until),
                   as_t(plan.hide_from), as_t(plan.hide_until))


def attention_mask(tables: SlotTables, k: int, query_positions: torch.Tensor) -> torch.Tensor:
    """(..., Q, S) bool, True = attend: the slots a query at each position (..., Q) may read in pass k.

    A slot is readable when it is live in pass k (written, not yet superseded; in compat mode also
    unwritten zeros, minus slots shadowed by a placeholder) and its position is <= the query's.
    Slots written in pass k itself are live: their tokens were decoded in earlier passes.
    """
    live = (tables.vis_from <= k) & (k < tables.vis_until) & ~((tables.hide_from <= k) & (k < tables.hide_until))
    return live[..., None, :] & (tables.positions[..., None, :] <= query_positions[..., :, None])


@dataclass(frozen=True)
class PassBatch:
    """One forward pass for the batch, as device tensors whose leading dim is 1 (shared by every
    image) or B (per image, padded with inert queries)."""

    is_prefix: bool  # the condition prefix pass: inputs are the prefix embeddings at `slots`
    slots: torch.Tensor  # (b, Q) cache slots written
    positions: torch.Tensor  # (b, Q) sequence positions
    sources: torch.Tensor  # (b, Q) token-buffer columns fed
    mask: torch.Tensor  # (b, Q, S) True = attend
    sample_rows: torch.Tensor  # (b, n) queries whose logits decide a cell
    cells: torch.Tensor  # (b, n) the cell each decides (the trash column for padding)
    kinds: torch.Tensor | None = None  # (b, n) PAD/DRAW/DRAFT/VERIFY; None: all DRAW
    attempts: torch.Tensor | None = None  # (b, n) verification attempt, for counter-based keys


class FixedSchedule:
    """A fixed-window decode: replays one precomputed Plan for every image of the batch.

    static_shapes pads every decode pass to the plan's largest query and sample counts with inert
    queries (a scratch slot nobody reads, the trash token column), so that a compiled model or a
    CUDA graph sees one shape for all passes after the prefill; the tokens are unchanged.
    """

    def __init__(self, layout: Layout, config, batch: int, device, static_shapes: bool = False):
        windows = row_windows(layout, config.window_for(layout.cols), config.compat)
        self.plan = build_plan(layout, decode_pass_table(layout, windows), config.placeholder, config.compat)
        self.batch, self.next_index = batch, 0
        extra = 1 if static_shapes else 0  # the scratch slot: position 0, never live
        pad_slot = lambda a, fill: np.concatenate([a, np.full(extra, fill, dtype=np.int64)])  # noqa: E731
        p = self.plan
        self.tables = SlotTables.from_plan(Plan(
            p.layout, p.passes, pad_slot(p.slot_positions, 0), pad_slot(p.vis_from, NEVER),
            pad_slot(p.vis_until, NEVER), pad_slot(p.hide_from, NEVER), pad_slot(p.hide_until, NEVER)), device)
        self.num_slots = p.num_slots + extra
        decode_passes = p.passes[1:]
        q_max = max((len(q.slots) for q in decode_passes), default=0) if static_shapes else 0
        n_max = max((int((q.outputs >= 0).sum()) for q in decode_passes), default=0) if static_shapes else 0
        trash = token_buffer_width(layout)
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)[None]  # noqa: E731
        fill = lambda a, n, value: np.concatenate([a, np.full(max(n - len(a), 0), value, dtype=np.int64)])  # noqa: E731
        self._passes = []
        for k, q in enumerate(p.passes):
            rows = np.nonzero(q.outputs >= 0)[0]
            cells = q.outputs[rows]
            qn, nn = (q_max, n_max) if k > 0 else (0, 0)
            self._passes.append((as_t(fill(q.slots, qn, p.num_slots)), as_t(fill(q.positions, qn, 0)),
                                 as_t(fill(np.maximum(q.sources, 0), qn, 0)), as_t(fill(rows, nn, 0)),
                                 as_t(fill(cells, nn, trash))))

    def next_pass(self) -> PassBatch | None:
        k = self.next_index
        if k == len(self._passes):
            return None
        self.next_index += 1
        slots, positions, sources, rows, cells = self._passes[k]
        return PassBatch(k == 0, slots, positions, sources, attention_mask(self.tables, k, positions), rows, cells)

    def report(self) -> dict:
        return {"image_passes": [self.plan.num_passes] * self.batch}
