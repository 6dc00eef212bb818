"""Class-conditional LlamaGen generation on the common engine: the condition prefix, then decode.

`generate` returns the engine's DecodeResult (tokens and pass counts), as every family's generate does;
`decode_images` turns its tokens into pixels."""
import torch

from common.zipar.condition import Condition
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode, start_decode
from common.zipar.state import DecodeResult, DecodeState
from common.zipar.layout import Layout
from llamagen.model import Transformer


def layout_for(gpt: Transformer) -> Layout:
    return Layout(rows=gpt.grid_size, cols=gpt.grid_size, prefix_len=gpt.config.cls_token_num, family="llamagen")


def condition_prefix(gpt: Transformer, labels: torch.Tensor, config: DecodeConfig) -> Condition:
    """(B_model, T, D) embeddings: the labels, then (with CFG) the null class for each image."""
    n = gpt.config.num_classes
    if labels.numel() and (labels.min() < 0 or labels.max() >= n):
        raise ValueError(f"class labels must be in [0, {n}), got {labels.tolist()}")
    if config.uses_cfg:
        labels = torch.cat([labels, torch.full_like(labels, gpt.null_class)])
    return Condition(gpt.embed_condition(labels))


@torch.inference_mode()
def generate(gpt: Transformer, labels: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig, on_pass=None,
             compile: bool = False, buffers=None) -> DecodeResult:
    """labels, seeds: (B,) -> (B, H, W) tokens and the forward-pass count. on_pass, compile (the engine
    compiles its per-pass step; the tokens are the same), buffers: see common.zipar.engine.decode."""
    return decode(gpt, condition_prefix(gpt, labels, config), seeds, layout_for(gpt), config, on_pass=on_pass,
                  compile=compile, buffers=buffers)


def start(gpt: Transformer, labels: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig,
          compile: bool = False) -> DecodeState:
    """For notebooks: a state to iterate pass by pass with common.zipar.engine.decode_steps(gpt, state)."""
    return start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout_for(gpt), config, compile=compile)


@torch.inference_mode()
def decode_images(vq, tokens: torch.Tensor) -> torch.Tensor:
    """(B, H, W) tokens -> (B, 3, h, w) images in [-1, 1] through the image tokenizer (a VQ model or the
    demo's intensity tokenizer)."""
    return vq.decode_code(tokens.flatten(1), tuple(tokens.shape[1:]))
