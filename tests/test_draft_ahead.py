"""Drafting ahead (DecodeConfig.draft_ahead, common.zipar.row_drafts): a row's cell lane and its new
drafts reach into the cells the row above drafted, as far as the window rule allows, and so a model
whose rows reject drafts needs fewer passes than without it (counted from the rules, written here)."""
import pytest
import torch

from common.zipar.config import DecodeConfig
from common.zipar.layout import Layout
from common.zipar.scheduler import draft_lanes, initial_state, plan
from common.zipar.state import Scheduler
from llamagen.generate import generate
from tests.helpers.llamagen import CountingModel, tiny_gpt


def allows(seen, col, window, W):
    """(r, col) may be decided once the row above shows min(col + window, W) tokens."""
    return seen >= min(col + window, W)


class CellCodeModel(CountingModel):
    """Every query predicts with certainty code(row, col) of the cell it decides (read from its
    position): a draft is kept exactly where it holds that code."""

    def __init__(self, model, code):
        super().__init__(model)
        self.code, self.W, self.T = code, model.grid_size, model.config.cls_token_num

    def __call__(self, x, positions, *rest):
        logits = super().__call__(x, positions, *rest)
        cell = (positions - (self.T - 1)).clamp(min=0)  # the query at position T-1+n decides cell n
        codes = self.code(cell // self.W, cell % self.W).expand(logits.shape[:-1])
        return logits.scatter(-1, codes[..., None], 1e4)


CODES = {"row": lambda r, c: r + 1, "column": lambda r, c: c + 1}  # a code per row / per column


def certain_passes(H, W, w, serial, L, ahead, init, code):
    """Passes of a decode whose every query is certain of code(r, c), from the rules alone, cell by cell.
    The prefill decides (0, 0). Each pass, top down: an unopened row opens with (r, 0) once the row
    above holds min(w_r, W) tokens (its window is then that count); an open row's lane runs queries
    o = 0 .. (drafts held), query o fed (r, count+o-1) and deciding (r, count+o), while the window rule
    allows it given the row above's decided tokens (o = 0, or without drafting ahead) or its decided
    tokens plus the drafts its lane feeds in this pass (drafting ahead). A query's token counts iff every
    draft it reads was kept (decided in this pass and holding the code): its own row's fed drafts before
    it and, drafting ahead, for o >= 1 each row r' above's fed drafts left of c + w_r'+1 + ... + w_r.
    Every cell a lane ran then holds its code (a kept draft or a draw); the row keeps the cells after
    its last decided one as drafts. After the pass every row with a token drafts the next cells (up to
    L) that the window rule allows given the row above's decided tokens (drafting ahead: plus the drafts
    that row holds); a new draft copies, from the buffer before, (r-1, c) ("above"; row 0: "left") or
    the token before the row's first new draft ("left")."""
    windows = [W, W if serial else min(w, W)] + [min(w, W)] * (H - 2)
    buf = {(0, 0): code(0, 0)}  # the token buffer: decided tokens and drafts
    count, held = [1] + [0] * (H - 1), [0] * H

    def start():
        seen, before, new = W, dict(buf), {}
        for r in range(H):
            target = 0
            while (count[r] >= 1 and target < L and count[r] + target < W
                   and allows(seen, count[r] + target, windows[r], W)):
                target += 1
            for c in range(count[r] + held[r], count[r] + target):
                source = (r - 1, c) if init == "above" and r >= 1 else (r, count[r] + held[r] - 1)
                new[r, c] = before.get(source)
            held[r] = target
            seen = count[r] + (target if ahead else 0)
        buf.update(new)

    start()
    passes = 1
    while min(count) < W:
        before, lane, kept = list(count), [0] * H, set()
        offsets = [sum(windows[:r + 1]) for r in range(H)]
        for r in range(H):
            above = W if r == 0 else before[r - 1]
            if before[r] == 0:
                if r >= 1 and allows(above, 0, windows[r], W):
                    count[r], windows[r], buf[r, 0] = 1, above, code(r, 0)
                continue
            fed_above = W if r == 0 else before[r - 1] + max(lane[r - 1] - 1, 0)
            while (lane[r] <= held[r] and before[r] + lane[r] < W
                   and allows(fed_above if ahead and lane[r] >= 1 else above, before[r] + lane[r], windows[r], W)):
                lane[r] += 1
            decided = 0
            for o in range(lane[r]):
                c = before[r] + o
                reads = {(r, x) for x in range(before[r], c)}
                for r2 in range(r) if ahead and o >= 1 else ():
                    reach = min(c + offsets[r] - offsets[r2], before[r2] + max(lane[r2] - 1, 0))
                    reads |= {(r2, x) for x in range(before[r2], reach)}
                if not reads <= kept:
                    break
                decided = o + 1
                if buf.get((r, c)) == code(r, c):
                    kept.add((r, c))
            for c in range(before[r], before[r] + lane[r]):
                buf[r, c] = code(r, c)
            count[r] = before[r] + decided
            held[r] = max(held[r], lane[r]) + before[r] - count[r]
        passes += 1
        start()
    return passes


@pytest.mark.parametrize("first_row", ["early", "serial"])
@pytest.mark.parametrize("draft_len", [2, 4])
@pytest.mark.parametrize("codes,init", [("row", "above"), ("column", "left")])
def test_rows_rejecting_drafts_need_fewer_passes_drafting_ahead(codes, init, draft_len, first_row):
    """Each row's new drafts are rejected (a code per row drafted from above, or per column drafted
    from the left), its redrafts kept: the decode runs exactly the passes the rules give, with and
    without drafting ahead, and drafting ahead needs fewer."""
    gpt = tiny_gpt(6, seed=1)
    code = CODES[codes]
    passes = {}
    for ahead in (False, True):
        model = CellCodeModel(gpt, code)
        config = DecodeConfig(window=1, first_row=first_row, draft_len=draft_len, draft_init=init, draft_ahead=ahead)
        with torch.inference_mode():
            result = generate(model, torch.tensor([1, 2]), torch.tensor([3, 4]), config)
        expected = certain_passes(6, 6, 1, first_row == "serial", draft_len, ahead, init, code)
        assert model.calls == result.forward_passes == expected, (ahead, model.calls, expected)
        rows, cols = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
        assert (result.tokens == code(rows, cols)).all()
        passes[ahead] = expected
    assert passes[True] < passes[False], passes


def lanes_by_rule(count, drafts, windows, W, L, ahead):
    """Per row, top down: its cell lane's length and the drafts it holds after `draft_lanes`. Lane:
    queries o = 0 .. drafts while the window rule allows (r, count+o) given the row above's decided
    tokens (o = 0, or without drafting ahead) or those plus the drafts its lane feeds (its lane - 1).
    Drafts: the next cells, up to L, the rule allows given the row above's decided tokens (drafting
    ahead: plus the drafts it holds)."""
    lanes, held, fed_above, held_above = [], [], W, W
    for r, (cnt, d, w) in enumerate(zip(count, drafts, windows)):
        above = W if r == 0 else count[r - 1]
        n = 0
        while (cnt >= 1 and n <= d and cnt + n < W
               and allows(fed_above if ahead and n >= 1 else above, cnt + n, w, W)):
            n += 1
        t = 0
        while cnt >= 1 and t < L and cnt + t < W and allows(held_above if ahead else above, cnt + t, w, W):
            t += 1
        lanes.append(n)
        held.append(t)
        fed_above, held_above = cnt + max(n - 1, 0), cnt + t
    return lanes, held


def scheduler_lanes(count, drafts, W, L, ahead):
    """(cell lane lengths, drafts after draft_lanes) of the scheduler, window 1, for one image."""
    H = len(count)
    config = DecodeConfig(window=1, first_row="early", draft_len=L, draft_ahead=ahead)
    sch = Scheduler(Layout(rows=H, cols=W, prefix_len=1, family="llamagen"), config, "cpu")
    state = initial_state(sch, 1)
    state.count.copy_(torch.tensor([count]))
    state.drafts.copy_(torch.tensor([drafts]))
    lanes = plan(sch, state).cell_queries[0].tolist()
    return lanes, draft_lanes(sch, state)[1][0].tolist()


def test_lanes_reach_into_the_drafts_fed_above():
    """W = 8, w = 1, L = 3, counts (3, 2, 1, 0) holding (1, 3, 3, 0) drafts. Row 0's lane runs 2
    queries (its one draft), feeding (0, 3): row 1 sees 3 + 1 = 4 tokens of row 0, so it decides
    (1, 2) (needs 3), (1, 3) (needs 4), not (1, 4) (needs 5): 2 queries (1 without drafting ahead),
    feeding (1, 2); row 2 sees 2 + 1 = 3: (2, 1), (2, 2) (needs 3): 2 queries (1 without). Row 3 has
    no token. Drafts after: row 0 the next 3; row 1 sees row 0's 3 + 3 = 6, so (1, 2..4) (needs up to
    5): 3 (1 without); row 2 sees 2 + 3 = 5: (2, 1..3): 3 (1 without)."""
    count, drafts = [3, 2, 1, 0], [1, 3, 3, 0]
    assert scheduler_lanes(count, drafts, 8, 3, ahead=True) == ([2, 2, 2, 0], [3, 3, 3, 0])
    assert scheduler_lanes(count, drafts, 8, 3, ahead=False) == ([2, 1, 1, 0], [3, 1, 1, 0])


def test_lanes_follow_the_rule_on_random_states():
    """Lane lengths and new drafts of the scheduler equal the rule's, with and without drafting ahead."""
    gen = torch.Generator().manual_seed(0)
    randint = lambda hi: int(torch.randint(hi, (), generator=gen))  # noqa: E731
    H, W, L = 5, 9, 3
    for _ in range(200):
        count = [1 + randint(W)]  # a state the window rule (w = 1) can reach: no row ahead of the one above
        for _ in range(H - 1):
            count.append(randint(count[-1] + 1))
        drafts = [0 if c == 0 else randint(min(L, W - c) + 1) for c in count]
        for ahead in (False, True):
            expected = lanes_by_rule(count, drafts, [W] + [1] * (H - 1), W, L, ahead)
            assert scheduler_lanes(count, drafts, W, L, ahead) == expected, (count, drafts, ahead)
