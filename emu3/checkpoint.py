"""Loading Emu3-Gen weights unchanged from the official folders, shard by shard into the target dtype.

Two layouts (fact sheet section 1.4):
- original: BAAI/Emu3-Gen (`model.*`, `lm_head.weight`, 7 fp32 shards) + BAAI/Emu3-VisionTokenizer
  (one model.safetensors with `encoder.*`, `decoder.*`, `quantize.*`, `quant_conv.*`, `post_quant_conv.*`);
- converted: BAAI/Emu3-Gen-hf, one folder with the text model (`text_model.model.*`, as transformers'
  convert_emu3_weights_to_hf.py and save_pretrained write it; `model.text_model.*` accepted too) and the
  VQ-VAE (`vqmodel.*`, renamed blocks, attention as Linear instead of 1x1 Conv2d).
Loads are strict: every key either lands in a parameter of the same shape or is dropped by name (the
encoder side of the vision tokenizer, the other model of an -hf folder); errors name the key.
"""
import re
from pathlib import Path

import torch

from common.weights.checkpoint import CheckpointError
from common.weights.hf_shards import empty_model, load_shards, shard_files
from common.models.llama import LlamaConfig, LlamaDecoder
from emu3.config import VisionConfig
from emu3.vision_decoder import VisionDecoder

ORIGINAL, HF = "original", "hf"
HF_TEXT_PREFIXES = ("text_model.model.", "model.text_model.")
HF_HEADS = ("text_model.lm_head.weight", "lm_head.weight")
HF_VQ_PREFIXES = ("vqmodel.", "model.vqmodel.")
# Image generation never encodes: the vision tokenizer's encoder side is not built and its keys are dropped.
VQ_ENCODER_PREFIXES = ("encoder.", "quant_conv.")


def stored_keys(folder: str | Path, what: str) -> list[str]:
    return [key for keys in shard_files(folder, what).values() for key in keys]


def detect_layout(folder: str | Path, what: str = "Emu3") -> str:
    """ORIGINAL (BAAI/Emu3-Gen) or HF (BAAI/Emu3-Gen-hf), from the stored key names."""
    keys = stored_keys(folder, what)
    if "model.embed_tokens.weight" in keys:
        return ORIGINAL
    if any(key.startswith(HF_TEXT_PREFIXES) for key in keys):
        return HF
    raise CheckpointError(f"{what}: {folder} holds neither Emu3-Gen keys (model.embed_tokens.weight) nor "
                          f"Emu3-Gen-hf keys (text_model.model.*); first keys: {sorted(keys)[:4]}")


def hf_text_name(key: str) -> str:
    """-hf text key -> our name (the original layout's): text_model.model.X -> model.X, lm_head -> lm_head."""
    if key in HF_HEADS:
        return "lm_head.weight"
    for prefix in HF_TEXT_PREFIXES:
        if key.startswith(prefix):
            return "model." + key[len(prefix):]
    return key  # not a text key: reported as unexpected


def load_text_model(folder: str | Path, config: LlamaConfig, dtype: torch.dtype, device) -> LlamaDecoder:
    """The Emu3-Gen decoder from either layout, allocated once in `dtype` on `device`."""
    what = "Emu3-Gen text model"
    layout = detect_layout(folder, what)
    model = empty_model(lambda: LlamaDecoder(config), dtype, device)
    if layout == ORIGINAL:
        load_shards(model, folder, what, rename=lambda key: key, skip=lambda key: False)
    else:  # the -hf folder also holds the VQ-VAE: its keys (vqmodel.*) are the vision loader's
        load_shards(model, folder, what, rename=hf_text_name, skip=lambda key: key.startswith(HF_VQ_PREFIXES))
    return model.eval()


# -hf VQ names -> original names: the inverse of transformers' convert_emu3_weights_to_hf.py renames
HF_VQ_RENAMES = (
    (r"\.middle_block\.attn_norm\.", ".mid.attn_1.norm."),
    (r"\.attn_norms\.(\d+)\.", r".attn.\1.norm."),
    (r"\.down_block\.down\.", ".down."),
    (r"\.up_block\.up\.", ".up."),
    (r"\.middle_block\.", ".mid."),
    (r"\.q_proj\.", ".q."), (r"\.k_proj\.", ".k."), (r"\.v_proj\.", ".v."), (r"\.out_proj\.", ".proj_out."),
)


def hf_vq_name(key: str) -> str:
    """vqmodel.decoder.up_block.up.3.attn_norms.1.norm_layer.weight -> decoder.up.3.attn.1.norm.norm_layer.weight."""
    for prefix in HF_VQ_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    for pattern, repl in HF_VQ_RENAMES:
        key = re.sub(pattern, repl, "." + key)[1:]
    return key


def conv_from_linear(name: str, tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The -hf attention projections are Linear (C, C) where the original has 1x1 Conv2d (C, C, 1, 1)."""
    if tensor.dim() == 2 and len(shape) == 4 and tuple(shape[2:]) == (1, 1):
        return tensor[:, :, None, None]
    return tensor


def load_vision_decoder(folder: str | Path, config: VisionConfig, device) -> VisionDecoder:
    """The vision tokenizer decoder in fp32 (as the official pipeline runs it), from a BAAI/Emu3-VisionTokenizer
    folder or from a BAAI/Emu3-Gen-hf folder (its vqmodel.* keys)."""
    what = "Emu3 vision tokenizer"
    vq = empty_model(lambda: VisionDecoder(config), torch.float32, device)
    keys = stored_keys(folder, what)
    if any(key.startswith(HF_VQ_PREFIXES) for key in keys):
        def skip(key):  # the text model's keys, and the encoder side (see VQ_ENCODER_PREFIXES)
            return not key.startswith(HF_VQ_PREFIXES) or hf_vq_name(key).startswith(VQ_ENCODER_PREFIXES)
        load_shards(vq, folder, what, rename=hf_vq_name, skip=skip, adapt=conv_from_linear)
    else:
        load_shards(vq, folder, what, rename=lambda key: key, skip=lambda key: key.startswith(VQ_ENCODER_PREFIXES))
    return vq.eval()
