"""Fresh randomness in real decodes: every draw, acceptance test and resample replays from the records
with the documented key (seed, cell, purpose, attempt) (common.zipar.sampling), where the attempt is the
opener attempt (adaptive verifications) or how often the cell was drawn before (DecodeState.draws);
attempts count 0, 1, 2, ... per opening, the draw counters rise with every draw, and a rejected test
resamples a token x with p(x) > q(x)."""
from collections import Counter

import pytest
import torch

from common.zipar.config import DecodeConfig
from common.zipar.sampling import (PURPOSE_ACCEPT, PURPOSE_DRAFT, PURPOSE_RESIDUAL, PURPOSE_TOKEN, draw_key, key_uniform,
                             sample_probs, verify_draft)
from common.zipar.passes import CHECK, DRAW, OPEN, VERIFY
from llamagen.generate import layout_for
from tests.helpers.llamagen import tiny_gpt
from tests.helpers.records import decode_records, decided_at, pick, query_probs


def key(seed, cell, purpose, attempt):
    return draw_key(seed.reshape(1), torch.tensor([[cell]]), purpose, torch.tensor([[attempt]]))[0, 0]


def replay(state, records) -> Counter:
    """Assert that every decided token of the decode follows from the recorded distributions and the
    documented keys; returns counts of what was replayed."""
    B, N, W = len(state.seeds), state.layout.num_cells, state.layout.cols
    V = records[0].logits.shape[-1]
    done = decided_at(records, B, N)
    seen = Counter()
    draws, held = torch.zeros_like(records[0].draws), torch.zeros_like(records[0].tokens)  # before the pass
    q_of = {}  # (image, cell) -> the distribution the cell's current row draft was drawn from
    q_open = [None] * B  # the distribution of each image's latest adaptive opener query
    coupled = state.config.draft_coupling == "maximal"
    for rec in records:
        k, probs = rec.index, query_probs(state, rec)
        cells = rec.batch.cells.expand(B, -1)
        # plain draws: the cell's token key at its draw count
        attempt = draws.gather(1, cells)
        drawn = sample_probs(probs, key_uniform(draw_key(state.seeds, cells, PURPOSE_TOKEN, attempt)))
        assert (rec.draws >= draws).all(), f"pass {k}: a draw counter fell"
        for b in range(B):
            for i, (c, kind) in enumerate(zip(cells[b].tolist(), pick(rec.batch.kinds, b).tolist())):
                if c >= N:
                    continue  # padding and feeds decide the trash column
                assert rec.draws[b, c] > draws[b, c], f"pass {k}: cell {c} drawn without its counter rising"
                p, decided, a = probs[b, i], int(rec.decided[b, i]), int(attempt[b, i])
                seen["attempt >= 1"] += a >= 1
                if kind == VERIFY:
                    n = int(pick(rec.batch.attempts, b)[i])
                    token, ok = verify_draft(p, q_open[b], held[b, c], key(state.seeds[b], c, PURPOSE_ACCEPT, n),
                                             key(state.seeds[b], c, PURPOSE_RESIDUAL, n))
                    assert (decided, bool(rec.accepted[b, i])) == (int(token), bool(ok)), (k, b, c, n)
                    if not ok:
                        assert p[decided] > q_open[b][decided], "a rejection resamples where p > q"
                        seen["rejected verification"] += 1
                elif kind == CHECK and (done[b, c] == k or coupled):
                    # a check that decides the cell; or (maximal coupling) the same test, at the same keys,
                    # redraws a draft that stays one (after its row's first rejection, or cut off by a
                    # rejected draft it read, drafting ahead)
                    q = q_of[b, c]
                    token, ok = verify_draft(p, q, held[b, c], key(state.seeds[b], c, PURPOSE_ACCEPT, a),
                                             key(state.seeds[b], c, PURPOSE_RESIDUAL, a))
                    assert decided == int(token), (k, b, c, a)
                    if done[b, c] > k:
                        seen["coupled redraft"] += 1
                        seen["redraft kept its draft"] += bool(ok)
                    elif not ok:
                        assert p[decided] > q[decided], "a rejection resamples where p > q"
                        seen["rejected check"] += 1
                else:  # a draw, an opener draft, or (independent coupling) a redraft
                    assert decided == int(drawn[b, i]), (k, b, c, a)
                if kind in (OPEN, VERIFY):
                    q_open[b] = p
                if kind in (CHECK, DRAW) and done[b, c] > k:
                    q_of[b, c] = p  # redrafted: the next check tests it against this pass's distribution
            # drafts started after the pass: counted once, drawn with the draft key ("random")
            in_pass = set(cells[b].tolist())
            for c in (rec.draws[b, :N] > draws[b, :N]).nonzero()[:, 0].tolist():
                if c in in_pass:
                    continue
                assert rec.draws[b, c] == draws[b, c] + 1
                if state.config.draft_init == "random":
                    u = key_uniform(key(state.seeds[b], c, PURPOSE_DRAFT, int(draws[b, c])))
                    assert int(rec.tokens[b, c]) == min(int(u * V), V - 1)
                    q_of[b, c] = torch.full((V,), 1.0 / V)
                else:
                    q_of[b, c] = torch.nn.functional.one_hot(rec.tokens[b, c], V).float()
        draws, held = rec.draws, rec.tokens
    return seen


def opener_attempts(records, batch, layout):
    """{(image, row): [(pass, kind, attempt)]} of the queries deciding (r, 0), r >= 1, in pass order."""
    W, out = layout.cols, {}
    for rec in records[1:]:
        for b in range(batch):
            for c, kind, a in zip(pick(rec.batch.cells, b).tolist(), pick(rec.batch.kinds, b).tolist(),
                                  pick(rec.batch.attempts, b).tolist()):
                if W <= c < layout.num_cells and c % W == 0:
                    out.setdefault((b, c // W), []).append((rec.index, kind, a))
    return out


@pytest.mark.parametrize("placeholder,first_row,draft_len", [("left", None, 0), ("above", "early", 0),
                                                              ("left", None, 2)])
def test_adaptive_openings_count_attempts_and_replay(placeholder, first_row, draft_len):
    gpt = tiny_gpt(6, seed=3)
    config = DecodeConfig(window=1, adaptive=True, placeholder=placeholder, first_row=first_row,
                          draft_len=draft_len, cfg_scale=2.0, temperature=1.5)
    layout = layout_for(gpt)
    state, records = decode_records(gpt, layout, config, torch.tensor([0, 4, 8]), torch.tensor([1, 14, 27]))
    openings = opener_attempts(records, 3, layout)
    assert len(openings) == 3 * (layout.rows - 1)
    for (b, r), queries in openings.items():
        passes, kinds, attempts = zip(*queries)
        assert list(attempts) == list(range(len(queries))), (b, r, attempts)
        assert list(passes) == list(range(passes[0], passes[0] + len(queries)))  # one attempt a pass
        assert kinds[0] in (DRAW, OPEN) and all(kind == VERIFY for kind in kinds[1:])
        assert kinds[0] == OPEN or len(queries) == 1
    assert max(len(q) for q in openings.values()) >= 3  # openings really took several attempts
    seen = replay(state, records)
    assert seen["rejected verification"] > 0


@pytest.mark.parametrize("mode,draft_len,init,coupling", [
    ("fixed", 0, "above", "maximal"), ("ntp", 3, "above", "maximal"), ("fixed", 3, "random", "maximal"),
    ("fixed", 2, "left", "maximal"), ("adaptive", 3, "above", "maximal"), ("ntp", 3, "above", "independent"),
    ("fixed", 3, "random", "independent"), ("fixed ahead", 3, "above", "maximal"),
    ("adaptive ahead", 2, "above", "independent")])
def test_row_draft_draws_replay_with_fresh_attempts(mode, draft_len, init, coupling):
    modes = {"ntp": dict(window=None), "fixed": dict(window=1), "adaptive": dict(window=1, adaptive=True),
             "fixed ahead": dict(window=1, draft_ahead=True), "adaptive ahead": dict(window=1, adaptive=True,
                                                                                   draft_ahead=True)}
    gpt = tiny_gpt(6, seed=1)
    config = DecodeConfig(**modes[mode], draft_len=draft_len, draft_init=init, draft_coupling=coupling,
                          cfg_scale=2.0, temperature=1.5)
    state, records = decode_records(gpt, layout_for(gpt), config, torch.tensor([1, 4, 6]), torch.tensor([5, 6, 7]))
    assert int(records[0].draws[0, 0]) == 1  # the prefix pass draws (0, 0)
    seen = replay(state, records)
    if draft_len:  # drafts were rejected and cells drawn again, at attempts past 0
        assert seen["rejected check"] > 0 and seen["attempt >= 1"] > 0
    if draft_len and coupling == "maximal":  # redrafts were coupled, and some kept their old draft
        assert 0 < seen["redraft kept its draft"] < seen["coupled redraft"]


@pytest.mark.parametrize("mode", ["ntp", "fixed", "fixed ahead"])
def test_every_redrafted_cell_stores_its_pass_distribution(mode):
    """A cell that stays a draft after its pass (after its row's first rejection, or cut off drafting
    ahead) is next tested against the distribution it was redrawn from, this pass's p_new, also when
    the coupled redraft kept its old draft. Keeping the old q for such a kept draft biases it: target
    (0.5, 0.5), old q (0.9, 0.1) gives (0.278, 0.722)
    (test_sampling.test_a_kept_coupled_redraft_is_next_tested_against_its_new_distribution)."""
    from common.zipar.engine import decode_steps, start_decode
    from common.zipar.row_drafts import Q_STORED
    from llamagen.generate import condition_prefix

    modes = {"ntp": dict(window=None), "fixed": dict(window=1), "fixed ahead": dict(window=1, draft_ahead=True)}
    gpt = tiny_gpt(6, seed=1)
    config = DecodeConfig(**modes[mode], draft_len=3, cfg_scale=2.0, temperature=1.5)
    layout = layout_for(gpt)
    labels, seeds = torch.tensor([1, 4, 6]), torch.tensor([5, 6, 7])
    with torch.inference_mode():
        state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config)
        records = list(decode_steps(gpt, state))
    done = decided_at(records, 3, layout.num_cells)
    W, L, R = layout.cols, config.draft_len, state.scheduler.draft_rows
    # the ring after every pass, by replaying the decode: the state's ring is only the last pass's
    with torch.inference_mode():
        state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config)
        kept_old = redrafted = 0
        held = None
        for rec in decode_steps(gpt, state):
            if rec.index > 0:
                probs = query_probs(state, rec)
                cells = rec.batch.cells.expand(3, -1)
                for b in range(3):
                    for i, c in enumerate(cells[b].tolist()):
                        if c >= layout.num_cells or done[b, c] <= rec.index:
                            continue  # not a cell, or decided in this pass
                        entry = (c // W % R) * L + c % W % L
                        assert int(state.row_drafts.kinds[b, entry]) == Q_STORED, (rec.index, b, c)
                        assert torch.equal(state.row_drafts.probs[b, entry], probs[b, i].to(state.row_drafts.probs.dtype)), \
                            (rec.index, b, c)
                        redrafted += 1
                        kept_old += int(pick(rec.batch.kinds, b)[i]) == CHECK and int(rec.decided[b, i]) == int(held[b, c])
            held = rec.tokens
    assert 0 < kept_old < redrafted  # coupled redrafts kept their draft, others moved
