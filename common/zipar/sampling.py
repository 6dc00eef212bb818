"""Sampling: classifier-free guidance, temperature, top-k, top-p, and counter-based randomness.

Semantics follow LlamaGen (FoundationVision/LlamaGen, autoregressive/models/generate.py):
guided = uncond + scale * (cond - uncond) on fp32 logits; then divide by max(temperature, 1e-5);
then top-k and top-p filtering as in HF transformers v3.2 `top_k_top_p_filtering` (the token that
crosses top_p is kept, the top-1 always survives); then sample from the softmax.

Randomness is counter-based: the uniform for a draw is an integer hash of (image seed, grid position,
purpose, attempt), never the state of a generator. A token is drawn by inverse-CDF sampling: with
one uniform u per query, the token is the first index whose cumulative probability exceeds u (float64
sums of blocks of the vocabulary, then a float64 cumulative sum inside one block). That is an exact sample of the distribution, needs one random number
per query instead of one per vocabulary entry (Gumbel-max over a counter-based hash hashes every
entry: ~140 integer ops per entry and pass), and is a few elementwise ops and one cumulative sum
on any device. Hence an image depends only on its seed and settings, not on batch size, batch
position, process count or the order in which the schedule visits cells; ZipAR and NTP draws for
the same cell are paired (same u: the draws agree wherever the two distributions' CDFs put u in
the same token).
"""
import torch

MASK32 = 0xFFFFFFFF
PURPOSE_TOKEN = 0  # the draw of a grid token (plain cells and adaptive drafts)
PURPOSE_ACCEPT = 1  # the uniform of an adaptive acceptance test
PURPOSE_RESIDUAL = 2  # the resample after a rejection
PURPOSE_DRAFT = 3  # the random code a new row-draft position starts from (common.zipar.row_drafts)
PURPOSE_SIBLING = 4  # the draw of a tree sibling, candidate k of its cell (common.zipar.draft_tree)
PURPOSE_SIBLING_ACCEPT = 5  # the acceptance test of a tree sibling, candidate k of its cell


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 x in [0, 2**32), without relying on int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + ((x * hi) & 0xFFFF) * 65536) & MASK32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser: a bijection on [0, 2**32) with full avalanche."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def seed_key(seeds: torch.Tensor) -> torch.Tensor:
    """(B,) int64 seeds -> (B,) the seed half of `draw_key`, shared by every draw of an image: a decode
    hashes it once and draws with `draw_key_from`."""
    seeds = seeds.to(torch.int64)
    h = _fmix32((seeds & MASK32) ^ 0x9E3779B9)
    return _fmix32(h ^ ((seeds >> 32) & MASK32))


def draw_key_from(seed_keys: torch.Tensor, positions: torch.Tensor, purpose: int | torch.Tensor,
                  attempt: int | torch.Tensor = 0, index: int | torch.Tensor | None = None) -> torch.Tensor:
    """int64 keys in [0, 2**32) for draws: seed_keys (B,) (`seed_key`) and positions (B, ...) broadcast
    against purpose, attempt and index (ints or tensors) to (B, ...). index: which of several draws of
    one (position, purpose, attempt) (a tree's candidate k); None hashes nothing more, so every key
    without it is what it was before indices existed."""
    h = seed_keys.view(-1, *(1,) * (positions.dim() - 1))
    h = _fmix32(h ^ (positions.to(torch.int64) & MASK32))
    h = _fmix32(h ^ (purpose * 0x632BE5AB & MASK32))
    attempt = torch.as_tensor(attempt, dtype=torch.int64, device=h.device)
    h = _fmix32(h ^ ((attempt * 0x2545F491) & MASK32))
    if index is None:
        return h
    index = torch.as_tensor(index, dtype=torch.int64, device=h.device)
    return _fmix32(h ^ ((index * 0x1B873593 + 0x7F4A7C15) & MASK32))


def draw_key(seeds: torch.Tensor, positions: torch.Tensor, purpose: int, attempt: int | torch.Tensor = 0) -> torch.Tensor:
    """int64 keys in [0, 2**32) for draws; seeds (B,) and positions (B, n) broadcast to (B, n)."""
    return draw_key_from(seed_key(seeds), positions, purpose, attempt)


def key_uniform(keys: torch.Tensor) -> torch.Tensor:
    """keys (...,) in [0, 2**32) -> float64 uniforms in (0, 1): (key + 1/2) / 2**32, never 0 or 1."""
    return (keys.to(torch.float64) + 0.5) * (1.0 / 2**32)


def sample_probs(probs: torch.Tensor, u: torch.Tensor, block: int = 128) -> torch.Tensor:
    """Inverse-CDF draw from probs (..., V) (unnormalised is fine) with uniforms u (...,): the first
    index whose cumulative sum exceeds u * total.

    Two levels, so that no float64 pass over the whole vocabulary is needed: float64 sums of blocks
    of `block` entries locate the block holding u * total, then a float64 cumulative sum inside
    that block locates the entry. Binary searches (right side) skip zero-probability entries and
    empty blocks: an entry equal to its predecessor's cumulative sum is never the first to exceed.

    Total: every result is in [0, V) whatever probs holds. Entries that are not finite and positive
    (NaN, inf, negative) carry no mass; a row left with none (softmax of NaN logits, or of logits
    holding +inf) draws uniformly from the vocabulary with the same u. No host sync: the fallback is a
    torch.where, not a check.
    """
    lead, V = probs.shape[:-1], probs.shape[-1]
    pad = -V % block
    p = probs.float()
    p = torch.where((p > 0) & (p < float("inf")), p, torch.zeros_like(p))  # NaN fails both comparisons
    p = torch.nn.functional.pad(p, (0, pad)).view(*lead, -1, block)  # (..., nb, block)
    block_cdf = p.sum(-1, dtype=torch.float64).cumsum(-1)  # (..., nb)
    total = block_cdf[..., -1:]  # (..., 1); inf where the finite entries' sum overflows float64: never
    x = u[..., None] * total  # (..., 1) in [0, total)
    b = torch.searchsorted(block_cdf, x, right=True).clamp(max=block_cdf.shape[-1] - 1)  # (..., 1)
    before = torch.where(b > 0, block_cdf.gather(-1, (b - 1).clamp(min=0)), torch.zeros_like(x))
    inner = p.gather(-2, b[..., None].expand(*lead, 1, block))[..., 0, :]  # (..., block)
    j = torch.searchsorted(inner.to(torch.float64).cumsum(-1), x - before, right=True)
    # rounding can put x - before at the block's end: take the block's last non-zero entry then
    last = (block - 1) - (inner > 0).flip(-1).to(torch.int32).argmax(-1, keepdim=True)
    drawn = (b * block + torch.minimum(j, last)).clamp(max=V - 1)  # in range even if rounding found an empty block
    uniform = (u[..., None] * V).long().clamp(max=V - 1)  # a row without mass: u picks a code uniformly
    return torch.where(total > 0, drawn, uniform)[..., 0]


def sample_logits(logits: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Sample from softmax(logits) over the last axis with the uniform fixed by keys (logits.shape[:-1])."""
    return sample_probs(torch.softmax(logits.float(), dim=-1), key_uniform(keys))


def guide(cond: torch.Tensor, uncond: torch.Tensor, scale: float, active: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free guidance; `active` (broadcastable bool) turns it off per query (cfg_interval)."""
    guided = uncond + (cond - uncond) * scale
    return guided if active is None else torch.where(active[..., None], guided, cond)


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p; removed entries become -inf. Returns a new tensor."""
    logits = logits / max(temperature, 1e-5)
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative > top_p
        # shift right: keep the token that crosses the threshold, and always the top-1
        remove_sorted = torch.cat([torch.zeros_like(remove_sorted[..., :1]), remove_sorted[..., :-1]], dim=-1)
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def likelihood_ratio(p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    """p(t) / q(t) for a draft t drawn from q (1 where q(t) = 0); p, q (..., V), draft (...,)."""
    pt = p.gather(-1, draft[..., None])[..., 0]
    qt = q.gather(-1, draft[..., None])[..., 0]
    return torch.where(qt > 0, pt / qt.clamp(min=1e-30), torch.ones_like(pt))


def acceptance_probability(p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    """min(1, p(t) / q(t)) for a draft t drawn from q; p, q (..., V), draft (...,)."""
    return likelihood_ratio(p, q, draft).clamp(max=1.0)


def accepts(u: torch.Tensor, p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    """The acceptance test u < min(1, p(t) / q(t)) of a draft t drawn from q, for uniforms u (...,) in
    (0, 1) (`key_uniform`): the same as u < p(t) / q(t), as u < 1."""
    return u < likelihood_ratio(p, q, draft)


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)); where p == q (nothing to resample) it is p itself, never reached."""
    r = (p - q).clamp(min=0)
    z = r.sum(-1, keepdim=True)
    return torch.where(z > 0, r / z.clamp(min=1e-30), p)


def verify_draft(p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor, accept_keys: torch.Tensor,
                 residual_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One speculative-decoding test (Leviathan et al. 2023; ZipAR paper section 3.3).

    The draft t was drawn from q (..., V). Accept it with probability a(t) = min(1, p(t)/q(t)),
    else draw from the residual r = norm(max(0, p - q)). The outcome is an exact sample of p:
      P(x) = q(x) a(x) + (1 - sum_y q(y) a(y)) r(x)
           = min(p(x), q(x)) + (1 - sum_y min(p(y), q(y))) (p(x) - q(x))^+ / sum_y (p(y) - q(y))^+
           = min(p(x), q(x)) + (p(x) - q(x))^+ = p(x),
    because sum_y (p - q)^+ = 1 - sum_y min(p, q). The uniform and the resample are counter-based draws
    (accept_keys, residual_keys). Returns (token, accepted), both shaped like draft.
    """
    accepted = accepts(key_uniform(accept_keys), p, q, draft)
    resampled = sample_probs(residual_distribution(p, q), key_uniform(residual_keys))
    return torch.where(accepted, draft, resampled), accepted


def image_seeds(base_seed: int, indices: torch.Tensor) -> torch.Tensor:
    """Seed of each image: (base_seed, image index) packed into one int64, distinct for every pair."""
    if not 0 <= base_seed < 2**31:
        raise ValueError(f"seed must be in [0, 2**31), got {base_seed}")
    # an index outside [0, 2**32) would share a seed with another base seed's image ((0, 2**32) is (1, 0));
    # checked once per batch, on the indices the caller made
    if indices.numel() and not (0 <= int(indices.min()) and int(indices.max()) < 2**32):
        raise ValueError(f"image indices must be in [0, 2**32), got {int(indices.min())}..{int(indices.max())}")
    return base_seed * 2**32 + indices.to(torch.int64)
