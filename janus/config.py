"""Janus-Pro configurations: the Llama language model, the generation adapter and head, the VQ-16 image
tokenizer and the image grid, as named presets (tiny for tests, 1B, 7B) or read from either layout's
config.json.

Facts (cited where they are used):
- Janus-Pro tech report (deepseek-ai/Janus janus_pro_tech_report.pdf, Table 1): 1B: embedding 2048, 16
  heads, 24 layers; 7B: embedding 4096, 32 heads, 30 layers; vocabulary 100K (102400 ids in config.json).
- deepseek-ai/Janus-Pro-7B config.json: `language_config` holds only num_hidden_layers 30, vocab_size
  102400, max_position_embeddings 16384; every other field is transformers' LlamaConfig default (hidden
  4096, intermediate 11008, 32 heads, no GQA, RMSNorm eps 1e-6, RoPE theta 1e4). Janus-Pro-1B's holds
  hidden 2048, intermediate 5632, 16 heads, 24 layers (as transformers' conversion of it,
  hf-internal-testing/tiny-processor-janus config.json, shows: rms_norm_eps 1e-6, rope_theta 1e4).
- gen_vision_config {cls: VQ-16, image_token_size 16384, n_embed 8}; gen_aligner_config {mlp_gelu, depth 2,
  input_dim 8, n_embed = hidden}; gen_head_config {n_embed = hidden, image_token_embed = hidden,
  image_token_size 16384} (deepseek-ai/Janus janus/models/modeling_vlm.py, projector.py, vq_model.py VQ_16).
- 384 px images, a 24 x 24 grid: generation_inference.py (img_size 384, patch_size 16, 576 tokens).
- transformers (models/janus/configuration_janus.py): text_config (a LlamaConfig) and vq_config
  (JanusVQVAEConfig: embed_dim, num_embeddings, base_channels, channel_multiplier, num_res_blocks,
  latent_channels, projection_dim = the adapter's width, image_token_embed_dim = the head's input,
  num_hidden_layers = the adapter's depth); the grid is vision_config.image_size // patch_size.
"""
from dataclasses import dataclass

from common.models.llama import LlamaConfig
from common.models.vq import VQConfig, vq_config
from common.weights.checkpoint import CheckpointError


@dataclass(frozen=True)
class JanusConfig:
    text: LlamaConfig
    vq: VQConfig
    grid: int = 24  # rows = cols of the image token grid (384 px / 16)
    aligner_depth: int = 2  # gen_aligner: Linear(embed_dim, dim), then (depth - 1) x [GELU, Linear(dim, dim)]
    head_hidden: int = 4096  # gen_head: Linear(dim, head_hidden), GELU, Linear(head_hidden, codebook_size)

    def __post_init__(self):
        if self.grid < 1 or self.aligner_depth < 1:
            raise ValueError(f"grid and aligner_depth must be >= 1, got {self.grid}, {self.aligner_depth}")

    @property
    def image_size(self) -> int:
        """Pixels per image side (384 for Janus-Pro)."""
        return self.grid * self.vq.downsample


# the stand-in tokenizer's vocabulary (janus.prompt.stand_in_tokenizer) fits in 128 ids
TINY_VOCAB = 128
# VQ-16's decoder at test size: a 6 x 6 grid decoded to Janus-Pro's 384 px (7 levels, x64), 64 codes
VQ_ARCHITECTURES = {"VQ-16": vq_config("VQ-16"),
                    "VQ-tiny-384": VQConfig(codebook_size=64, codebook_embed_dim=8, z_channels=32, ch=32,
                                            ch_mult=(1, 1, 1, 1, 1, 1, 2), num_res_blocks=1)}

PRESETS = {
    "tiny": JanusConfig(
        LlamaConfig(vocab_size=TINY_VOCAB, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_hidden=96,
                    rope_theta=10000.0, norm_eps=1e-6),
        VQ_ARCHITECTURES["VQ-tiny-384"], grid=6, aligner_depth=2, head_hidden=64),  # 6x6 grid, 384 px
    "1B": JanusConfig(
        LlamaConfig(vocab_size=102400, dim=2048, n_layers=24, n_heads=16, n_kv_heads=16, ffn_hidden=5632,
                    rope_theta=10000.0, norm_eps=1e-6),
        vq_config("VQ-16"), grid=24, aligner_depth=2, head_hidden=2048),
    "7B": JanusConfig(
        LlamaConfig(vocab_size=102400, dim=4096, n_layers=30, n_heads=32, n_kv_heads=32, ffn_hidden=11008,
                    rope_theta=10000.0, norm_eps=1e-6),
        vq_config("VQ-16"), grid=24, aligner_depth=2, head_hidden=4096),
}


def janus_config(name: str) -> JanusConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown Janus config {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


# transformers' LlamaConfig defaults: the release's language_config leaves most fields to them (7B: all but
# the layer count and vocabulary)
LLAMA_DEFAULTS = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
                  "rms_norm_eps": 1e-6, "rope_theta": 10000.0}


def text_config_from_json(cfg: dict) -> LlamaConfig:
    """The release's `language_config` or transformers' `text_config` -> LlamaConfig (plain RoPE only)."""
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    if scaling:
        raise CheckpointError(f"Janus config: rope scaling {scaling} is not supported (Janus-Pro uses plain RoPE)")
    get = lambda key: cfg.get(key, LLAMA_DEFAULTS.get(key))  # noqa: E731
    try:
        heads = int(get("num_attention_heads"))
        return LlamaConfig(vocab_size=int(cfg["vocab_size"]), dim=int(get("hidden_size")),
                           n_layers=int(cfg["num_hidden_layers"]), n_heads=heads,
                           n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                           ffn_hidden=int(get("intermediate_size")),
                           rope_theta=float(cfg.get("rope_theta", rope.get("rope_theta", LLAMA_DEFAULTS["rope_theta"]))),
                           norm_eps=float(get("rms_norm_eps")))
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"Janus config.json: the language model's config lacks {e}") from None


def config_from_json(cfg: dict) -> JanusConfig:
    """JanusConfig from a deepseek-ai release config.json (MultiModalityCausalLM: language_config,
    gen_*_config) or a transformers one (JanusForConditionalGeneration: text_config, vq_config)."""
    if "language_config" in cfg:
        return _release_config(cfg)
    if "text_config" in cfg and "vq_config" in cfg:
        return _transformers_config(cfg)
    raise CheckpointError("Janus config.json has neither language_config (deepseek-ai/Janus-Pro-*) nor "
                          f"text_config + vq_config (deepseek-community/Janus-Pro-*); top-level keys: {sorted(cfg)[:8]}")


def _release_config(cfg: dict) -> JanusConfig:
    text = text_config_from_json(cfg["language_config"])
    try:
        vision = cfg["gen_vision_config"]
        aligner, head = cfg["gen_aligner_config"]["params"], cfg["gen_head_config"]["params"]
        # the release knows VQ-16 only (vq_model.py VQ_models); VQ_ARCHITECTURES adds the tiny preset's
        if vision.get("cls") not in VQ_ARCHITECTURES:
            raise CheckpointError(f"Janus config.json: gen_vision_config.cls is {vision.get('cls')!r}; expected "
                                  f"one of {', '.join(VQ_ARCHITECTURES)} (the release: VQ-16)")
        base = VQ_ARCHITECTURES[vision["cls"]]
        vq = VQConfig(codebook_size=int(vision["params"]["image_token_size"]),
                      codebook_embed_dim=int(vision["params"]["n_embed"]), z_channels=base.z_channels, ch=base.ch,
                      ch_mult=base.ch_mult, num_res_blocks=base.num_res_blocks)
        if aligner.get("projector_type") != "mlp_gelu":
            raise CheckpointError(f"Janus config.json: gen_aligner projector_type {aligner.get('projector_type')!r}, "
                                  "expected mlp_gelu")
        widths = {"gen_aligner input_dim": (int(aligner["input_dim"]), vq.codebook_embed_dim),
                  "gen_aligner n_embed": (int(aligner["n_embed"]), text.dim),
                  "gen_head n_embed": (int(head["n_embed"]), text.dim),
                  "gen_head image_token_size": (int(head["image_token_size"]), vq.codebook_size)}
        # 384 / 16: generation_inference.py's img_size and patch_size (the config names neither)
        image_size = int(cfg.get("vision_config", {}).get("params", {}).get("image_size", 384))
        config = JanusConfig(text, vq, grid=image_size // vq.downsample, aligner_depth=int(aligner.get("depth", 1)),
                             head_hidden=int(head["image_token_embed"]))
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"Janus config.json (deepseek-ai layout) lacks {e}") from None
    _check_widths(widths)
    return config


def _transformers_config(cfg: dict) -> JanusConfig:
    text = text_config_from_json(cfg["text_config"])
    try:
        vq_cfg, vision = cfg["vq_config"], cfg.get("vision_config", {})
        vq = VQConfig(codebook_size=int(vq_cfg["num_embeddings"]), codebook_embed_dim=int(vq_cfg["embed_dim"]),
                      z_channels=int(vq_cfg["latent_channels"]), ch=int(vq_cfg["base_channels"]),
                      ch_mult=tuple(vq_cfg["channel_multiplier"]), num_res_blocks=int(vq_cfg["num_res_blocks"]))
        if vq_cfg.get("hidden_act", "gelu") != "gelu":
            raise CheckpointError(f"Janus config.json: vq_config.hidden_act {vq_cfg['hidden_act']!r}, expected gelu")
        widths = {"vq_config projection_dim": (int(vq_cfg["projection_dim"]), text.dim),
                  "vq_config image_token_embed_dim": (int(vq_cfg["image_token_embed_dim"]), text.dim)}
        grid = int(vision.get("image_size", 384)) // int(vision.get("patch_size", 16))
        config = JanusConfig(text, vq, grid=grid, aligner_depth=int(vq_cfg.get("num_hidden_layers", 2)),
                             head_hidden=int(vq_cfg["projection_dim"]))
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"Janus config.json (transformers layout) lacks {e}") from None
    _check_widths(widths)
    return config


def _check_widths(widths: dict) -> None:
    for name, (got, want) in widths.items():
        if got != want:
            raise CheckpointError(f"Janus config.json: {name} is {got}, expected {want} (the widths the model joins)")
