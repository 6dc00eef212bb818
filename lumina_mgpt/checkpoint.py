"""Loading Lumina-mGPT 7B unchanged from its Hugging Face folder (config.json, safetensors shards through
model.safetensors.index.json), tensor by tensor into the requested dtype (common.weights.hf_shards: no second
copy in host RAM; strict keys and shapes, errors name the key).

The qk-norm parameters are stored [1, head_dim] in Lumina's files and [n_heads, head_dim] in
transformers' Chameleon layout; the model is built with the shape the files hold (both broadcast the
same way in common.models.llama.HeadNorm).
"""
from pathlib import Path

import torch
from safetensors import safe_open

from common.weights.hf_shards import empty_model, load_shards, read_config_json, shard_files
from common.models.llama import LlamaDecoder
from lumina_mgpt.config import config_from_json

QK_NORM_KEY = "model.layers.0.self_attn.q_norm.weight"
# transformers' ChameleonForConditionalGeneration.save_pretrained also writes its VQ encoder under
# model.vqmodel.*; Lumina's own files have none (finetune_solver.py deletes it). Text-to-image never uses it.
SKIPPED_PREFIX = "model.vqmodel."


def stored_qk_norm_heads(folder: str | Path) -> int:
    for path, keys in shard_files(folder, "Lumina-mGPT").items():
        if QK_NORM_KEY in keys:
            with safe_open(path, framework="pt") as f:
                return int(f.get_slice(QK_NORM_KEY).get_shape()[0])
    raise FileNotFoundError(f"Lumina-mGPT: {folder} holds no {QK_NORM_KEY!r}: not a Chameleon/Lumina-mGPT checkpoint")


def load_model(folder: str | Path, dtype: torch.dtype, device) -> LlamaDecoder:
    config = config_from_json(read_config_json(folder, "Lumina-mGPT"), qk_norm_heads=stored_qk_norm_heads(folder))
    model = empty_model(lambda: LlamaDecoder(config), dtype, device)
    load_shards(model, folder, "Lumina-mGPT", skip=lambda key: key.startswith(SKIPPED_PREFIX))
    return model.eval()


def vocabulary_from_config(folder: str | Path) -> dict[str, int] | None:
    """config.json's `vocabulary_map` (name -> id), when present."""
    vocab = read_config_json(folder, "Lumina-mGPT").get("vocabulary_map")
    return dict(vocab) if isinstance(vocab, dict) else None


