"""Janus-Pro's image generator: the Llama language model (common.models.llama.Body) between the generation
adapter and the generation head; the engine's Decoder over image codes (common.zipar.engine.Decoder).

deepseek-ai/Janus janus/models/modeling_vlm.py (MultiModalityCausalLM): an image code c enters as
gen_aligner(gen_embed(c)) (gen_embed: Embedding(16384, 8); gen_aligner: MlpProjector mlp_gelu, Linear(8, D),
GELU, Linear(D, D), projector.py), the language model's last hidden state goes through gen_head
(VisionHead: Linear(D, D'), GELU, Linear(D', 16384)) to the code logits; the text lm_head and the
understanding path (vision_model, aligner) take no part. Prompt tokens enter through the language
model's own embeddings (`embed_text`). GELU is the exact (erf) one in both the release (nn.GELU) and
transformers (ACT2FN["gelu"]). Key names are the release's, with `language_model.model.` shortened to
`model.` (janus/checkpoint.py maps both layouts).
"""
import torch
import torch.nn as nn

from common.models.llama import Body, random_init_
from common.zipar.kv_cache import KVCache
from janus.config import JanusConfig


class GenerationHead(nn.Module):
    def __init__(self, dim: int, hidden: int, codes: int):
        super().__init__()
        self.output_mlp_projector = nn.Linear(dim, hidden)
        self.vision_head = nn.Linear(hidden, codes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., K)
        return self.vision_head(nn.functional.gelu(self.output_mlp_projector(h)))


class GenerationAligner(nn.Module):
    """MlpProjector mlp_gelu: Linear(embed_dim, dim), then (depth - 1) x [GELU, Linear(dim, dim)]; keys
    layers.0, layers.2, ... (the GELUs sit at the odd indices)."""

    def __init__(self, embed_dim: int, dim: int, depth: int):
        super().__init__()
        layers = [nn.Linear(embed_dim, dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(dim, dim)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., embed_dim) -> (..., D)
        return self.layers(x)


class JanusDecoder(nn.Module):
    """Implements common.zipar.engine.Decoder over the K image codes (no fixed tokens: Janus has no end-of-row
    token). One forward: embeddings + positions + slots + mask + cache -> fp32 code logits."""

    def __init__(self, c: JanusConfig):
        super().__init__()
        self.config = c
        self.model = Body(c.text)
        self.gen_embed = nn.Embedding(c.vq.codebook_size, c.vq.codebook_embed_dim)
        self.gen_aligner = GenerationAligner(c.vq.codebook_embed_dim, c.text.dim, c.aligner_depth)
        self.gen_head = GenerationHead(c.text.dim, c.head_hidden, c.vq.codebook_size)

    @property
    def num_codes(self) -> int:
        return self.config.vq.codebook_size

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) vocabulary ids -> (B, T, D): the prompt's embeddings."""
        return self.model.embed_tokens(ids)

    def embed_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, Q) image codes -> (B, Q, D) (MultiModalityCausalLM.prepare_gen_img_embeds)."""
        return self.gen_aligner(self.gen_embed(codes))

    def new_cache(self, batch: int, num_slots: int, device) -> KVCache:
        return self.model.new_cache(batch, num_slots, device)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
        """fp32 logits (B, Q, K) over the image codes."""
        return self.gen_head(self.model(x, positions, slots, mask, cache)).float()


def random_init_janus_(model: JanusDecoder, seed: int, std: float = 0.02) -> None:
    """Seeded weights for every parameter (common.models.llama.random_init_ for the weights, small seeded
    biases for the adapter and head), so a model from common.weights.hf_shards.empty_model is safe to use."""
    random_init_(model, seed, std)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.copy_((torch.randn(module.bias.shape, generator=gen) * std).to(module.bias.dtype))
