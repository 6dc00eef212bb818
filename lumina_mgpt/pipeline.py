"""Lumina-mGPT text-to-image on the common end-of-row pipeline (common/t2i_pipeline.py): what is Lumina's own.

Sequence (fact sheet section 2.3): prompt, BOI, H, W, then H rows of W image tokens each followed by
EOL, then EOI. Content cells sample the 8192 image ids only (what the official MultiModalLogitsProcessor
allows), EOL is placed by the schedule, EOI is appended (`sequence_ids`), never sampled. BOI/H/W end the
prefix (forced, see prompt.py).

Guidance (inference_solver.py, LLMImageStartTriggeredUnbatchedClassifierFreeGuidanceLogitsProcessor):
the unconditional branch is the sequence from BOI on, [BOI, H, W] at positions 0, 1, 2 with no text,
then the same image tokens; here it is a model-batch row of its own, left-padded to the prompt length
and position-shifted so it runs at exactly those positions. CFG applies from the first content token, as
upstream (H and W are not sampled here at all): cfg*(cond - uncond) + uncond on fp32 logits, the same
formula as common.zipar.sampling.guide; then image top-k (2000), temperature, top-p.

compat="official" reproduces the paper's released Lumina-mGPT ZipAR code instead (ThisisBillhe/ZipAR,
Lumina-mGPT-ZipAR; its rule in common.zipar.official): --window is its zipar_window_size (our w + 1), its CFG branch
is [<s>, <pad> x (P-1)] of the prompt's length followed by the same BOI, H, W, batched with the prompt, and
its prompt attends both ways in the prefill (causal with --prompt-attention causal: the release loaded with
attn_implementation="eager"). It runs at every size and batch here; the release runs 768 x 768, batch 1.
"""
import dataclasses
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from common.weights.hf_shards import empty_model
from common.models.llama import LlamaDecoder, random_init_
from common.t2i_pipeline import PromptPreset, TextToImagePipeline
from lumina_mgpt.checkpoint import load_model, vocabulary_from_config
from lumina_mgpt.config import RESOLUTIONS, TINY_CODES, lumina_config
from lumina_mgpt.presets import DEFAULT
from lumina_mgpt.prompt import (SpecialIds, check_size, crop_sizes, image_header, image_id_map, load_tokenizer,
                                nearest_sizes, prompt_ids, size_rule, special_ids, stand_in_tokenizer)
from lumina_mgpt.vqgan import ChameleonVQGAN, load_vqgan, random_vqgan


def ntp_passes_official(rows: int, cols: int) -> int:
    """Passes of the official loop for the image body: one per content token and per EOL, H(W+1)
    (48 x 49 = 2352 at 768 px; BOI, H, W and EOI are four more steps around it)."""
    return rows * (cols + 1)


def checkpoint_resolution(width: int, height: int) -> int:
    """The smallest checkpoint resolution trained on width x height; ValueError naming the nearest sizes."""
    fits = [r for r in RESOLUTIONS if (width, height) in crop_sizes(r)]
    if not fits:
        near = {r: nearest_sizes(width, height, r, 2) for r in RESOLUTIONS}
        rules = "; ".join(f"{r} px: {size_rule(r)}" for r in RESOLUTIONS)
        raise ValueError(f"{width}x{height} is not a size of any Lumina-mGPT checkpoint ({rules}); nearest: "
                         + ", ".join(f"{r} px {sizes}" for r, sizes in near.items()))
    return fits[0]


@dataclass
class LuminaPipeline(TextToImagePipeline):
    """The loaded parts of Lumina-mGPT; holds no decoding state. `size` is (width, height) in pixels."""

    family = "lumina-mgpt"  # common.zipar.official
    context_length = 4096  # Lumina-mGPT-7B-768 config.json max_position_embeddings (fact sheet lumina_mgpt.md 1.1);
    # the prompt's bound only: the 1024 px image alone is 4160 tokens, which plain RoPE extrapolates to
    model: LlamaDecoder
    vq: ChameleonVQGAN
    tokenizer: Tokenizer
    ids: SpecialIds
    resolution: int  # the checkpoint's training size (512, 768, 1024): decides the allowed sizes

    def image_vocab_ids(self) -> torch.Tensor:
        image_ids = image_id_map(self.tokenizer.get_vocab())  # (K,) code -> vocabulary id, from the names
        if len(image_ids) != self.vq.config.n_embed:
            raise ValueError(f"the tokenizer has {len(image_ids)} image tokens, the VQGAN {self.vq.config.n_embed} codes")
        return image_ids

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        return check_size(*size, self.resolution)

    def prompt_ids(self, prompt: str, size: tuple[int, int]) -> list[int]:
        return prompt_ids(self.tokenizer, self.ids, prompt, *size)

    def image_header(self, size: tuple[int, int]) -> list[int]:
        return image_header(self.ids, *size)

    def unconditional_ids(self, conditional: list[int], size: tuple[int, int]) -> list[int]:
        return image_header(self.ids, *size)

    def fixed_ids(self) -> list[int]:
        return [self.ids.eol]

    def closing_ids(self) -> list[int]:
        return [self.ids.eoi]

    @torch.inference_mode()
    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, 3, 16H, 16W) fp32 images (the tiny VQGAN: x4), nominally [-1, 1]."""
        return self.vq.decode(tokens)

    def ntp_passes_official(self, rows: int, cols: int) -> int:
        return ntp_passes_official(rows, cols)


def load_pipeline(model_path: str | None, vq_path: str | None, tokenizer_path: str | None,
                  config_name: str = "7B", resolution: int = 768, device="cpu", dtype: torch.dtype = torch.float32,
                  random_init: bool = False, seed: int = 0) -> LuminaPipeline:
    """Lumina-mGPT from files, or a preset with random weights.

    Files: model_path = an Alpha-VLLM/Lumina-mGPT-7B-* folder (config from its config.json),
    vq_path = Meta's chameleon tokenizer folder (vqgan.yaml, vqgan.ckpt), tokenizer_path = a folder or
    file with tokenizer.json (default model_path; only the -768 repo ships one). The decoder runs in
    `dtype`, the VQGAN in fp32 as upstream. random_init: preset `config_name` with seeded weights, a
    stand-in tokenizer with Lumina's special names, and a random VQGAN (tiny for config 'tiny').
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS} (the checkpoints' sizes), got {resolution}")
    if random_init:
        config = lumina_config(config_name)
        vq = random_vqgan(seed, "tiny" if config_name == "tiny" else "chameleon", device)
        tokenizer = stand_in_tokenizer(vq.config.n_embed if config_name != "tiny" else TINY_CODES, config.vocab_size)
        model = empty_model(lambda: LlamaDecoder(config), dtype, device)
        random_init_(model, seed)
        return LuminaPipeline(model.eval(), vq, tokenizer, special_ids(tokenizer), resolution)
    if model_path is None or vq_path is None:
        raise ValueError("pass --model-path and --vq-path, or --random-init to run without files")
    tokenizer = load_tokenizer(tokenizer_path or model_path)
    ids = special_ids(tokenizer)
    # the 512/1024 repos ship no tokenizer, but their config.json's vocabulary_map names every id: a
    # tokenizer taken from elsewhere must place the image tokens exactly there
    vocab_map = vocabulary_from_config(model_path)
    if vocab_map is not None and not torch.equal(image_id_map(vocab_map), image_id_map(tokenizer.get_vocab())):
        raise ValueError(f"the tokenizer's IMGIMG ids differ from the vocabulary_map in {model_path}/config.json: "
                         "not this checkpoint's tokenizer")
    vq = load_vqgan(vq_path, device)
    model = load_model(model_path, dtype, device)
    if model.config.vocab_size < tokenizer.get_vocab_size():
        raise ValueError(f"tokenizer has {tokenizer.get_vocab_size()} ids, the model {model.config.vocab_size}")
    return LuminaPipeline(model, vq, tokenizer, ids, resolution)


def load_preset(preset: PromptPreset, model_path: str | None, vq_path: str | None, tokenizer_path: str | None,
                device="cpu", dtype: torch.dtype = torch.float32, random_init: bool = False, seed: int = 0
                ) -> LuminaPipeline:
    """sample_ddp.py's entry: the pipeline of a lumina_mgpt.presets preset, from the checkpoint trained on
    its size (preset.config for --random-init)."""
    return load_pipeline(model_path, vq_path, tokenizer_path, preset.config, checkpoint_resolution(*preset.size),
                         device, dtype, random_init, seed)


def speed_pipeline(tiny: bool, dims: dict, dtype: torch.dtype, device) -> tuple[LuminaPipeline, tuple, object]:
    """benchmarks/t2i_latency.py's model: the preset's architecture or the tiny test one (its dim, layers and
    heads replaced by `dims`)
    with random weights, a random VQGAN and the real grid and vocabulary (768x768; tiny: 64x64).
    (pipeline, size, text config)."""
    text = dataclasses.replace(lumina_config("tiny" if tiny else DEFAULT.config), **dims)
    model = empty_model(lambda: LlamaDecoder(text), dtype, device)
    random_init_(model, 0)
    vq = random_vqgan(0, "tiny" if tiny else "chameleon")
    tokenizer = stand_in_tokenizer(vq.config.n_embed, text.vocab_size)
    size = 64 if tiny else 768
    return LuminaPipeline(model, vq, tokenizer, special_ids(tokenizer), resolution=size), (size, size), text
