"""Emu3-Gen text-to-image on the common end-of-row pipeline (common/t2i_pipeline.py): what is Emu3's own.

Sequence (Emu3/emu3/mllm/processing_emu3.py, mode 'G'; fact sheet sections 3 and 8): the prompt ends with
BOI "{H}*{W}" IMG, then H rows of W visual tokens (id = visual_base + code), each followed by EOL, then
EOF, EOI, EOS, which are appended (`sequence_ids`), never decoded: the official prefix-constrained logits
processor forces exactly these tokens.

Guidance: the negative prompt of Emu3/image_generation.py runs as its own branch through the same
template, with its own prefix length, left-padded and position-shifted with the prompts (the conditional
branch there uses cumsum positions; the unconditional one runs unpadded). CFG: the official processor
(transformers UnbatchedClassifierFreeGuidanceLogitsProcessor) computes g*(logp_c - logp_u) + logp_u with
log-softmaxes over the full vocabulary; common.zipar.sampling.guide computes z_u + g*(z_c - z_u) on raw logits
over the visual ids. The two differ by one constant per row, which the visual-id mask, temperature,
top-k (2048 by default, applied after CFG in both), top-p and sampling all ignore.
"""
import dataclasses
from dataclasses import dataclass

import tiktoken
import torch

from common.weights.hf_shards import empty_model, read_config_json
from common.models.llama import LlamaDecoder, random_init_
from common.zipar.layout import Layout
from common.t2i_pipeline import PromptPreset, TextToImagePipeline
from emu3.checkpoint import HF, detect_layout, load_text_model, load_vision_decoder
from emu3.config import (IMAGE_AREA_GEN, Emu3Config, emu3_config, text_config_from_json,
                         vision_config_from_json)
from emu3.presets import DEFAULT
from emu3.prompt import (NEGATIVE_PROMPT, SpecialIds, generation_size, load_tokenizer, prompt_ids, special_ids,
                         stand_in_tokenizer)
from emu3.vision_decoder import VisionDecoder, random_init_vision_


def layout_for(prefix_len: int, rows: int, cols: int) -> Layout:
    return Layout(rows=rows, cols=cols, prefix_len=prefix_len, end_of_row=True, family=Emu3Pipeline.family)


def ntp_passes_official(rows: int, cols: int) -> int:
    """Forward passes of the official loop: one per generated token, H(W+1) + 3 (EOF, EOI, EOS)."""
    return rows * (cols + 1) + 3


@dataclass
class Emu3Pipeline(TextToImagePipeline):
    """The loaded parts of Emu3-Gen; holds no decoding state. `size` is an aspect ratio "W:H"."""

    family = "emu3"  # common.zipar.official: no released ZipAR code, compat="official" is refused
    context_length = 9216  # BAAI/Emu3-Gen config.json max_position_embeddings (fact sheet emu3.md 1.1)

    config: Emu3Config
    model: LlamaDecoder
    vq: VisionDecoder
    tokenizer: tiktoken.Encoding
    ids: SpecialIds

    def image_vocab_ids(self) -> torch.Tensor:
        return self.ids.visual_base + torch.arange(self.config.vision.codebook_size)  # (K,) code c -> vocabulary id

    def grid(self, ratio: str) -> tuple[int, int]:
        return generation_size(ratio, self.config.image_area, self.config.vision.spatial_factor)

    def prompt_ids(self, prompt: str, ratio: str) -> list[int]:
        return prompt_ids(self.tokenizer, prompt, *self.grid(ratio))

    def unconditional_ids(self, conditional: list[int], ratio: str) -> list[int]:
        return prompt_ids(self.tokenizer, NEGATIVE_PROMPT, *self.grid(ratio), positive=False)

    def fixed_ids(self) -> list[int]:
        return [self.ids.eol]

    def closing_ids(self) -> list[int]:
        return [self.ids.eof, self.ids.eoi, self.ids.eos]

    @torch.inference_mode()
    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, 3, 8H, 8W) float images in about [-1, 1] (fp32 vision decoder)."""
        return self.vq.decode(tokens.to(self.vq.quantize.embedding.weight.device))

    def ntp_passes_official(self, rows: int, cols: int) -> int:
        return ntp_passes_official(rows, cols)


def check_config_ids(cfg: dict, ids: SpecialIds, what: str) -> None:
    """config.json's token ids (where present) must be the tokenizer's."""
    text = cfg.get("text_config", cfg)
    for name, value in ids.as_config_ids().items():
        if name in text and text[name] != value:
            raise ValueError(f"{what}: config.json has {name}={text[name]} but the tokenizer gives {value}: "
                             "tokenizer from another model?")


def load_pipeline(model_path: str | None, vq_path: str | None, tokenizer_path: str | None,
                  config_name: str = "8B", device="cpu", dtype: torch.dtype = torch.float32,
                  random_init: bool = False, seed: int = 0) -> Emu3Pipeline:
    """Emu3-Gen from files, or a preset with random weights.

    With files: the text model from model_path (BAAI/Emu3-Gen or BAAI/Emu3-Gen-hf, config from its
    config.json; config_name unused), the vision decoder from vq_path (BAAI/Emu3-VisionTokenizer; default:
    model_path when that is an -hf folder), the tiktoken tokenizer (emu3.tiktoken, emu3_vision_tokens.txt)
    from tokenizer_path (default model_path; an -hf folder has no such files, pass the Emu3-Gen folder).
    random_init: preset `config_name`, seeded weights and a stand-in tokenizer with Emu3's special ids.
    The text model runs in `dtype`, the vision decoder in fp32 as the official pipeline does.
    """
    if random_init:
        config = emu3_config(config_name)
        model = empty_model(lambda: LlamaDecoder(config.text), dtype, device)
        random_init_(model, seed)  # sets every parameter of the uninitialised model
        vq = empty_model(lambda: VisionDecoder(config.vision), torch.float32, device)
        random_init_vision_(vq, seed)
        tokenizer = stand_in_tokenizer(config.vision.codebook_size, config.text_tokens)
        return Emu3Pipeline(config, model.eval(), vq.eval(), tokenizer,
                            special_ids(tokenizer, config.vision.codebook_size))
    if model_path is None:
        raise ValueError("pass --model-path (and --vq-path), or --random-init to run without files")
    cfg = read_config_json(model_path, "Emu3-Gen")
    is_hf = detect_layout(model_path) == HF
    if vq_path is None and not is_hf:
        raise ValueError("pass --vq-path (a BAAI/Emu3-VisionTokenizer folder); only an Emu3-Gen-hf folder holds the VQ")
    vq_path = vq_path or model_path
    vision = vision_config_from_json(read_config_json(vq_path, "Emu3 vision tokenizer"))
    tokenizer = load_tokenizer(tokenizer_path or model_path)
    ids = special_ids(tokenizer, vision.codebook_size)
    # -hf configs carry no image_area: the processor's default, which is Emu3-Gen's
    config = Emu3Config(text_config_from_json(cfg), vision, cfg.get("image_area", IMAGE_AREA_GEN), text_tokens=ids.pad)
    check_config_ids(cfg, ids, "Emu3-Gen")
    model = load_text_model(model_path, config.text, dtype, device)
    vq = load_vision_decoder(vq_path, vision, device)
    return Emu3Pipeline(config, model, vq, tokenizer, ids)


def load_preset(preset: PromptPreset, model_path: str | None, vq_path: str | None, tokenizer_path: str | None,
                device="cpu", dtype: torch.dtype = torch.float32, random_init: bool = False, seed: int = 0
                ) -> Emu3Pipeline:
    """sample_ddp.py's entry: the pipeline of an emu3.presets preset (preset.config for --random-init)."""
    return load_pipeline(model_path, vq_path, tokenizer_path, preset.config, device, dtype, random_init, seed)


def speed_pipeline(tiny: bool, dims: dict, dtype: torch.dtype, device) -> tuple[Emu3Pipeline, str, object]:
    """benchmarks/t2i_latency.py's model: the preset's architecture or the tiny test one (its dim, layers and
    heads replaced by `dims`)
    with random weights and no image decoder, on the real grid and vocabulary. (pipeline, size, text config)."""
    base = emu3_config("tiny" if tiny else DEFAULT.config)
    text = dataclasses.replace(base.text, **dims)
    model = empty_model(lambda: LlamaDecoder(text), dtype, device)
    random_init_(model, 0)
    tokenizer = stand_in_tokenizer(base.vision.codebook_size, base.text_tokens)
    config = Emu3Config(text, base.vision, base.image_area, base.text_tokens)
    return Emu3Pipeline(config, model, None, tokenizer, special_ids(tokenizer, base.vision.codebook_size)), "1:1", text
