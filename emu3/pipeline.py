"""Emu3-Gen text-to-image on the common engine: prompts -> left-padded prefixes -> ZipAR decode -> pixels.

Sequence (Emu3/emu3/mllm/processing_emu3.py, mode 'G'; fact sheet sections 3 and 8): the prompt ends with
BOI "{H}*{W}" IMG, then H rows of W visual tokens (id = visual_base + code), each followed by EOL, then
EOF, EOI, EOS. The engine works in code space (common.image_vocab): content cells sample visual ids only,
EOL is a fixed code the schedule places, and EOF/EOI/EOS are appended afterwards (`sequence_ids`), never
decoded: the official prefix-constrained logits processor forces exactly these tokens.

Guidance: the negative prompt of Emu3/image_generation.py runs as its own branch through the same
template, with its own prefix length. Every prompt of a batch and both branches are left-padded to one
prefix length T; padded slots are masked (prefix_valid) and each row's positions are shifted by its pad
count, so every row sits at positions 0, 1, ... as in an unpadded official run (the conditional branch
there uses cumsum positions; the unconditional one runs unpadded). CFG: the official processor
(transformers UnbatchedClassifierFreeGuidanceLogitsProcessor) computes g*(logp_c - logp_u) + logp_u with
log-softmaxes over the full vocabulary; common.sampling.guide computes z_u + g*(z_c - z_u) on raw logits
over the visual ids. The two differ by one constant per row, which the visual-id mask, temperature,
top-k (2048 by default, applied after CFG in both), top-p and sampling all ignore.
"""
from dataclasses import dataclass, field

import tiktoken
import torch

from common.config import DecodeConfig
from common.engine import DecodeResult, DecodeState, decode, start_decode
from common.hf_shards import empty_model, read_config_json
from common.image_vocab import ImageVocabDecoder
from common.llama import LlamaDecoder, random_init_
from common.prompts import left_pad
from common.schedule import Layout
from emu3.checkpoint import HF, detect_layout, load_text_model, load_vision_decoder
from emu3.config import (IMAGE_AREA_GEN, Emu3Config, emu3_config, text_config_from_json,
                         vision_config_from_json)
from emu3.prompt import (NEGATIVE_PROMPT, SpecialIds, generation_size, load_tokenizer, prompt_ids, special_ids,
                         stand_in_tokenizer)
from emu3.vision_decoder import VisionDecoder, random_init_vision_


def layout_for(prefix_len: int, rows: int, cols: int) -> Layout:
    return Layout(rows=rows, cols=cols, prefix_len=prefix_len, end_of_row=True)


def ntp_passes_official(rows: int, cols: int) -> int:
    """Forward passes of the official loop: one per generated token, H(W+1) + 3 (EOF, EOI, EOS)."""
    return rows * (cols + 1) + 3


@dataclass(frozen=True)
class Prefix:
    embeddings: torch.Tensor  # (B_model, T, D) left-padded prompts: cond rows, then (with CFG) negative rows
    valid: torch.Tensor  # (B_model, T) bool, False on padding
    shift: torch.Tensor  # (B_model,) int64 pad count of each row (its RoPE shift)
    lengths: list[int]  # unpadded prompt length of each row


@dataclass
class Emu3Pipeline:
    """The loaded parts of Emu3-Gen; holds no decoding state."""

    config: Emu3Config
    model: LlamaDecoder
    vq: VisionDecoder
    tokenizer: tiktoken.Encoding
    ids: SpecialIds
    coded: ImageVocabDecoder = field(init=False)  # the engine's view: logits over the visual ids only

    def __post_init__(self):
        K = self.config.vision.codebook_size
        device = self.model.lm_head.weight.device
        image_ids = self.ids.visual_base + torch.arange(K, device=device)  # (K,) code c -> vocabulary id
        self.coded = ImageVocabDecoder(self.model, image_ids, torch.tensor([self.ids.eol], device=device))

    def grid(self, ratio: str) -> tuple[int, int]:
        return generation_size(ratio, self.config.image_area, self.config.vision.spatial_factor)

    def prefix(self, prompts: list[str], rows: int, cols: int, config: DecodeConfig) -> Prefix:
        """Token rows for the prompts (and the negative prompt per image with CFG), left-padded with PAD."""
        if not prompts:
            raise ValueError("need at least one prompt")
        rows_ids = [prompt_ids(self.tokenizer, p, rows, cols) for p in prompts]
        if config.uses_cfg:
            rows_ids += [prompt_ids(self.tokenizer, NEGATIVE_PROMPT, rows, cols, positive=False)] * len(prompts)
        ids, valid, shift = left_pad(rows_ids, self.ids.pad, self.model.lm_head.weight.device)  # (B_model, T)
        return Prefix(self.model.embed_tokens(ids), valid, shift, [len(r) for r in rows_ids])

    def inputs(self, prompts: list[str], config: DecodeConfig, ratio: str) -> tuple[Prefix, Layout]:
        """The engine's inputs for a batch of prompts: left-padded prefix (with masks and shifts) and layout."""
        rows, cols = self.grid(ratio)
        p = self.prefix(prompts, rows, cols, config)
        return p, layout_for(p.embeddings.shape[1], rows, cols)

    def eol_row(self, rows: int) -> torch.Tensor:
        """(H,) the fixed token closing each row: the EOL code."""
        return torch.full((rows,), self.coded.fixed_code(0), dtype=torch.int64)

    def start(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, ratio: str
              ) -> tuple[DecodeState, torch.Tensor]:
        """For notebooks: (state, prefix embeddings) to iterate with common.engine.decode_steps(pipeline.coded, ...)."""
        p, layout = self.inputs(prompts, config, ratio)
        state = start_decode(self.coded, seeds, layout, config, self.eol_row(layout.rows), p.embeddings.device,
                             prefix_valid=p.valid, position_shift=p.shift)
        return state, p.embeddings

    @torch.inference_mode()
    def decode_tokens(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, ratio: str,
                      static_shapes: bool = False, on_pass=None) -> DecodeResult:
        """prompts (B), seeds (B,) -> (B, H, W) codes and pass counts. static_shapes: one query shape for
        every pass (torch.compile); the same tokens."""
        if len(prompts) != seeds.shape[0]:
            raise ValueError(f"{len(prompts)} prompts but {seeds.shape[0]} seeds")
        p, layout = self.inputs(prompts, config, ratio)
        return decode(self.coded, p.embeddings, seeds, layout, config, self.eol_row(layout.rows),
                      prefix_valid=p.valid, static_shapes=static_shapes, position_shift=p.shift, on_pass=on_pass)

    @torch.inference_mode()
    def generate(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, ratio: str
                 ) -> tuple[torch.Tensor, DecodeResult]:
        """-> (B, 3, f*H, f*W) float images in about [-1, 1] (fp32 vision decoder) and the DecodeResult."""
        result = self.decode_tokens(prompts, seeds, config, ratio)
        return self.vq.decode(result.tokens.to(self.vq.quantize.embedding.weight.device)), result

    def sequence_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, H(W+1) + 3) vocabulary ids: the official generated sequence."""
        B, H, W = tokens.shape
        ids = self.ids
        grid = torch.cat([tokens + ids.visual_base, torch.full((B, H, 1), ids.eol, device=tokens.device)], dim=2)
        tail = torch.tensor([ids.eof, ids.eoi, ids.eos], device=tokens.device).expand(B, -1)
        return torch.cat([grid.flatten(1), tail], dim=1)


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
