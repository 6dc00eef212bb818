"""Sampling maths: exact filters against reference loops, statistical tests of the counter-based draws."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from common.engine import cfg_active
from common.sampling import (PURPOSE_ACCEPT, PURPOSE_TOKEN, draw_key, filter_logits, guide, image_seeds, key_uniform,
                             sample_logits, sample_probs)


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
