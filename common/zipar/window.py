"""The ZipAR window rule and what follows from it: row windows, the pass table and the pass count
(paper section 3.2).

Pure functions of the token layout (common.zipar.layout) and the window. The rule (`window_allows`):
cell (r, c) may be decoded once (r, c-1) is decoded and row r-1 holds at least min(c + w_r, W) decoded
tokens, w_r being the window row r follows row r-1 with. Every pass decodes every cell the rule allows,
so the number of passes is the critical path of the rule, counting the prefill pass that yields cell
(0, 0). Plain next-token prediction is the same schedule with w = W.

The first-row rule (`FIRST_ROW_RULES`, `first_row_rule`) sets w_1, the window of the row 0 -> row 1
transition, the one place it is decided:
  serial  row 1 opens when row 0 is complete (w_1 = W): 2W + (H-2)*w passes. The paper's pass counts
          (Table 1: LlamaGen-L ZipAR-16 takes 422 = 2*24 + 22*17 steps with adaptive windows) and its
          released LlamaGen code use it. Default for layouts without end-of-row tokens (LlamaGen): row 1's
          opening query otherwise has no row above to take a placeholder from, and on the demo model the
          early start costs about twice the digits-FID at w = 16 (benchmarks/results/tradeoff.md).
  early   row 1 follows row 0 at the window like every other row: (H-1)*w + W passes. Default for
          end-of-row layouts (Lumina-mGPT, Emu3), whose openers are fed the real end-of-row token and
          whose released Lumina-mGPT code opens row 1 early.

`compat="official"` reproduces the family's released code (common.zipar.official holds each family's
rule): its first-row rule (LlamaGen serial, Lumina-mGPT early), its window numbering and the windows
it runs (`schedule_window`). LlamaGen's counts decided tokens as ours and runs 2 <= w < W (w = 1, where
it fails an assertion, is our extension; at w = W it copies a token instead of sampling it, above W it
raises IndexError; refused). Lumina-mGPT's zipar_window_size counts the row's lead token too, so it is
our w + 1, and runs 2 <= w <= W + 1: (H-1)(w-1) + W image passes (659 at 48 x 48, w = 14).
"""
import numpy as np

from common.zipar.layout import Layout
from common.zipar.official import rule_for
from common.zipar.tree_nodes import level_start

FIRST_ROW_RULES = ("serial", "early")


def check_first_row(first_row: str | None, compat: str | None = None) -> None:
    """Refuse a first-row rule that is not one, or one given with compat="official" (the released code's)."""
    if first_row not in (None, *FIRST_ROW_RULES):
        raise ValueError(f"first_row must be one of {', '.join(FIRST_ROW_RULES)} (or None: the layout's default), "
                         f"got {first_row!r}")
    if compat == "official" and first_row is not None:
        raise ValueError(f"compat='official' opens row 1 as the released code does (LlamaGen: once row 0 is "
                         f"complete; Lumina-mGPT: at the window); drop first_row={first_row!r} "
                         f"(--first-row {first_row})")


def first_row_rule(layout: Layout, first_row: str | None = None, compat: str | None = None) -> str:
    """The first-row rule a decode follows: `first_row` if given, else the layout's default (serial
    without end-of-row tokens, early with them); compat="official": the family's released code's."""
    check_first_row(first_row, compat)
    if compat == "official":
        return rule_for(layout.family).first_row
    return first_row or ("early" if layout.end_of_row else "serial")


def schedule_window(layout: Layout, window: int | None, compat: str | None = None) -> int:
    """The window the schedule runs (row r+1 opens once row r holds w decided tokens), clipped to W, from
    the one asked for: None is next-token prediction (W); under compat="official" `window` is in the
    released code's numbering, checked against the windows it runs (common.zipar.official)."""
    if compat not in (None, "official"):
        raise ValueError(f"compat must be None or 'official', got {compat!r}")
    if window is None:
        if compat == "official":
            raise ValueError("compat='official' reproduces the released ZipAR code at a window; drop --ntp")
        return layout.cols
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if compat == "official":
        rule = rule_for(layout.family)
        lo, hi = rule.window_range(layout.cols)
        if not lo <= window <= hi:
            raise ValueError(rule.window_refusal.format(lo=lo, hi=hi, cols=layout.cols, window=window))
        window -= rule.window_offset
    return min(window, layout.cols)


def row_windows(layout: Layout, window: int | None, compat: str | None = None,
                first_row: str | None = None) -> list[int]:
    """Window used to open each row r+1 (r = 0 .. H-2), clipped to W; row 1's by the first-row rule.
    `window` as asked for (see `schedule_window`)."""
    w = schedule_window(layout, window, compat)
    windows = [w] * (layout.rows - 1)
    if first_row_rule(layout, first_row, compat) == "serial" and windows:
        windows[0] = layout.cols
    return windows


def window_allows(count_above, col, window, cols):
    """The window rule, the one place it is written: (r, col) may be decoded once row r-1 holds
    min(col + window, W) tokens, i.e. col + window of them or all W. Elementwise on ints, numpy
    arrays and torch tensors; every schedule (fixed, adaptive, compat, the pass table) calls it."""
    return (count_above >= col + window) | (count_above >= cols)


def decode_pass_table(layout: Layout, windows: list[int]) -> np.ndarray:
    """(H, W) int array: the pass in which each cell is decided (pass 0 is the prefill).

    windows[r] is the window with which row r+1 follows row r. Greedy, as the decoder runs: every
    pass decides every cell the window rule allows given the cells decided before it.
    """
    H, W = layout.rows, layout.cols
    if len(windows) != H - 1:
        raise ValueError(f"need {H - 1} row windows, got {len(windows)}")
    window = np.array([W] + list(windows), dtype=np.int64)  # row 0 has no row above
    rows = np.arange(H)
    table = np.zeros((H, W), dtype=np.int64)
    count = np.zeros(H, dtype=np.int64)
    count[0] = 1  # (0, 0) comes from the prefill
    k = 0
    while count.min() < W:
        k += 1
        above = np.concatenate([[W], count[:-1]])
        step = (count < W) & window_allows(above, count, window, W)
        table[rows[step], count[step]] = k
        count += step
    return table


def num_passes(layout: Layout, window: int | None, compat: str | None = None, first_row: str | None = None) -> int:
    """Forward passes for the whole image: the critical path, prefill included (`window` as asked for,
    see `schedule_window`)."""
    return int(decode_pass_table(layout, row_windows(layout, window, compat, first_row)).max()) + 1


def queries_per_pass(layout: Layout, window: int, draft_len: int = 0, serial_first_row: bool = False,
                     tree: tuple[int, int] = (1, 0)) -> int:
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

    A candidate tree (width K, T depths: `tree`, DecodeConfig.tree_shape) adds E = K + ... + K^T
    queries to a row's cell lane at most (common.zipar.tree_drafts: its nodes off the chain and up to
    T catch-up feeds), and a row that completed in the pass before may feed T decided tokens again
    (the one row that can complete in a pass; with w >= W it shares its pass only with an opening,
    T + 2 <= L + 1 + E).
    """
    W = layout.cols
    w = min(window, W)
    width, depths = tree
    extra = level_start(width, depths + 1) if width > 1 else 0
    if w >= W:
        return max(draft_len + 1 + extra, 2 if layout.end_of_row else 1)
    return open_rows_bound(layout, w, serial_first_row) * (draft_len + 1 + extra) + 1 + depths


def open_rows_bound(layout: Layout, window: int, serial_first_row: bool = False) -> int:
    """The most rows holding 1..W-1 decided tokens (or opening) at once (see `queries_per_pass`)."""
    rows = max(layout.rows - 1, 1) if serial_first_row else layout.rows
    return min(rows, 1 + (layout.cols - 1) // max(window, 1))
