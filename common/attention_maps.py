"""Attention-map analysis (paper Fig. 3 and Fig. 5): record attention during a decode, then measure
where a token's attention goes on the 2D grid and which ZipAR window would keep most of it.

Recording is opt-in and per decode: `record_attention` sets `cache.recorder` for the duration of
the decode and removes it afterwards; with it off, attention runs through SDPA untouched (one
`is None` check per layer). The recorder recomputes softmax(q k^T / sqrt(d)) over the slots the
mask allows, on the selected layers and batch rows, and keeps it on the CPU, head-averaged or per head.

Conventions of the analysis functions (pure, numpy or torch in, numpy out). They take `probs`, one
image's dense (S, S) matrix from `attention_by_slot` (row = the query written at that slot), and a
common.zipar.window.Layout. The query that *generates* cell (r, c) is the one fed the token before it
(`generating_slots`): ZipAR's question is which earlier tokens that query needs. The window is
ZipAR's: with window w, when (r, c) is generated row r-1 holds columns 0 .. c+w-1 and, transitively,
row r-k holds columns 0 .. c+k*w-1 (clipped to W). Window 1 therefore covers the token right above.
"""
import math
from typing import Iterable

import numpy as np
import torch

from common.zipar.layout import Layout


class AttentionRecorder:
    """Called by common.zipar.kv_cache.cached_attention; keeps (slots (B, Q), probs (B, [H,] Q, S)) per layer.

    layers: which layers to keep (None: all). rows: model-batch rows to keep (None: all; with CFG,
    range(B) keeps the conditional branch). per_head: keep every head instead of their mean.
    """

    def __init__(self, layers: Iterable[int] | None = None, rows: Iterable[int] | None = None,
                 per_head: bool = False):
        self.layers = None if layers is None else set(layers)
        self.rows = None if rows is None else list(rows)
        self.per_head = per_head
        self.records: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __call__(self, layer: int, q: torch.Tensor, keys: torch.Tensor, bias: torch.Tensor,
                 slots: torch.Tensor) -> None:
        """q (B, H, Q, D), keys (B, Hkv, S, D) after this pass's writes, bias (B | 1, 1, Q, S) additive
        mask (common.zipar.kv_cache.attention_bias: 0 or -inf)."""
        if self.layers is not None and layer not in self.layers:
            return
        B, H, Q, D = q.shape
        k = keys.repeat_interleave(H // keys.shape[1], dim=1) if keys.shape[1] != H else keys
        scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(D)  # (B, H, Q, S)
        scores = scores + bias.float()
        probs = torch.softmax(scores, dim=-1)
        probs = probs if self.per_head else probs.mean(dim=1)
        slots = slots.reshape(-1, Q).expand(B, Q)
        if self.rows is not None:
            probs, slots = probs[self.rows], slots[self.rows]
        self.records.setdefault(layer, []).append((slots.cpu(), probs.cpu()))


def record_attention(model, state, recorder: AttentionRecorder) -> list:
    """Run the rest of a decode (common.zipar.engine.decode_steps) with `recorder` attached to its cache;
    the recorder is detached afterwards, also on error. Returns the PassRecords."""
    from common.zipar.engine import decode_steps
    state.cache.recorder = recorder
    try:
        return list(decode_steps(model, state))
    finally:
        state.cache.recorder = None


def attention_by_slot(recorder: AttentionRecorder, layer: int, num_slots: int) -> torch.Tensor:
    """(B, [H,] S, S): row s holds the attention of the query written at slot s (zeros where no query
    was written, e.g. scratch slots). In a plain NTP decode every slot is queried exactly once."""
    records = recorder.records.get(layer)
    if not records:
        raise ValueError(f"no attention recorded for layer {layer}; recorded layers: {sorted(recorder.records)}")
    B = records[0][0].shape[0]
    lead = records[0][1].shape[1:-2]  # (H,) per head, () head-averaged
    out = torch.zeros(B, *lead, num_slots, num_slots)
    for slots, probs in records:
        for b in range(B):
            if lead:
                out[b][:, slots[b]] = probs[b][..., :num_slots]
            else:
                out[b][slots[b]] = probs[b][..., :num_slots]
    return out


def cell_slots(layout: Layout) -> np.ndarray:
    """(H, W) cache slot (= sequence position) of each grid cell."""
    r, c = np.meshgrid(np.arange(layout.rows), np.arange(layout.cols), indexing="ij")
    return layout.prefix_len + r * layout.row_stride + c


def generating_slots(layout: Layout) -> np.ndarray:
    """(H, W) slot of the query that generates each cell: the token before it in the sequence
    (the last prefix slot for (0, 0); the end-of-row token, or the previous row's last cell, for c = 0)."""
    return cell_slots(layout) - 1


def grid_heatmap(probs: np.ndarray, layout: Layout, r: int, c: int) -> np.ndarray:
    """(H, W) attention of the query generating cell (r, c) over the grid cells (prefix excluded;
    cells it cannot see are 0)."""
    probs = np.asarray(probs)
    return probs[generating_slots(layout)[r, c]][cell_slots(layout)]


def _grid_attention(probs: np.ndarray, layout: Layout) -> np.ndarray:
    """(H, W, H, W): attention of the query generating (r, c) on cell (r', c')."""
    probs = np.asarray(probs)
    return probs[generating_slots(layout)][:, :, cell_slots(layout)]


def offset_mass(probs: np.ndarray, layout: Layout) -> np.ndarray:
    """(H, 2W-1) mean attention mass by offset of the key cell from the generated cell (r, c):
    entry [H-1+dr, W-1+dc] is the mean over generated cells of the mass on cell (r+dr, c+dc)
    (dr <= 0). [H-2, W-1] is the same column of the previous row; [H-1, W-2] the left neighbour."""
    H, W = layout.rows, layout.cols
    att = _grid_attention(probs, layout)
    out = np.zeros((2 * H - 1, 2 * W - 1))
    for r in range(H):
        for c in range(W):
            # key (r', c') lands at [H-1 + r'-r, W-1 + c'-c]; rows below r hold no mass (causal)
            out[H - 1 - r:2 * H - 1 - r, W - 1 - c:2 * W - 1 - c] += att[r, c]
    return out[:H] / (H * W)


def prefix_share(probs: np.ndarray, layout: Layout) -> np.ndarray:
    """(H, W) share of attention the query generating each cell puts on the condition prefix."""
    probs = np.asarray(probs)
    return probs[generating_slots(layout)][:, :, :layout.prefix_len].sum(-1)


def window_needed(probs: np.ndarray, layout: Layout, coverage: float = 0.95,
                  scope: str = "previous_row") -> np.ndarray:
    """(H, W) int: per generated cell (r, c), the smallest ZipAR window w (1 .. W) whose visible
    cells keep `coverage` of the attention the generating query puts on
    scope="previous_row": row r-1 (visible: columns < c+w);
    scope="earlier_rows": all rows above (row r-k visible: columns < c+k*w).
    Row 0 has no row above: 0. A query with no mass in scope needs only w = 1. The generating query's
    own slot is not counted (at column 0 it is the previous row's last cell). The window is a
    relative measure: uniform attention on the previous row needs w = ceil(coverage*W) - c."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    if scope not in ("previous_row", "earlier_rows"):
        raise ValueError(f"scope must be 'previous_row' or 'earlier_rows', got {scope!r}")
    H, W = layout.rows, layout.cols
    att = _grid_attention(probs, layout).copy()
    # the query's own token is fed to it, never waited for: at column 0 (no end-of-row token) the
    # generating query sits on the previous row's last cell, whose mass must not demand window W
    gen, cells = generating_slots(layout), cell_slots(layout)
    for r in range(1, H):
        own = np.argwhere(cells == gen[r, 0])
        if len(own):
            att[r, 0, own[0][0], own[0][1]] = 0
    need = np.zeros((H, W), dtype=np.int64)
    cols = np.arange(W)
    for r in range(1, H):
        for c in range(W):
            rows = [r - 1] if scope == "previous_row" else list(range(r))
            mass = att[r, c, rows]  # (k, W) rows r-1, ... in order of `rows`
            depth = (r - np.array(rows))[:, None]  # k for row r-k
            total = mass.sum()
            need[r, c] = 1
            if total <= 0:
                continue
            for w in range(1, W + 1):
                kept = mass[cols[None, :] < np.minimum(c + depth * w, W)].sum()
                if kept >= coverage * total - 1e-12:
                    need[r, c] = w
                    break
    return need


def covering_window(windows: np.ndarray, fraction: float) -> int:
    """The smallest fixed window at least as large as the needed window at `fraction` of positions
    (rows r >= 1 only)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    values = np.sort(np.asarray(windows)[1:].reshape(-1))
    return int(values[max(0, math.ceil(fraction * len(values)) - 1)])
