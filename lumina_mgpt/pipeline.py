"""Lumina-mGPT text-to-image on the common engine: prompts -> left-padded prefixes -> ZipAR decode -> pixels.

Sequence (fact sheet section 2.3): prompt, BOI, H, W, then H rows of W image tokens each followed by
EOL, then EOI. The engine works in code space (common.image_vocab): content cells sample the 8192
image ids only (what the official MultiModalLogitsProcessor allows), EOL is a fixed code the schedule
places, EOI is appended (`sequence_ids`), never sampled. BOI/H/W end the prefix (forced, see prompt.py).

Guidance (inference_solver.py, LLMImageStartTriggeredUnbatchedClassifierFreeGuidanceLogitsProcessor):
the unconditional branch is the sequence from BOI on, [BOI, H, W] at positions 0, 1, 2 with no text,
then the same image tokens; here it is a model-batch row of its own, left-padded to the prompt length
and position-shifted (position_shift) so it runs at exactly those positions. CFG applies from the first
content token, as upstream (H and W are not sampled here at all): cfg*(cond - uncond) + uncond on fp32
logits, the same formula as common.sampling.guide; then image top-k (2000), temperature, top-p.
(The ZipAR fork instead uses [<s>, <pad> x (P-1)] of the prompt's length: not offered.)
"""
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from common.config import DecodeConfig
from common.engine import DecodeResult, DecodeState, decode, start_decode
from common.image_vocab import ImageVocabDecoder
from common.hf_shards import empty_model
from common.llama import LlamaDecoder, random_init_
from common.prompts import left_pad
from common.schedule import Layout
from lumina_mgpt.checkpoint import load_model, vocabulary_from_config
from lumina_mgpt.config import TINY_CODES, lumina_config
from lumina_mgpt.prompt import (SpecialIds, check_size, image_header, image_id_map, load_tokenizer, prompt_ids,
                                special_ids, stand_in_tokenizer)
from lumina_mgpt.vqgan import ChameleonVQGAN, load_vqgan, random_vqgan

RESOLUTIONS = (512, 768, 1024)  # Alpha-VLLM/Lumina-mGPT-7B-{512,768,1024}


def ntp_passes_official(rows: int, cols: int) -> int:
    """Passes of the official loop for the image body: one per content token and per EOL, H(W+1)
    (48 x 49 = 2352 at 768 px; BOI, H, W and EOI are four more steps around it)."""
    return rows * (cols + 1)


@dataclass
class LuminaPipeline:
    """The loaded parts of Lumina-mGPT; holds no decoding state."""

    model: LlamaDecoder
    vq: ChameleonVQGAN
    tokenizer: Tokenizer
    ids: SpecialIds
    resolution: int  # the checkpoint's training size (512, 768, 1024): decides the allowed sizes

    def __post_init__(self):
        device = self.model.lm_head.weight.device
        image_ids = image_id_map(self.tokenizer.get_vocab())  # (K,) code -> vocabulary id, from the names
        if len(image_ids) != self.vq.config.n_embed:
            raise ValueError(f"the tokenizer has {len(image_ids)} image tokens, the VQGAN {self.vq.config.n_embed} codes")
        self.coded = ImageVocabDecoder(self.model, image_ids.to(device), torch.tensor([self.ids.eol], device=device))

    def grid(self, width: int, height: int) -> tuple[int, int]:
        return check_size(width, height, self.resolution)

    def inputs(self, prompts: list[str], config: DecodeConfig, width: int, height: int):
        """(prefix embeddings (B_model, T, D), valid (B_model, T), shift (B_model,), layout)."""
        if not prompts:
            raise ValueError("need at least one prompt")
        rows, cols = self.grid(width, height)
        rows_ids = [prompt_ids(self.tokenizer, self.ids, p, width, height) for p in prompts]
        if config.uses_cfg:
            rows_ids += [image_header(self.ids, width, height)] * len(prompts)
        ids, valid, shift = left_pad(rows_ids, self.ids.pad, self.model.lm_head.weight.device)
        layout = Layout(rows=rows, cols=cols, prefix_len=ids.shape[1], end_of_row=True)
        return self.model.embed_tokens(ids), valid, shift, layout

    def eol_row(self, rows: int) -> torch.Tensor:
        return torch.full((rows,), self.coded.fixed_code(0), dtype=torch.int64)

    def start(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, width: int, height: int
              ) -> tuple[DecodeState, torch.Tensor]:
        """For notebooks: (state, prefix) to iterate with common.engine.decode_steps(pipeline.coded, ...)."""
        prefix, valid, shift, layout = self.inputs(prompts, config, width, height)
        state = start_decode(self.coded, seeds, layout, config, self.eol_row(layout.rows), prefix.device,
                             prefix_valid=valid, position_shift=shift)
        return state, prefix

    @torch.inference_mode()
    def decode_tokens(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, width: int, height: int,
                      static_shapes: bool = False, on_pass=None) -> DecodeResult:
        """prompts (B), seeds (B,) -> (B, H, W) codes and pass counts."""
        if len(prompts) != seeds.shape[0]:
            raise ValueError(f"{len(prompts)} prompts but {seeds.shape[0]} seeds")
        prefix, valid, shift, layout = self.inputs(prompts, config, width, height)
        return decode(self.coded, prefix, seeds, layout, config, self.eol_row(layout.rows), prefix_valid=valid,
                      static_shapes=static_shapes, position_shift=shift, on_pass=on_pass)

    @torch.inference_mode()
    def generate(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, width: int, height: int
                 ) -> tuple[torch.Tensor, DecodeResult]:
        """-> ((B, 3, 16 rows, 16 cols) fp32 images (the tiny VQGAN: x4), nominally [-1, 1], and the DecodeResult)."""
        result = self.decode_tokens(prompts, seeds, config, width, height)
        return self.vq.decode(result.tokens), result

    def sequence_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> the official image block after the W token: rows + EOL, then EOI."""
        B, H, W = tokens.shape
        body = torch.cat([self.coded.to_vocab(tokens.to(self.coded.vocab_ids.device)),
                          torch.full((B, H, 1), self.ids.eol, device=self.coded.vocab_ids.device)], dim=2)
        return torch.cat([body.flatten(1), torch.full((B, 1), self.ids.eoi, device=body.device)], dim=1)


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
        raise ValueError("pass --model-path and --vqgan-dir, or --random-init to run without files")
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
