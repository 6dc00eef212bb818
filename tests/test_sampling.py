"""Sampling maths: exact filters against reference loops, statistical tests of the counter-based draws,
the inverse-CDF contract at exact ties and under rounding at block boundaries, seed packing."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from common.zipar.engine import cfg_active
from common.zipar.sampling import (PURPOSE_ACCEPT, PURPOSE_RESIDUAL, PURPOSE_TOKEN, draw_key, filter_logits, guide,
                             image_seeds, key_uniform, sample_logits, sample_probs, verify_draft)


def test_uniforms_are_uniform_and_in_open_interval():
    keys = draw_key(torch.arange(320), torch.arange(400).expand(320, -1), PURPOSE_TOKEN)
    grid = key_uniform(keys).numpy()  # 128k values
    assert grid.min() > 0 and grid.max() < 1
    assert stats.kstest(grid.ravel(), "uniform").pvalue > 1e-3
    # neighbouring positions, neighbouring seeds and the purposes of one cell are uncorrelated
    assert abs(np.corrcoef(grid[:, :-1].ravel(), grid[:, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(grid[:-1].ravel(), grid[1:].ravel())[0, 1]) < 0.02
    other = key_uniform(draw_key(torch.arange(320), torch.arange(400).expand(320, -1), PURPOSE_ACCEPT)).numpy()
    assert abs(np.corrcoef(grid.ravel(), other.ravel())[0, 1]) < 0.02


def test_keys_depend_on_every_field_and_not_on_batch_layout():
    seeds = torch.tensor([0, 1, 2**33 + 5, 7])
    pos = torch.arange(6).expand(4, -1)
    keys = draw_key(seeds, pos, PURPOSE_TOKEN)
    assert torch.equal(draw_key(seeds[2:3], pos[:1], PURPOSE_TOKEN)[0], keys[2])  # batch position is irrelevant
    assert not torch.equal(draw_key(seeds, pos, 1), keys)
    assert not torch.equal(draw_key(seeds, pos, PURPOSE_TOKEN, attempt=1), keys)
    assert len(set(keys.flatten().tolist())) == keys.numel()
    high = draw_key(torch.tensor([5, 5 + 2**32]), pos[:2], PURPOSE_TOKEN)  # the high half of a seed matters
    assert not torch.equal(high[0], high[1])


def test_sample_logits_samples_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    n = 40000
    keys = draw_key(torch.tensor([3]), torch.arange(n)[None], PURPOSE_TOKEN)[0]
    draws = sample_logits(logits.expand(n, -1), keys)
    counts = np.bincount(draws.numpy(), minlength=5)
    expected = torch.softmax(logits.double(), -1).numpy() * n
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_inverse_cdf_is_the_distribution_exactly():
    """The token for u is the interval of the cumulative distribution that holds u: sweeping u over
    a fine grid recovers every probability to the grid's resolution, zeros and an unnormalised
    input included, and the index never leaves [0, V)."""
    p = torch.tensor([0.0, 0.25, 0.0, 0.125, 0.5, 0.125, 0.0]) * 3.0  # unnormalised
    u = (torch.arange(2**16, dtype=torch.float64) + 0.5) / 2**16
    draws = sample_probs(p.expand(len(u), -1), u)
    freq = torch.bincount(draws, minlength=len(p)).double() / len(u)
    assert torch.allclose(freq, (p / p.sum()).double(), atol=2 / 2**16)
    assert sample_probs(p[None], torch.tensor([1 - 2**-33], dtype=torch.float64)).item() == 5  # last non-zero


def test_sample_logits_never_picks_filtered_tokens():
    logits = torch.tensor([0.0, float("-inf"), 0.0, float("-inf")])
    keys = draw_key(torch.tensor([0]), torch.arange(2000)[None], PURPOSE_TOKEN)[0]
    assert set(sample_logits(logits.expand(2000, -1), keys).tolist()) == {0, 2}


def reference_filter(row, temperature, top_k, top_p):
    """LlamaGen's sample(): divide by max(t, 1e-5); HF v3.2 top-k then top-p, written as plain loops."""
    x = [v / max(temperature, 1e-5) for v in row]
    if top_k > 0:
        kth = sorted(x, reverse=True)[min(top_k, len(x)) - 1]
        x = [v if v >= kth else -math.inf for v in x]
    if top_p < 1.0:
        order = sorted(range(len(x)), key=lambda i: -x[i])
        finite = [x[i] for i in order]
        m = max(finite)
        z = sum(math.exp(v - m) for v in finite if v > -math.inf)
        cum, keep = 0.0, set()
        for i in order:
            keep.add(i)  # the token that crosses the threshold is kept
            cum += math.exp(x[i] - m) / z if x[i] > -math.inf else 0.0
            if cum > top_p:
                break
        x = [v if i in keep else -math.inf for i, v in enumerate(x)]
    return x


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 3, 1.0), (1.3, 0, 0.6), (1.0, 5, 0.8),
                                                     (1.0, 1, 1.0), (0.0, 0, 1.0), (1.0, 0, 0.01)])
def test_filter_logits_matches_reference(temperature, top_k, top_p):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, generator=gen, dtype=torch.float64) * 2
    got = filter_logits(logits, temperature, top_k, top_p)
    for row_got, row in zip(got.tolist(), logits.tolist()):
        ref = reference_filter(row, temperature, top_k, top_p)
        assert [math.isinf(v) for v in row_got] == [math.isinf(v) for v in ref]
        assert np.allclose([v for v in row_got if v > -math.inf], [v for v in ref if v > -math.inf])


def test_guidance_formula_and_interval():
    cond, uncond = torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 0.0]])
    assert torch.allclose(guide(cond, uncond, 4.0), torch.tensor([[-2.0, 12.0]]))
    assert torch.equal(guide(cond, uncond, 4.0, torch.tensor([False])), cond)
    # LlamaGen: the prefill guides token 0; decode step i makes token i+1 and stops guiding once i > interval
    for interval in (-1, 0, 3, 10.5):
        flag, ref = True, [True]
        for i in range(20):
            if interval > -1 and i > interval:
                flag = False
            ref.append(flag)
        assert cfg_active(torch.arange(21), interval).tolist() == ref


def test_image_seeds_distinct_and_validated():
    a = image_seeds(0, torch.arange(100))
    b = image_seeds(1, torch.arange(100))
    assert len(set(a.tolist()) | set(b.tolist())) == 200
    with pytest.raises(ValueError, match="seed"):
        image_seeds(-1, torch.arange(2))


@pytest.mark.parametrize("vocab", [7, 128, 300, 16384])
def test_two_level_inverse_cdf_equals_the_flat_one(vocab):
    """sample_probs (block sums, then one block) picks the entry a flat float64 cumulative sum over
    the whole vocabulary picks, with zero-probability entries and blocks among them."""
    g = torch.Generator().manual_seed(vocab)
    p = torch.rand(64, vocab, generator=g) ** 4
    p[p < 0.3] = 0  # many filtered entries, whole empty blocks at 16384
    p[:, 0] = 1e-3  # keep every row non-empty
    u = torch.rand(64, 50, generator=g, dtype=torch.float64)
    cdf = p.double().cumsum(-1)
    flat = torch.searchsorted(cdf, (u * cdf[:, -1:]).contiguous(), right=True)
    ours = sample_probs(p[:, None].expand(-1, 50, -1), u)
    assert torch.equal(ours, flat)
    assert (p.gather(1, ours) > 0).all()


def exact_weights(gen, vocab, rows):
    """(rows, vocab) small integer weights, half of them zero, some whole blocks empty: every
    cumulative sum is exact in float32 and float64, so the contract has one answer even at ties."""
    w = torch.randint(1, 4, (rows, vocab), generator=gen).float()
    w[torch.rand(rows, vocab, generator=gen) < 0.5] = 0
    w[1::2, 128:256] = 0
    w[2, :] = 0
    w[2, -1] = 1  # only the very last entry
    w[w.sum(-1) == 0, 0] = 1
    return w


def boundary_uniforms(cdf, total, ulps=2):
    """Uniforms that put u * total on every distinct cumulative sum, a few ulps either side of it,
    and at the ends of [0, 1)."""
    ends = torch.tensor([0.0, 2**-33, 1 - 2**-33, 1 - 2**-53], dtype=torch.float64)
    u = torch.cat([ends, cdf.unique()[:-1] / total])
    around = [u]
    up, down = u, u
    for _ in range(ulps):
        up, down = torch.nextafter(up, torch.ones_like(u)), torch.nextafter(down, torch.zeros_like(u))
        around += [up, down]
    return torch.cat(around).clamp(min=0, max=1 - 2**-53)


@pytest.mark.parametrize("vocab", [1, 2, 5, 127, 128, 129, 255, 256, 257, 300, 1000])
def test_inverse_cdf_takes_the_first_index_exceeding_at_exact_ties(vocab):
    """With exact cumulative sums the contract is a brute-force search: the first index whose sum
    exceeds u * total, so u * total on a boundary belongs to the next non-zero entry; u = 0 to the
    first non-zero entry. Every index is in [0, V) and has p > 0."""
    gen = torch.Generator().manual_seed(vocab)
    ties = 0
    for p in exact_weights(gen, vocab, 6):
        cdf = p.double().cumsum(-1)
        total = float(cdf[-1])
        u = boundary_uniforms(cdf, total)
        got = sample_probs(p.expand(len(u), -1), u)
        x = u * total  # the product the sampler forms: its total is exact here
        want = torch.searchsorted(cdf, x, right=True)
        ties += int(torch.isin(x, cdf).sum())
        assert (got < vocab).all() and (p[got] > 0).all(), vocab
        assert torch.equal(got, want), (vocab, u[got != want][:4].tolist(), got[got != want][:4].tolist())
    assert ties > 0 or vocab == 1


def rounding_weights(gen, vocab, block):
    """Float weights whose block sums round differently from the sums inside a block: heavy-tailed
    random rows, and a row whose blocks are (0, 1, then codes of weight 2**-54): torch's float64 sum
    of such a block (several accumulators on CPU) exceeds its cumulative sum (one accumulator, which
    drops every 2**-54 after the 1) by tens of ulps. Every block starts with a zero entry, so an
    index that spills into the next block has p = 0; the crafted row's blocks also end with one."""
    p = torch.rand(4, vocab, generator=gen) ** 6
    p[torch.rand(4, vocab, generator=gen) < 0.5] = 0
    p[-1] = 2.0**-54
    p[-1, 1::block] = 1.0
    p[-1, block - 1::block] = 0
    p[:, ::block] = 0
    return p


@pytest.mark.parametrize("vocab,block", [(1000, 128), (700, 128), (333, 16), (1500, 128)])
def test_inverse_cdf_near_block_boundaries_under_rounding(vocab, block):
    """Where block sums and in-block sums round differently, u * total just below a block's end can
    land past the block's own cumulative sum. The draw must still be an index < V with p > 0 whose
    interval [cdf - p, cdf) holds u * total up to rounding; away from every boundary it is the first
    index whose (float64) cumulative sum exceeds u * total."""
    gen = torch.Generator().manual_seed(vocab + block)
    for p in rounding_weights(gen, vocab, block):
        cdf = p.double().cumsum(-1)
        total = float(cdf[-1])
        # block ends as a flat cumulative sum and as the sampler's sums of block sums see them
        block_sums = torch.nn.functional.pad(p, (0, -vocab % block)).view(-1, block).sum(-1, dtype=torch.float64)
        ends = torch.cat([cdf[block - 1::block], block_sums.cumsum(-1)])
        u = boundary_uniforms(ends, total, ulps=24)
        got = sample_probs(p.expand(len(u), -1), u, block)
        assert (got < vocab).all() and (p[got] > 0).all()
        x, tol = u * total, 1e-9 * total
        assert ((cdf[got] - p[got].double() - tol <= x) & (x < cdf[got] + tol)).all()
        clear = (cdf[None, :] - x[:, None]).abs().min(-1).values > tol
        assert torch.equal(got[clear], torch.searchsorted(cdf, x[clear], right=True))


def test_image_seeds_distinct_at_large_indices_and_seeds():
    """(base, index) -> seed is injective over the whole range: indices past 2**16, 2**20 and 2**31
    never collide with another base's small indices, and base seeds reach 2**31 - 1."""
    bases = [0, 1, 2, 15, 16, 255, 256, 2**15, 2**16, 2**20, 2**31 - 2, 2**31 - 1]
    indices = [0, 1, 2, 255, 256, 65535, 65536, 65537, 2**20 - 1, 2**20, 2**20 + 1, 2**24, 2**31 - 1, 2**31,
               2**32 - 1]
    seeds = {(base, i): s for base in bases for i, s in zip(indices, image_seeds(base, torch.tensor(indices)).tolist())}
    assert len(set(seeds.values())) == len(seeds)
    assert seeds[0, 65536] != seeds[1, 0] and seeds[0, 2**20] != seeds[16, 0] and seeds[0, 2**31] != seeds[1, 0]
    # distinct seeds give distinct keys: the hash reads all 64 bits
    keys = draw_key(torch.tensor(list(seeds.values())), torch.zeros(len(seeds), 1, dtype=torch.int64), PURPOSE_TOKEN)
    assert len(set(keys[:, 0].tolist())) == len(seeds)
    with pytest.raises(ValueError, match="seed"):
        image_seeds(2**31, torch.arange(2))


def test_image_indices_outside_32_bits_are_refused():
    """(0, 2**32) would be (1, 0)'s seed: indices must fit the 32 bits the packing gives them."""
    assert image_seeds(0, torch.tensor([2**32 - 1])).item() == 2**32 - 1
    for bad in ([2**32], [-1], [0, 2**33]):
        with pytest.raises(ValueError, match=r"image indices must be in \[0, 2\*\*32\)"):
            image_seeds(0, torch.tensor(bad))


def test_a_kept_coupled_redraft_is_next_tested_against_its_new_distribution():
    """The two passes a coupled redraft goes through (common.zipar.row_drafts): a draft x ~ q is redrawn
    by the maximal coupling with p1 (the test itself: kept with min(1, p1(x)/q(x)), else the residual),
    then checked against p2. The redraft follows p1 whether or not it kept x, so the check must use
    q = p1 for every redraft: the result then follows p2. Testing a kept x against its old q instead
    biases it: q = (0.9, 0.1), p1 = p2 = (0.5, 0.5) gives P(0) = 0.5 * min(1, 0.5/0.9) = 5/18 (0.278).
    The engine's side: test_draw_keys.test_every_redrafted_cell_stores_its_pass_distribution."""
    n = 20000
    seeds, cells = torch.tensor([7]), torch.arange(n)[None]
    q, p = torch.tensor([0.9, 0.1]).expand(n, -1), torch.tensor([0.5, 0.5]).expand(n, -1)
    u = lambda purpose, attempt: draw_key(seeds, cells, purpose, attempt)[0]  # noqa: E731
    x = sample_probs(q, key_uniform(u(PURPOSE_TOKEN, 0)))
    y, kept = verify_draft(p, q, x, u(PURPOSE_ACCEPT, 1), u(PURPOSE_RESIDUAL, 1))
    for stored, wanted in ((p, [0.5, 0.5]), (torch.where(kept[:, None], q, p), [5 / 18, 13 / 18])):
        z, _ = verify_draft(p, stored, y, u(PURPOSE_ACCEPT, 2), u(PURPOSE_RESIDUAL, 2))
        counts = np.bincount(z.numpy(), minlength=2)
        assert stats.chisquare(counts, np.array(wanted) * n).pvalue > 1e-3, (wanted, counts)
