"""The Llama-style decoder that Lumina-mGPT (Chameleon-7B) and Emu3-Gen share, on the engine's cache.

Key names follow the Hugging Face Llama layout both families ship (`model.embed_tokens`,
`model.layers.{i}.self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, `input_layernorm`,
`post_attention_layernorm`, `model.norm`, `lm_head`): pre-norm RMSNorm blocks, SwiGLU, no biases,
untied lm_head, 1D RoPE in the HF `rotate_half` convention (the HF checkpoints' q/k rows are permuted
for it), GQA. Chameleon adds per-head qk-norm: a LayerNorm with weight and bias over head_dim, applied
before RoPE (huggingface/transformers models/chameleon/modeling_chameleon.py; Alpha-VLLM/Lumina-mGPT
stores its parameters as [1, head_dim], transformers as [n_heads, head_dim]; both shapes broadcast).
One forward: embeddings + positions + slots + mask + cache -> fp32 logits; no decoding state here.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.zipar.kv_cache import KVCache, attention_bias, cached_attention
from common.models.layers import RMSNorm


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qk_norm_heads: int = 0  # 0: no qk-norm (Emu3); 1 (Lumina files) or n_heads (transformers layout)
    qk_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"need dim % n_heads == 0 and n_heads % n_kv_heads == 0, got dim={self.dim}, "
                             f"n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}")
        if self.qk_norm_heads not in (0, 1, self.n_heads):
            raise ValueError(f"qk_norm_heads must be 0, 1 or n_heads={self.n_heads}, got {self.qk_norm_heads}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def rope_1d(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (..., Q) -> fp32 (cos, sin) of shape (..., Q, head_dim), HF layout cat(freqs, freqs)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotations(cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(cos, sin) (B | 1, Q, D) -> the rotate_half map as 2x2 rotations of the half pairs (i, i + D/2),
    (B | 1, Q, 1, 2, 2, D/2) in the queries' dtype (HF casts cos and sin to it): made once per forward,
    so a layer rotates its queries and keys together with one multiply and one sum."""
    half = cos.shape[-1] // 2
    c, s = cos[..., :half].to(dtype), sin[..., :half].to(dtype)  # cat(freqs, freqs): both halves agree
    return torch.stack([torch.stack([c, -s], -2), torch.stack([s, c], -2)], -3)[:, :, None]


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """x (B, Q, H, D) by `rotations`: HF's x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1),
    exactly (each output is the same two products and one sum, in x's dtype)."""
    return (x.unflatten(-1, (1, 2, -1)) * rot).sum(-2).flatten(3)


class HeadNorm(nn.Module):
    """LayerNorm over head_dim with per-head (or one shared) weight and bias."""

    def __init__(self, heads: int, head_dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(heads, head_dim))
        self.bias = nn.Parameter(torch.zeros(heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Q, H, D)
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.dim, c.n_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)
        if c.qk_norm_heads:
            self.q_norm = HeadNorm(c.qk_norm_heads, c.head_dim, c.qk_norm_eps)
            self.k_norm = HeadNorm(c.qk_norm_heads, c.head_dim, c.qk_norm_eps)

    def forward(self, x, rot, slots, bias, cache: KVCache, layer: int):
        B, Q, _ = x.shape
        c = self.c
        q = self.q_proj(x).view(B, Q, c.n_heads, c.head_dim)
        k = self.k_proj(x).view(B, Q, c.n_kv_heads, c.head_dim)
        v = self.v_proj(x).view(B, Q, c.n_kv_heads, c.head_dim)
        if c.qk_norm_heads:  # before RoPE (Chameleon)
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(torch.cat([q, k], dim=2), rot).transpose(1, 2).split([c.n_heads, c.n_kv_heads], dim=1)
        out = cached_attention(q, k, v.transpose(1, 2), cache, layer, slots, bias)  # (B, H, Q, D)
        return self.o_proj(out.transpose(1, 2).reshape(B, Q, -1))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c.dim, c.ffn_hidden)
        self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)

    def forward(self, x, rot, slots, bias, cache, layer):
        h = x + self.self_attn(self.input_layernorm(x), rot, slots, bias, cache, layer)
        return h + self.mlp(self.post_attention_layernorm(h))


class Body(nn.Module):
    """The `model.*` part of the state dict: embeddings, blocks and the final norm (no output head, which
    differs per family: an lm_head here, Janus's generation head)."""

    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)

    def new_cache(self, batch: int, num_slots: int, device) -> KVCache:
        c = self.config
        return KVCache(c.n_layers, batch, c.n_kv_heads, num_slots, c.head_dim, self.embed_tokens.weight.dtype, device)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
        """x (B, Q, D) at positions (B | 1, Q), written to cache slots (Q,) or (B, Q); mask (B | 1, Q, S)
        -> (B, Q, D) final-normed states (the output head's input)."""
        positions = positions if positions.dim() == 2 else positions[None]
        rot = rotations(*rope_1d(positions, self.config.head_dim, self.config.rope_theta), x.dtype)
        bias = attention_bias(mask, x.dtype)  # one additive mask for every layer
        h = x
        for i, block in enumerate(self.layers):
            h = block(h, rot, slots, bias, cache, i)
        return self.norm(h)


class LlamaDecoder(nn.Module):
    """Implements common.zipar.engine.Decoder."""

    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.config = c
        self.model = Body(c)
        self.lm_head = nn.Linear(c.dim, c.vocab_size, bias=False)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)

    def new_cache(self, batch: int, num_slots: int, device) -> KVCache:
        return self.model.new_cache(batch, num_slots, device)

    def hidden_states(self, x: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                      cache: KVCache) -> torch.Tensor:
        """(B, Q, D) final-normed states (lm_head input); see Body.forward."""
        return self.model(x, positions, slots, mask, cache)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
        """fp32 logits (B, Q, V) over the whole vocabulary."""
        return self.lm_head(self.hidden_states(x, positions, slots, mask, cache)).float()


def random_init_(model: LlamaDecoder, seed: int, std: float = 0.02) -> None:
    """Seeded normal weights for every linear and embedding (lm_head included, so distributions are
    peaked), non-trivial qk-norm affine parameters, so tests exercise every weight, and unit RMSNorm
    weights: every parameter is set, so a model from common.weights.hf_shards.empty_model is safe to use."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
            elif isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.copy_((torch.randn(module.weight.shape, generator=gen) * std).to(module.weight.dtype))
            elif isinstance(module, HeadNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
