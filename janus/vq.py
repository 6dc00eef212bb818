"""Janus-Pro's image decoder: LlamaGen's VQ-16 (16384 codes, 8-dim, L2-normalised codebook), decoder side only.

deepseek-ai/Janus janus/models/vq_model.py is LlamaGen's tokenizer/tokenizer_image/vq_model.py (same
ModelArgs, Encoder/Decoder, `conv_blocks`/`res`/`attn`/`mid.0..2` names, codebook_l2_norm=True);
transformers' JanusVQVAE (models/janus/modeling_janus.py) is the same network under other names
(`up`/`block`, `mid.block_1`/`attn_1`/`block_2`) whose get_codebook_entry also L2-normalises. The decoder
is common.models.vq.Decoder; image generation never encodes, so the encoder side is not built and its
keys are dropped by name at load (janus/checkpoint.py).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.models.vq import Decoder, VQConfig


class VQDecoder(nn.Module):
    """codes (B, H, W) -> images (B, 3, H*ds, W*ds) in about [-1, 1] (fp32, as the release runs it after
    `.to(torch.float32)`; not clamped)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.config = cfg
        self.codebook = nn.Embedding(cfg.codebook_size, cfg.codebook_embed_dim)  # (K, C), not unit rows
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, 1)
        self.decoder = Decoder(cfg)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        latent = F.embedding(codes.long(), F.normalize(self.codebook.weight, p=2, dim=-1))  # (B, H, W, C)
        latent = latent.permute(0, 3, 1, 2).to(self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(latent))


def to_uint8_official(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 as generation_inference.py: clip((x + 1) / 2 * 255, 0, 255),
    then truncated by the assignment into a uint8 array (no rounding)."""
    x = ((images.detach().float() + 1) / 2 * 255).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu()


def random_init_vq_(vq: VQDecoder, seed: int) -> None:
    """Seeded values for every tensor (fan-in scaled convolutions, GroupNorm affine near identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in vq.state_dict().items():
            noise = torch.randn(t.shape, generator=gen)
            if t.dim() > 1:
                t.copy_(noise / max(t[0].numel(), 1) ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                t.copy_(1 + 0.1 * noise)
            else:
                t.copy_(0.1 * noise)
