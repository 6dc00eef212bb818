"""Adaptive window (paper section 3.3): exact acceptance maths, NTP parity, pass bounds, batch
invariance with per-image schedules, the oracle over drafts, and consistent telemetry."""
import numpy as np
import pytest
import torch
from scipy import stats

from common.zipar.config import DecodeConfig
from common.zipar.sampling import (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_TOKEN, acceptance_probability, draw_key,
                             sample_logits, residual_distribution, verify_draft)
from common.zipar.layout import Layout
from common.zipar.window import decode_pass_table, num_passes
from llamagen.generate import generate, layout_for
from tests.helpers.llamagen import assert_each_image_alone, record_decode, reference_ntp, run_oracle, tiny_gpt


def random_dist(gen, v, zeros=0):
    p = torch.rand(v, generator=gen, dtype=torch.float64) ** 3
    p[:zeros] = 0  # filtered tokens (top-k / top-p) have probability 0
    return p / p.sum()


@pytest.mark.parametrize("v,zeros_p,zeros_q", [(2, 0, 0), (3, 0, 0), (5, 2, 0), (5, 0, 2), (6, 1, 3)])
def test_accept_or_resample_is_exactly_the_target(v, zeros_p, zeros_q):
    gen = torch.Generator().manual_seed(v * 10 + zeros_p)
    for _ in range(20):
        p = random_dist(gen, v, zeros_p)[torch.randperm(v, generator=gen)]
        q = random_dist(gen, v, zeros_q)
        out = torch.zeros(v, dtype=torch.float64)
        for t in range(v):  # enumerate the draft; given it, acceptance is a coin, rejection the residual
            if q[t] == 0:
                continue
            a = acceptance_probability(p, q, torch.tensor(t))
            out[t] += q[t] * a
            out += q[t] * (1 - a) * residual_distribution(p, q)
        assert torch.allclose(out, p, atol=1e-12)


def test_accept_or_resample_statistically_end_to_end():
    v, n = 6, 60000
    gen = torch.Generator().manual_seed(7)
    p, q = random_dist(gen, v).float(), random_dist(gen, v, 1).float()
    seeds = torch.tensor([11])
    cells = torch.arange(n)[None]
    draft = sample_logits(torch.log(q).expand(1, n, v), draw_key(seeds, cells, PURPOSE_TOKEN))
    out, accepted = verify_draft(p.expand(1, n, v), q.expand(1, n, v), draft,
                                 draw_key(seeds, cells, PURPOSE_ACCEPT), draw_key(seeds, cells, PURPOSE_RESIDUAL))
    counts = np.bincount(out[0].numpy(), minlength=v)
    expected = p.double().numpy()
    assert stats.chisquare(counts, expected / expected.sum() * n).pvalue > 1e-3
    expected_accept = torch.minimum(p, q).sum().item()  # P(accept) = sum_x min(p, q)
    assert abs(accepted.float().mean().item() - expected_accept) < 0.01


@pytest.mark.parametrize("cfg_scale,top_k", [(1.0, 0), (3.0, 20)])
def test_w_min_at_least_row_width_is_ntp(cfg_scale, top_k):
    gpt = tiny_gpt(4)
    labels, seeds = torch.tensor([1, 5, 7]), torch.tensor([0, 3, 9])
    ref = reference_ntp(gpt, labels, seeds, DecodeConfig(cfg_scale=cfg_scale, top_k=top_k))
    for w_min in (4, 6):
        result = generate(gpt, labels, seeds, DecodeConfig(window=w_min, adaptive=True, cfg_scale=cfg_scale,
                                                           top_k=top_k))
        assert torch.equal(result.tokens, ref)
        assert result.image_passes == [16, 16, 16] and result.rejections == [0, 0, 0]


def adaptive_run(grid=6, w_min=1, batch=4, cfg_scale=2.0, placeholder="left", seed=3):
    gpt = tiny_gpt(grid, seed=seed)
    labels, seeds = torch.arange(batch) % 10, torch.arange(batch) * 13 + 1
    config = DecodeConfig(window=w_min, adaptive=True, cfg_scale=cfg_scale, placeholder=placeholder)
    return gpt, labels, seeds, config, generate(gpt, labels, seeds, config)


@pytest.mark.parametrize("grid,w_min", [(6, 1), (6, 3), (5, 2)])
def test_passes_between_fixed_and_ntp_and_telemetry_consistent(grid, w_min):
    gpt, labels, seeds, config, result = adaptive_run(grid, w_min, batch=6)
    layout = layout_for(gpt)
    low, high = num_passes(layout, w_min), grid * grid
    assert result.forward_passes == max(result.image_passes)
    for b in range(6):
        assert low <= result.image_passes[b] <= high
        windows = result.accepted_windows[b]
        assert all(min(w_min + 1, grid) <= w <= grid for w in windows)
        # the accepted windows determine the pass count
        assert int(decode_pass_table(layout, windows).max()) + 1 == result.image_passes[b]
    assert sum(result.rejections) > 0  # the random model really rejects drafts


def test_batch_invariance_with_different_schedules():
    gpt, labels, seeds, config, batched = adaptive_run(6, 1, batch=4)
    assert len(set(batched.image_passes)) > 1  # the images really follow different schedules
    assert_each_image_alone(gpt, labels, seeds, config, batched)


@pytest.mark.parametrize("grid,w_min,batch,cfg_scale,placeholder", [
    (5, 1, 3, 2.0, "left"), (6, 2, 2, 1.0, "above"), (4, 3, 2, 3.0, "left")])
def test_oracle_over_drafts(grid, w_min, batch, cfg_scale, placeholder):
    gpt = tiny_gpt(grid, seed=grid + 1)
    config = DecodeConfig(window=w_min, adaptive=True, cfg_scale=cfg_scale, placeholder=placeholder)
    labels, seeds = torch.arange(batch), torch.arange(batch) * 5 + 2
    with torch.inference_mode():
        err, _ = run_oracle(gpt, layout_for(gpt), config, labels, seeds)
    assert err <= 1e-4


def test_oracle_over_drafts_with_end_of_row_tokens():
    gpt = tiny_gpt(5, preset="GPT-tiny-gqa", cls_token_num=2)
    layout = Layout(4, 5, 2, end_of_row=True)
    config = DecodeConfig(window=1, adaptive=True, cfg_scale=2.0)
    with torch.inference_mode():
        err, _ = run_oracle(gpt, layout, config, torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6]), torch.full((4,), 63))
    assert err <= 1e-4


def test_only_openers_are_rewritten_and_later_queries_read_the_accepted_one():
    """An opener's attempts share one slot; every other slot is written once. A query of row r+1
    (or later) that reads row r+1's opener slot reads it after the opening was accepted, so the
    entry it reads is the accepted attempt."""
    gpt = tiny_gpt(6, seed=3)
    config = DecodeConfig(window=1, adaptive=True)
    labels, seeds = torch.arange(4), torch.arange(4) * 13 + 1
    layout = layout_for(gpt)
    with torch.inference_mode():
        state, _, passes = record_decode(gpt, layout, config, labels, seeds)
    sched = state.scheduler
    assert state.schedule.opener_rejections.sum() > 0
    for b in range(4):
        writes, opened_at = {}, {}
        for k, per_row in enumerate(passes):
            slots, pos, _, mask, _ = per_row[b]
            for s in slots.tolist():
                writes[s] = writes.get(s, 0) + 1
            for i, s in enumerate(slots.tolist()):
                if pos[i] >= layout.cell_position(1, 0) and not sched.slot_map.opener_base <= s < sched.slot_map.scratch:
                    row = (int(pos[i]) - layout.prefix_len) // layout.cols  # the query's own row
                    opened_at.setdefault(row, k)  # the first pass with a query inside the row
                for t in mask[i].nonzero()[:, 0].tolist():
                    if sched.slot_map.opener_base <= t < sched.slot_map.scratch and s != t:
                        opened = t - sched.slot_map.opener_base + 1
                        assert opened in opened_at and opened_at[opened] <= k
        rewritten = {s for s, n in writes.items() if n > 1}
        assert rewritten and all(sched.slot_map.opener_base <= s < sched.slot_map.scratch for s in rewritten)


def test_adaptive_rejects_compat_and_ntp():
    with pytest.raises(ValueError, match="adaptive"):
        DecodeConfig(window=None, adaptive=True)
    with pytest.raises(ValueError, match="compat"):
        DecodeConfig(window=4, adaptive=True, compat="official")


def test_cli_reports_adaptive_telemetry(tmp_path, capsys):
    import json

    from llamagen.sample import cli

    out = tmp_path / "g.png"
    assert cli(["--window", "4", "--adaptive", "--class-labels", "3", "8", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["adaptive"] and out.is_file()
    assert len(report["image_passes"]) == len(report["rejections"]) == len(report["accepted_window"]) == 2
    assert all(num_passes(Layout(24, 24, 1), 4) <= p <= 576 for p in report["image_passes"])
    assert report["forward_passes"] == max(report["image_passes"])
    assert all(5 <= w["min"] <= w["mean"] <= w["max"] <= 24 for w in report["accepted_window"])


@pytest.mark.parametrize("config", [
    DecodeConfig(window=1, adaptive=True, cfg_scale=2.0, placeholder="left"),
    DecodeConfig(window=2, adaptive=True, first_row="early"),
    DecodeConfig(window=1, adaptive=True, draft_len=2, cfg_scale=2.0),
    DecodeConfig(window=None, draft_len=3),
], ids=["adaptive", "adaptive-early", "adaptive-drafts", "ntp-drafts"])
def test_passes_left_bound_is_a_lower_bound_and_host_reads_are_few(config):
    """After every pass the bound is at most the passes the decode really still ran, 0 exactly when it
    is done; the loop runs no pass beyond the last image's and reads the schedule far less than once a
    pass after its minimum (the loop before read a "done" flag every pass from there)."""
    from common.zipar.engine import decode_steps, start_decode
    from common.zipar.scheduler import passes_left_bound
    from llamagen.generate import condition_prefix
    from tests.helpers.llamagen import CountingModel

    gpt = tiny_gpt(8, seed=5)
    labels, seeds = torch.arange(4), torch.arange(4) * 7 + 2
    state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout_for(gpt), config)
    counting, bounds = CountingModel(gpt), []
    with torch.inference_mode():
        for _ in decode_steps(counting, state):
            bounds.append(int(passes_left_bound(state.scheduler, state.schedule)))
    total = state.passes_run
    assert counting.calls == total == int(state.schedule.image_passes.max())
    assert all(b <= total - (k + 1) for k, b in enumerate(bounds)), bounds
    assert bounds[-1] == 0 and min(bounds[:-1]) > 0
    per_pass_reads = total - state.min_passes + 1
    assert per_pass_reads >= 8, "the decode must have a tail past its minimum for the count to mean something"
    assert 1 <= state.host_reads <= per_pass_reads // 2, (state.host_reads, per_pass_reads)


@pytest.mark.parametrize("v", [2, 7, 130, 300])
def test_a_rejection_resamples_where_p_exceeds_q(v):
    """After a rejection the token comes from norm(max(0, p - q)): p(x) > q(x), for every draft,
    uniform and pair of distributions with filtered (zero) entries on either side."""
    gen = torch.Generator().manual_seed(v)
    n = 4000
    p, q = torch.rand(2, n, v, generator=gen) ** 3
    p[torch.rand(n, v, generator=gen) < 0.3] = 0
    q[torch.rand(n, v, generator=gen) < 0.3] = 0
    p[:, 0] += 1e-3  # no empty distribution
    q[:, -1] += 1e-3
    p, q = p / p.sum(-1, keepdim=True), q / q.sum(-1, keepdim=True)
    cells = torch.arange(n)[None]
    draft = sample_logits(torch.log(q)[None], draw_key(torch.tensor([v]), cells, PURPOSE_TOKEN))
    token, accepted = verify_draft(p[None], q[None], draft, draw_key(torch.tensor([v]), cells, PURPOSE_ACCEPT),
                                   draw_key(torch.tensor([v]), cells, PURPOSE_RESIDUAL))
    x = token[0, ~accepted[0]]
    assert len(x) > n // 10  # many rejections
    rows = (~accepted[0]).nonzero()[:, 0]
    assert (p[rows, x] > q[rows, x]).all()
