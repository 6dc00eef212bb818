"""Schedule and masks against brute-force derivations from the rules as the paper and the issue state them."""
import itertools

import numpy as np
import pytest
import torch

from common.zipar.config import DecodeConfig
from common.zipar.engine import decode_steps, start_decode
from common.zipar.layout import Layout
from common.zipar.window import decode_pass_table, first_row_rule, num_passes, row_windows
from tests.helpers.llamagen import formula_passes, tiny_gpt

GRIDS = [(1, 1), (1, 5), (4, 1), (3, 4), (5, 5), (4, 7), (24, 24)]


def simulate(H, W, w, first_row_whole=False):
    """Greedy pass-by-pass simulation of the rule: (r, c) may be decoded once (r, c-1) is and row r-1
    holds min(c + w, W) tokens; every allowed cell is decoded in the same pass."""
    counts = [0] * H
    table = np.full((H, W), -1)
    k = 0
    while min(counts) < W:
        before = list(counts)
        for r in range(H):
            c = before[r]
            if c == W:
                continue
            need = W if (first_row_whole and r == 1) else min(c + w, W)
            if r == 0 or before[r - 1] >= need:
                table[r, c] = k
                counts[r] += 1
        k += 1
    return table, k


@pytest.mark.parametrize("first_row", ["serial", "early"])
@pytest.mark.parametrize("H,W", GRIDS)
def test_pass_table_matches_brute_force_and_formula_passes(H, W, first_row):
    layout = Layout(H, W, prefix_len=1)
    for w in sorted({1, 2, max(W - 1, 1), W, W + 3}):
        table = decode_pass_table(layout, row_windows(layout, w, first_row=first_row))
        ref, passes = simulate(H, W, min(w, W), first_row_whole=first_row == "serial")
        assert np.array_equal(table, ref)
        assert num_passes(layout, w, first_row=first_row) == passes == formula_passes(H, W, w, first_row)


def test_paper_numbers():
    # Table 1 of the paper: LlamaGen-L (24x24) ZipAR-16 takes 2*24 + 22*17 = 422 steps adaptively, i.e.
    # its fixed schedule is 2W + (H-2)w: 400 at w = 16, the released code's count too
    assert num_passes(Layout(24, 24, 1), 16) == 400 == 2 * 24 + 22 * 16
    assert num_passes(Layout(24, 24, 1), 16, first_row="early") == 392
    assert num_passes(Layout(24, 24, 1, family="llamagen"), 16, compat="official") == 400
    assert num_passes(Layout(24, 24, 1, family="llamagen"), 8, compat="official") == 224  # landscape.md: 224 at w=8
    assert num_passes(Layout(16, 16, 1), 8) == 2 * 16 + 14 * 8
    assert num_passes(Layout(16, 16, 1), 8, first_row="early") == 136
    # end-of-row layouts (Lumina-mGPT 768 px) open row 1 early by default; serial on request
    assert num_passes(Layout(48, 48, 30, end_of_row=True), 14) == 47 * 14 + 48
    assert num_passes(Layout(48, 48, 30, end_of_row=True), 14, first_row="serial") == 2 * 48 + 46 * 14
    # the released Lumina-mGPT code: zipar_window_size w opens a row after w - 1 tokens of the one above,
    # row 0 included: (H-1)(w-1) + W image passes (ThisisBillhe/ZipAR Lumina-mGPT-ZipAR, its own count)
    lumina = Layout(48, 48, 30, end_of_row=True, family="lumina-mgpt")
    assert num_passes(lumina, 14, compat="official") == 47 * 13 + 48 == 659
    assert num_passes(lumina, 16, compat="official") == 753  # the fact sheet's count at the release's default
    assert num_passes(lumina, 49, compat="official") == 2304 == num_passes(lumina, None)


def test_first_row_rule_refusals():
    with pytest.raises(ValueError, match="first_row must be one of serial, early"):
        row_windows(Layout(3, 3, 1), 2, first_row="whole")
    for family in ("llamagen", "lumina-mgpt"):  # compat opens row 1 as the family's released code does
        for rule in ("serial", "early"):
            with pytest.raises(ValueError, match=f"first_row='{rule}'"):
                row_windows(Layout(3, 3, 1, family=family), 2, "official", first_row=rule)
    assert first_row_rule(Layout(3, 3, 1, family="llamagen"), compat="official") == "serial"
    assert first_row_rule(Layout(3, 3, 1, end_of_row=True, family="lumina-mgpt"), compat="official") == "early"
    with pytest.raises(ValueError, match="--first-row early"):
        DecodeConfig(window=2, compat="official", first_row="early")
    with pytest.raises(ValueError, match="first_row must be one of"):
        DecodeConfig(window=2, first_row="late")


@pytest.mark.parametrize("H,W", [(3, 4), (5, 5), (24, 24)])
def test_official_compat_schedule(H, W):
    layout = Layout(H, W, 1, family="llamagen")
    for w in (1, 2, W - 1):
        table = decode_pass_table(layout, row_windows(layout, w, "official"))
        ref, passes = simulate(H, W, w, first_row_whole=True)
        assert np.array_equal(table, ref)
        assert passes == 2 * W + (H - 2) * w
    # Lumina-mGPT's release counts the row's lead token: its window w is our w - 1, row 1 included
    layout = Layout(H, W, 1, end_of_row=True, family="lumina-mgpt")
    for w in (2, 3, W, W + 1):
        table = decode_pass_table(layout, row_windows(layout, w, "official"))
        ref, passes = simulate(H, W, w - 1)
        assert np.array_equal(table, ref)
        assert passes == (H - 1) * (w - 1) + W


def fixed_window_records(layout, w, compat=None, first_row=None):
    """The PassRecords of a fixed-window decode of one image with a tiny random model, and its state
    (compat on an end-of-row layout: the Lumina-mGPT release's schedule, with a causal prefix)."""
    gpt = tiny_gpt(max(layout.rows, layout.cols), cls_token_num=layout.prefix_len)
    attention = "causal" if compat and layout.end_of_row else None
    config = DecodeConfig(window=w, compat=compat, first_row=first_row, prompt_attention=attention)
    fixed = torch.full((layout.rows,), 62) if layout.end_of_row else None
    state = start_decode(gpt, gpt.embed_condition(torch.tensor([1])), torch.tensor([0]), layout, config, fixed)
    with torch.inference_mode():
        return list(decode_steps(gpt, state)), state


@pytest.mark.parametrize("first_row", [None, "serial", "early"])
def test_end_of_row_layout_same_schedule_and_passes(first_row):
    """Records counted against the formula; an end-of-row layout's default is the early first row."""
    for H, W, w in [(3, 4, 2), (5, 5, 1), (4, 6, 6)]:
        layout = Layout(H, W, 2, end_of_row=True)
        records, _ = fixed_window_records(layout, w, first_row=first_row)
        assert len(records) == num_passes(layout, w, first_row=first_row) == formula_passes(H, W, w, first_row or "early")


@pytest.mark.parametrize("first_row", [None, "serial", "early"])
def test_fixed_decode_runs_the_formula_passes(first_row):
    """A layout without end-of-row tokens defaults to the serial first row."""
    for H, W, w in [(3, 4, 2), (5, 5, 1), (4, 6, 3)]:
        records, _ = fixed_window_records(Layout(H, W, 2), w, first_row=first_row)
        assert len(records) == num_passes(Layout(H, W, 2), w, first_row=first_row) == formula_passes(
            H, W, w, first_row or "serial")


def test_invalid_window():
    with pytest.raises(ValueError, match="window"):
        row_windows(Layout(3, 3, 1), 0)
    for w in (3, 4):  # the released code copies a token at w = W and fails above
        with pytest.raises(ValueError, match="window < W"):
            row_windows(Layout(3, 3, 1, family="llamagen"), w, "official")
    for w in (1, 5):  # the released Lumina-mGPT code never opens row 1 there
        with pytest.raises(ValueError, match=r"zipar_window_size, 2 <= window <= W \+ 1 = 4"):
            row_windows(Layout(3, 3, 1, end_of_row=True, family="lumina-mgpt"), w, "official")
    for family in ("emu3", None):  # no released ZipAR code
        with pytest.raises(ValueError, match="exists for llamagen, lumina-mgpt"):
            row_windows(Layout(3, 3, 1, end_of_row=True, family=family), 2, "official")
    with pytest.raises(ValueError, match="drop --ntp"):
        row_windows(Layout(3, 3, 1, family="llamagen"), None, "official")


def brute_force_visible(layout, table, k, query_pos, compat):
    """Positions (and kinds) a query may read in pass k, derived from the decoded sets alone. compat: the
    LlamaGen release's mask, which reads every slot (unwritten ones hold zeros)."""
    H, W, T = layout.rows, layout.cols, layout.prefix_len
    seen = set()
    for t in range(T):
        if compat or t <= query_pos:
            seen.add(("slot", t))
    for r, c in itertools.product(range(H), range(W)):
        pos = layout.cell_position(r, c)
        if c == W - 1 and r < H - 1 and not layout.end_of_row:
            opened, real_known = table[r + 1, 0] <= k, table[r, W - 1] < k
            placeholder_live = opened and not real_known and table[r + 1, 0] <= table[r, W - 1]
            if placeholder_live:
                seen.add(("placeholder", pos))
                continue
        if compat or table[r, c] < k or pos == query_pos:
            seen.add(("slot", pos))
    if layout.end_of_row:
        for r in range(H - 1):
            if compat or table[r + 1, 0] <= k:
                seen.add(("slot", layout.cell_position(r, W)))
    return {(kind, p) for kind, p in seen if p <= query_pos}


LLAMAGEN_CASES = [(3, 4, 1, False), (4, 5, 2, False), (4, 4, 4, False), (5, 6, 3, False)]
COMPAT_CASES = [(3, 4, 1, False), (4, 5, 2, False), (4, 4, 3, False), (5, 6, 3, False)]  # LlamaGen: w < W
LUMINA_COMPAT_CASES = [(3, 4, 2, True), (4, 3, 4, True), (5, 6, 3, True)]  # the release's 2 <= w <= W + 1


# compat follows the family's released code: LlamaGen's (no end-of-row tokens) reads unwritten slots,
# Lumina-mGPT's (end-of-row) only written ones; both first-row rules are the release's (--first-row refused)
@pytest.mark.parametrize("H,W,w,eor,compat,first_row",
                         [c + (None, rule) for c in LLAMAGEN_CASES + [(3, 4, 2, True), (4, 3, 1, True)]
                          for rule in ("serial", "early")]
                         + [c + ("official", None) for c in COMPAT_CASES + LUMINA_COMPAT_CASES])
def test_masks_match_brute_force(H, W, w, eor, compat, first_row):
    """The scheduler's masks, pass by pass, against the visibility derived from the pass table."""
    layout = Layout(H, W, prefix_len=2, end_of_row=eor, family="lumina-mgpt" if eor else "llamagen")
    table = decode_pass_table(layout, row_windows(layout, w, compat, first_row))
    records, state = fixed_window_records(layout, w, compat, first_row)
    sched = state.scheduler
    positions = sched.slot_map.slot_positions.tolist()
    for rec in records:
        for i, (slot, p) in enumerate(zip(rec.batch.slots[0].tolist(), rec.batch.positions[0].tolist())):
            if slot == sched.slot_map.scratch:
                continue  # inert padding
            # a list, not a set: two readable slots at one position (a never-written slot left at
            # position 0 beside prefix slot 0, say) must show up as a difference
            got = sorted(("placeholder" if s >= sched.slot_map.opener_base else "slot", positions[s])
                         for s in np.nonzero(rec.mask[0, i].numpy())[0])
            reads_unwritten = compat is not None and not eor
            assert got == sorted(brute_force_visible(layout, table, rec.index, p, reads_unwritten)), (rec.index, p)


@pytest.mark.parametrize("first_row", ["serial", "early"])
@pytest.mark.parametrize("H,W,w", [(4, 5, 2), (6, 6, 1), (5, 8, 3)])
def test_every_slot_written_once_and_each_cell_sampled_once(H, W, w, first_row):
    layout = Layout(H, W, 1)
    records, state = fixed_window_records(layout, w, first_row=first_row)
    scratch, trash = state.scheduler.slot_map.scratch, state.scheduler.slot_map.trash
    slots = [s for r in records for s in r.batch.slots[0].tolist() if s != scratch]
    assert len(slots) == len(set(slots))
    decided_at = {}
    for r in records:
        for c in r.batch.cells[0].tolist():
            if c != trash:
                assert c not in decided_at, f"cell {c} decided twice"
                decided_at[c] = r.index
    assert sorted(decided_at) == list(range(H * W))
    assert all(decided_at[r * W + c] == table for (r, c), table in np.ndenumerate(decode_pass_table(
        layout, row_windows(layout, w, first_row=first_row))))


def test_one_window_rule_for_fixed_adaptive_and_the_pass_table(monkeypatch, request):
    """Change the rule in its one place (common.zipar.window.window_allows): fixed decodes, adaptive
    decodes and the pass table all follow it. Here: one token more of the row above is needed."""
    from common.zipar import window
    from common.zipar.scheduler import fixed_dry_run
    from llamagen.generate import generate, layout_for

    def one_more(count_above, col, window, cols):
        return (count_above >= col + window + 1) | (count_above >= cols)

    gpt = tiny_gpt(6)
    layout = layout_for(gpt)
    labels, seeds = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    plain_fixed = generate(gpt, labels, seeds, DecodeConfig(window=2))
    plain_adaptive = generate(gpt, labels, seeds, DecodeConfig(window=2, adaptive=True))
    monkeypatch.setattr(window, "window_allows", one_more)
    fixed_dry_run.cache_clear()  # remembered pass sizes hold for the rule they were found with
    request.addfinalizer(fixed_dry_run.cache_clear)
    fixed = generate(gpt, labels, seeds, DecodeConfig(window=2))
    adaptive = generate(gpt, labels, seeds, DecodeConfig(window=2, adaptive=True))
    assert plain_fixed.forward_passes == 2 * 6 + 4 * 2  # serial first row
    assert fixed.forward_passes == num_passes(layout, 2) == 2 * 6 + 4 * 3  # the table follows the patched rule
    # adaptive drafts open one pass later, so every accepted window is at least w_min + 2
    assert min(min(w) for w in plain_adaptive.accepted_windows) == 3
    assert min(min(w) for w in adaptive.accepted_windows) >= 4
