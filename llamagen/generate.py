"""Class-conditional LlamaGen generation on the common engine: the condition prefix, then decode."""
import torch

from common.config import DecodeConfig
from common.engine import DecodeResult, DecodeState, decode, start_decode
from common.schedule import Layout
from llamagen.model import Transformer


def layout_for(gpt: Transformer) -> Layout:
    return Layout(rows=gpt.grid_size, cols=gpt.grid_size, prefix_len=gpt.config.cls_token_num)


def condition_prefix(gpt: Transformer, labels: torch.Tensor, config: DecodeConfig) -> torch.Tensor:
    """(B_model, T, D) embeddings: the labels, then (with CFG) the null class for each image."""
    n = gpt.config.num_classes
    if labels.numel() and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"class labels must be in [0, {n}), got {labels.tolist()}")
    if config.uses_cfg:
        labels = torch.cat([labels, torch.full_like(labels, gpt.null_class)])
    return gpt.embed_condition(labels)


@torch.inference_mode()
def generate(gpt: Transformer, labels: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig,
             static_shapes: bool = False, on_pass=None) -> DecodeResult:
    """labels, seeds: (B,) -> (B, H, W) tokens and the forward-pass count. static_shapes pads the
    passes to one shape (for a torch.compile'd model); the tokens are the same. on_pass: see
    common.engine.decode."""
    return decode(gpt, condition_prefix(gpt, labels, config), seeds, layout_for(gpt), config,
                  static_shapes=static_shapes, on_pass=on_pass)


def start(gpt: Transformer, labels: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig):
    """For notebooks: (state, prefix) to iterate pass by pass with common.engine.decode_steps(gpt, state, prefix)."""
    state: DecodeState = start_decode(gpt, seeds, layout_for(gpt), config, device=labels.device)
    return state, condition_prefix(gpt, labels, config)

