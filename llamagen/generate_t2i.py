"""Text-conditional LlamaGen generation on the common engine: the caption prefix and its mask, then decode.

The caption mask follows FoundationVision/LlamaGen autoregressive/models/generate.py (emb_masks):
padded caption slots are read by no query except their own, the same mask holds for the
unconditional rows, which get the model's null caption (`uncond_embedding`) in place of the
features. The engine applies it (Condition.valid); the model never stores a mask.
"""
import torch

from common.zipar.condition import Condition
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode, start_decode
from common.zipar.state import DecodeResult, DecodeState
from llamagen.generate import layout_for
from llamagen.model import Transformer


def caption_prefix(gpt: Transformer, captions: torch.Tensor, valid: torch.Tensor, config: DecodeConfig) -> Condition:
    """captions (B, T, caption_dim) left-padded features, valid (B, T) bool -> Condition with (B_model, T, D)
    embeddings and (B_model, T) valid: cond rows, then (with CFG) null-caption rows."""
    cfg = gpt.config
    if cfg.model_type != "t2i":
        raise ValueError(f"caption conditioning needs a t2i model, got model_type={cfg.model_type!r}")
    B, T = valid.shape
    if tuple(captions.shape) != (B, cfg.cls_token_num, cfg.caption_dim) or T != cfg.cls_token_num:
        raise ValueError(f"captions must be (B, {cfg.cls_token_num}, {cfg.caption_dim}) with a (B, "
                         f"{cfg.cls_token_num}) mask, got {tuple(captions.shape)} and {tuple(valid.shape)}")
    if B and not valid.any(dim=1).all():
        raise ValueError("every caption needs at least one valid token (T5 always adds </s>)")
    valid = valid.bool()
    if config.uses_cfg:  # generate.py: cond_null = zeros_like(cond) + uncond_embedding, same emb_masks
        null = gpt.cls_embedding.uncond_embedding[None].expand(B, -1, -1)
        captions = torch.cat([captions.to(null.dtype), null])
        valid = torch.cat([valid, valid])
    return Condition(gpt.embed_condition(captions), valid)


@torch.inference_mode()
def generate(gpt: Transformer, captions: torch.Tensor, valid: torch.Tensor, seeds: torch.Tensor,
             config: DecodeConfig, on_pass=None, compile: bool = False) -> DecodeResult:
    """captions (B, T, caption_dim), valid (B, T), seeds (B,) -> (B, H, W) tokens and pass counts
    (pixels: llamagen.generate.decode_images). on_pass, compile: see common.zipar.engine.decode."""
    return decode(gpt, caption_prefix(gpt, captions, valid, config), seeds, layout_for(gpt), config,
                  on_pass=on_pass, compile=compile)


def start(gpt: Transformer, captions: torch.Tensor, valid: torch.Tensor, seeds: torch.Tensor,
          config: DecodeConfig, compile: bool = False) -> DecodeState:
    """For notebooks: a state to iterate with common.zipar.engine.decode_steps(gpt, state)."""
    return start_decode(gpt, caption_prefix(gpt, captions, valid, config), seeds, layout_for(gpt), config,
                        compile=compile)
