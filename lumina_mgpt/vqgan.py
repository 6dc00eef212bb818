"""Chameleon's VQGAN image decoder (the image tokenizer Lumina-mGPT decodes with): codes -> pixels.

Facts: Alpha-VLLM/Lumina-mGPT lumina_mgpt/model/chameleon_vae_ori/vqgan.py (taming-transformers'
VQModel) and image_tokenizer.py, with Meta's vqgan.yaml (embed_dim 256, n_embed 8192, z_channels
256, ch 128, ch_mult [1,1,2,2,4], num_res_blocks 2, attn_resolutions [] so attention only in the
middle block, no tanh). Decoding: codebook lookup (no remap) -> post_quant_conv (1x1) -> Decoder:
conv_in, mid (res, attn, res), levels 4..0 of num_res_blocks+1 res blocks each with a nearest x2
upsample + 3x3 conv after every level but 0, GroupNorm, swish, conv_out. Keys as in the checkpoint
(`decoder.up.{level}.block.{j}`, level 4 = lowest resolution, applied first). The encoder side is
not built (image generation never encodes); its keys are dropped by name at load time.
Runs in fp32, as upstream decodes outside its autocast block.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.weights.checkpoint import CheckpointError, load_exact, read_checkpoint
from common.models.taming import AttnBlock, ResnetBlock, Upsample, norm, swish

# Keys of vqgan.ckpt's "state_dict" that decoding does not use, dropped by name: the encoder side,
# and the training loss (LPIPS / discriminator) a Lightning VQModel checkpoint may carry under `loss.`.
UNUSED_PREFIXES = ("encoder.", "quant_conv.", "loss.")


@dataclass(frozen=True)
class VQGANConfig:
    embed_dim: int = 256
    n_embed: int = 8192
    z_channels: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    out_ch: int = 3

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


VQGAN_PRESETS = {
    "chameleon": VQGANConfig(),  # Meta's vqgan.yaml
    # tests and --random-init --config tiny: channels multiples of 32 (GroupNorm), x4 downsampling
    "tiny": VQGANConfig(embed_dim=32, n_embed=64, z_channels=32, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1),
}


def config_from_yaml(path: str | Path) -> VQGANConfig:
    """vqgan.yaml's model.params (the keys the decoder needs; lossconfig/ckpt_path are ignored)."""
    import yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VQGAN config not found: {path}")
    try:
        params = yaml.safe_load(path.read_text())["model"]["params"]
        dd = params["ddconfig"]
        return VQGANConfig(embed_dim=int(params["embed_dim"]), n_embed=int(params["n_embed"]),
                           z_channels=int(dd["z_channels"]), ch=int(dd["ch"]), ch_mult=tuple(dd["ch_mult"]),
                           num_res_blocks=int(dd["num_res_blocks"]), out_ch=int(dd["out_ch"]))
    except (KeyError, TypeError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path} is not a VQGAN config (model.params.ddconfig): {type(e).__name__}: {e}") from None


class _Level(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(in_ch if j == 0 else out_ch, out_ch) for j in range(n_blocks))
        if upsample:
            self.upsample = Upsample(out_ch)


class _Mid(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(ch, ch), AttnBlock(ch), ResnetBlock(ch, ch)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Decoder(nn.Module):
    def __init__(self, c: VQGANConfig):
        super().__init__()
        n = len(c.ch_mult)
        top = c.ch * c.ch_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, top, 3, padding=1)
        self.mid = _Mid(top)
        levels, in_ch = [None] * n, top
        for i in reversed(range(n)):  # built lowest resolution first, stored by level index
            levels[i] = _Level(in_ch, c.ch * c.ch_mult[i], c.num_res_blocks + 1, upsample=i != 0)
            in_ch = c.ch * c.ch_mult[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = norm(in_ch)
        self.conv_out = nn.Conv2d(in_ch, c.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z, h, w) -> (B, 3, h*ds, w*ds)
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class _Codebook(nn.Module):
    def __init__(self, c: VQGANConfig):
        super().__init__()
        self.embedding = nn.Embedding(c.n_embed, c.embed_dim)


class ChameleonVQGAN(nn.Module):
    """The decoding half of Chameleon's VQModel: quantize.embedding, post_quant_conv, decoder."""

    def __init__(self, c: VQGANConfig):
        super().__init__()
        self.config = c
        self.quantize = _Codebook(c)
        self.post_quant_conv = nn.Conv2d(c.embed_dim, c.z_channels, 1)
        self.decoder = Decoder(c)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) int64 in [0, n_embed) -> (B, 3, h*ds, w*ds) fp32 images, nominally [-1, 1]."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be (B, h, w), got shape {tuple(codes.shape)}")
        weight = self.quantize.embedding.weight
        z = weight[codes.to(weight.device)].permute(0, 3, 1, 2).float()  # (B, embed_dim, h, w)
        return self.decoder(self.post_quant_conv(z))


def load_vqgan(vqgan_dir: str | Path, device="cpu") -> ChameleonVQGAN:
    """vqgan.yaml + vqgan.ckpt or its converted vqgan.safetensors (Meta's chameleon/tokenizer folder;
    weights under "state_dict"), strict on every decoder key; encoder and loss keys dropped by name."""
    folder = Path(vqgan_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"--vqgan-dir: folder not found: {folder}")
    model = ChameleonVQGAN(config_from_yaml(folder / "vqgan.yaml"))
    # vqgan.safetensors: what `python -m common.convert vqgan.ckpt --trust-pickle` writes, for a
    # vqgan.ckpt that a safe load refuses
    path = folder / "vqgan.safetensors" if (folder / "vqgan.safetensors").is_file() else folder / "vqgan.ckpt"
    ckpt = read_checkpoint(path, "Chameleon VQGAN")
    state = ckpt.get("state_dict", ckpt)  # read_checkpoint returns a dict
    if not isinstance(state, dict):
        raise CheckpointError(f"Chameleon VQGAN: {path} holds no state dict")
    state = {k: v for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}
    load_exact(model, state, "Chameleon VQGAN", path)
    return model.to(device).eval()


def random_vqgan(seed: int, preset: str = "tiny", device="cpu") -> ChameleonVQGAN:
    """Seeded weights (default init drawn from a seeded generator state), for runs without files."""
    if preset not in VQGAN_PRESETS:
        raise ValueError(f"unknown VQGAN preset {preset!r}; valid: {', '.join(VQGAN_PRESETS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ChameleonVQGAN(VQGAN_PRESETS[preset])
        with torch.no_grad():
            model.quantize.embedding.weight.normal_(0, 1)
    return model.to(device).eval()


def to_uint8_official(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) -> (B, H, W, 3) uint8 as image_tokenizer._pil_from_chw_tensor: clamp(-1, 1),
    (x + 1) / 2, * 255, truncated (not rounded)."""
    x = (images.detach().float().clamp(-1, 1) + 1) / 2
    return (x.permute(0, 2, 3, 1) * 255).cpu().numpy().astype(np.uint8)
