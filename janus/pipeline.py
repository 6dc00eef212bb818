"""Janus-Pro text-to-image on the common pipeline (common/t2i_pipeline.py): what is Janus's own.

Sequence (deepseek-ai/Janus generation_inference.py): the prompt (janus/prompt.py) ends in <begin_of_image>,
then H x W image codes in raster order (24 x 24 at 384 px), no end-of-row tokens, nothing after the last
code. Codes are sampled over the 16384 outputs of the generation head, not the text vocabulary, and enter
through the generation adapter (janus/model.py), so the engine runs on the model itself (`decoder`), not
on common.models.image_vocab. The layout has no fixed tokens: the first row is serial by default
(common.zipar.window: row 1's opening query has no end-of-row token to be fed), 2W + (H-2)w passes.

Guidance: generation_inference.py runs CFG weight 5, temperature 1, no top-k or top-p, the unconditional
prompt built from the conditional one (`unconditional`: the release's rule by default, transformers' on
request; janus/prompt.py), guided = uncond + w (cond - uncond) on the raw head logits, as
common.zipar.sampling.guide computes. Both branches are left-padded to one length and position-shifted
(common.t2i_pipeline), so each row runs at the positions of an unpadded run.
"""
import dataclasses
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from common.t2i_pipeline import PromptPreset, TextToImagePipeline
from common.weights.checkpoint import CheckpointError
from common.weights.hf_shards import empty_model, read_config_json
from janus.checkpoint import check_folder_is_janus, load_decoder, load_vq
from janus.config import JanusConfig, config_from_json, janus_config
from janus.model import JanusDecoder, random_init_janus_
from janus.presets import DEFAULT
from janus.prompt import (UNCONDITIONALS, SpecialIds, load_tokenizer, prompt_ids, special_ids, stand_in_tokenizer,
                          unconditional_ids)
from janus.vq import VQDecoder, random_init_vq_


@dataclass
class JanusPipeline(TextToImagePipeline):
    """The loaded parts of Janus-Pro; holds no decoding state. `size` is the image side in pixels (384)."""

    family = "janus"  # common.zipar.official: no released ZipAR code, compat="official" is refused
    context_length = 16384  # deepseek-ai/Janus-Pro-7B config.json language_config max_position_embeddings

    config: JanusConfig
    model: JanusDecoder
    vq: VQDecoder
    tokenizer: Tokenizer
    ids: SpecialIds
    unconditional: str = "release"  # the CFG branch's prompt: janus.prompt.UNCONDITIONALS

    def __post_init__(self):
        if self.unconditional not in UNCONDITIONALS:
            raise ValueError(f"--unconditional must be one of {', '.join(UNCONDITIONALS)}, got {self.unconditional!r}")
        super().__post_init__()

    def decoder(self) -> JanusDecoder:
        return self.model  # already over image codes

    def prefix_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_text(ids)

    def fixed_ids(self) -> list[int]:
        return []

    def grid(self, size: int) -> tuple[int, int]:
        if size != self.config.image_size:
            raise ValueError(f"Janus-Pro generates {self.config.image_size} x {self.config.image_size} px images "
                             f"(a {self.config.grid} x {self.config.grid} grid), got size {size}")
        return self.config.grid, self.config.grid

    def prompt_ids(self, prompt: str, size: int) -> list[int]:
        return prompt_ids(self.tokenizer, self.ids, prompt)

    def image_header(self, size: int) -> list[int]:
        return [self.ids.boi]

    def unconditional_ids(self, conditional: list[int], size: int) -> list[int]:
        return unconditional_ids(conditional, self.ids, self.unconditional)

    def closing_ids(self) -> list[int]:
        return []

    def sequence_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, H*W): the release's generated_tokens (codes, not vocabulary ids)."""
        return tokens.flatten(1)

    @torch.inference_mode()
    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, 3, 16H, 16W) fp32 images in about [-1, 1]."""
        return self.vq.decode(tokens.to(self.vq.codebook.weight.device))

    def ntp_passes_official(self, rows: int, cols: int) -> int:
        """The release's loop: one forward per code, H*W (576 at 384 px), its first one over the prompt."""
        return rows * cols


def check_config_ids(cfg: dict, ids: SpecialIds) -> None:
    """The transformers config.json's token ids (where present) must be the tokenizer's."""
    text = cfg.get("text_config", {})
    for name, value in (("bos_token_id", ids.bos), ("pad_token_id", ids.pad)):
        if name in text and text[name] != value:
            raise CheckpointError(f"Janus-Pro: config.json has {name}={text[name]} but the tokenizer gives {value}: "
                                  "tokenizer from another model?")


def load_pipeline(model_path: str | None, tokenizer_path: str | None, config_name: str = "7B", device="cpu",
                  dtype: torch.dtype = torch.float32, random_init: bool = False, seed: int = 0,
                  unconditional: str = "release") -> JanusPipeline:
    """Janus-Pro from a deepseek-ai/Janus-Pro-* or deepseek-community/Janus-Pro-* folder (config from its
    config.json; config_name unused; tokenizer.json from tokenizer_path, default model_path), or preset
    `config_name` with seeded weights and a stand-in tokenizer (random_init). The language model runs in
    `dtype`, the VQ decoder in fp32."""
    if random_init:
        config = janus_config(config_name)
        model = empty_model(lambda: JanusDecoder(config), dtype, device)
        random_init_janus_(model, seed)
        vq = empty_model(lambda: VQDecoder(config.vq), torch.float32, device)
        random_init_vq_(vq, seed)
        tokenizer = stand_in_tokenizer(config.text.vocab_size)
        return JanusPipeline(config, model.eval(), vq.eval(), tokenizer, special_ids(tokenizer), unconditional)
    if model_path is None:
        raise ValueError("pass --model-path, or --random-init to run without files")
    check_folder_is_janus(model_path)
    cfg = read_config_json(model_path, "Janus-Pro")
    config = config_from_json(cfg)
    tokenizer = load_tokenizer(tokenizer_path or model_path)
    ids = special_ids(tokenizer)
    check_config_ids(cfg, ids)
    if tokenizer.get_vocab_size() > config.text.vocab_size:
        raise CheckpointError(f"Janus-Pro: the tokenizer has {tokenizer.get_vocab_size()} ids, the model "
                              f"{config.text.vocab_size}")
    model = load_decoder(model_path, config, dtype, device)
    vq = load_vq(model_path, config, device)
    return JanusPipeline(config, model, vq, tokenizer, ids, unconditional)


def load_preset(preset: PromptPreset, model_path: str | None, vq_path: str | None, tokenizer_path: str | None,
                device="cpu", dtype: torch.dtype = torch.float32, random_init: bool = False, seed: int = 0
                ) -> JanusPipeline:
    """sample_ddp.py's entry: the pipeline of a janus.presets preset (preset.config for --random-init); the
    VQ lives in the model folder (vq_path must be None)."""
    if vq_path is not None:
        raise ValueError("Janus-Pro's VQ decoder is in the --model-path folder; drop --vq-path")
    return load_pipeline(model_path, tokenizer_path, preset.config, device, dtype, random_init, seed)


def speed_pipeline(tiny: bool, dims: dict, dtype: torch.dtype, device) -> tuple[JanusPipeline, int, object]:
    """benchmarks/t2i_latency.py's model: the preset's architecture (Janus-Pro-7B) or the tiny test one (its
    dim, layers and heads replaced by `dims`) with random weights and no image decoder, on the real grid
    (24 x 24 codes at 384 px) and the 16384-way generation head. (pipeline, size, text config)."""
    base = janus_config("tiny" if tiny else DEFAULT.config)
    text = dataclasses.replace(base.text, **dims)
    config = dataclasses.replace(base, text=text, head_hidden=text.dim)  # the head is as wide as the model (7B)
    model = empty_model(lambda: JanusDecoder(config), dtype, device)
    random_init_janus_(model, 0)
    tokenizer = stand_in_tokenizer(text.vocab_size)
    return JanusPipeline(config, model, None, tokenizer, special_ids(tokenizer)), config.image_size, text
