"""Emu3-Gen configurations: the text decoder (a LlamaConfig), the vision tokenizer decoder and the image
area, as named presets (tiny for tests, 8B for BAAI/Emu3-Gen) or read from the files' config.json.

Values from BAAI/Emu3-Gen config.json and BAAI/Emu3-VisionTokenizer config.json (fact sheet
../shared/reference/emu3.md sections 1.1 and 5.1); the converted -hf config nests them as `text_config`
and `vq_config` with renamed vision fields (transformers models/emu3/configuration_emu3.py).
"""
from dataclasses import dataclass

from common.weights.checkpoint import CheckpointError
from common.models.llama import LlamaConfig

# Emu3/emu3/mllm/processing_emu3.py: the processor's default image_area; Emu3-Gen's config.json has the same
IMAGE_AREA_GEN = 518400  # 720 * 720


@dataclass(frozen=True)
class VisionConfig:
    """The decoder side of the MoVQ-style vision tokenizer (Emu3/emu3/tokenizer/configuration_emu3visionvq.py)."""

    codebook_size: int = 32768
    embed_dim: int = 4  # codebook vector width (the SpatialNorm condition channels)
    z_channels: int = 4  # latent width after post_quant_conv
    out_channels: int = 3
    ch: int = 256
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (3,)  # up levels (indices into ch_mult) that have attention blocks
    temporal_downsample_factor: int = 4

    def __post_init__(self):
        if any(self.ch * m % 32 for m in self.ch_mult):
            raise ValueError(f"ch * ch_mult must be multiples of 32 (GroupNorm groups), got ch={self.ch}, "
                             f"ch_mult={self.ch_mult}")
        t = self.temporal_downsample_factor
        if t < 1 or t & (t - 1):
            raise ValueError(f"temporal_downsample_factor must be a power of 2, got {t}")

    @property
    def spatial_factor(self) -> int:
        """Pixels per code along each side (8 for Emu3)."""
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class Emu3Config:
    text: LlamaConfig
    vision: VisionConfig
    image_area: int = IMAGE_AREA_GEN  # target pixel area from which the grid size of a ratio is computed
    text_tokens: int = 151643  # BPE ranks before the first special token (emu3.tiktoken: Qwen's 151643)


# The tiny vocabulary is the one prompt.tiny_tokenizer builds: 256 byte tokens, 3 + 205 named specials,
# <|image token|>, <|image start|>, <|image end|>, then 32 visual tokens.
TINY_CODES = 32
TINY_VOCAB = 256 + 3 + 205 + 3 + TINY_CODES

PRESETS = {
    "tiny": Emu3Config(
        LlamaConfig(vocab_size=TINY_VOCAB, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=96,
                    rope_theta=1e6, norm_eps=1e-5),
        VisionConfig(codebook_size=TINY_CODES, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(1,)),
        image_area=64,  # 1:1 -> a 4x4 grid (spatial factor 2), 8x8 pixels
        text_tokens=256,
    ),
    "8B": Emu3Config(  # BAAI/Emu3-Gen config.json
        LlamaConfig(vocab_size=184622, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_hidden=14336,
                    rope_theta=1e6, norm_eps=1e-5),
        VisionConfig(),
        image_area=IMAGE_AREA_GEN,
    ),
}


def emu3_config(name: str) -> Emu3Config:
    if name not in PRESETS:
        raise ValueError(f"unknown Emu3 config {name!r}; valid: {sorted(PRESETS)}")
    return PRESETS[name]


def text_config_from_json(cfg: dict) -> LlamaConfig:
    """LlamaConfig from Emu3-Gen's config.json, or from the -hf config's `text_config`."""
    cfg = cfg.get("text_config", cfg)
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise CheckpointError(f"Emu3 config: only plain RoPE is supported, got rope settings {rope}")
    try:
        return LlamaConfig(
            vocab_size=cfg["vocab_size"], dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"],
            n_heads=cfg["num_attention_heads"],
            n_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
            ffn_hidden=cfg["intermediate_size"],
            rope_theta=float(cfg.get("rope_theta", rope.get("rope_theta", 1e6))),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-5)))
    except KeyError as e:
        raise CheckpointError(f"Emu3 config.json lacks field {e}") from None


def vision_config_from_json(cfg: dict) -> VisionConfig:
    """VisionConfig from Emu3-VisionTokenizer's config.json (original field names) or from the -hf config's
    `vq_config` (ch -> base_channels, ch_mult -> channel_multiplier, z_channels -> latent_channels)."""
    cfg = cfg.get("vq_config", cfg)
    pick = lambda old, new: cfg[old] if old in cfg else cfg[new]  # noqa: E731
    try:
        return VisionConfig(
            codebook_size=cfg["codebook_size"], embed_dim=cfg["embed_dim"],
            z_channels=pick("z_channels", "latent_channels"), out_channels=cfg.get("out_channels", 3),
            ch=pick("ch", "base_channels"), ch_mult=tuple(pick("ch_mult", "channel_multiplier")),
            num_res_blocks=cfg["num_res_blocks"], attn_resolutions=tuple(cfg["attn_resolutions"]),
            temporal_downsample_factor=cfg["temporal_downsample_factor"])
    except KeyError as e:
        raise CheckpointError(f"Emu3 vision tokenizer config.json lacks field {e}") from None
