"""The engine's core invariants on tiny random LlamaGen models (non-zero output layer):
(a) w >= W reproduces next-token prediction, (b) every logit equals an uncached forward over exactly
what the query saw, (c) forward passes = the schedule's critical path, (d) batch invariance."""
import itertools

import pytest
import torch

from common.zipar.condition import Condition
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode, decode_steps, start_decode
from common.zipar.layout import Layout
from common.zipar.state import Scheduler
from common.zipar.window import queries_per_pass
from llamagen.generate import condition_prefix, generate, layout_for
from tests.helpers.llamagen import CountingModel, formula_passes, reference_ntp, run_oracle, tiny_gpt
from tests.oracle import fed_token_violations, oracle_error, record_passes


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("cfg_scale,top_k,top_p", [(1.0, 0, 1.0), (3.0, 0, 1.0), (2.0, 20, 1.0), (1.5, 10, 0.9)])
def test_full_window_reproduces_ntp(batch, cfg_scale, top_k, top_p):
    gpt = tiny_gpt(4)
    labels = torch.arange(batch) % 10
    for seed0 in (0, 11):
        seeds = torch.arange(batch) + seed0
        ref = reference_ntp(gpt, labels, seeds, DecodeConfig(cfg_scale=cfg_scale, top_k=top_k, top_p=top_p))
        for window in (None, 4, 9):
            config = DecodeConfig(window=window, cfg_scale=cfg_scale, top_k=top_k, top_p=top_p, cfg_interval=-1)
            result = generate(gpt, labels, seeds, config)
            assert torch.equal(result.tokens, ref), (window, seed0)
            assert result.forward_passes == 16


def test_cfg_interval_reproduces_ntp():
    gpt = tiny_gpt(4)
    config = DecodeConfig(window=None, cfg_scale=4.0, cfg_interval=5)
    labels, seeds = torch.tensor([1, 2]), torch.tensor([3, 4])
    assert torch.equal(generate(gpt, labels, seeds, config).tokens, reference_ntp(gpt, labels, seeds, config))


@pytest.mark.parametrize("grid,window,batch,cfg_scale,placeholder,first_row", [
    (4, 1, 1, 1.0, "left", "early"), (4, 2, 2, 3.0, "left", "serial"), (5, 3, 3, 2.0, "above", "early"),
    (5, 1, 2, 1.0, "above", "serial"), (6, 2, 1, 4.0, "left", "early"), (6, 2, 1, 4.0, "above", "serial"),
    (6, 5, 2, 2.0, "left", "early"), (4, 4, 2, 3.0, "left", "serial"),
])
def test_oracle_every_logit_equals_uncached_forward(grid, window, batch, cfg_scale, placeholder, first_row):
    gpt = tiny_gpt(grid, seed=grid)
    config = DecodeConfig(window=window, cfg_scale=cfg_scale, placeholder=placeholder, top_k=30, first_row=first_row)
    labels, seeds = torch.arange(batch) + 2, torch.arange(batch) * 7
    with torch.inference_mode():
        err, passes = run_oracle(gpt, layout_for(gpt), config, labels, seeds)
    assert err <= 1e-4
    assert passes == formula_passes(grid, grid, window, first_row)


def test_oracle_with_longer_prefix_gqa_and_end_of_row_tokens():
    gpt = tiny_gpt(5, preset="GPT-tiny-gqa", cls_token_num=3)
    layout = Layout(rows=4, cols=5, prefix_len=3, end_of_row=True)
    eol = torch.full((4,), 63)
    for window in (1, 2, 5):
        config = DecodeConfig(window=window, cfg_scale=2.0)
        with torch.inference_mode():
            err, passes = run_oracle(gpt, layout, config, torch.tensor([1, 2]), torch.tensor([5, 6]), eol)
        assert err <= 1e-4
        assert passes == 3 * window + 5


def test_oracle_lumina_compat_reads_written_slots_only():
    """The released Lumina-mGPT code's schedule (common.zipar.official) keeps the visibility rule: every logit
    equals an uncached forward over what it saw (with a causal prefix: the release loaded eager)."""
    gpt = tiny_gpt(5, seed=3, cls_token_num=2)
    layout = Layout(rows=5, cols=5, prefix_len=2, end_of_row=True, family="lumina-mgpt")
    eol = torch.full((5,), 62)
    for window in (2, 3, 6):  # the release's numbering: our w = window - 1
        config = DecodeConfig(window=window, compat="official", prompt_attention="causal", cfg_scale=2.0)
        with torch.inference_mode():
            err, passes = run_oracle(gpt, layout, config, torch.tensor([1, 2]), torch.tensor([5, 6]), eol)
        assert err <= 1e-4
        assert passes == 4 * (window - 1) + 5


def test_oracle_detects_reading_unwritten_slots():
    """The check has teeth: compat mode reads zero slots that nobody wrote, so the replay must object."""
    gpt = tiny_gpt(4)
    config = DecodeConfig(window=1, compat="official")
    with torch.inference_mode(), pytest.raises(KeyError):
        run_oracle(gpt, layout_for(gpt), config, torch.tensor([1]), torch.tensor([0]))


@pytest.mark.parametrize("grid,eor", [(4, False), (5, False), (4, True)])
def test_forward_passes_equal_critical_path(grid, eor):
    gpt = tiny_gpt(grid)
    H = W = grid
    layout = Layout(H, W, 1, end_of_row=eor, family=None if eor else "llamagen")
    prefix = condition_prefix(gpt, torch.tensor([1]), DecodeConfig())
    fixed = torch.full((H,), 62) if eor else None
    for w, first_row in itertools.product((1, 2, W - 1, W), (None, "serial", "early")):
        counting = CountingModel(gpt)
        with torch.inference_mode():
            result = decode(counting, prefix, torch.tensor([0]), layout, DecodeConfig(window=w, first_row=first_row),
                            fixed)
        default = "early" if eor else "serial"
        assert counting.calls == result.forward_passes == formula_passes(H, W, w, first_row or default)
        if not eor and w < W:  # compat runs the released code's windows, w < W
            counting = CountingModel(gpt)
            with torch.inference_mode():
                result = decode(counting, prefix, torch.tensor([0]), layout,
                                DecodeConfig(window=w, compat="official"))
            assert counting.calls == result.forward_passes == 2 * W + (H - 2) * w


@pytest.mark.parametrize("config", [DecodeConfig(window=2, cfg_scale=3.0, top_k=40),
                                    DecodeConfig(window=1, cfg_scale=1.0, placeholder="above"),
                                    DecodeConfig(window=3, cfg_scale=2.0, compat="official")])
def test_batch_invariance(config):
    gpt = tiny_gpt(5)
    labels, seeds = torch.tensor([3, 1, 4, 1]), torch.tensor([10, 20, 30, 2**40 + 1])
    batched = generate(gpt, labels, seeds, config).tokens
    for i in range(4):
        alone = generate(gpt, labels[i:i + 1], seeds[i:i + 1], config).tokens
        assert torch.equal(alone[0], batched[i])
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.equal(generate(gpt, labels[perm], seeds[perm], config).tokens, batched[perm])


def test_placeholder_inputs_follow_policy():
    gpt = tiny_gpt(5)
    layout = layout_for(gpt)
    for policy in ("left", "above"):
        config = DecodeConfig(window=2, placeholder=policy, first_row="early")
        state = start_decode(gpt, condition_prefix(gpt, torch.tensor([1]), config), torch.tensor([4]), layout, config)
        placeholder_inputs = {}
        with torch.inference_mode():
            for rec in decode_steps(gpt, state):
                for i, slot in enumerate(rec.batch.slots[0].tolist()):
                    if layout.prefix_len + layout.num_cells <= slot < state.scheduler.slot_map.scratch:  # placeholder slots
                        placeholder_inputs[slot - layout.prefix_len - layout.num_cells] = rec.input_ids[0, i].item()
        grid = state.tokens[0, :25].reshape(5, 5)
        assert sorted(placeholder_inputs) == [0, 1, 2, 3]
        for r, token in placeholder_inputs.items():
            # row r+1 opens in pass 2(r+1), when row r holds 2 tokens: left = (r, 1); above = the
            # latest of row r-1 then, (r-1, 3)
            expected = grid[r, 1] if policy == "left" or r == 0 else grid[r - 1, 3]
            assert token == expected.item()


def test_different_windows_change_images_but_not_the_first_row():
    gpt = tiny_gpt(6)
    labels, seeds = torch.tensor([1, 2]), torch.tensor([0, 1])
    ntp = generate(gpt, labels, seeds, DecodeConfig(window=None)).tokens
    zipar = generate(gpt, labels, seeds, DecodeConfig(window=1)).tokens
    assert torch.equal(ntp[:, 0], zipar[:, 0])  # row 0 sees the same context either way
    assert not torch.equal(ntp, zipar)  # later rows see less: a real, detectable difference


def test_prefix_shape_is_checked():
    gpt = tiny_gpt(4)
    config = DecodeConfig(window=2, cfg_scale=2.0)
    with pytest.raises(ValueError, match="condition must be"):
        start_decode(gpt, gpt.embed_condition(torch.tensor([1])), torch.tensor([0]), layout_for(gpt), config)


@pytest.mark.parametrize("adaptive", [False, True])
def test_oracle_with_padded_condition_prefix(adaptive):
    """Per-row condition masks (t2i captions): padded prefix slots are read by nobody but themselves,
    different per image and branch; every logit still equals the uncached replay."""
    gpt = tiny_gpt(4, cls_token_num=4)
    layout = Layout(4, 4, 4)
    config = DecodeConfig(window=1, adaptive=adaptive, cfg_scale=2.0)
    seeds = torch.tensor([1, 2])
    valid = torch.tensor([[False, False, True, True], [False, True, True, True],
                          [True, True, True, True], [False, False, False, True]])
    prefix = gpt.embed_condition(torch.tensor([1, 2, 10, 10]))
    state = start_decode(gpt, Condition(prefix, valid), seeds, layout, config)
    with torch.inference_mode():
        records = list(decode_steps(gpt, state))
    for rec in records:
        if rec.index > 0:  # no later query reads a padded slot
            assert not rec.mask[:, :, :4][~valid[:, None, :].expand(-1, rec.mask.shape[1], -1)].any()
        else:  # padded rows see only themselves
            for m in range(4):
                for i in range(4):
                    if not valid[m, i]:
                        assert rec.mask[m, i].nonzero()[:, 0].tolist() == [i]
    with torch.inference_mode():
        err, _ = run_oracle(gpt, layout, config, torch.tensor([1, 2]), seeds, valid=valid)
    assert err <= 1e-4
    # and padding really changes the result (the mask is not a no-op)
    free = start_decode(gpt, prefix, seeds, layout, config)
    with torch.inference_mode():
        list(decode_steps(gpt, free))
    assert not torch.equal(free.tokens, state.tokens)


def test_above_or_mean_feeds_the_cell_above_once_decided_else_the_mean():
    """The default policy, pass by pass on a real decode: an opening query of row r+1 is fed (r-1, W-1)
    when row r-1 was complete before the pass, else the mean embedding (MEAN_INPUT); the early first row
    makes row 1's opener (no row above) take the mean. With w >= W/2 every later opener has a complete
    row r-1, so the decode equals "above"'s token for token."""
    from common.zipar.placeholder import MEAN_INPUT
    gpt = tiny_gpt(6, seed=4)
    layout = layout_for(gpt)
    H = W = 6
    for w in (1, 2):
        config = DecodeConfig(window=w, first_row="early")
        state = start_decode(gpt, condition_prefix(gpt, torch.tensor([2]), config), torch.tensor([3]), layout, config)
        count_before, fed = [0] * H, {}
        with torch.inference_mode():
            for rec in decode_steps(gpt, state):
                for i, slot in enumerate(rec.batch.slots[0].tolist()):
                    if layout.prefix_len + layout.num_cells <= slot < state.scheduler.slot_map.scratch:
                        r = slot - layout.prefix_len - layout.num_cells  # the opener of row r+1
                        complete = r >= 1 and count_before[r - 1] == W
                        fed[r] = (rec.input_ids[0, i].item(), complete)
                decided = [c for c in rec.batch.cells[0].tolist() if c < layout.num_cells]
                for c in decided:
                    count_before[c // W] = max(count_before[c // W], c % W + 1)
        grid = state.tokens[0, :H * W].reshape(H, W)
        assert fed and any(not complete for _, complete in fed.values())
        for r, (token, complete) in fed.items():
            assert token == (grid[r - 1, W - 1].item() if complete else MEAN_INPUT), (w, r)
    labels, seeds = torch.tensor([1, 2]), torch.tensor([5, 6])
    for w in (3, 4):
        assert torch.equal(generate(gpt, labels, seeds, DecodeConfig(window=w)).tokens,
                           generate(gpt, labels, seeds, DecodeConfig(window=w, placeholder="above")).tokens)


@pytest.mark.parametrize("config", [DecodeConfig(window=2, cfg_scale=3.0, top_k=40), DecodeConfig(window=1),
                                    DecodeConfig(window=3, compat="official"), DecodeConfig(window=None),
                                    DecodeConfig(window=2, adaptive=True, cfg_scale=2.0)])
def test_every_decode_pass_has_one_shape(config):
    """A compiled decode runs every pass at (B, queries_per_pass) queries (padding included): one
    shape; an eager fixed-window decode runs each pass at its own size, without padding; both
    decide the same tokens."""
    gpt = tiny_gpt(5)
    layout = layout_for(gpt)
    condition, seeds = condition_prefix(gpt, torch.tensor([3, 1]), config), torch.tensor([10, 20])
    padded = start_decode(gpt, condition, seeds, layout, config, compile="eager")
    plain = start_decode(gpt, condition, seeds, layout, config)
    with torch.inference_mode():
        shapes = {(tuple(r.batch.slots.shape), tuple(r.mask.shape), tuple(r.logits.shape))
                  for r in decode_steps(gpt, padded) if r.index > 0}
        plain_slots = [r.batch.slots for r in decode_steps(gpt, plain) if r.index > 0]
    q = queries_per_pass(layout, config.window_for(layout), serial_first_row=True)  # LlamaGen's default
    assert [s[0] for s in shapes] == [(2 if config.adaptive else 1, q)]  # fixed: one schedule for the batch
    assert len(shapes) == 1
    if not config.adaptive:
        assert all((s != plain.scheduler.slot_map.scratch).all() for s in plain_slots)
    assert torch.equal(plain.tokens[:, :layout.num_cells], padded.tokens[:, :layout.num_cells])


@pytest.mark.parametrize("H,W,eor", [(6, 6, False), (5, 7, False), (5, 6, True), (6, 1, False), (1, 6, True)])
def test_queries_per_pass_bound_holds(H, W, eor):
    """Plan with room for every lane (3H queries) and count the active ones: never above the bound,
    and never more than one below it for fixed windows below W (so padding wastes little)."""
    gpt = tiny_gpt(max(H, W), cls_token_num=2)
    layout = Layout(H, W, 2, end_of_row=eor)
    fixed = torch.full((H,), 62) if eor else None
    for window, first_row in itertools.product(sorted({1, 2, 3, W - 1, W} - {0}), ("serial", "early")):
        for adaptive in (False, True):
            config = DecodeConfig(window=window, adaptive=adaptive, cfg_scale=2.0, first_row=first_row)
            state = start_decode(gpt, condition_prefix(gpt, torch.tensor([1, 2, 3]), config),
                                 torch.tensor([0, 1, 2]), layout, config, fixed)
            state.scheduler = Scheduler(layout, config, "cpu", queries=3 * H)
            with torch.inference_mode():
                most = max(int((r.batch.slots != state.scheduler.slot_map.scratch).sum(1).max())
                           for r in decode_steps(gpt, state) if r.index > 0)
            bound = queries_per_pass(layout, window, serial_first_row=first_row == "serial")
            assert most <= bound, (window, adaptive)
            if not adaptive and window < W:
                assert most >= bound - 1, window


class PositionSpy(CountingModel):
    """Records the positions each forward receives."""

    def __init__(self, model):
        super().__init__(model)
        self.seen = []

    def __call__(self, x, positions, *rest):
        self.seen.append(positions.expand(x.shape[0], -1).clone())
        return super().__call__(x, positions, *rest)


def test_position_shift_moves_each_rows_positions():
    """Left-padded prompts of different lengths: row m's queries run at (plan position - shift[m]),
    clamped at 0, in every pass; with CFG the uncond rows get their own shift."""
    gpt = tiny_gpt(4, cls_token_num=4)
    layout, config = Layout(4, 4, 4), DecodeConfig(window=2, cfg_scale=2.0, first_row="early")
    seeds, shift = torch.tensor([1, 2]), torch.tensor([0, 2, 3, 1])
    valid = torch.arange(4)[None, :] >= shift[:, None]
    prefix = gpt.embed_condition(torch.tensor([1, 2, 10, 10]))
    plain, spy_plain = start_decode(gpt, Condition(prefix, valid), seeds, layout, config), PositionSpy(gpt)
    shifted = start_decode(gpt, Condition(prefix, valid, shift), seeds, layout, config)
    spy = PositionSpy(gpt)
    with torch.inference_mode():
        list(decode_steps(spy_plain, plain))
        list(decode_steps(spy, shifted))
    assert len(spy.seen) == len(spy_plain.seen) == (4 - 1) * 2 + 4
    for ours, base in zip(spy.seen, spy_plain.seen):
        assert torch.equal(ours, (base - shift[:, None]).clamp(min=0))
    assert spy.seen[-1][:, 0].min() > 0  # the last pass's real query (padding sits at position 0)
    with pytest.raises(ValueError, match="position_shift"):
        Condition(prefix, position_shift=torch.tensor([0, 1]))


FED_TOKEN_CASES = [(mode, policy) for mode in ("ntp", "fixed", "adaptive", "fixed early", "adaptive early")
                   for policy in ("above-or-mean", "above", "left", "mean", "token:5")] + [("official", "above")]


@pytest.mark.parametrize("mode,policy", FED_TOKEN_CASES)
def test_every_query_is_fed_a_token_decided_in_an_earlier_pass(mode, policy):
    """Invariant (e) (tests.oracle.fed_token_violations) in every mode and placeholder policy; the
    oracle replay too where the mode reads written slots only (not compat, which reads zeros)."""
    gpt = tiny_gpt(6, seed=2)
    config = DecodeConfig(window=None if mode == "ntp" else 2, adaptive=mode.startswith("adaptive"), placeholder=policy,
                          compat="official" if mode == "official" else None, cfg_scale=2.0,
                          first_row="early" if mode.endswith("early") else None)
    labels, seeds = torch.tensor([1, 4, 7]), torch.tensor([0, 5, 9])
    prefix = condition_prefix(gpt, labels, config)
    with torch.inference_mode():
        if mode == "official":
            state = start_decode(gpt, prefix, seeds, layout_for(gpt), config)
            records = list(decode_steps(gpt, state))
            assert fed_token_violations(state, records) == []
        else:  # record_passes asserts (e) itself
            state, passes = record_passes(gpt, layout_for(gpt), config, prefix, seeds)
            assert oracle_error(gpt, prefix, passes) <= 1e-4
