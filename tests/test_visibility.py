"""The visibility rule in every mode, against a brute force over real decode records: adaptive openers,
compat="official", row drafts (tests/test_schedule.py covers fixed windows from the pass table).

The brute force knows only what each slot holds, replayed from the records, and the rules as the
docstrings of common.zipar.masks and common.zipar.scheduler state them:
  - a query reads slots at positions <= its own, never the scratch slot;
  - a slot written in this pass is read by every such query if the token fed there was decided before
    the pass (or is a prefix, end-of-row or placeholder input); if it was a row draft, only by the
    queries of the writer's own grid row;
  - a slot written earlier is read if its entry holds a decided token: fed one, or fed a draft that
    was kept in the pass that fed it (a rejected or redrafted draft's entry is dead until rewritten);
  - a placeholder opener's entry is read until the real (r-1, W-1) is fed, which retires it;
  - compat: every regular slot never written is read too (the released code attends to zero cache
    entries), except the real (r-1, W-1) while row r's placeholder stands for it.
"""
import pytest
import torch

from common.zipar.config import DecodeConfig
from common.zipar.layout import Layout
from llamagen.generate import layout_for
from tests.helpers.llamagen import tiny_gpt
from tests.helpers.records import decode_records, decided_at, pick


def cell_lane_row(layout, slot, cell):
    """The grid row of a query that is fed a cell of row r and decides a cell of row r; None for the
    prefix, openers (fed row r-1, decide row r), feeds and padding."""
    T, W, stride = layout.prefix_len, layout.cols, layout.row_stride
    if not T <= slot < T + layout.rows * stride or (slot - T) % stride >= W or cell >= layout.num_cells:
        return None
    row = (slot - T) // stride
    return row if cell // W == row else None


def expected_visibility(state, records, b):
    """Yield (pass, query, slots it may read) for image b's real queries, by the rules above."""
    layout, sch = state.layout, state.scheduler
    N, scratch = layout.num_cells, sch.slot_map.scratch
    # a regular slot's position is its index; a placeholder's is that of the real (r-1, W-1) it stands for
    position = sch.slot_map.slot_positions.tolist()
    compat = state.config.compat == "official"
    done = decided_at(records, len(state.seeds), N)[b].tolist()
    final = state.tokens[b].tolist()
    holds = {}  # slot -> whether its latest entry holds a decided token
    for rec in records:
        k = rec.index
        slots, sources = pick(rec.batch.slots, b).tolist(), pick(rec.batch.sources, b).tolist()
        fed, cells = rec.input_ids[b].tolist(), [N] * len(slots)  # the cell each query decides (N: none)
        for q, c in zip(pick(rec.batch.sample_rows, b).tolist(), pick(rec.batch.cells, b).tolist()):
            cells[q] = c
        real = [q for q, s in enumerate(slots) if s != scratch]
        draft_fed = {q: 0 <= sources[q] < N and done[sources[q]] >= k for q in real}
        row = {q: cell_lane_row(layout, slots[q], cells[q]) for q in real}
        written = {slots[q]: q for q in real}
        # regular slots holding a decided token, this pass's writes included (they retire placeholders)
        filled = {s for s, ok in holds.items() if ok and s < sch.slot_map.opener_base} | \
                 {s for s, q in written.items() if not draft_fed[q] and s < sch.slot_map.opener_base}
        placeholders = {s for s in set(holds) | set(written) if sch.slot_map.opener_base <= s < scratch}
        shadowed = {position[p] for p in placeholders if position[p] not in filled}
        for q in real:
            visible = set()
            for s in range(sch.slot_map.num_slots):
                if s == scratch or position[s] > position[slots[q]]:
                    continue
                if s in written:
                    w = written[s]
                    ok = not draft_fed[w] or (row[w] is not None and row[w] == row[q])
                elif sch.slot_map.opener_base <= s:  # a placeholder written earlier, until the real token is fed
                    ok = holds.get(s, False) and position[s] not in filled
                elif s in holds:
                    ok = holds[s]
                else:
                    ok = compat and s not in shadowed
                if ok:
                    visible.add(s)
            yield k, q, visible
        for q in real:
            src = sources[q]
            holds[slots[q]] = not draft_fed[q] or (done[src] == k and fed[q] == final[src])


def assert_masks_match(state, records):
    B = len(state.seeds)
    for b in range(B):
        by_pass = {rec.index: rec for rec in records}
        for k, q, visible in expected_visibility(state, records, b):
            mask = by_pass[k].mask
            got = set(pick(mask, b)[q].nonzero()[:, 0].tolist())
            assert got == visible, (b, k, q, sorted(got ^ visible))
            if mask.shape[0] == 2 * B:  # the unconditional half reads what the conditional half reads
                assert torch.equal(mask[b + B, q], mask[b, q])


PLAIN = [("fixed", dict(window=2)), ("adaptive", dict(window=1, adaptive=True)),
         ("adaptive-w2", dict(window=2, adaptive=True)),
         ("adaptive-early", dict(window=1, adaptive=True, first_row="early"))]


@pytest.mark.parametrize("placeholder", ["above", "left", "mean", "token:3"])
@pytest.mark.parametrize("name,mode", PLAIN, ids=[n for n, _ in PLAIN])
def test_adaptive_and_fixed_masks_match_brute_force(name, mode, placeholder):
    gpt = tiny_gpt(5, seed=3)
    config = DecodeConfig(**mode, placeholder=placeholder, cfg_scale=2.0, temperature=1.5)
    state, records = decode_records(gpt, layout_for(gpt), config, torch.tensor([1, 4, 7]), torch.tensor([2, 5, 8]))
    assert_masks_match(state, records)
    if config.adaptive and placeholder in ("above", "left"):  # a fixed stand-in is accepted at once here
        assert int(state.schedule.opener_rejections.sum()) > 0  # openers were really re-run


@pytest.mark.parametrize("grid,window", [(4, 1), (5, 2), (6, 3), (5, 4)])
def test_compat_masks_match_brute_force(grid, window):
    gpt = tiny_gpt(grid, seed=grid)
    config = DecodeConfig(window=window, compat="official", cfg_scale=2.0)
    state, records = decode_records(gpt, layout_for(gpt), config, torch.tensor([1, 2]), torch.tensor([3, 4]))
    assert_masks_match(state, records)


DRAFTED = [("ntp", dict(window=None), 2, "above"), ("fixed", dict(window=1), 3, "left"),
           ("fixed-early", dict(window=2, first_row="early"), 2, "random"),
           ("adaptive", dict(window=1, adaptive=True), 3, "above"),
           ("adaptive-early", dict(window=1, adaptive=True, first_row="early"), 1, "left")]


@pytest.mark.parametrize("name,mode,draft_len,init", DRAFTED, ids=[d[0] for d in DRAFTED])
def test_row_draft_masks_match_brute_force(name, mode, draft_len, init):
    gpt = tiny_gpt(6, seed=2)
    config = DecodeConfig(**mode, draft_len=draft_len, draft_init=init, cfg_scale=2.0, temperature=1.5)
    state, records = decode_records(gpt, layout_for(gpt), config, torch.tensor([0, 3, 5]), torch.tensor([9, 10, 11]))
    assert_masks_match(state, records)
    assert int(state.schedule.draft_rejections.sum()) > 0  # dead draft entries were really left behind


def test_end_of_row_layout_masks_match_brute_force():
    gpt = tiny_gpt(5, preset="GPT-tiny-gqa", cls_token_num=2)
    layout = Layout(4, 5, 2, end_of_row=True)
    for config in (DecodeConfig(window=1, adaptive=True, cfg_scale=2.0, temperature=1.5),
                   DecodeConfig(window=2, adaptive=True, draft_len=2, temperature=1.5)):
        state, records = decode_records(gpt, layout, config, torch.tensor([1, 2]), torch.tensor([4, 5]),
                                        torch.full((4,), 63))
        assert_masks_match(state, records)
