"""Tiny Lumina-mGPT test settings (prompts, image size, decoder config) and transformers' Chameleon
as the reference for decoder parity."""
from common.llama import LlamaConfig

PROMPTS = ["a cat", "a red cube on the mat photo of a dog in blue"]
SIZE = (64, 64)  # with a 64-px "checkpoint" size list: a 4x4 grid

TINY = LlamaConfig(vocab_size=120, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_hidden=96, qk_norm_heads=1)


def hf_chameleon():
    from transformers import ChameleonConfig, ChameleonModel
    config = ChameleonConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=4, intermediate_size=96, rms_norm_eps=1e-5,
                             vocabulary_map={"<s>": 0},
                             vq_config={"embed_dim": 8, "num_embeddings": 16, "base_channels": 32,
                                        "channel_multiplier": [1], "num_res_blocks": 1, "latent_channels": 8})
    return ChameleonModel(config).eval()


def to_transformers(state):
    """Lumina's [1, head_dim] qk-norm parameters -> transformers' [n_heads, head_dim]; `model.` prefix off."""
    out = {}
    for k, v in state.items():
        if k.startswith("model."):
            out[k[len("model."):]] = v.expand(4, -1).clone() if "_norm." in k and "self_attn" in k else v
    return out
