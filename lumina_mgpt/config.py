"""Lumina-mGPT decoder configurations: the Chameleon-7B shape, a tiny test shape, config.json reading.

Facts: Alpha-VLLM/Lumina-mGPT lumina_mgpt/model/chameleon/configuration_chameleon.py defaults and the
checkpoint's config.json (ChameleonConfig fields): hidden 4096, 32 layers, 32 heads (no GQA), SwiGLU
11008, vocab 65536, RoPE theta 1e4, RMSNorm 1e-5, qk-norm LayerNorm over head_dim stored [1, 128]
(model_parallel_size 1), no biases, untied lm_head. The decoder is common.models.llama.LlamaDecoder.
"""

from common.weights.checkpoint import CheckpointError
from common.models.llama import LlamaConfig

TINY_CODES = 64  # lumina_mgpt.vqgan "tiny" codebook
RESOLUTIONS = (512, 768, 1024)  # the checkpoints' training sizes: Alpha-VLLM/Lumina-mGPT-7B-{512,768,1024}

PRESETS = {
    "7B": LlamaConfig(vocab_size=65536, dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_hidden=11008,
                      rope_theta=10000.0, norm_eps=1e-5, qk_norm_heads=1),
    # tiny: the stand-in tokenizer's vocabulary (lumina_mgpt.prompt.stand_in_tokenizer), same structure
    "tiny": LlamaConfig(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_hidden=96,
                        rope_theta=10000.0, norm_eps=1e-5, qk_norm_heads=1),
}


def lumina_config(name: str) -> LlamaConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown Lumina-mGPT config {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def config_from_json(cfg: dict, qk_norm_heads: int = 1) -> LlamaConfig:
    """ChameleonConfig fields -> LlamaConfig; qk_norm_heads: 1 (Lumina files) or n_heads (transformers)."""
    if cfg.get("swin_norm"):
        raise CheckpointError("Lumina-mGPT: swin_norm=true (the 34B layout) is not supported; the 7B models use pre-norm")
    # transformers <= 4.x (Lumina's files, 4.43.3) write rope_theta / rope_scaling at the top level,
    # transformers >= 5 inside rope_parameters; the checkpoints use plain RoPE (no scaling, no position cap)
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    if scaling:
        raise CheckpointError(f"Lumina-mGPT: rope scaling {scaling} is not supported (the checkpoints use plain RoPE)")
    theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
    try:
        heads = int(cfg["num_attention_heads"])
        return LlamaConfig(vocab_size=int(cfg["vocab_size"]), dim=int(cfg["hidden_size"]),
                           n_layers=int(cfg["num_hidden_layers"]), n_heads=heads,
                           n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                           ffn_hidden=int(cfg["intermediate_size"]), rope_theta=float(theta),
                           norm_eps=float(cfg.get("rms_norm_eps", 1e-5)), qk_norm_heads=qk_norm_heads)
    except KeyError as e:
        raise CheckpointError(f"Lumina-mGPT: config.json lacks {e.args[0]!r}") from None
