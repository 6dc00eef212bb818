"""Exact proactive drafting (common.zipar.draft_tree): one drafted row decoded pass by pass on a toy
order-2 Markov model whose exact distribution is enumerated, with coupled redrafts, new drafts by the
"left" (point mass) and "random" (uniform) policies, and candidate trees of several widths and depths.
Chi-square tests at thousands of samples on every cell's marginal and every adjacent pair, and on the
rules one at a time (one depth's recursive test, the redrafts, the token after accepted drafts); each
of the four non-exact variants of the tree (draft_tree's docstring) is planted and must be rejected;
the width-1 tree is the plain chain (common.zipar.sampling.verify_draft per depth)."""
import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from common.zipar import draft_tree
from common.zipar.draft_tree import recursive_test, siblings, verify_tree
from common.zipar.sampling import acceptance_probability, residual_distribution, sample_probs

V, N = 5, 6  # codes, row length


def toy_model(seed: int) -> torch.Tensor:
    """(N, V, V, V) P[c, a, b] = P(x_c | x_{c-2} = a, x_{c-1} = b) (code 0 before the row), peaked."""
    return _dirichlet(torch.Generator().manual_seed(seed), (N, V, V), 0.4)


def _dirichlet(g, shape, alpha, codes=V):
    """Random distributions over `codes` (Dirichlet(alpha) by normalised Gammas), each entry >= ~1e-4."""
    x = torch._standard_gamma(torch.full((*shape, codes), alpha, dtype=torch.float64), generator=g).clamp(min=1e-4)
    return x / x.sum(-1, keepdim=True)


def exact_joint(P: torch.Tensor) -> dict:
    """P(x_0..x_{N-1}) of every sequence, by enumeration."""
    out = {}
    for seq in itertools.product(range(V), repeat=N):
        prob, a, b = 1.0, 0, 0
        for c, x in enumerate(seq):
            prob *= float(P[c, a, b, x])
            a, b = b, x
        out[seq] = prob
    return out


def next_probs(P, cell, a, b):
    """(S,) contexts -> (S, V) the model's distribution at `cell` (clamped to the row)."""
    return P[cell.clamp(max=N - 1), a, b]


def decode_row(P, S, L, T, W, init, seed):
    """S independent decodes of one row of N cells with L drafts a row-pass and a (W, T) tree: (S, N)
    tokens and telemetry. The draft policy, coupling and bookkeeping follow common.zipar.row_drafts."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    s_idx = torch.arange(S)
    tokens = torch.zeros(S, N + L + 1, dtype=torch.int64)  # room past the row's end (never decided)
    q = torch.zeros(S, N + L + 1, V, dtype=torch.float64)
    tokens[:, 0] = sample_probs(P[0, 0, 0].expand(S, -1), rand(S))
    count, held = torch.ones(S, dtype=torch.int64), torch.zeros(S, dtype=torch.int64)
    seen = {"passes": 0, "sibling wins": 0, "n": []}

    def start():
        nonlocal held
        target = torch.clamp(N - count, max=L)
        for o in range(L):
            new = (o >= held) & (o < target)
            cell = count + o
            if init == "left":
                code = tokens[s_idx, count + held - 1]
                dist = torch.nn.functional.one_hot(code, V).double()
            else:
                code = (rand(S) * V).long().clamp(max=V - 1)
                dist = torch.full((S, V), 1.0 / V, dtype=torch.float64)
            tokens[s_idx, cell] = torch.where(new, code, tokens[s_idx, cell])
            q[s_idx, cell] = torch.where(new[:, None], dist, q[s_idx, cell])
        held = target

    def context(path_tokens):
        """the two tokens before depth len(path_tokens) + 1: the decided ones, then the path's."""
        seq = [torch.where(count - 2 + i >= 0, tokens[s_idx, (count - 2 + i).clamp(min=0)], 0) for i in range(2)]
        seq += path_tokens
        return seq[-2], seq[-1]

    start()
    while bool((count < N).any()):
        live = count < N
        cols = count[:, None] + torch.arange(L)
        draft, dq = tokens[s_idx[:, None], cols], q[s_idx[:, None], cols]
        drafts = torch.where(live, held, 0)
        depths = torch.where(live, torch.clamp(N - count, max=held + 1), 0)
        u_sib = rand(S, T, W - 1)  # the siblings' tests
        sib, ok = siblings(dq[:, :T], draft[:, :T], rand(S, T, W - 1))
        cands = torch.cat([draft[:, :T, None], sib], -1)
        valid = torch.cat([torch.ones(S, T, 1, dtype=torch.bool), ok], -1)
        levels = []
        for t in range(T + 1):
            per_path = []
            for path in itertools.product(range(W), repeat=t):
                a, b = context([cands[:, d, k] for d, k in enumerate(path)])
                per_path.append(next_probs(P, count + t, a, b))
            levels.append(torch.stack(per_path, 1))
        chain = []
        for t in range(T + 1, L + 1):
            a, b = context([draft[:, d] for d in range(t)])
            chain.append(next_probs(P, count + t, a, b))
        chain = torch.stack(chain, 1) if chain else torch.zeros(S, 0, V, dtype=torch.float64)
        out = draft_tree.verify_tree(levels, chain, draft, dq, cands, valid, drafts, depths, rand(S, L), u_sib,
                                     rand(S, L), rand(S, L + 1))
        zero_path = torch.cat([lv[:, :1] for lv in levels] + [chain], 1)
        for t in range(L + 1):  # decided tokens, then redrafts that store this pass's distribution
            write = t < depths
            cell = (count + t).clamp(max=N + L)
            tokens[s_idx, cell] = torch.where(write, out["tokens"][:, t], tokens[s_idx, cell])
            q[s_idx, cell] = torch.where((write & (t >= out["n"]))[:, None], zero_path[:, t], q[s_idx, cell])
        seen["sibling wins"] += int((out["winner"] > 0).sum())
        seen["n"].append(out["n"][live])
        held = torch.where(live, depths - out["n"], held)
        count = count + out["n"]
        seen["passes"] += 1
        start()
    return tokens[:, :N], seen


def exactness_pvalues(P, samples: torch.Tensor) -> list[float]:
    """Chi-square p-values: every cell's marginal and every adjacent pair's joint against enumeration."""
    joint, n, out = exact_joint(P), len(samples), []
    arr = samples.numpy()
    for cells in [(c,) for c in range(N)] + [(c, c + 1) for c in range(N - 1)]:
        expected = np.zeros((V,) * len(cells))
        for seq, prob in joint.items():
            expected[tuple(seq[c] for c in cells)] += prob
        observed = np.zeros_like(expected)
        np.add.at(observed, tuple(arr[:, c] for c in cells), 1)
        e, o = expected.ravel() * n, observed.ravel()
        big = e >= 5
        e, o = np.append(e[big], e[~big].sum()), np.append(o[big], o[~big].sum())
        keep = e > 0
        out.append(stats.chisquare(o[keep], e[keep] / e[keep].sum() * o[keep].sum()).pvalue)
    return out


def one_depth(n, p, q, W, seed):
    """n draws of one tree depth: the draft from q, W - 1 siblings, recursive_test against p."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    p, q = p.expand(n, -1), q.expand(n, -1)
    draft = sample_probs(q, rand(n))
    sib, ok = siblings(q, draft, rand(n, W - 1))
    cands, valid = torch.cat([draft[:, None], sib], 1), torch.cat([torch.ones(n, 1, dtype=torch.bool), ok], 1)
    token, winner = draft_tree.recursive_test(p, q, cands, valid, rand(n, W), rand(n))
    return token, winner, cands


P_ONE = torch.tensor([0.05, 0.4, 0.25, 0.2, 0.1], dtype=torch.float64)
Q_ONE = torch.tensor([0.5, 0.05, 0.3, 0.1, 0.05], dtype=torch.float64)


def check_one_depth() -> float:
    """Rules 1 and 2 at one depth: the token follows p; the siblings are distinct codes and win often."""
    n = 40000
    token, winner, cands = one_depth(n, P_ONE, Q_ONE, 3, seed=3)
    assert (winner >= 1).sum() > n // 10
    assert bool(((cands[:, 1] != cands[:, 0]) & (cands[:, 2] != cands[:, 1]) & (cands[:, 2] != cands[:, 0])).all())
    return stats.chisquare(np.bincount(token.numpy(), minlength=5), P_ONE.numpy() * n).pvalue


def tree_inputs(n, L, T, W, seed, q_first=None, nodes=None):
    """verify_tree's arguments for n rows of one random setting (each depth's q, every node's p) with their
    own drafts, siblings and uniforms; q_first replaces depth 1's q, nodes(levels, chain, draft) the p's."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    q = _dirichlet(g, (1, L), 0.7).expand(n, -1, -1).clone()
    if q_first is not None:
        q[:, 0] = q_first
    draft = sample_probs(q, rand(n, L))
    sib, ok = siblings(q[:, :T], draft[:, :T], rand(n, T, W - 1))
    cands = torch.cat([draft[:, :T, None], sib], -1)
    valid = torch.cat([torch.ones(n, T, 1, dtype=torch.bool), ok], -1)
    levels = [_dirichlet(g, (1, W ** t), 0.7).expand(n, -1, -1) for t in range(T + 1)]
    chain = _dirichlet(g, (1, L - T), 0.7).expand(n, -1, -1)
    if nodes is not None:
        levels, chain = nodes(levels, chain, draft)
    drafts = torch.full((n,), L)
    return levels, chain, draft, q, cands, valid, drafts, drafts + 1, rand(n, L), rand(n, T, W - 1), rand(n, L), \
        rand(n, L + 1)


def check_redrafts() -> float:
    """Rule 3: depth 1's p has no mass where its q has any, so every candidate there is rejected and the row
    stops; every later cell is redrawn and must follow the distribution along candidate 0's path (the one
    the engine stores as its q), at a tree depth (with siblings) and past the tree."""
    n, L, T, W = 20000, 3, 2, 3
    stop = lambda levels, chain, draft: ([torch.tensor([0.0, 0.0, 0.0, 0.5, 0.5], dtype=torch.float64)  # noqa: E731
                                          .expand(n, 1, -1)] + levels[1:], chain)
    args = tree_inputs(n, L, T, W, seed=4, q_first=torch.tensor([0.4, 0.3, 0.3, 0.0, 0.0], dtype=torch.float64),
                       nodes=stop)
    out = draft_tree.verify_tree(*args)
    assert bool((out["n"] == 1).all())
    zero_path = torch.cat([lv[:, :1] for lv in args[0]] + [args[1]], 1)
    return min(stats.chisquare(np.bincount(out["tokens"][:, t].numpy(), minlength=V),
                               zero_path[0, t].numpy() * n).pvalue for t in range(1, L + 1))


def check_token_after_drafts() -> float:
    """Rule 4: every node's p is the point mass on its depth's draft, so every draft passes; the token after
    the last one must follow the last query's p."""
    n, L, T, W = 20000, 3, 2, 3
    point = lambda d: torch.nn.functional.one_hot(d, V).double()  # noqa: E731
    certain = lambda levels, chain, draft: (  # noqa: E731
        [point(draft[:, t])[:, None].expand(-1, W ** t, -1) for t in range(T + 1)],
        torch.cat([point(draft[:, T + 1:]), chain[:, -1:]], 1))
    args = tree_inputs(n, L, T, W, seed=7, nodes=certain)
    out = draft_tree.verify_tree(*args)
    assert bool((out["n"] == L + 1).all())
    return stats.chisquare(np.bincount(out["tokens"][:, L].numpy(), minlength=V), args[1][0, -1].numpy() * n).pvalue


def check_decodes(L=4, T=2, W=3, init="random", S=4000) -> float:
    """Whole decodes of the toy row: every cell's marginal and every adjacent pair against enumeration
    (the smallest p-value, Bonferroni-scaled over the 11 tests)."""
    P = toy_model(1)
    tokens, seen = decode_row(P, S, L, T, W, init, seed=2)
    assert seen["sibling wins"] > S // 20  # siblings really decided cells
    return min(exactness_pvalues(P, tokens)) * (2 * N - 1)


def test_one_depth_follows_p():
    assert check_one_depth() > 1e-3


def test_redrafts_follow_the_distribution_they_store():
    assert check_redrafts() > 1e-3


def test_token_after_accepted_drafts_follows_p():
    assert check_token_after_drafts() > 1e-3


@pytest.mark.parametrize("L,T,W,init", [(4, 2, 3, "random"), (3, 2, 3, "left"), (5, 3, 2, "random")])
def test_tree_decodes_follow_the_exact_distribution(L, T, W, init):
    assert check_decodes(L, T, W, init) > 1e-3


def _longest_path_tree(levels, chain, draft, q, cands, valid, drafts, depths, u_accept, u_sibling, u_residual,
                       u_token, exact=verify_tree):
    """Rule 1 broken as released: every path through the tree is tested (candidate k against the residual
    left after its siblings 0..k-1 at the same node) and the path with the longest run of passing depths
    wins; its first failing depth takes a draw from the residual after all its siblings."""
    B, L = draft.shape
    T, W = cands.shape[1], cands.shape[2]
    u_tree = torch.cat([u_accept[:, :T, None], u_sibling], -1)
    best, best_run, best_node = (torch.zeros(B, dtype=torch.int64) for _ in range(3))
    best_run -= 1
    rows = torch.arange(B)
    for path in range(W ** T):
        digits = [(path // W ** (T - 1 - d)) % W for d in range(T)]
        run, alive, node = torch.zeros(B, dtype=torch.int64), torch.ones(B, dtype=torch.bool), 0
        for d, k in enumerate(digits):
            target, proposal = levels[d][:, node], q[:, d]
            for j in range(k):
                target = residual_distribution(target, proposal)
                proposal = draft_tree._without(proposal, cands[:, d, j])
            alive = alive & valid[:, d, k] & (d < drafts) & (
                u_tree[:, d, k] < acceptance_probability(target, proposal, cands[:, d, k]))
            run = run + alive.long()
            node = node * W + k
        better = run > best_run
        best, best_run = torch.where(better, path, best), torch.where(better, run, best_run)
    out = exact(levels, chain, draft, q, cands, valid, drafts, depths, u_accept, u_sibling, u_residual, u_token)
    tokens, n = out["tokens"].clone(), out["n"].clone()
    own = ~((best == 0) & (best_run == drafts.clamp(max=T)))  # else the walk is the exact one's
    digits = torch.stack([(best // W ** (T - 1 - d)) % W for d in range(T)], 1)  # (B, T)
    node = torch.zeros(B, dtype=torch.int64)
    for d in range(T + 1):
        stop = own & (best_run == d) & (d < depths)
        if d < T:
            target, proposal = levels[d][rows, node], q[:, d]
            for j in range(W):
                ok = valid[:, d, j, None]
                target = torch.where(ok, residual_distribution(target, proposal), target)
                proposal = torch.where(ok, draft_tree._without(proposal, cands[:, d, j]), proposal)
            last = torch.where(d < drafts, sample_probs(target, u_residual[:, d]),
                               sample_probs(levels[d][rows, node], u_token[:, d]))
            took = cands[rows, d, digits[:, d]]
            tokens[:, d] = torch.where(own & (best_run > d), took, torch.where(stop, last, tokens[:, d]))
            node = node * W + digits[:, d]
        else:
            p = levels[T][rows, node]
            plain, _ = recursive_test(p, q[:, T], draft[:, T, None], torch.ones(B, 1, dtype=torch.bool),
                                      u_accept[:, T, None], u_residual[:, T]) if T < L else (None, None)
            last = sample_probs(p, u_token[:, T]) if T == L else torch.where(T < drafts, plain, sample_probs(p, u_token[:, T]))
            tokens[:, T] = torch.where(stop, last, tokens[:, T])
    new_n = torch.where(own, torch.minimum(best_run + 1, depths), n)
    zero_path = torch.cat([lv[:, :1] for lv in levels] + [chain], 1)
    for t in range(L + 1):  # the cells after the decided ones: rule 3's redrafts, as in the exact walk
        redraft = sample_probs(zero_path[:, t], u_token[:, t])
        if t < L:
            tree = (cands[:, t], valid[:, t]) if t < T else (draft[:, t, None], torch.ones(B, 1, dtype=torch.bool))
            redraft = torch.where(t < drafts, draft_tree._redraft(zero_path[:, t], q[:, t], *tree, u_accept[:, t],
                                                                  u_residual[:, t]), redraft)
        tokens[:, t] = torch.where(own & (t >= new_n), redraft, tokens[:, t])
    return {**out, "tokens": tokens, "n": new_n}


def _redraft_from_sibling_residual(p, q, cands, valid, u_accept, u_residual):
    """Rule 3 broken as released: candidate 0's plain test, but a rejection resamples from the residual
    left after every sibling."""
    accept = u_accept < acceptance_probability(p, q, cands[..., 0])
    target, proposal = p, q
    for k in range(cands.shape[-1]):
        target = torch.where(valid[..., k, None], residual_distribution(target, proposal), target)
        proposal = torch.where(valid[..., k, None], draft_tree._without(proposal, cands[..., k]), proposal)
    return torch.where(accept, cands[..., 0], sample_probs(target, u_residual))


def _last_passing_wins(p, q, cands, valid, u_accept, u_residual):
    """Rule 1 broken: every candidate is tested in turn and the last that passes wins."""
    target, proposal = p, q
    winner = torch.full_like(cands[..., 0], -1)
    for k in range(cands.shape[-1]):
        code = cands[..., k]
        passed = valid[..., k] & (u_accept[..., k] < acceptance_probability(target, proposal, code))
        winner = torch.where(passed, k, winner)
        target = torch.where((valid[..., k] & ~passed)[..., None], residual_distribution(target, proposal), target)
        proposal = torch.where(valid[..., k, None], draft_tree._without(proposal, code), proposal)
    rest = sample_probs(target, u_residual)
    return torch.where(winner >= 0, cands.gather(-1, winner.clamp(min=0)[..., None])[..., 0], rest), winner


VARIANTS = {  # name: (how to plant it, the check that must reject it)
    "the longest accepted path wins": (lambda m: m.setattr(draft_tree, "verify_tree", _longest_path_tree),
                                       lambda: check_decodes(S=10000)),
    "a later passing candidate wins": (lambda m: m.setattr(draft_tree, "recursive_test", _last_passing_wins),
                                       check_one_depth),
    "siblings tested as if drawn from q": (lambda m: m.setattr(draft_tree, "_without", lambda proposal, code: proposal),
                                           check_one_depth),
    "redraft from the residual after siblings": (lambda m: m.setattr(draft_tree, "_redraft",
                                                                     _redraft_from_sibling_residual), check_redrafts),
    "bonus token from a uniform": (lambda m: m.setattr(draft_tree, "_after_drafts",
                                                       lambda p, u: sample_probs(torch.ones_like(p), u)),
                                   check_token_after_drafts),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_non_exact_variant_is_rejected(variant, monkeypatch):
    plant, check = VARIANTS[variant]
    plant(monkeypatch)
    assert check() < 1e-6, variant


def test_width_one_is_the_plain_chain():
    """W = 1: every depth is common.zipar.sampling.verify_draft of its draft, the walk stops at the first rejection, and the cells
    after it are the same tests' outcomes (the maximal coupling), the token after the last draft a draw."""
    g = torch.Generator().manual_seed(0)
    B, L = 4000, 4
    p = _dirichlet(g, (B, L + 1), 0.5)
    q = _dirichlet(g, (B, L), 0.5)
    draft = sample_probs(q, torch.rand(B, L, generator=g, dtype=torch.float64))
    ua, ur, ut = (torch.rand(B, k, generator=g, dtype=torch.float64) for k in (L, L, L + 1))
    drafts = torch.randint(0, L + 1, (B,), generator=g)
    depths = torch.minimum(drafts + 1, torch.randint(1, L + 2, (B,), generator=g))
    cands, valid = draft[:, :0, None], torch.ones(B, 0, 1, dtype=torch.bool)
    out = verify_tree([p[:, :1]], p[:, 1:], draft, q, cands, valid, drafts, depths, ua, torch.zeros(B, 0, 0), ur, ut)
    kept = ua < acceptance_probability(p[:, :L], q, draft)  # verify_draft, on uniforms instead of keys
    verified = torch.where(kept, draft, sample_probs(residual_distribution(p[:, :L], q), ur))
    kept = kept & (torch.arange(L) < drafts[:, None])
    verified = torch.where(torch.arange(L) < drafts[:, None], verified, sample_probs(p[:, :L], ut[:, :L]))
    first = torch.where(kept, L + 1, torch.arange(L)).min(1).values  # first depth not accepted
    n = torch.minimum(first + 1, depths)
    assert torch.equal(out["n"], n)
    expect = torch.cat([verified, sample_probs(p[:, L], ut[:, L])[:, None]], 1)
    cols = torch.arange(L + 1) < depths[:, None]
    assert torch.equal(torch.where(cols, out["tokens"], 0), torch.where(cols, expect, 0))
    assert bool((n < depths).any()) and bool((n == depths).any())
