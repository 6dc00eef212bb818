"""LlamaGen GPT (FoundationVision/LlamaGen, autoregressive/models/gpt.py), inference only: the
class-conditional (c2i) and the text-conditional (t2i) model.

Our own module with the official state-dict keys and shapes. One forward: embeddings + positions +
cache slots + mask + cache -> fp32 logits. The condition (a class id, or T5 caption features for
t2i) is embedded by `embed_condition`; the t2i caption mask is the engine's business, not the model's.

2D RoPE as the official model computes it: interleaved pairs (2m, 2m+1), the first head_dim/4
pairs rotated by the image row, the last head_dim/4 by the column, per-axis frequencies
base^(-2k/(head_dim/2)) in fp32; condition positions get cos = sin = 0, i.e. q = k = 0 there
(a property of the released models, FoundationVision/LlamaGen issue #54, kept on purpose).
The table is computed from position ids once per forward (as 2x2 rotations that queries and keys share),
so no RoPE buffer exists to be cast or saved.
"""
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.zipar.kv_cache import KVCache, attention_bias, cached_attention
from common.models.layers import RMSNorm, SwiGLU


MODEL_TYPES = ("c2i", "t2i")
# CaptionEmbedder(token_num=120) and cls_token_num=120 in FoundationVision/LlamaGen
# autoregressive/models/gpt.py and autoregressive/sample/sample_t2i.py (t5-feature-max-len 120)
CAPTION_TOKENS = 120


@dataclass(frozen=True)
class GPTConfig:
    dim: int
    n_layer: int
    n_head: int
    n_kv_head: int | None = None  # None: same as n_head (no released model uses GQA)
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    num_classes: int = 1000
    vocab_size: int = 16384
    cls_token_num: int = 1  # condition slots: 1 for c2i, CAPTION_TOKENS for t2i
    model_type: str = "c2i"  # "c2i": class label; "t2i": T5 caption features
    caption_dim: int = 2048  # t2i: caption feature size (flan-t5-xl's hidden size)

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.model_type == "t2i" and self.cls_token_num != CAPTION_TOKENS:
            # the official CaptionEmbedder hard-codes 120 tokens (uncond_embedding rows) and the
            # scripts pass cls_token_num=120; the left-padded caption's last token must sit at T-1
            raise ValueError(f"t2i needs cls_token_num={CAPTION_TOKENS}, got {self.cls_token_num}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def ffn_hidden(self) -> int:
        """int(2 * 4dim / 3), optionally scaled, rounded up to multiple_of (gpt.py FeedForward)."""
        h = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            h = int(self.ffn_dim_multiplier * h)
        return -(-h // self.multiple_of) * self.multiple_of


# FoundationVision/LlamaGen, autoregressive/models/gpt.py, GPT_models
GPT_PRESETS = {
    "GPT-B": GPTConfig(dim=768, n_layer=12, n_head=12),
    "GPT-L": GPTConfig(dim=1024, n_layer=24, n_head=16),
    "GPT-XL": GPTConfig(dim=1280, n_layer=36, n_head=20),
    "GPT-XXL": GPTConfig(dim=1536, n_layer=48, n_head=24),
    "GPT-XXXL": GPTConfig(dim=2560, n_layer=48, n_head=40),
    "GPT-1B": GPTConfig(dim=2048, n_layer=22, n_head=32),
    "GPT-3B": GPTConfig(dim=3200, n_layer=24, n_head=32),
    "GPT-7B": GPTConfig(dim=4096, n_layer=32, n_head=32),
    # the demo model trained in this repo (llamagen/train_demo.py): 16 grey levels, 10 digit classes
    "demo": GPTConfig(dim=128, n_layer=4, n_head=4, multiple_of=64, num_classes=10, vocab_size=16),
    # tiny configs for tests: small vocabulary and class count, same structure
    "GPT-tiny": GPTConfig(dim=64, n_layer=2, n_head=4, multiple_of=32, num_classes=10, vocab_size=64),
    "GPT-tiny-gqa": GPTConfig(dim=64, n_layer=2, n_head=4, n_kv_head=2, multiple_of=32, num_classes=10, vocab_size=64),
}


def gpt_config(name: str, **overrides) -> GPTConfig:
    if name not in GPT_PRESETS:
        raise ValueError(f"unknown GPT preset {name!r}; valid: {', '.join(GPT_PRESETS)}")
    return replace(GPT_PRESETS[name], **overrides)


def t2i_config(name: str, **overrides) -> GPTConfig:
    """The text-conditional variant of a preset, as sample_t2i.py builds it (model_type='t2i',
    cls_token_num=120; vocab_size and caption_dim keep their defaults unless overridden)."""
    return gpt_config(name, **{"model_type": "t2i", "cls_token_num": CAPTION_TOKENS, **overrides})


def rope_2d(positions: torch.Tensor, grid_size: int, head_dim: int, base: float, cls_token_num: int) -> torch.Tensor:
    """(..., head_dim/2, 2) fp32 (cos, sin) for sequence positions (...); condition positions get 0."""
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2, device=positions.device)[: half // 2].float() / half))
    cell = (positions - cls_token_num).clamp(min=0)
    row, col = (cell // grid_size).float(), (cell % grid_size).float()
    angles = torch.cat([row[..., None] * freqs, col[..., None] * freqs], dim=-1)  # (..., half)
    table = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    return table * (positions >= cls_token_num)[..., None, None]


def rotations(table: torch.Tensor) -> torch.Tensor:
    """(cos, sin) table (..., D/2, 2) -> per-pair 2x2 rotations (..., 1, D/2, 2, 2), broadcast over heads:
    made once per forward, so a layer rotates its queries and keys with one multiply and one sum."""
    cos, sin = table[..., 0], table[..., 1]
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)[..., None, :, :, :]


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (B, Q, H, D) by `rotations` (B | 1, Q, 1, D/2, 2, 2), in fp32:
    (re, im) -> (re cos - im sin, im cos + re sin), as the official apply_rotary_emb (exactly: each
    output is the same two products and one sum)."""
    xs = x.float().unflatten(-1, (-1, 1, 2))  # (B, Q, H, D/2, 1, 2)
    return (xs * rot).sum(-1).flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, rot, slots, bias, cache: KVCache, layer: int):
        B, Q, _ = x.shape
        qk, v = self.wqkv(x).split([(self.n_head + self.n_kv) * self.head_dim, self.n_kv * self.head_dim], dim=-1)
        q, k = apply_rope(qk.view(B, Q, -1, self.head_dim), rot).split([self.n_head, self.n_kv], dim=2)  # together
        v = v.view(B, Q, self.n_kv, self.head_dim)
        out = cached_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), cache, layer, slots, bias)
        return self.wo(out.transpose(1, 2).reshape(B, Q, -1))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = SwiGLU(cfg.dim, cfg.ffn_hidden)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(self, x, rot, slots, bias, cache, layer):
        h = x + self.attention(self.attention_norm(x), rot, slots, bias, cache, layer)
        return h + self.feed_forward(self.ffn_norm(h))


class LabelEmbedder(nn.Module):
    """num_classes + 1 rows: the last one is the learned null class used by CFG."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor, token_num: int) -> torch.Tensor:
        """(B,) class ids -> (B, token_num, D), the label repeated."""
        return self.embedding_table(labels)[:, None].expand(-1, token_num, -1)


class CaptionMLP(nn.Module):
    """fc2(gelu_tanh(fc1 x)), no biases (gpt.py MLP)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, dim, bias=False)
        self.fc2 = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class CaptionEmbedder(nn.Module):
    """T5 caption features -> condition embeddings (gpt.py CaptionEmbedder).

    `uncond_embedding` (CAPTION_TOKENS, caption_dim) is the learned null caption CFG feeds to the
    unconditional branch; a persistent buffer, so it is in the checkpoint (initialised as
    randn / sqrt(caption_dim) like the official module, then overwritten by the loaded weights).
    """

    def __init__(self, caption_dim: int, dim: int):
        super().__init__()
        self.register_buffer("uncond_embedding", torch.randn(CAPTION_TOKENS, caption_dim) / caption_dim**0.5)
        self.cap_proj = CaptionMLP(caption_dim, dim)

    def forward(self, captions: torch.Tensor, token_num: int) -> torch.Tensor:
        """(B, L, caption_dim) features -> (B, token_num, D): projected, then the first token_num rows
        (gpt.py slices [:, :cls_token_num] after the embedder)."""
        return self.cap_proj(captions.to(self.cap_proj.fc1.weight.dtype))[:, :token_num]


class Transformer(nn.Module):
    """The GPT over a grid_size x grid_size token grid (grid_size fixes only the RoPE map)."""

    def __init__(self, cfg: GPTConfig, grid_size: int):
        super().__init__()
        self.config, self.grid_size = cfg, grid_size
        if cfg.model_type == "t2i":
            self.cls_embedding = CaptionEmbedder(cfg.caption_dim, cfg.dim)
        else:
            self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def embed_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """-> (B, cls_token_num, D). c2i: (B,) class ids (num_classes = the null class);
        t2i: (B, CAPTION_TOKENS, caption_dim) left-padded caption features (or the null caption)."""
        return self.cls_embedding(cond, self.config.cls_token_num)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tok_embeddings(ids)

    def new_cache(self, batch: int, num_slots: int, device) -> KVCache:
        c = self.config
        return KVCache(c.n_layer, batch, c.kv_heads, num_slots, c.head_dim, self.tok_embeddings.weight.dtype, device)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
        """x (B, Q, D) at sequence positions, written to cache slots: (Q,) shared or (B, Q) per row;
        mask (Q, S) or (B | 1, Q, S), True = attend."""
        c = self.config
        rot = rotations(rope_2d(positions, self.grid_size, c.head_dim, c.rope_base, c.cls_token_num))
        bias = attention_bias(mask, x.dtype)  # one additive mask for every layer
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h, rot, slots, bias, cache, i)
        return self.output(self.norm(h)).float()


def random_init_(model: nn.Module, seed: int, std: float = 0.02) -> None:
    """Seeded normal init of every linear and embedding, the output layer included (the official
    init zeroes it, which makes every distribution uniform and hides engine errors); the t2i null
    caption is redrawn too, at its official scale."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, CaptionEmbedder):
                u = module.uncond_embedding
                u.copy_((torch.randn(u.shape, generator=gen) / u.shape[-1] ** 0.5).to(u.dtype))
            if isinstance(module, (nn.Linear, nn.Embedding)):
                w = torch.randn(module.weight.shape, generator=gen) * std
                module.weight.copy_(w.to(module.weight.dtype))
