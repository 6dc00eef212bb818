"""The candidate tree in the engine (common.zipar.tree_drafts): the oracle over every query (tree nodes and
catch-up feeds included), exact marginals of the model against enumeration, batch invariance, the pass
count, the query bound, and the distributions the redrafted cells are next tested against."""
import numpy as np
import pytest
import torch
from scipy import stats

from common.zipar import row_drafts
from common.zipar.config import DecodeConfig
from common.zipar.draft_tree import siblings, verify_tree
from common.zipar.engine import decode_steps, start_decode
from common.zipar.layout import Layout
from common.zipar.row_drafts import Q_STORED
from common.zipar.sampling import (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_SIBLING, PURPOSE_SIBLING_ACCEPT,
                                   PURPOSE_TOKEN, draw_key_from, key_uniform, sample_probs, seed_key)
from common.zipar.tree_nodes import level_start
from common.zipar.window import queries_per_pass
from llamagen.generate import condition_prefix, generate, layout_for
from tests.helpers.llamagen import CountingModel, assert_each_image_alone, run_oracle, tiny_gpt
from tests.helpers.records import decided_at, pick, query_probs
from tests.oracle import full_forward

MODES = {"ntp": dict(window=None), "fixed": dict(window=2), "adaptive": dict(window=1, adaptive=True),
         "fixed early": dict(window=2, first_row="early"), "fixed ahead": dict(window=1, draft_ahead=True),
         "adaptive ahead": dict(window=1, adaptive=True, draft_ahead=True)}
TREES = [(2, 3), (3, 2), (3, 4)]  # (width, depth)


def tree_config(mode, width, depth, draft_len, **kwargs):
    return DecodeConfig(**MODES[mode], draft_len=draft_len, draft_tree_width=width, draft_tree_depth=depth,
                        **kwargs)


@torch.inference_mode()
def walks_off_the_chain(gpt, layout, config, labels, seeds, fixed_tokens=None) -> int:
    """Passes after which some row holds decided tokens without entries (a walk left the chain through a
    sibling and decided past it): the catch-up the tree needs, so the tree really ran."""
    state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config, fixed_tokens)
    return sum(int(state.tree_drafts.uncached.sum() > 0) for rec in decode_steps(gpt, state) if rec.index > 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width,depth", TREES)
@pytest.mark.parametrize("init", ["above", "random"])
def test_oracle_every_query_with_a_tree(mode, width, depth, init):
    gpt = tiny_gpt(6, seed=7)
    config = tree_config(mode, width, depth, draft_len=4, draft_init=init, cfg_scale=2.0, temperature=1.5)
    labels, seeds = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    with torch.inference_mode():
        err, _ = run_oracle(gpt, layout_for(gpt), config, labels, seeds)  # also checks (e) on every query
    assert err <= 1e-4
    assert walks_off_the_chain(gpt, layout_for(gpt), config, labels, seeds) > 0


def test_oracle_with_a_tree_end_of_row_tokens_and_padded_prefix():
    gpt = tiny_gpt(5, preset="GPT-tiny-gqa", cls_token_num=3)
    layout = Layout(4, 5, 3, end_of_row=True)
    config = DecodeConfig(window=1, adaptive=True, draft_len=3, draft_tree_width=3, draft_tree_depth=3,
                          draft_init="random", cfg_scale=2.0, temperature=1.5)
    valid = torch.ones(4, 3, dtype=torch.bool)
    valid[1, 0] = valid[3, :2] = False
    with torch.inference_mode():
        err, _ = run_oracle(gpt, layout, config, torch.tensor([2, 7]), torch.tensor([3, 8]),
                            torch.tensor([60, 61, 62, 63]), valid)
    assert err <= 1e-4


def _exact_joint(gpt, label, config, k):
    """(V,) * (k+1) P(x_0..x_k), the first k+1 tokens in raster order under next-token prediction, by
    enumerating every sequence with uncached forwards."""
    prefix = condition_prefix(gpt, torch.tensor([label]), config).embeddings  # (1, 1, D)
    V = gpt.output.out_features
    ids = torch.cartesian_prod(*[torch.arange(V)] * k).reshape(-1, k)  # (V^k, k)
    x = torch.cat([prefix.expand(len(ids), -1, -1), gpt.embed_tokens(ids)], dim=1)
    logits = full_forward(gpt, x, torch.arange(k + 1), torch.ones(k + 1, k + 1, dtype=torch.bool).tril())
    probs = torch.softmax(logits.double() / config.temperature, dim=-1)  # (V^k, k+1, V)
    joint = probs[:, :k].gather(2, ids[..., None])[..., 0].prod(1)  # P(x_0..x_{k-1})
    return (joint[:, None] * probs[:, k]).reshape((V,) * (k + 1))


def _chi_square(counts, expected, n):
    big = expected * n >= 5  # pool the rare outcomes into one bin
    observed, wanted = counts[big], expected[big] * n
    if (~big).any():
        observed, wanted = np.append(observed, counts[~big].sum()), np.append(wanted, expected[~big].sum() * n)
    return stats.chisquare(observed, wanted / wanted.sum() * observed.sum()).pvalue


# (mode, L, width, depth, init): a 3x3 grid, 6 codes; row 0 and (1, 0), (1, 1) in raster order (k = 4)
EXACT = [("ntp", 2, 3, 3, "random", "maximal"), ("ntp", 2, 2, 2, "above", "maximal"),
         ("fixed", 2, 3, 2, "random", "maximal"), ("adaptive", 2, 3, 3, "left", "maximal"),
         ("fixed ahead", 2, 3, 3, "random", "maximal"), ("ntp", 2, 3, 3, "random", "independent")]


@pytest.mark.parametrize("mode,draft_len,width,depth,init,coupling", EXACT)
def test_tree_decodes_follow_the_exact_model_joint(mode, draft_len, width, depth, init, coupling):
    """Every cell of row 0 and the next two, and the pair of row 0's drafted cells, against the
    enumerated distribution of next-token prediction (chi-square, 4000 images). (The LlamaGen layout
    opens row 1 when row 0 is complete, so these cells see what next-token prediction shows them in
    every mode.)"""
    gpt = tiny_gpt(3, seed=5, vocab_size=6)
    config = tree_config(mode, width, depth, draft_len=draft_len, draft_init=init, draft_coupling=coupling,
                         temperature=1.5)
    n = 4000
    with torch.inference_mode():
        joint = _exact_joint(gpt, 4, config, 4).numpy()  # (V,) * 5
        result = generate(gpt, torch.full((n,), 4), torch.arange(n) + 20_000, config)
    assert sum(result.draft_rejections) > n // 4
    tokens = result.tokens.reshape(n, -1).numpy()
    V = joint.shape[0]
    for k in range(5):
        marginal = joint.sum(axis=tuple(a for a in range(5) if a != k))
        assert _chi_square(np.bincount(tokens[:, k], minlength=V), marginal, n) > 1e-3, k
    pair = joint.sum(axis=(0, 3, 4)).reshape(-1)  # (x_1, x_2): the two drafted cells of row 0
    assert _chi_square(np.bincount(tokens[:, 1] * V + tokens[:, 2], minlength=V * V), pair, n) > 1e-3


@pytest.mark.parametrize("mode", MODES)
def test_batch_invariance_with_a_tree(mode):
    gpt = tiny_gpt(6, seed=1)
    config = tree_config(mode, 3, 3, draft_len=3, cfg_scale=2.0, temperature=1.5, draft_init="random")
    labels, seeds = torch.tensor([1, 4, 4, 8]), torch.tensor([5, 6, 7, 8])
    with torch.inference_mode():
        batched = generate(gpt, labels, seeds, config)
        assert len({tuple(r) for r in batched.row_tokens_per_pass}) > 1  # rows really decide differently
        assert_each_image_alone(gpt, labels, seeds, config, batched)


@pytest.mark.parametrize("mode", MODES)
def test_forward_passes_are_the_slowest_images(mode):
    gpt = tiny_gpt(6, seed=3)
    config = tree_config(mode, 3, 3, draft_len=4, temperature=1.5, draft_init="random")
    counting = CountingModel(gpt)
    with torch.inference_mode():
        result = generate(counting, torch.tensor([2, 3]), torch.tensor([11, 12]), config)
    assert counting.calls == result.forward_passes == max(result.image_passes)
    for rates in result.row_tokens_per_pass:
        assert all(1.0 <= rate <= config.draft_len + 1 for rate in rates)


@pytest.mark.parametrize("H,W,eor", [(5, 7, False), (6, 6, True)])
def test_queries_per_pass_bound_holds_with_a_tree(H, W, eor):
    gpt = tiny_gpt(max(H, W), seed=H)
    layout = Layout(H, W, 1, end_of_row=eor)
    fixed = torch.arange(50, 50 + H) if eor else None
    for window, adaptive, L, tree in [(None, False, 2, (3, 3)), (1, False, 3, (2, 4)), (2, True, 2, (3, 2)),
                                      (3, False, 4, (3, 3)), (1, False, 1, (4, 2))]:
        config = DecodeConfig(window=window, adaptive=adaptive, draft_len=L, draft_tree_width=tree[0],
                              draft_tree_depth=tree[1], draft_init="random", temperature=1.5)
        shape = config.tree_shape
        labels, seeds = torch.tensor([1, 2]), torch.tensor([3, 4])
        prefix = condition_prefix(gpt, labels, config).embeddings
        with torch.inference_mode():
            state = start_decode(gpt, prefix, seeds, layout, config, fixed)
            bound = queries_per_pass(layout, state.scheduler.w_min, L, tree=shape)
            state.scheduler.num_queries = layout.rows * (L + 3 + shape[1] + state.scheduler.tree_nodes.count)
            state.trim_on_host = False
            busiest = 0
            for rec in decode_steps(gpt, state):
                if not rec.batch.is_prefix:
                    busiest = max(busiest, int((rec.batch.slots != state.scheduler.slot_map.scratch).sum(1).max()))
            assert busiest <= bound, (window, adaptive, L, tree)


@pytest.mark.parametrize("mode", ["ntp", "fixed"])
def test_every_redrafted_cell_stores_its_pass_distribution_with_a_tree(mode):
    """With a tree too, a cell that stays a draft after its pass is next tested against the distribution
    it was redrawn from, this pass's p_new along the chain (draft_tree rule 3), also when the coupled
    redraft kept its old draft (the old q would bias it: docs/drafting_exactness.md)."""
    gpt = tiny_gpt(6, seed=1)
    config = tree_config(mode, 3, 3, draft_len=3, cfg_scale=2.0, temperature=1.5)
    layout = layout_for(gpt)
    labels, seeds = torch.tensor([1, 4, 6]), torch.tensor([5, 6, 7])
    with torch.inference_mode():
        state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config)
        records = list(decode_steps(gpt, state))
    done = decided_at(records, 3, layout.num_cells)
    W, L, R = layout.cols, config.draft_len, None
    with torch.inference_mode():
        state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config)
        R = state.scheduler.draft_rows
        redrafted = kept_old = 0
        held = None
        for rec in decode_steps(gpt, state):
            if rec.index > 0:
                probs = query_probs(state, rec)
                cells = rec.batch.cells.expand(3, -1)
                for b in range(3):
                    for i, c in enumerate(cells[b].tolist()):
                        if c >= layout.num_cells or done[b, c] <= rec.index:
                            continue  # not a cell (tree nodes and feeds decide the trash column), or decided now
                        entry = (c // W % R) * L + c % W % L
                        assert int(state.row_drafts.kinds[b, entry]) == Q_STORED, (rec.index, b, c)
                        assert torch.equal(state.row_drafts.probs[b, entry],
                                           probs[b, i].to(state.row_drafts.probs.dtype)), (rec.index, b, c)
                        redrafted += 1
                        kept_old += int(rec.decided[b, i]) == int(held[b, c])
            held = rec.tokens
    assert 0 < kept_old < redrafted


@pytest.mark.parametrize("mode,init,coupling", [("ntp", "random", "maximal"), ("fixed", "above", "maximal"),
                                                ("adaptive", "random", "independent")])
def test_tree_draws_replay_from_their_keys(mode, init, coupling):
    """Every sibling fed and every token a row-pass decides (or redrafts) follows from the recorded
    distributions, the drafts and their q before the pass, and the documented keys: siblings
    (PURPOSE_SIBLING, candidate k as the index) by draft_tree.siblings, tests by draft_tree.verify_tree
    with candidate 0 on the chain's keys (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_TOKEN at the cell's
    draws) and the siblings' on PURPOSE_SIBLING_ACCEPT. The nodes are found from their slots alone."""
    gpt = tiny_gpt(6, seed=1)
    K, D, L = 3, 3, 3
    T = D - 1
    config = tree_config(mode, K, D, draft_len=L, draft_init=init, draft_coupling=coupling, cfg_scale=2.0,
                         temperature=1.5)
    layout = layout_for(gpt)
    labels, seeds = torch.tensor([1, 4, 6]), torch.tensor([5, 6, 7])
    W, P = layout.cols, layout.prefix_len
    keys = seed_key(seeds)
    seen = {"sibling fed": 0, "sibling won": 0, "row-passes": 0}
    with torch.inference_mode():
        state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config)
        steps = decode_steps(gpt, state)
        next(steps)
        sch = state.scheduler
        E, R, base = sch.tree_nodes.count, sch.draft_rows, sch.slot_map.tree.slot_base
        rows = torch.arange(layout.rows)[None, :, None].expand(3, -1, L)
        while True:
            count, drafts = state.schedule.count.clone(), state.schedule.drafts.clone()
            tokens, draws = state.tokens.clone(), state.draws.clone()
            cols = count[..., None] + torch.arange(L)
            held = (cols < (count + drafts)[..., None]) & (cols < W)
            q = row_drafts.draft_distributions(state, rows, cols, held)  # (B, H, L, V) before the pass
            rec = next(steps, None)
            if rec is None:
                break
            probs = query_probs(state, rec)
            for b in range(3):
                slots, positions = pick(rec.batch.slots, b).tolist(), pick(rec.batch.positions, b).tolist()
                cells = pick(rec.batch.cells, b).tolist()
                for r in range(layout.rows):
                    c0 = int(count[b, r])  # the cell lane (an opener decides (r, 0) when c0 = 0)
                    chain = {c - r * W - c0: i for i, c in enumerate(cells) if 1 <= c0 and r * W + c0 <= c < (r + 1) * W}
                    if not chain:
                        continue
                    seen["row-passes"] += 1
                    m = len(chain)
                    nodes = {(slots[i] - base) % E: i for i in range(len(slots))
                             if base <= slots[i] < base + R * E and (positions[i] - P) // W == r}
                    cell = lambda o: r * W + min(c0 + o, W - 1)  # noqa: E731
                    u = lambda purpose, o, k=None: key_uniform(draw_key_from(  # noqa: E731
                        keys[b:b + 1], torch.tensor([[cell(o)]]), purpose, draws[b, cell(o)], index=k))[0, 0]
                    draft = torch.stack([tokens[b, cell(o)] for o in range(L)])
                    sib, ok = siblings(q[b, r, :T], draft[:T], torch.stack(
                        [torch.stack([u(PURPOSE_SIBLING, t, k) for k in range(1, K)]) for t in range(T)]))
                    ok &= held[b, r, :T, None]
                    for t in range(1, T + 1):  # every node fed a sibling was fed the replayed one
                        for p in range(K ** t):
                            node = level_start(K, t) + p
                            if node in nodes and p % K:
                                assert int(rec.input_ids[b, nodes[node]]) == int(sib[t - 1, p % K - 1]), (rec.index, b, r)
                                seen["sibling fed"] += 1
                    levels = [probs[b, chain[0]][None, None]]
                    for t in range(1, T + 1):
                        level = [probs[b, chain[t]] if p == 0 and t in chain else
                                 probs[b, nodes[level_start(K, t) + p]] if level_start(K, t) + p in nodes else
                                 torch.full_like(probs[b, 0], float("nan")) for p in range(K ** t)]
                        levels.append(torch.stack(level)[None])
                    rest = [probs[b, chain[o]] if o in chain else torch.full_like(probs[b, 0], float("nan"))
                            for o in range(T + 1, L + 1)]
                    out = verify_tree(levels, torch.stack(rest)[None], draft[None], q[b, r][None],
                                      torch.cat([draft[:T, None], sib], 1)[None],
                                      torch.cat([torch.ones(T, 1, dtype=torch.bool), ok], 1)[None],
                                      torch.tensor([min(int(drafts[b, r]), m)]), torch.tensor([m]),
                                      torch.stack([u(PURPOSE_ACCEPT, o) for o in range(L)])[None],
                                      torch.stack([torch.stack([u(PURPOSE_SIBLING_ACCEPT, t, k) for k in range(1, K)])
                                                   for t in range(T)])[None],
                                      torch.stack([u(PURPOSE_RESIDUAL, o) for o in range(L)])[None],
                                      torch.stack([u(PURPOSE_TOKEN, o) for o in range(L + 1)])[None])
                    n = int(out["n"][0])
                    assert int(state.schedule.count[b, r]) == c0 + n, (rec.index, b, r)
                    seen["sibling won"] += int((out["winner"][0] > 0).sum())
                    for o, i in chain.items():
                        want = out["tokens"][0, o]
                        if o >= n and coupling == "independent":  # a fresh draw of the chain's distribution
                            want = sample_probs(probs[b, i], u(PURPOSE_TOKEN, o))
                        assert int(rec.decided[b, i]) == int(want), (rec.index, b, r, o)
    assert seen["sibling fed"] > 0 and seen["sibling won"] > 0, seen


@pytest.mark.parametrize("mode", ["ntp", "fixed", "adaptive ahead"])
def test_no_query_reads_an_entry_of_a_token_not_decided(mode):
    """Every cell slot a query reads that was written in an earlier pass holds the token finally decided
    there: the chain's entries after a walk left the chain (and rejected drafts') stay dead until the
    catch-up (or the next pass) writes the decided token. With next-token prediction, also the converse:
    every query reads every cell before its position decided in an earlier pass (so the tokens a walk
    decided off the chain reach the queries after them, fed again by the catch-up)."""
    gpt = tiny_gpt(6, seed=7)
    config = tree_config(mode, 3, 3, draft_len=4, draft_init="random", cfg_scale=2.0, temperature=1.5)
    layout = layout_for(gpt)
    labels, seeds = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    assert walks_off_the_chain(gpt, layout, config, labels, seeds) > 0
    with torch.inference_mode():
        state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config)
        records = list(decode_steps(gpt, state))
    P, N = layout.prefix_len, layout.num_cells
    final = state.tokens[:, :N]
    done = decided_at(records, 3, N)
    reads = 0
    for b in range(3):
        written = {}  # cell slot -> (pass, token fed) of its latest entry
        for rec in records[1:]:
            slots, ids = pick(rec.batch.slots, b).tolist(), rec.input_ids[b].tolist()
            mask, now = rec.mask[b], set(slots)
            positions = pick(rec.batch.positions, b).tolist()
            for q in range(len(slots)):
                if mode == "ntp" and slots[q] != state.scheduler.slot_map.scratch:
                    before = (done[b] < rec.index) & (torch.arange(N) + P < positions[q])
                    assert mask[q, P:P + N][before].all(), (rec.index, b, q)
                for s in mask[q].nonzero()[:, 0].tolist():
                    if P <= s < P + N and s not in now:  # an entry of an earlier pass
                        assert written[s][1] == int(final[b, s - P]), (rec.index, b, q, s)
                        reads += 1
            for s, t in zip(slots, ids):
                if P <= s < P + N:
                    written[s] = (rec.index, t)
    assert reads > 0
