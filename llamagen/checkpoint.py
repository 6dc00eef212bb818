"""Loading the official LlamaGen files unchanged (FoundationVision/LlamaGen, autoregressive/sample/*.py).

GPT: the file is the state dict itself (FSDP: c2i_XXL_384.pt, c2i_3B_384.pt) or holds it under
"model" (DDP), "module" (DeepSpeed) or "state_dict", tried in that order. An optional stored
`freqs_cis` is dropped (we recompute RoPE), after its shape is checked against the requested image
size; a `_orig_mod.` prefix from torch.compile is stripped. VQ: "ema", then "model", then
"state_dict" (tokenizer/tokenizer_image/vq_demo.py). Everything else must match exactly.
"""
from pathlib import Path

import torch

from common.weights.checkpoint import CheckpointError, load_exact, read_checkpoint, unwrap_state_dict
from llamagen.model import Transformer, gpt_config
from common.models.vq import VQModel, vq_config


def build_gpt(preset: str, image_size: int, downsample: int, **overrides) -> Transformer:
    if image_size % downsample:
        raise ValueError(f"image size {image_size} is not a multiple of the VQ downsample factor {downsample}")
    return Transformer(gpt_config(preset, **overrides), grid_size=image_size // downsample)


def load_gpt_weights(model: Transformer, path: str | Path, preset: str) -> None:
    what = f"GPT preset {preset} at {model.grid_size}x{model.grid_size} tokens"
    ckpt = read_checkpoint(path, what)
    state = dict(unwrap_state_dict(ckpt, ("model", "module", "state_dict"), what, path))
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    # freqs_cis may sit in the state dict or next to it in the container; check whichever is there
    stored = [state.pop("freqs_cis", None), ckpt.get("freqs_cis") if isinstance(ckpt, dict) else None]
    cfg = model.config
    expected = (cfg.cls_token_num + model.grid_size**2, cfg.head_dim // 2, 2)
    for stored_rope in stored:
        if isinstance(stored_rope, torch.Tensor) and tuple(stored_rope.shape) != expected:
            raise CheckpointError(f"{what}: {path} stores freqs_cis of shape {tuple(stored_rope.shape)}, "
                                  f"expected {expected}: trained for another image size?")
    load_exact(model, state, what, path)


def load_vq(preset: str, path: str | Path | None) -> VQModel:
    """The VQ tokenizer in fp32 (the official scripts never cast it); path None keeps random weights."""
    model = VQModel(vq_config(preset))
    if path is not None:
        what = f"VQ preset {preset}"
        state = unwrap_state_dict(read_checkpoint(path, what), ("ema", "model", "state_dict"), what, path)
        load_exact(model, state, what, path)
    return model.eval()
