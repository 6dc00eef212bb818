"""Speculative Jacobi drafting along rows (common.zipar.row_drafts): no drafts = the engine before drafts,
the oracle over every query (drafts included), drafts invisible to other rows, exact marginals,
batch invariance, the pass count and the query bound."""
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from common.zipar.config import DecodeConfig
from common.zipar.engine import decode_steps, start_decode
from common.zipar.layout import Layout
from common.zipar.window import queries_per_pass
from llamagen.generate import condition_prefix, generate, layout_for
from tests.helpers.llamagen import CountingModel, assert_each_image_alone, record_decode, run_oracle, tiny_gpt
from tests.helpers.records import decided_at, decode_records, pick
from tests.oracle import full_forward

DATA = Path(__file__).parent / "data"
MODES = {"ntp": dict(window=None), "fixed": dict(window=2), "adaptive": dict(window=1, adaptive=True),
         "fixed early": dict(window=2, first_row="early"), "adaptive early": dict(window=1, adaptive=True, first_row="early"),
         "fixed ahead": dict(window=1, draft_ahead=True), "adaptive ahead": dict(window=1, adaptive=True, draft_ahead=True)}


def test_no_drafts_reproduces_the_engine_before_drafts():
    # tests/data/tokens_before_row_drafts.pt: the same calls on the engine of the commit before row
    # drafts existed (tests/data/make_tokens_before_row_drafts.py, run on that checkout)
    before = torch.load(DATA / "tokens_before_row_drafts.pt")
    gpt = tiny_gpt(5, seed=3)
    labels, seeds = torch.tensor([0, 4, 9]), torch.tensor([1, 22, 333])
    # that engine opened row 1 after w tokens of row 0 (first_row="early") and fed "above" by default
    configs = {"ntp": DecodeConfig(cfg_scale=2.0, top_k=20),
               "fixed": DecodeConfig(window=2, cfg_scale=2.0, first_row="early", placeholder="above"),
               "adaptive": DecodeConfig(window=1, adaptive=True, placeholder="left", temperature=1.3, first_row="early")}
    for name, config in configs.items():
        assert config.draft_len == 0
        with torch.inference_mode():
            assert torch.equal(generate(gpt, labels, seeds, config).tokens, before[name]), name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("draft_len,cfg_scale,init", [(1, 1.0, "above"), (3, 2.0, "above"), (2, 2.0, "left"),
                                                      (3, 1.0, "random")])
def test_oracle_every_query_including_drafts(mode, draft_len, cfg_scale, init):
    gpt = tiny_gpt(5, seed=4)
    config = DecodeConfig(**MODES[mode], draft_len=draft_len, draft_init=init, cfg_scale=cfg_scale, temperature=1.5)
    labels, seeds = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    with torch.inference_mode():
        err, _ = run_oracle(gpt, layout_for(gpt), config, labels, seeds)  # also checks (e) on every query
    assert err <= 1e-4


@pytest.mark.parametrize("ahead", [False, True])
def test_oracle_with_drafts_end_of_row_tokens_and_padded_prefix(ahead):
    gpt = tiny_gpt(5, preset="GPT-tiny-gqa", cls_token_num=3)
    layout = Layout(4, 5, 3, end_of_row=True)
    config = DecodeConfig(window=2 - ahead, adaptive=True, draft_len=2, draft_ahead=ahead, cfg_scale=2.0,
                          temperature=1.5)
    valid = torch.ones(4, 3, dtype=torch.bool)
    valid[1, 0] = valid[3, :2] = False
    with torch.inference_mode():
        err, _ = run_oracle(gpt, layout, config, torch.tensor([2, 7]), torch.tensor([3, 8]),
                            torch.tensor([60, 61, 62, 63]), valid)
    assert err <= 1e-4


@pytest.mark.parametrize("mode", ["ntp", "fixed", "adaptive"])
def test_no_query_reads_another_rows_draft(mode):
    gpt = tiny_gpt(6, seed=2)
    config = DecodeConfig(**MODES[mode], draft_len=3, temperature=1.5)
    layout = layout_for(gpt)
    with torch.inference_mode():
        state, _, passes = record_decode(gpt, layout, config, torch.tensor([0, 3]), torch.tensor([9, 10]))
    T, W, N = layout.prefix_len, layout.cols, layout.num_cells
    final = state.tokens[:, :N]
    cell_of = lambda s: ((s - T) // W, (s - T) % W)  # noqa: E731 (no end-of-row tokens here)
    for b in range(2):
        fed_at = {}  # slot -> token written there most recently
        for k, per_row in enumerate(passes[1:], start=1):
            slots, _, ids, mask, _ = per_row[b]
            rows_of_queries = [cell_of(s)[0] if T <= s < T + N else -1 for s in slots.tolist()]
            fed_at.update({s: int(t) for s, t in zip(slots.tolist(), ids.tolist())})
            for q, row in enumerate(rows_of_queries):
                for s in mask[q].nonzero()[:, 0].tolist():
                    if T <= s < T + N and cell_of(s)[0] != row:  # another row's cell: its decided token only
                        r, c = cell_of(s)
                        assert fed_at[s] == int(final[b, r * W + c]), (k, q, s)
    assert int(state.schedule.draft_rejections.sum()) > 0  # drafts were really rejected on the way


def _exact_marginal(gpt, label, config, k):
    """P(the k-th generated token) under NTP, by enumerating every earlier token sequence with
    uncached forwards: sum over x_0..x_{k-1} of prod_j p(x_j | x_<j) * p(x_k | x_<k)."""
    prefix = condition_prefix(gpt, torch.tensor([label]), config).embeddings  # (1, 1, D)
    V = gpt.output.out_features
    ids = torch.cartesian_prod(*[torch.arange(V)] * k).reshape(-1, k)  # (V^k, k)
    x = torch.cat([prefix.expand(len(ids), -1, -1), gpt.embed_tokens(ids)], dim=1)
    logits = full_forward(gpt, x, torch.arange(k + 1), torch.ones(k + 1, k + 1, dtype=torch.bool).tril())
    probs = torch.softmax(logits.double() / config.temperature, dim=-1)  # (V^k, k+1, V)
    joint = probs[:, :k].gather(2, ids[..., None])[..., 0].prod(1)  # P(x_0..x_{k-1})
    return (joint[:, None] * probs[:, k]).sum(0)


# (mode, L, draft_init, grid, vocab, (row, col)): (0, 2) is drafted from its left (row 0); on the 2x2
# grid with w = 1, (1, 1) is always drafted from (0, 1) above it before its check
# (L = W - 1 at most: a longer draft is refused, DecodeConfig.check_grid)
# (coupling "maximal": (0, 2) is usually redrafted, coupled to its first draft, after (0, 1) is rejected)
MARGINALS = [("ntp", 2, "random", 3, 64, (0, 2), "maximal"), ("ntp", 2, "random", 3, 64, (0, 2), "independent"),
             ("fixed", 2, "left", 3, 64, (0, 2), "maximal"), ("fixed", 1, "above", 2, 8, (1, 1), "maximal"),
             ("adaptive", 1, "above", 2, 8, (1, 1), "maximal")]


@pytest.mark.parametrize("mode,draft_len,init,grid,vocab,cell,coupling", MARGINALS)
def test_drafted_cell_follows_the_exact_model_marginal(mode, draft_len, init, grid, vocab, cell, coupling):
    gpt = tiny_gpt(grid, seed=5, vocab_size=vocab)
    config = DecodeConfig(**MODES[mode], draft_len=draft_len, draft_init=init, draft_coupling=coupling,
                          temperature=1.5)
    n = 4000
    with torch.inference_mode():
        expected = _exact_marginal(gpt, 4, config, cell[0] * grid + cell[1]).numpy()
        result = generate(gpt, torch.full((n,), 4), torch.arange(n) + 10_000, config)
    assert sum(result.draft_rejections) > n // 4 and min(result.tokens_per_row_pass) >= 1
    counts = np.bincount(result.tokens[:, cell[0], cell[1]].numpy(), minlength=len(expected))
    big = expected * n >= 5  # pool the rare codes into one bin for the chi-square test
    observed, wanted = counts[big], expected[big] * n
    if (~big).any():
        observed, wanted = np.append(observed, counts[~big].sum()), np.append(wanted, expected[~big].sum() * n)
    assert stats.chisquare(observed, wanted / wanted.sum() * observed.sum()).pvalue > 1e-3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("init", ["above", "left"])
def test_new_drafts_start_from_the_policy_token(mode, init, monkeypatch):
    """Every new draft holds the policy's token right after it starts: "above" the token (r-1, c)
    (row 0: its left token), decided by the window rule, or (drafting ahead) decided or a draft of
    the row above; "left" the token before the row's first new draft."""
    from common.zipar import row_drafts, scheduler

    original, seen = row_drafts.start, []

    def checked_start(state):
        sch, schedule = state.scheduler, state.schedule
        new, target = scheduler.draft_lanes(sch, schedule)
        count, drafts, tokens = schedule.count.clone(), schedule.drafts.clone(), state.tokens.clone()
        original(state)
        W = sch.layout.cols
        for b, r, o in new.nonzero().tolist():
            c = int(count[b, r]) + o
            left = r * W + int(count[b, r] + drafts[b, r]) - 1
            if init == "above" and r >= 1:
                held_above = int(count[b, r - 1]) + (int(target[b, r - 1]) if state.config.draft_ahead else 0)
                assert c < held_above, "the window rule guarantees a token above"
                source = (r - 1) * W + c
            else:
                source = left
            assert int(state.tokens[b, r * W + c]) == int(tokens[b, source]), (b, r, c)
            seen.append(r >= 1)

    monkeypatch.setattr(row_drafts, "start", checked_start)
    gpt = tiny_gpt(5, seed=6)
    config = DecodeConfig(**MODES[mode], draft_len=3, draft_init=init, temperature=1.5)
    with torch.inference_mode():
        generate(gpt, torch.tensor([2, 7]), torch.tensor([11, 12]), config)
    assert any(seen) and not all(seen)  # drafts started in row 0 and below it


@pytest.mark.parametrize("mode", MODES)
def test_batch_invariance_with_rows_accepting_different_drafts(mode):
    gpt = tiny_gpt(6, seed=1)
    config = DecodeConfig(**MODES[mode], draft_len=2, cfg_scale=2.0, temperature=1.5)
    labels, seeds = torch.tensor([1, 4, 4, 8]), torch.tensor([5, 6, 7, 8])
    with torch.inference_mode():
        batched = generate(gpt, labels, seeds, config)
        assert len({tuple(r) for r in batched.row_tokens_per_pass}) > 1  # rows really accept differently
        assert_each_image_alone(gpt, labels, seeds, config, batched)


@pytest.mark.parametrize("mode", MODES)
def test_forward_passes_and_telemetry_agree_with_the_records(mode):
    gpt = tiny_gpt(6, seed=3)
    config = DecodeConfig(**MODES[mode], draft_len=4, temperature=1.5)
    labels, seeds = torch.tensor([2, 3]), torch.tensor([11, 12])
    counting = CountingModel(gpt)
    with torch.inference_mode():
        result = generate(counting, labels, seeds, config)
        plain = generate(gpt, labels, seeds, DecodeConfig(**{k: v for k, v in MODES[mode].items() if k != "draft_ahead"}))
    assert counting.calls == result.forward_passes == max(result.image_passes)
    assert result.forward_passes < plain.forward_passes  # drafting saves passes on this model
    # every row's cell lane decides W - 1 tokens (its opening decides the first)
    for b in range(2):
        for r, rate in enumerate(result.row_tokens_per_pass[b]):
            assert 1.0 <= rate <= config.draft_len + 1


@pytest.mark.parametrize("H,W,eor", [(5, 7, False), (6, 6, True)])
def test_queries_per_pass_bound_holds_with_drafts(H, W, eor):
    gpt = tiny_gpt(max(H, W), seed=H)
    layout = Layout(H, W, 1, end_of_row=eor)
    fixed = torch.arange(50, 50 + H) if eor else None
    for window, adaptive, L, ahead in [(None, False, 2, False), (1, False, 3, False), (2, True, 2, False),
                                       (3, False, 1, False), (1, False, 3, True), (2, True, 2, True)]:
        config = DecodeConfig(window=window, adaptive=adaptive, draft_len=L, draft_ahead=ahead, temperature=1.5)
        labels, seeds = torch.tensor([1, 2]), torch.tensor([3, 4])
        prefix = condition_prefix(gpt, labels, config).embeddings
        with torch.inference_mode():
            state = start_decode(gpt, prefix, seeds, layout, config, fixed)
            bound = queries_per_pass(layout, state.scheduler.w_min, L)
            room = layout.rows * (L + 3)  # every lane of every row
            state.scheduler.num_queries = room
            state.trim_on_host = False
            for rec in decode_steps(gpt, state):
                if not rec.batch.is_prefix:
                    busiest = int((rec.batch.slots != state.scheduler.slot_map.scratch).sum(1).max())
                    assert busiest <= bound, (window, adaptive, L, rec.index)


@pytest.mark.parametrize("module,argv", [
    ("llamagen.sample", ["--window", "4", "--class-labels", "3", "8"]),
    ("llamagen.sample", ["--window", "8", "--adaptive", "--class-labels", "3"]),
    ("emu3.generate", ["--random-init", "--config", "tiny", "--prompt", "a cat", "--ratio", "4:3", "--window", "2"]),
    ("lumina_mgpt.generate", ["--random-init", "--config", "tiny", "--prompt", "a cat", "--window", "2"]),
    ("janus.generate", ["--random-init", "--config", "tiny", "--prompt", "a cat", "--window", "2"]),
])
def test_every_family_drafts_through_the_cli(module, argv, tmp_path, capsys):
    import importlib
    import json

    out = ["--out", str(tmp_path / "g.png")] if module == "llamagen.sample" else ["--out-dir", str(tmp_path / "o")]
    cli = importlib.import_module(module).cli
    assert cli(argv + ["--draft-len", "2", "--draft-init", "left", "--json", "--temperature", "1.0"] + out) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["draft_len"] == 2 and report["draft_init"] == "left"
    assert report["forward_passes"] == max(report["image_passes"])
    assert all(1.0 <= t <= 3.0 for t in report["tokens_per_row_pass"])
    assert len(report["draft_rejections"]) == len(report["image_passes"])


class CertainModel(CountingModel):
    """Every query predicts `code` with certainty (a huge logit there): every row draft is kept."""

    def __init__(self, model, code):
        super().__init__(model)
        self.code = code

    def __call__(self, *args):
        return super().__call__(*args).index_fill(-1, torch.tensor([self.code]), 1e4)


def accepted_drafts_passes(H, W, w, serial, L):
    """Passes of a decode whose every draft is kept, from the rules alone: the prefill decides (0, 0);
    each pass an open row decides the next L + 1 cells the window rule allows given the counts before
    the pass (cell c needs min(c + w_r, W) tokens above), an unopened row opens with one token once
    the row above holds min(w_r, W); w_1 = W with the serial first row."""
    windows = [W, W if serial else min(w, W)] + [min(w, W)] * (H - 2)
    count, passes = [1] + [0] * (H - 1), 1
    while min(count) < W:
        before = list(count)
        for r in range(H):
            above = W if r == 0 else before[r - 1]
            lane = 1 if before[r] == 0 else L + 1  # an opener decides only (r, 0)
            c = before[r]
            while c < W and c - before[r] < lane and above >= min(c + windows[r], W):
                c += 1
            count[r] = c
        passes += 1
    return passes


@pytest.mark.parametrize("window,first_row", [(1, "early"), (1, "serial"), (2, "early"), (None, None)])
@pytest.mark.parametrize("draft_len", [1, 2, 4])
def test_certain_model_meets_the_drafted_pass_bound(window, first_row, draft_len):
    """With every draft kept the decode runs exactly the passes the rules give, no more: the engine
    asks whether it is done from its lower bound on (row 0 alone needs 1 + ceil((W-1)/(L+1))
    passes, each further row one more), and the early first row at w = 1 meets that bound."""
    gpt = tiny_gpt(6, seed=1)
    H = W = 6
    for init in ("above", "left"):
        config = DecodeConfig(window=window, first_row=first_row, draft_len=draft_len, draft_init=init,
                              cfg_scale=2.0)
        certain = CertainModel(gpt, code=5)
        with torch.inference_mode():
            result = generate(certain, torch.tensor([1, 2]), torch.tensor([3, 4]), config)
        serial = window is not None and first_row == "serial"
        expected = accepted_drafts_passes(H, W, window or W, serial, draft_len)
        assert certain.calls == result.forward_passes == expected, (init, certain.calls, expected)
        assert (result.tokens == 5).all() and result.draft_rejections == [0, 0]
        if window == 1 and first_row == "early":
            assert expected == 1 + -(-(W - 1) // (draft_len + 1)) + H - 1


AHEAD = {"fixed 1": dict(window=1), "fixed 2": dict(window=2), "adaptive 1": dict(window=1, adaptive=True),
         "fixed 1 early": dict(window=1, first_row="early")}


@pytest.mark.parametrize("mode", AHEAD)
def test_drafting_ahead_decides_only_on_kept_drafts_within_the_window(mode):
    """--draft-ahead: a drafted query reads the rows above's drafts of its pass only up to the column its
    window reaches (c + w_r'+1 + ... + w_r in row r'), never a row below's; every token decided in a
    pass read all of that reach (what plain ZipAR shows it) and, of other rows, only tokens that were
    decided then (a draft read counts only if it was kept); and rows really decided cells on drafts of
    the row above read in the same pass."""
    gpt = tiny_gpt(8, seed=2)
    config = DecodeConfig(**AHEAD[mode], draft_len=3, draft_ahead=True, temperature=1.0)
    layout = layout_for(gpt)
    state, records = decode_records(gpt, layout, config, torch.tensor([0, 3, 7]), torch.tensor([9, 10, 11]))
    T, W, N, H = layout.prefix_len, layout.cols, layout.num_cells, layout.rows
    final, done = state.tokens[:, :N], decided_at(records, 3, N)
    offsets = [[0] * H for _ in range(3)]  # per image: cumulative row windows, from the final schedule
    for b in range(3):
        total = 0
        for r in range(H):
            total += int(state.schedule.window[b, r])
            offsets[b][r] = total
    cell_of = lambda s: ((s - T) // W, (s - T) % W) if T <= s < T + N else None  # noqa: E731
    ahead_reads = 0
    for b in range(3):
        fed_at = {}  # slot -> token fed there most recently
        for rec in records[1:]:
            slots, cells = pick(rec.batch.slots, b).tolist(), pick(rec.batch.cells, b).tolist()
            ids, mask = rec.input_ids[b].tolist(), rec.mask[b]
            written_now = {s: t for s, t in zip(slots, ids) if cell_of(s)}
            fed_at.update(written_now)
            for q, (s_q, c_q) in enumerate(zip(slots, cells)):
                if c_q >= N:
                    continue
                r, c = divmod(c_q, W)
                if done[b, c_q] == rec.index:  # decided here: it read at least what plain ZipAR shows
                    for r2 in range(r):
                        reach = min(c + offsets[b][r] - offsets[b][r2], W)
                        start = T + r2 * W
                        assert bool(mask[q, start:start + reach].all()), (rec.index, q, r2, reach)
                for s in mask[q].nonzero()[:, 0].tolist():
                    rs = cell_of(s)
                    if rs is None or rs[0] == r:
                        continue
                    assert rs[0] < r, (rec.index, q, s)  # never a row below
                    is_draft = s in written_now and done[b, rs[0] * W + rs[1]] >= rec.index
                    if is_draft:
                        assert rs[1] + offsets[b][rs[0]] < c + offsets[b][r], (rec.index, q, s)  # within reach
                    if done[b, c_q] == rec.index:  # decided here: what it read of other rows is final
                        assert fed_at[s] == int(final[b, rs[0] * W + rs[1]]), (rec.index, q, s)
                        ahead_reads += is_draft and done[b, rs[0] * W + rs[1]] == rec.index
    assert ahead_reads > 0  # tokens were decided on drafts kept in the same pass


def accepted_drafts_passes_ahead(H, W, w, serial, L):
    """As `accepted_drafts_passes`, drafting ahead (every draft kept): a row's query fed its last decided
    token needs min(c + w_r, W) decided tokens above; its drafted queries count the row above's decided
    tokens plus the drafts that row's lane feeds in the same pass (its lane's length - 1). After each
    pass every row holds as drafts the next cells (up to L) that the row above's decided tokens and
    drafts then allow."""
    windows = [W, W if serial else min(w, W)] + [min(w, W)] * (H - 2)
    count, drafts, passes = [1] + [0] * (H - 1), [0] * H, 1

    def start():
        seen = W
        for r in range(H):
            target = 0
            while count[r] >= 1 and target < L and count[r] + target < W and seen >= min(count[r] + target + windows[r], W):
                target += 1
            drafts[r] = target
            seen = count[r] + target
    start()
    while min(count) < W:
        before, seen = list(count), W
        for r in range(H):
            above = W if r == 0 else before[r - 1]
            lane = 0
            if before[r] == 0:
                count[r] = 1 if r >= 1 and above >= min(windows[r], W) else 0
            else:
                while (lane <= drafts[r] and before[r] + lane < W
                       and (above if lane == 0 else seen) >= min(before[r] + lane + windows[r], W)):
                    lane += 1
                count[r] = before[r] + lane
            seen = before[r] + max(lane - 1, 0)
        passes += 1
        start()
    return passes


@pytest.mark.parametrize("window,first_row", [(1, "early"), (1, "serial"), (2, "early"), (3, "serial")])
@pytest.mark.parametrize("draft_len", [1, 2, 4])
def test_certain_model_meets_the_drafted_pass_count_ahead(window, first_row, draft_len):
    """Drafting ahead with every draft kept: the decode runs exactly the passes the rules give (the
    critical path). (With every draft kept the rows never wait on the window, so these counts equal
    those without drafting ahead; drafting ahead pays where rows above reject.)"""
    gpt = tiny_gpt(6, seed=1)
    config = DecodeConfig(window=window, first_row=first_row, draft_len=draft_len, draft_ahead=True, cfg_scale=2.0)
    certain = CertainModel(gpt, code=5)
    with torch.inference_mode():
        result = generate(certain, torch.tensor([1, 2]), torch.tensor([3, 4]), config)
    expected = accepted_drafts_passes_ahead(6, 6, window, first_row == "serial", draft_len)
    assert certain.calls == result.forward_passes == expected, (certain.calls, expected)
    assert (result.tokens == 5).all() and result.draft_rejections == [0, 0]
