"""Tests for llamagen/model.py against the official LlamaGen GPT (FoundationVision/LlamaGen gpt.py).

Facts from /work/shared/reference/llamagen.md sections 1.2, 1.3, 1.5, 1.8. The RoPE and forward
references below are written independently from that description, not from llamagen.model.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llamagen.model import GPT_PRESETS, Transformer, apply_rope, gpt_config, random_init_, rope_2d, rotations
from tests.official_keys import official_keys



def _official(name: str) -> dict[str, tuple[int, ...]]:
    return official_keys(f"llamagen_{name}")


def _meta_model(preset: str, grid: int) -> Transformer:
    with torch.device("meta"):
        return Transformer(gpt_config(preset), grid_size=grid)


# ----------------------------------------------------------------------------- state dict / sizes

KEY_FILES = [("GPT-B", 16, "GPT-B_c2i_256", 88), ("GPT-L", 24, "GPT-L_c2i_576", 172),
             ("GPT-XL", 24, "GPT-XL_c2i_576", 256), ("GPT-XXL", 24, "GPT-XXL_c2i_576", 340)]


@pytest.mark.parametrize("preset, grid, keyfile, n_keys", KEY_FILES)
def test_state_dict_matches_official(preset, grid, keyfile, n_keys):
    official = _official(keyfile)
    assert len(official) == n_keys
    model = _meta_model(preset, grid)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) - set(official)) == []  # no extra keys (e.g. no RoPE buffer)
    assert sorted(set(official) - set(ours)) == []
    assert ours == official
    # same order as the official state dict too (nice for diffs, free to check)
    assert list(ours) == list(official)


@pytest.mark.parametrize("preset, params, head_dim", [
    ("GPT-B", 110_888_448, 64), ("GPT-L", 342_910_976, 64), ("GPT-3B", 3_096_659_200, 100)])
def test_parameter_counts(preset, params, head_dim):
    model = _meta_model(preset, 24)
    assert model.config.head_dim == head_dim
    assert sum(p.numel() for p in model.parameters()) == params
    assert list(model.buffers()) == []  # RoPE is recomputed, never a buffer


def test_ffn_hidden_rounding():
    # int(2 * 4 * dim / 3) rounded up to 256 (fact sheet 1.2/1.3)
    assert {n: GPT_PRESETS[n].ffn_hidden for n in ("GPT-B", "GPT-L", "GPT-XL", "GPT-XXL", "GPT-3B", "GPT-7B")} == {
        "GPT-B": 2048, "GPT-L": 2816, "GPT-XL": 3584, "GPT-XXL": 4096, "GPT-3B": 8704, "GPT-7B": 11008}


def test_unknown_preset_is_value_error():
    with pytest.raises(ValueError, match="GPT-nope"):
        gpt_config("GPT-nope")


# ----------------------------------------------------------------------------- RoPE reference

def ref_precompute_freqs_cis_2d(grid_size: int, n_elem: int, base: float = 10000, cls_token_num: int = 1):
    """The official table, built as the fact sheet (section 1.5) describes it."""
    half_dim = n_elem // 2
    freqs = 1.0 / (base ** (torch.arange(0, half_dim, 2)[: half_dim // 2].float() / half_dim))
    t = torch.arange(grid_size, dtype=torch.float32)
    angles = torch.outer(t, freqs)  # (grid, half_dim // 2)
    grid_angles = torch.cat([angles[:, None, :].expand(-1, grid_size, -1),   # row
                             angles[None, :, :].expand(grid_size, -1, -1)],  # column
                            dim=-1)  # (grid, grid, half_dim)
    cache = torch.stack([torch.cos(grid_angles), torch.sin(grid_angles)], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(cls_token_num, half_dim, 2), cache])  # (cls + grid^2, half_dim, 2)


def ref_apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """x (B, S, H, D), freqs_cis (S, D/2, 2): complex multiply of interleaved pairs, in fp32."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2).contiguous())
    fc = torch.complex(freqs_cis[..., 0], freqs_cis[..., 1])[None, :, None, :]
    return torch.view_as_real(xc * fc).flatten(3).type_as(x)


@pytest.mark.parametrize("head_dim", [64, 100])
@pytest.mark.parametrize("cls", [1, 3])
def test_rope_table_and_apply_match_reference(head_dim, cls):
    grid = 5
    ref = ref_precompute_freqs_cis_2d(grid, head_dim, 10000, cls)
    assert ref.shape == (cls + grid * grid, head_dim // 2, 2)
    positions = torch.arange(cls + grid * grid)
    ours = rope_2d(positions, grid, head_dim, 10000.0, cls)
    assert ours.dtype == torch.float32
    assert ours.shape == ref.shape
    assert torch.equal(ours, ref)
    # a permuted subset of positions looks up the same rows (as freqs_cis[input_pos] does)
    pick = torch.tensor([cls + 7, 0, cls + grid * grid - 1, cls])
    assert torch.equal(rope_2d(pick, grid, head_dim, 10000.0, cls), ref[pick])

    gen = torch.Generator().manual_seed(head_dim + cls)
    x = torch.randn(2, len(positions), 3, head_dim, generator=gen)
    out = apply_rope(x, rotations(ours))
    torch.testing.assert_close(out, ref_apply_rotary_emb(x, ref), atol=1e-6, rtol=0)
    # condition positions: cos = sin = 0, so q/k there are the zero vector (issue #54)
    assert torch.count_nonzero(out[:, :cls]) == 0
    assert out[:, cls:].abs().sum(-1).min() > 0
    # bf16 in, bf16 out
    assert apply_rope(x.bfloat16(), rotations(ours)).dtype == torch.bfloat16


def test_rope_row_then_column_numeric():
    head_dim, grid, cls = 64, 8, 1
    freqs = 1.0 / (10000 ** (torch.arange(16, dtype=torch.float64) / 16))  # 10000^(-k/16)
    pos = torch.tensor([cls + 2 * grid + 5])  # row 2, column 5
    table = rope_2d(pos, grid, head_dim, 10000.0, cls)[0].double()  # (32, 2)
    cos, sin = table[:, 0], table[:, 1]
    angle = torch.atan2(sin, cos)

    def wrap(a):  # into (-pi, pi], as atan2 returns
        return torch.remainder(a + math.pi, 2 * math.pi) - math.pi

    torch.testing.assert_close(angle[0:4], wrap(2 * freqs[0:4]), atol=1e-6, rtol=0)
    torch.testing.assert_close(angle[16:20], wrap(5 * freqs[0:4]), atol=1e-6, rtol=0)
    torch.testing.assert_close(cos, torch.cos(torch.cat([2 * freqs, 5 * freqs])), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, torch.sin(torch.cat([2 * freqs, 5 * freqs])), atol=1e-6, rtol=0)
    # the pair rotation is interleaved (2m, 2m+1): rotating e_0 by pair 0 moves it into dim 1 only
    x = torch.zeros(1, 1, 1, head_dim)
    x[..., 0] = 1.0
    out = apply_rope(x, rotations(rope_2d(pos, grid, head_dim, 10000.0, cls)))[0, 0, 0]
    torch.testing.assert_close(out[:2], torch.tensor([math.cos(2.0), math.sin(2.0)]), atol=1e-6, rtol=0)
    assert torch.count_nonzero(out[2:]) == 0


def test_condition_query_is_zero():
    q = torch.randn(1, 4, 2, 64)
    table = rope_2d(torch.arange(4), 3, 64, 10000.0, 3)
    out = apply_rope(q, rotations(table))
    assert torch.count_nonzero(out[:, :3]) == 0
    assert torch.count_nonzero(out[:, 3]) > 0


# ----------------------------------------------------------------------------- forward vs reference

def ref_rmsnorm(x, weight, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def ref_forward(sd: dict, cfg, grid: int, x: torch.Tensor) -> torch.Tensor:
    """Uncached full-sequence forward of the official c2i GPT at positions 0..S-1, causal mask."""
    B, S, D = x.shape
    H, Hkv, hd = cfg.n_head, cfg.n_kv_head or cfg.n_head, cfg.dim // cfg.n_head
    freqs = ref_precompute_freqs_cis_2d(grid, hd, cfg.rope_base, cfg.cls_token_num)[:S]
    causal = torch.tril(torch.ones(S, S, dtype=torch.bool))
    h = x
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        a = ref_rmsnorm(h, sd[p + "attention_norm.weight"], cfg.norm_eps)
        qkv = a @ sd[p + "attention.wqkv.weight"].T
        q, k, v = qkv.split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
        q = ref_apply_rotary_emb(q.view(B, S, H, hd), freqs).transpose(1, 2)
        k = ref_apply_rotary_emb(k.view(B, S, Hkv, hd), freqs).transpose(1, 2)
        v = v.view(B, S, Hkv, hd).transpose(1, 2)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~causal, float("-inf"))
        attn = torch.softmax(scores, dim=-1) @ v  # (B, H, S, hd)
        h = h + attn.transpose(1, 2).reshape(B, S, H * hd) @ sd[p + "attention.wo.weight"].T
        f = ref_rmsnorm(h, sd[p + "ffn_norm.weight"], cfg.norm_eps)
        gate = F.silu(f @ sd[p + "feed_forward.w1.weight"].T)
        up = f @ sd[p + "feed_forward.w3.weight"].T
        h = h + (gate * up) @ sd[p + "feed_forward.w2.weight"].T
    return (ref_rmsnorm(h, sd["norm.weight"], cfg.norm_eps) @ sd["output.weight"].T).float()


@pytest.mark.parametrize("preset", ["GPT-tiny", "GPT-tiny-gqa"])
def test_forward_matches_uncached_reference(preset):
    grid = 4
    model = Transformer(gpt_config(preset), grid_size=grid).eval()
    random_init_(model, seed=3)
    with torch.no_grad():  # norms start at ones; make them matter
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = model.config

    labels = torch.tensor([3, cfg.num_classes])  # a class and the null class
    tokens = torch.tensor([[5, 17, 63, 0, 9], [1, 2, 3, 4, 5]])
    with torch.no_grad():
        x = torch.cat([model.embed_condition(labels), model.embed_tokens(tokens)], dim=1)  # (2, 6, D)
        S = x.shape[1]
        assert S == 6
        positions = torch.arange(S)
        cache = model.new_cache(2, S, "cpu")
        logits = model(x, positions, positions, torch.tril(torch.ones(S, S, dtype=torch.bool)), cache)

        ref_x = torch.cat([sd["cls_embedding.embedding_table.weight"][labels][:, None],
                           sd["tok_embeddings.weight"][tokens]], dim=1)
        assert torch.equal(x, ref_x)
        ref = ref_forward(sd, cfg, grid, ref_x)
    assert logits.dtype == torch.float32
    assert logits.shape == (2, S, cfg.vocab_size)
    assert logits.abs().max() > 1e-3  # the random-init output layer is not zero
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=0)

    # incremental: prefill the condition, then one token at a time, into a fresh cache
    with torch.no_grad():
        cache = model.new_cache(2, S, "cpu")
        full_mask = torch.tril(torch.ones(S, S, dtype=torch.bool))
        steps = [model(x[:, :1], positions[:1], positions[:1], full_mask[:1], cache)]
        for t in range(1, S):
            steps.append(model(x[:, t:t + 1], positions[t:t + 1], positions[t:t + 1], full_mask[t:t + 1], cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), ref, atol=1e-5, rtol=0)


def test_random_init_is_seeded_and_covers_output():
    a = Transformer(gpt_config("GPT-tiny"), grid_size=4)
    b = Transformer(gpt_config("GPT-tiny"), grid_size=4)
    random_init_(a, seed=7)
    random_init_(b, seed=7)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    assert a.output.weight.abs().sum() > 0
    random_init_(b, seed=8)
    assert not torch.equal(a.output.weight, b.output.weight)
