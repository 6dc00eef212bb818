"""LlamaGen VQ image tokenizer (VQ-16 / VQ-8): encoder, decoder and L2-normalised codebook.

This file owns the image <-> token mapping used by the LlamaGen GPTs:
  * ``VQConfig`` / ``VQ_PRESETS`` / ``vq_config``: architecture hyper-parameters.
  * ``VQModel``: a clean re-implementation whose ``state_dict()`` keys and shapes match the
    official checkpoints (FoundationVision/LlamaGen, tokenizer/tokenizer_image/vq_model.py),
    so the released weights load with ``load_state_dict(strict=True)``.
Only inference is implemented (no losses, no EMA/usage tracking updates).

Token convention: codes are (B, h*w) integers in row-major raster order; token n sits at
latent position (row n // w, col n % w). Images are (B, 3, H, W) in [-1, 1], H = h * downsample.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.models.taming import AttnBlock, Downsample, ResnetBlock, Upsample, norm, swish

# Size of the usage-tracking buffer in the official VectorQuantizer. It is fixed at 65536
# regardless of codebook_size (LlamaGen tokenizer/tokenizer_image/vq_model.py,
# `register_buffer("codebook_used", ...zeros(65536))`); kept only so strict loading works.
CODEBOOK_USED_SIZE = 65536


@dataclass(frozen=True)
class VQConfig:
    """Hyper-parameters; defaults are LlamaGen `ModelArgs` + Encoder/Decoder defaults
    (tokenizer/tokenizer_image/vq_model.py): ch=128, num_res_blocks=2, z_channels=256."""

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    z_channels: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2

    @property
    def downsample(self) -> int:
        """Spatial reduction factor image -> latent (one stride-2 conv per level but the last)."""
        return 2 ** (len(self.ch_mult) - 1)


VQ_PRESETS: dict[str, VQConfig] = {
    # VQ_16 / VQ_8 in LlamaGen tokenizer/tokenizer_image/vq_model.py (encoder_ch_mult == decoder_ch_mult).
    "VQ-16": VQConfig(ch_mult=(1, 1, 2, 2, 4)),
    "VQ-8": VQConfig(ch_mult=(1, 2, 2, 4)),
    # Tiny test model; channels are multiples of 32 because GroupNorm uses 32 groups.
    "VQ-tiny": VQConfig(codebook_size=64, codebook_embed_dim=8, z_channels=32, ch=32, ch_mult=(1, 2)),
}


def vq_config(name: str) -> VQConfig:
    """Look up a preset by name; raises ValueError listing the valid names."""
    try:
        return VQ_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown VQ preset {name!r}; valid names: {sorted(VQ_PRESETS)}") from None


# ----------------------------------------------------------------------------- building blocks
# ResnetBlock, AttnBlock, Downsample, Upsample: common/models/taming.py (shared with Chameleon's VQGAN)


class _Level(nn.Module):
    """One resolution level: `res` blocks, optional `attn` (one after each res), then resampling.

    The attribute is named `downsample` (encoder) or `upsample` (decoder) to match upstream keys.
    """

    def __init__(self, in_ch: int, out_ch: int, n_res: int, attn: bool, resample: str | None):
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(n_res))
        self.attn = nn.ModuleList(AttnBlock(out_ch) for _ in range(n_res)) if attn else nn.ModuleList()
        if resample == "down":
            self.downsample = Downsample(out_ch)
        elif resample == "up":
            self.upsample = Upsample(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if len(self.attn) > 0:
                x = self.attn[i](x)
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        if hasattr(self, "upsample"):
            x = self.upsample(x)
        return x


def _mid(ch: int) -> nn.Sequential:
    # Keys mid.0 (Res), mid.1 (Attn), mid.2 (Res) as in upstream's ModuleList.
    return nn.Sequential(ResnetBlock(ch, ch), AttnBlock(ch), ResnetBlock(ch, ch))


class Encoder(nn.Module):
    """(B, 3, H, W) -> (B, z_channels, H/ds, W/ds). Attention only at the last (lowest-res) level."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        n = len(cfg.ch_mult)
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        in_mult = (1,) + tuple(cfg.ch_mult)
        self.conv_blocks = nn.ModuleList(
            _Level(
                cfg.ch * in_mult[i],
                cfg.ch * cfg.ch_mult[i],
                cfg.num_res_blocks,
                attn=(i == n - 1),
                resample="down" if i < n - 1 else None,
            )
            for i in range(n)
        )
        top = cfg.ch * cfg.ch_mult[-1]
        self.mid = _mid(top)
        self.norm_out = norm(top)
        self.conv_out = nn.Conv2d(top, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, 3, h*ds, w*ds). conv_blocks[0] is the lowest-res level (with
    attention); each level has num_res_blocks + 1 res blocks; all but the last upsample."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        mults = tuple(reversed(cfg.ch_mult))
        n = len(mults)
        top = cfg.ch * mults[0]
        self.conv_in = nn.Conv2d(cfg.z_channels, top, 3, padding=1)
        self.mid = _mid(top)
        levels, in_ch = [], top
        for i, m in enumerate(mults):
            out_ch = cfg.ch * m
            levels.append(
                _Level(in_ch, out_ch, cfg.num_res_blocks + 1, attn=(i == 0), resample="up" if i < n - 1 else None)
            )
            in_ch = out_ch
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = norm(in_ch)
        self.conv_out = nn.Conv2d(in_ch, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Codebook holder. LlamaGen uses codebook_l2_norm=True: the codebook rows AND the query
    vectors are L2-normalised at every use; stored weights are not unit-norm."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_embed_dim)  # (K, C)
        # Unused at inference; present so the official checkpoints load strictly.
        self.register_buffer("codebook_used", torch.zeros(CODEBOOK_USED_SIZE), persistent=True)

    def normalized_codebook(self) -> torch.Tensor:  # (K, C), unit rows
        return F.normalize(self.embedding.weight, p=2, dim=-1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, h, w) -> codes (B, h*w), argmax cosine similarity (== argmin L2 distance of the
        normalised vectors, as upstream computes it)."""
        b, c, h, w = z.shape
        zf = F.normalize(z.permute(0, 2, 3, 1).reshape(b * h * w, c), p=2, dim=-1)  # channel-last rows
        sim = zf @ self.normalized_codebook().to(zf.dtype).t()  # (B*h*w, K)
        return sim.argmax(dim=-1).reshape(b, h * w)

    def lookup(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes (B, h*w) raster order -> (B, C, h, w) normalised codebook vectors."""
        h, w = grid
        b = codes.shape[0]
        if codes.shape[-1] != h * w:
            raise ValueError(f"codes have {codes.shape[-1]} tokens per image, grid {grid} needs {h * w}")
        vecs = F.embedding(codes.reshape(b, h * w).long(), self.normalized_codebook())  # (B, h*w, C)
        return vecs.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


class VQModel(nn.Module):
    """LlamaGen VQ tokenizer. Submodule names mirror the official state dict:
    encoder.*, decoder.*, quantize.{embedding.weight, codebook_used}, quant_conv, post_quant_conv."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_embed_dim, 1)  # z -> codebook space
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, 1)  # back to z

    def _fp32_region(self, device: torch.device):
        # Upstream sampling scripts run the VQ in fp32 even when the GPT uses bf16/fp16, so
        # ignore any caller autocast; inputs are cast to the weights' dtype.
        return torch.autocast(device_type=device.type, enabled=False)

    def nearest_codes(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, embed_dim, h, w) -> codes (B, h*w) LongTensor (raster order)."""
        return self.quantize.nearest(latent)

    def codes_to_latent(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes (B, h*w) -> (B, embed_dim, h, w) from the L2-normalised codebook."""
        return self.quantize.lookup(codes, grid)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, embed_dim, h, w) -> images (B, 3, h*ds, w*ds), roughly in [-1, 1], NOT clamped."""
        weight = self.post_quant_conv.weight
        with self._fp32_region(latent.device):
            return self.decoder(self.post_quant_conv(latent.to(weight.dtype)))

    def decode_code(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes (B, h*w) raster order -> images (B, 3, h*ds, w*ds) in ~[-1, 1]."""
        return self.decode(self.codes_to_latent(codes, grid))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> codes (B, (H/ds)*(W/ds)) LongTensor, raster order."""
        weight = self.quant_conv.weight
        with self._fp32_region(images.device):
            z = self.quant_conv(self.encoder(images.to(weight.dtype)))  # (B, embed_dim, h, w)
            return self.nearest_codes(z)
