"""Emu3's vision tokenizer decoder (BAAI/Emu3-VisionTokenizer): image codes -> pixels in [-1, 1].

A MoVQ decoder (SpatialNorm: GroupNorm modulated by 1x1 convs of the code embeddings) behind a temporal
stem (two residual blocks of causal 3D convs with BatchNorm, then two x2 temporal upsamplings). Module and
key names follow the original Emu3/emu3/tokenizer/modeling_emu3visionvq.py (`quantize`, `post_quant_conv`,
`decoder.*`), so its state dict is the decoder side of the checkpoint. BatchNorm always uses its running
statistics (eval semantics, whatever the module mode).

Images: the official `decode` runs T=1 codes up to 4 frames and returns frame 0. Every temporal op is
causal with front zero padding and everything after `conv_in` is per frame, so frame 0 depends only on
frame 0 at every stage: `decode` keeps T=1 throughout (no temporal repeat) and decodes that one frame;
`decode_video` is the full path, and tests/test_emu3_vision.py checks the two agree.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from emu3.config import VisionConfig


class CausalConv3d(nn.Module):
    """nn.Conv3d (key `.conv`) after padding H, W by (p//2 + p%2, p//2), p = kernel - stride, and time by
    two zero frames in front, whatever the kernel (the original CausalConv3d)."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        pad = ()
        for k, s in reversed(list(zip(kernel[1:], stride[1:]))):
            p = k - s
            pad += (p // 2 + p % 2, p // 2)
        self.pad = pad + (2, 0)
        self.conv = nn.Conv3d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        return self.conv(F.pad(x, self.pad))


def batch_norm_eval(norm: nn.BatchNorm3d, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)


class TemporalResBlock(nn.Module):
    """BN -> SiLU -> causal conv -> BN -> SiLU -> causal conv, plus identity (Emu3: in = out channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(channels)
        self.conv1 = CausalConv3d(channels, channels, (3, 3, 3))
        self.norm2 = nn.BatchNorm3d(channels)
        self.conv2 = CausalConv3d(channels, channels, (3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        h = self.conv1(F.silu(batch_norm_eval(self.norm1, x)))
        return x + self.conv2(F.silu(batch_norm_eval(self.norm2, h)))


class TemporalUpsample(nn.Module):
    """Nearest x`repeat` along time, then a causal 3x3x3 conv (key `.conv.conv`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, (3, 3, 3))

    def forward(self, x: torch.Tensor, repeat: int) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C, repeat*T, H, W)
        return self.conv(x.repeat_interleave(repeat, dim=2))


class SpatialNorm(nn.Module):
    """MoVQ: GroupNorm(x) * conv_y(zq) + conv_b(zq), zq nearest-resized to x's size."""

    def __init__(self, channels: int, zq_channels: int):
        super().__init__()
        self.norm_layer = nn.GroupNorm(32, channels, eps=1e-6)
        self.conv_y = nn.Conv2d(zq_channels, channels, 1)
        self.conv_b = nn.Conv2d(zq_channels, channels, 1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:  # x (N, C, h, w), zq (N, Cq, H, W)
        zq = F.interpolate(zq, size=x.shape[-2:], mode="nearest")
        return self.norm_layer(x) * self.conv_y(zq) + self.conv_b(zq)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, zq_channels: int):
        super().__init__()
        self.norm1 = SpatialNorm(cin, zq_channels)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = SpatialNorm(cout, zq_channels)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, zq)))
        h = self.conv2(F.silu(self.norm2(h, zq)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, scale 1/sqrt(C); q, k, v, proj_out are 1x1 convs."""

    def __init__(self, channels: int, zq_channels: int):
        super().__init__()
        self.norm = SpatialNorm(channels, zq_channels)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        n = self.norm(x, zq)
        N, C, h, w = n.shape
        q, k, v = (proj(n).flatten(2).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))  # (N, 1, hw, C)
        out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(N, C, h, w)
        return x + self.proj_out(out)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """The `decoder.*` keys: temporal stem, conv_in, mid, up levels (stored lowest resolution last), norm_out."""

    def __init__(self, c: VisionConfig):
        super().__init__()
        zq = c.embed_dim
        self.time_res_stack = nn.ModuleList(TemporalResBlock(c.z_channels) for _ in range(c.num_res_blocks))
        n_up = c.temporal_downsample_factor.bit_length() - 1
        self.time_conv = nn.ModuleList(TemporalUpsample(c.z_channels) for _ in range(n_up))
        block_in = c.ch * c.ch_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResBlock(block_in, block_in, zq)
        self.mid.attn_1 = AttnBlock(block_in, zq)
        self.mid.block_2 = ResBlock(block_in, block_in, zq)
        levels = []
        for i_level in reversed(range(len(c.ch_mult))):
            level = nn.Module()
            block_out = c.ch * c.ch_mult[i_level]
            blocks, attns = [], []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResBlock(block_in, block_out, zq))
                block_in = block_out
                if i_level in c.attn_resolutions:
                    attns.append(AttnBlock(block_in, zq))
            level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attns)
            if i_level != 0:
                level.upsample = Upsample(block_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = SpatialNorm(block_in, zq)
        self.conv_out = nn.Conv2d(block_in, c.out_channels, 3, padding=1)

    def temporal(self, z: torch.Tensor, zq: torch.Tensor, repeat: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z, zq (B, C, T, H, W) -> both (B, C, repeat**n * T, H, W). z and zq share the weights (the original
        concatenates them on the batch axis); zq so processed is the SpatialNorm condition."""
        x = torch.cat([z, zq])
        for block in self.time_res_stack:
            x = block(x)
        for up in self.time_conv:
            x = F.silu(up(x, repeat))
        return x.chunk(2)

    def spatial(self, h: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """Per frame: h, zq (N, C, H, W) latents -> (N, out_channels, f*H, f*W)."""
        h = self.conv_in(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, zq), zq), zq)
        for level in reversed(self.up):
            for i, block in enumerate(level.block):
                h = block(h, zq)
                if len(level.attn):
                    h = level.attn[i](h, zq)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h, zq)))


class Quantize(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        self.embedding = nn.Embedding(c.codebook_size, c.embed_dim)


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frames of one image consecutive."""
    return x.transpose(1, 2).flatten(0, 1)


class VisionDecoder(nn.Module):
    """Codes (B, H, W) -> images (B, 3, f*H, f*W) in about [-1, 1], f = config.spatial_factor."""

    def __init__(self, c: VisionConfig):
        super().__init__()
        self.config = c
        self.quantize = Quantize(c)
        self.post_quant_conv = CausalConv3d(c.embed_dim, c.z_channels, (3, 1, 1))
        self.decoder = Decoder(c)

    def latents(self, codes: torch.Tensor, repeat: int) -> tuple[torch.Tensor, torch.Tensor]:
        """codes (B, H, W) -> (z, zq), each (B, C, T, H, W) after the temporal stem (T = 1 if repeat == 1)."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be (B, H, W), got shape {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.config.codebook_size})")
        quant = self.quantize.embedding(codes).permute(0, 3, 1, 2)[:, :, None]  # (B, C, 1, H, W)
        return self.decoder.temporal(self.post_quant_conv(quant), quant, repeat)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """The official image decode (frame 0 of the video), computed on that frame alone."""
        z, zq = self.latents(codes, repeat=1)
        return self.decoder.spatial(z[:, :, 0], zq[:, :, 0])

    def decode_video(self, codes: torch.Tensor) -> torch.Tensor:
        """The full path of the official decode: (B, H, W) -> (B, T, 3, f*H, f*W) with T = the temporal factor."""
        z, zq = self.latents(codes, repeat=2)
        frames = self.decoder.spatial(frames_to_batch(z), frames_to_batch(zq))
        return frames.unflatten(0, (codes.shape[0], -1))


def to_uint8_official(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 as Emu3VisionVQImageProcessor.postprocess: (x + 1) / 2 * 255,
    clip to [0, 255], then truncate (astype(uint8)); no rounding."""
    x = ((images.detach().float() + 1) / 2 * 255).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu()


def random_init_vision_(vq: VisionDecoder, seed: int) -> None:
    """Seeded weights that keep activations O(1) and make every tensor matter: fan-in scaled convs, random
    biases, norms' affine parameters and BatchNorm running statistics, a unit-normal codebook."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda t, scale, shift=0.0: t.copy_(torch.randn(t.shape, generator=gen) * scale + shift)  # noqa: E731
    with torch.no_grad():
        for module in vq.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                rand(module.weight, module.weight[0].numel() ** -0.5)
                rand(module.bias, 0.1)
            elif isinstance(module, (nn.GroupNorm, nn.BatchNorm3d)):
                rand(module.weight, 0.1, 1.0)
                rand(module.bias, 0.1)
                if isinstance(module, nn.BatchNorm3d):
                    rand(module.running_mean, 0.1)
                    module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
                    module.num_batches_tracked.zero_()
            elif isinstance(module, nn.Embedding):
                rand(module.weight, 1.0)
