"""Tiny Janus-Pro checkpoints for the tests: a transformers JanusForConditionalGeneration built on the tiny
preset (janus.config PRESETS["tiny"]) with seeded non-trivial weights, saved in the transformers layout
(safetensors shards) or rewritten into the deepseek-ai release layout (pytorch_model*.bin shards, release
key names and config.json)."""
import json
import re

import torch

from janus.config import PRESETS
from janus.prompt import SpecialIds

TINY = PRESETS["tiny"]


def hf_config(ids: SpecialIds):
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig
    c, v = TINY.text, TINY.vq
    text = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_hidden,
                       num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads,
                       rms_norm_eps=c.norm_eps, bos_token_id=ids.bos, pad_token_id=ids.pad, eos_token_id=ids.bos + 3)
    # the understanding tower is built but unused; its grid decides num_patches = TINY.grid
    vision = JanusVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=TINY.image_size,
                               patch_size=TINY.image_size // TINY.grid, projection_dim=c.dim,
                               num_image_tokens=TINY.grid ** 2)
    vq = JanusVQVAEConfig(embed_dim=v.codebook_embed_dim, num_embeddings=v.codebook_size, latent_channels=v.z_channels,
                          base_channels=v.ch, channel_multiplier=list(v.ch_mult), num_res_blocks=v.num_res_blocks,
                          projection_dim=c.dim, image_token_embed_dim=c.dim, num_hidden_layers=TINY.aligner_depth)
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=ids.bos + 6)


def reference_model(ids: SpecialIds, seed: int = 0):
    """transformers' Janus on the tiny preset, every tensor seeded (peaked distributions: large weights)."""
    from transformers import JanusForConditionalGeneration
    model = JanusForConditionalGeneration(hf_config(ids)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if t.dim() > 1:
                t.copy_(noise * (2.0 if "embed" in name else 1.0) / max(t[0].numel(), 1) ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                t.copy_(1 + 0.1 * noise)
            else:
                t.copy_(0.1 * noise)
    return model


# transformers names -> release names: deepseek-ai's conversion (convert_janus_weights_to_hf.py MAPPINGS) run
# backwards, written here independently of janus/checkpoint.py
TO_RELEASE = (
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.weight$", "language_model.lm_head.weight"),
    (r"^model\.generation_embeddings\.", "gen_embed."),
    (r"^model\.generation_aligner\.fc1\.", "gen_aligner.layers.0."),
    (r"^model\.generation_aligner\.hidden_layers\.0\.", "gen_aligner.layers.2."),
    (r"^model\.generation_head\.proj_out\.", "gen_head.output_mlp_projector."),
    (r"^model\.generation_head\.", "gen_head."),
    (r"^model\.vqmodel\.", "gen_vision_model."),
    (r"^model\.vision_model\.", "vision_model.vision_tower."),
    (r"^model\.aligner\.fc1\.", "aligner.layers.0."),
    (r"^model\.aligner\.hidden_layers\.0\.", "aligner.layers.2."),
)
TO_RELEASE_VQ = (
    (r"\.(en|de)coder\.(up|down)\.(\d+)\.block\.", r".\1coder.conv_blocks.\3.res."),
    (r"\.(en|de)coder\.(up|down)\.", r".\1coder.conv_blocks."),
    (r"\.mid\.block_1\.", ".mid.0."), (r"\.mid\.attn_1\.", ".mid.1."), (r"\.mid\.block_2\.", ".mid.2."),
)


def release_state(reference) -> dict:
    out = {}
    for key, value in reference.state_dict().items():
        for pattern, repl in TO_RELEASE:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
        if key.startswith("gen_vision_model."):
            for pattern, repl in TO_RELEASE_VQ:
                key = re.sub(pattern, repl, key)
        out[key] = value.clone()
    out["gen_vision_model.quantize.codebook_used"] = torch.zeros(65536)  # the release's training counter
    return out


def release_config_json() -> dict:
    """The deepseek-ai config.json shape (MultiModalityConfig) for the tiny preset."""
    c, v = TINY.text, TINY.vq
    return {
        "architectures": ["MultiModalityCausalLM"], "model_type": "multi_modality",
        "language_config": {"model_type": "llama", "vocab_size": c.vocab_size, "hidden_size": c.dim,
                            "intermediate_size": c.ffn_hidden, "num_hidden_layers": c.n_layers,
                            "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads},
        "gen_vision_config": {"cls": "VQ-tiny-384", "model_type": "gen_vision",
                              "params": {"image_token_size": v.codebook_size, "n_embed": v.codebook_embed_dim}},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
                               "params": {"depth": TINY.aligner_depth, "input_dim": v.codebook_embed_dim,
                                          "n_embed": c.dim, "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                            "params": {"image_token_embed": TINY.head_hidden, "image_token_size": v.codebook_size,
                                       "n_embed": c.dim}},
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                          "params": {"image_size": TINY.image_size, "model_name": "siglip_large_patch16_384"}},
    }


def write_release(folder, reference, shards: int = 2) -> dict:
    """deepseek-ai layout: pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json (or one
    pytorch_model.bin), config.json. Returns the state written."""
    state = release_state(reference)
    folder.mkdir(exist_ok=True)
    keys = sorted(state)
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        weight_map = {}
        for i in range(shards):
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            torch.save({k: state[k] for k in keys[i::shards]}, folder / name)
            weight_map.update({k: name for k in keys[i::shards]})
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(release_config_json()))
    return state


def write_transformers(folder, reference) -> None:
    """deepseek-community layout: what save_pretrained writes (sharded safetensors, config.json)."""
    reference.save_pretrained(folder, max_shard_size="200KB")
