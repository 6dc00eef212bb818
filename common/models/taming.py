"""The taming-transformers VQGAN building blocks that LlamaGen's VQ and Chameleon's VQGAN share.

Key names (norm1, conv1, norm2, conv2, nin_shortcut; norm, q, k, v, proj_out; conv) follow
CompVis/taming-transformers taming/modules/diffusionmodules/model.py, which both
FoundationVision/LlamaGen tokenizer/tokenizer_image/vq_model.py and facebookresearch/chameleon
(Alpha-VLLM/Lumina-mGPT chameleon_vae_ori/vqgan.py) copy. Dropout is 0 in both, so omitted.
"""
import torch
import torch.nn.functional as F
from torch import nn



def norm(channels: int) -> nn.GroupNorm:
    # taming `Normalize` (LlamaGen norm_type='group', Chameleon): GroupNorm(32 groups, eps=1e-6, affine).
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    """norm1 -> swish -> conv1(3x3) -> norm2 -> swish -> conv2(3x3), plus (1x1-projected) skip."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1 = norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        # Upstream only ever uses the 1x1 `nin_shortcut` (never a 3x3 conv_shortcut).
        self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in, H, W) -> (B, out, H, W)
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))  # dropout_p=0 upstream, so omitted
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions with 1x1-conv q/k/v/proj_out."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = norm(ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same
        b, c, hh, ww = x.shape
        h = self.norm(x)
        # (B, C, H, W) -> (B, 1, H*W, C): one head whose dim is the full channel count.
        q, k, v = (t(h).reshape(b, 1, c, hh * ww).transpose(-1, -2) for t in (self.q, self.k, self.v))
        # softmax(q k^T * C^-0.5) v; SDPA's default scale is 1/sqrt(last dim) = C^-0.5.
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Asymmetric zero pad (left 0, right 1, top 0, bottom 1) then 3x3 stride-2 conv: H -> H/2."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 conv: H -> 2H."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
