"""Loading Janus-Pro weights unchanged from either folder users have, shard by shard into the target dtype
(common.weights.hf_shards: safetensors or torch pickles, strict keys and shapes, errors name the key).

Two layouts:
- release: deepseek-ai/Janus-Pro-1B / -7B (MultiModalityCausalLM, pytorch_model*.bin): `language_model.model.*`,
  `language_model.lm_head.weight`, `gen_embed.weight`, `gen_aligner.layers.{0,2}.*`,
  `gen_head.{output_mlp_projector,vision_head}.*`, `gen_vision_model.*` (LlamaGen's VQModel names), and the
  understanding path `vision_model.*`, `aligner.*`.
- transformers: deepseek-community/Janus-Pro-1B / -7B (JanusForConditionalGeneration, safetensors):
  `model.language_model.*`, `lm_head.weight`, `model.generation_embeddings.weight`,
  `model.generation_aligner.{fc1,hidden_layers.i}.*`, `model.generation_head.{proj_out,vision_head}.*`,
  `model.vqmodel.*` (JanusVQVAE names), `model.vision_model.*`, `model.aligner.*`
  (the renames of transformers' models/janus/convert_janus_weights_to_hf.py, inverted).
Dropped by name, never read: the text lm_head and the understanding path (image generation uses neither),
the VQ's encoder side and quant_conv (generation never encodes), and the release's `quantize.codebook_used`
(a training usage counter; transformers' conversion drops it too).
"""
import re
from pathlib import Path

import torch

from common.weights.checkpoint import CheckpointError
from common.weights.hf_shards import empty_model, load_shards, shard_files
from janus.config import JanusConfig
from janus.model import JanusDecoder
from janus.vq import VQDecoder

RELEASE, TRANSFORMERS = "release", "transformers"
LAYOUT_PREFIXES = {RELEASE: "language_model.model.", TRANSFORMERS: "model.language_model."}
WHAT = "Janus-Pro"


def stored_keys(folder: str | Path) -> list[str]:
    return [key for keys in shard_files(folder, WHAT).values() for key in keys]


def detect_layout(folder: str | Path) -> str:
    """RELEASE (deepseek-ai/Janus-Pro-*) or TRANSFORMERS (deepseek-community/Janus-Pro-*), from the key names."""
    keys = stored_keys(folder)
    for layout, prefix in LAYOUT_PREFIXES.items():
        if any(key.startswith(prefix) for key in keys):
            return layout
    raise CheckpointError(f"{WHAT}: {folder} holds neither deepseek-ai/Janus-Pro keys (language_model.model.*) nor "
                          f"deepseek-community/Janus-Pro keys (model.language_model.*); first keys: {sorted(keys)[:4]}")


# ------------------------------------------------------------------ the language model, adapter and head
def _aligner_layer(match: re.Match) -> str:
    return f"gen_aligner.layers.{2 * int(match[1]) + 2}."


TRANSFORMERS_RENAMES = (
    (r"^model\.language_model\.", "model."),
    (r"^model\.generation_embeddings\.", "gen_embed."),
    (r"^model\.generation_aligner\.fc1\.", "gen_aligner.layers.0."),
    (r"^model\.generation_aligner\.hidden_layers\.(\d+)\.", _aligner_layer),
    (r"^model\.generation_head\.proj_out\.", "gen_head.output_mlp_projector."),
    (r"^model\.generation_head\.vision_head\.", "gen_head.vision_head."),
)
# keys of the other parts of the folder: the VQ (its own loader), the text head and the understanding path
DECODER_SKIPS = {
    RELEASE: ("gen_vision_model.", "language_model.lm_head.", "vision_model.", "aligner."),
    TRANSFORMERS: ("model.vqmodel.", "lm_head.", "model.vision_model.", "model.aligner."),
}


def decoder_name(key: str, layout: str) -> str:
    """A stored key -> our JanusDecoder name (unmatched keys pass through and are reported as unexpected)."""
    if layout == RELEASE:
        return "model." + key[len("language_model.model."):] if key.startswith("language_model.model.") else key
    for pattern, repl in TRANSFORMERS_RENAMES:
        key, n = re.subn(pattern, repl, key)
        if n:
            break
    return key


def load_decoder(folder: str | Path, config: JanusConfig, dtype: torch.dtype, device) -> JanusDecoder:
    """The language model, generation adapter and head from either layout, allocated once in `dtype`."""
    layout = detect_layout(folder)
    model = empty_model(lambda: JanusDecoder(config), dtype, device)
    skips = DECODER_SKIPS[layout]
    load_shards(model, folder, WHAT, rename=lambda key: decoder_name(key, layout),
                skip=lambda key: key.startswith(skips))
    return model.eval()


# ------------------------------------------------------------------ the VQ decoder
VQ_PREFIXES = {RELEASE: "gen_vision_model.", TRANSFORMERS: "model.vqmodel."}
# JanusVQVAE names -> LlamaGen's (the inverse of convert_janus_weights_to_hf.py's VQ renames)
TRANSFORMERS_VQ_RENAMES = (
    (r"^decoder\.up\.(\d+)\.block\.", r"decoder.conv_blocks.\1.res."),
    (r"^decoder\.up\.(\d+)\.", r"decoder.conv_blocks.\1."),
    (r"^decoder\.mid\.block_1\.", "decoder.mid.0."),
    (r"^decoder\.mid\.attn_1\.", "decoder.mid.1."),
    (r"^decoder\.mid\.block_2\.", "decoder.mid.2."),
)
# generation never encodes; codebook_used counts codebook use in training
VQ_UNUSED = ("encoder.", "quant_conv.", "quantize.codebook_used")


def vq_name(key: str, layout: str) -> str:
    """A stored VQ key (its prefix removed) -> our VQDecoder name."""
    if key == "quantize.embedding.weight":
        return "codebook.weight"
    if layout == TRANSFORMERS:
        for pattern, repl in TRANSFORMERS_VQ_RENAMES:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
    return key


def load_vq(folder: str | Path, config: JanusConfig, device) -> VQDecoder:
    """The VQ-16 decoder in fp32 (generation_inference.py decodes after .to(torch.float32)) from either layout."""
    layout = detect_layout(folder)
    prefix = VQ_PREFIXES[layout]
    vq = empty_model(lambda: VQDecoder(config.vq), torch.float32, device)

    def skip(key):  # the other parts of the folder, and the VQ's unused parts (see VQ_UNUSED)
        return not key.startswith(prefix) or key[len(prefix):].startswith(VQ_UNUSED)

    load_shards(vq, folder, f"{WHAT} VQ", rename=lambda key: vq_name(key[len(prefix):], layout), skip=skip)
    return vq.eval()


def check_folder_is_janus(folder: str | Path) -> None:
    """A one-line error before any weight is read for a folder that is not a Janus-Pro checkpoint."""
    detect_layout(folder)
    if not (Path(folder) / "config.json").is_file():
        raise CheckpointError(f"{WHAT}: {folder} has no config.json")
