"""The text-to-image pipeline of the prompt-conditioned families (Lumina-mGPT and Emu3, whose decoder shares
one vocabulary between text and image tokens; Janus-Pro, whose image codes have a head and an input adapter
of their own): prompts -> one left-padded Condition -> ZipAR decode in code space -> the official token
sequence; pixels through the family's image decoder.

A family generates H rows of W image tokens after a prompt that ends in an image header, each row closed
by the tokens of `fixed_ids()` (Lumina-mGPT and Emu3: one end-of-row token, EOL; Janus-Pro, without
end-of-row tokens: none), then a few closing tokens (Janus-Pro: none). `fixed_ids()` decides the layout (common.zipar.layout:
end_of_row), the fixed codes the schedule places, the sequence ids and so the NTP pass counts. The engine
works in code space (common.models.image_vocab): content cells sample image ids only, fixed tokens are
codes the schedule places, and the closing tokens are appended afterwards (`sequence_ids`), never
decoded: the official logits processors force exactly these.

Guidance runs an unconditional branch with a prefix of its own, built from the conditional prefix of the
same image (`unconditional_ids(conditional, size)`; Emu3: the negative prompt; Lumina-mGPT: the image header
alone; Janus-Pro: the prompt with its text padded out). Every prompt of a batch and both branches are
left-padded to one prefix length T; padded slots are masked (Condition.valid) and each row's positions are shifted by its pad count
(Condition.position_shift), so every row sits at positions 0, 1, ... as in an unpadded official run.

compat="official" follows the family's released ZipAR code (common.zipar.official): where its rule says so, the
unconditional branch is the prompt's length of padding ([<s>, <pad> x (P-1)], then the same image header)
and the prompt (every slot before the image header) reads itself both ways in the prefill.

A family's pipeline is a dataclass deriving from TextToImagePipeline with fields `model` (a decoder with
`lm_head`, `embed_tokens`) and `ids` (special ids with `bos` and `pad`), a class attribute `family` (its
common.zipar.official key), and defines the hooks: `image_vocab_ids`, `fixed_ids`, `grid`, `prompt_ids`,
`image_header`, `unconditional_ids`, `closing_ids`, `decode_images`, `ntp_passes_official`; `decoder`
(the engine's model over image codes: common.models.image_vocab.ImageVocabDecoder by default) and
`prefix_embeddings` may be overridden by a family whose decoder is not a LlamaDecoder (Janus-Pro: image codes
enter through an adapter of their own). `size` is the family's size argument: Emu3 an aspect ratio "W:H",
Lumina-mGPT (width, height) in pixels, Janus-Pro the image side in pixels.
"""
from dataclasses import dataclass

import torch

from common.zipar.condition import Condition
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode, start_decode
from common.zipar.state import DecodeResult, DecodeState
from common.models.image_vocab import ImageVocabDecoder
from common.zipar.official import active_rule, prompt_attention
from common.prompts import left_pad
from common.zipar.layout import Layout
from common.zipar.window import num_passes


@dataclass(frozen=True)
class PromptPreset:
    """A text-to-image model's sampling defaults (the family CLI's and `sample_ddp.py --model NAME`'s)."""

    size: object  # the family's size argument: Emu3 "1:1", Lumina-mGPT (width, height)
    cfg_scale: float
    top_k: int
    checkpoint: str  # the Hugging Face folder --model-path should hold
    config: str  # the architecture preset --random-init builds ("tiny" for tests)
    temperature: float = 1.0
    image_size_eval: int = 256  # sample_ddp's square PNGs, bicubic resize (256: the usual COCO-FID input)

    @property
    def size_tag(self) -> str:
        """The size in a folder name: 512x512, 1_1."""
        return "x".join(map(str, self.size)) if isinstance(self.size, tuple) else str(self.size).replace(":", "_")


class TextToImagePipeline:
    """Prompts to tokens for a text-to-image family; holds no decoding state (see the module docstring)."""

    family: str  # the family's key in common.zipar.official (its released ZipAR code, if any)
    context_length: int  # tokens the model was trained on (config.json max_position_embeddings): a prompt's bound

    # ---------------------------------------------------------------- hooks each family defines
    def image_vocab_ids(self) -> torch.Tensor:
        """(K,) the vocabulary id of each image code."""
        raise NotImplementedError

    def fixed_ids(self) -> list[int]:
        """The vocabulary ids closing every row, placed by the schedule, never sampled: [EOL] for Lumina-mGPT
        and Emu3, [] for a family without end-of-row tokens."""
        raise NotImplementedError

    def grid(self, size) -> tuple[int, int]:
        """(rows, cols) of the token grid for `size`; ValueError for a size the model was not trained on."""
        raise NotImplementedError

    def prompt_ids(self, prompt: str, size) -> list[int]:
        """The conditional prefix: the prompt in the official template, ending in the image header."""
        raise NotImplementedError

    def image_header(self, size) -> list[int]:
        """The tokens that end every prefix after the prompt (needed where the family's official rule
        pads the prompt for the CFG branch or lets it read itself both ways)."""
        raise NotImplementedError

    def unconditional_ids(self, conditional: list[int], size) -> list[int]:
        """The prefix of the CFG branch of an image whose conditional prefix is `conditional` (prompt_ids)."""
        raise NotImplementedError

    def closing_ids(self) -> list[int]:
        """The tokens after the last row's EOL (never decoded)."""
        raise NotImplementedError

    def decode_images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, 3, h, w) fp32 images in about [-1, 1]."""
        raise NotImplementedError

    def ntp_passes_official(self, rows: int, cols: int) -> int:
        """Forward passes of the official (one token per pass) loop on a rows x cols grid."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def decoder(self):
        """The engine's model (common.zipar.engine.Decoder) over image codes: codes 0..K-1 are the image
        tokens, K, K+1, ... the fixed ids."""
        return ImageVocabDecoder(self.model, self.image_vocab_ids().to(self.device),
                                 torch.tensor(self.fixed_ids(), dtype=torch.int64, device=self.device))

    def prefix_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) vocabulary ids of the prefixes -> (B, T, D) input embeddings."""
        return self.model.embed_tokens(ids)

    def __post_init__(self):
        self.coded = self.decoder()

    def prefix_rows(self, prompts: list[str], size, config: DecodeConfig) -> list[list[int]]:
        """Token ids of every model-batch row: the prompts, then (with CFG) one unconditional prefix per image."""
        if not prompts:
            raise ValueError("need at least one prompt")
        rows = self.prompt_rows(prompts, size)
        if not config.uses_cfg:
            return rows
        rule = active_rule(self.family, config.compat)
        if rule is not None and rule.unconditional == "padded_prompt":
            header = self.image_header(size)
            for row in rows:
                if row[len(row) - len(header):] != header:
                    raise ValueError(f"{self.family}: a prefix does not end in the image header {header}")
            # the released code's branch: <s>, then <pad> up to the prompt's length, then the same header
            return rows + [[self.ids.bos] + [self.ids.pad] * (len(r) - len(header) - 1) + header for r in rows]
        return rows + [self.unconditional_ids(row, size) for row in rows]

    def prompt_rows(self, prompts: list[str], size) -> list[list[int]]:
        """The prompts' prefixes (prompt_ids), each at most context_length tokens: a longer prompt is more text
        than the model ever read at once, and an 800 kB line would fail allocating its attention."""
        rows = [self.prompt_ids(p, size) for p in prompts]
        for i, row in enumerate(rows):
            if len(row) > self.context_length:
                raise ValueError(f"prompt {i + 1} ({len(prompts[i])} characters) is {len(row)} tokens in the "
                                 f"{self.family} template; the model's context is {self.context_length} tokens: "
                                 "shorten it")
        return rows

    def layout(self, size, prefix_len: int = 1) -> Layout:
        rows, cols = self.grid(size)
        return Layout(rows=rows, cols=cols, prefix_len=prefix_len, end_of_row=bool(self.fixed_ids()),
                      family=self.family)

    def condition(self, prompts: list[str], size, config: DecodeConfig) -> tuple[Condition, Layout]:
        """The engine's inputs: the left-padded prefix (masks, position shifts, slots read both ways) and the
        layout."""
        ids, valid, shift = left_pad(self.prefix_rows(prompts, size, config), self.ids.pad,
                                     self.device)  # (B_model, T)
        T = ids.shape[1]
        bidirectional = None
        if prompt_attention(self.family, config.compat, config.prompt_attention) == "bidirectional":
            # the prompt of every row, the unconditional one included: its valid slots before the header
            bidirectional = valid & (torch.arange(T, device=ids.device) < T - len(self.image_header(size)))
        return Condition(self.prefix_embeddings(ids), valid, shift, bidirectional), self.layout(size, T)

    def fixed_row(self, rows: int) -> torch.Tensor | None:
        """(H,) the fixed token closing each row (its code), or None without end-of-row tokens."""
        if not self.fixed_ids():
            return None
        return torch.full((rows,), self.coded.fixed_code(0), dtype=torch.int64)

    def start(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, size,
              compile: bool = False) -> DecodeState:
        """For notebooks: a state to iterate with common.zipar.engine.decode_steps(pipeline.coded, state)."""
        condition, layout = self.condition(prompts, size, config)
        return start_decode(self.coded, condition, seeds, layout, config, self.fixed_row(layout.rows), compile)

    @torch.inference_mode()
    def generate(self, prompts: list[str], seeds: torch.Tensor, config: DecodeConfig, size, on_pass=None,
                 compile: bool = False) -> DecodeResult:
        """prompts (B), seeds (B,) -> DecodeResult: (B, H, W) codes and pass counts (pixels: decode_images).
        on_pass, compile: see common.zipar.engine.decode."""
        if len(prompts) != seeds.shape[0]:
            raise ValueError(f"{len(prompts)} prompts but {seeds.shape[0]} seeds")
        condition, layout = self.condition(prompts, size, config)
        return decode(self.coded, condition, seeds, layout, config, self.fixed_row(layout.rows), on_pass, compile)

    def images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, 3, h, w) images, decode_images one image at a time: the image decoder's
        convolutions give results that depend on the batch (CPU threads split it), an image must not."""
        return torch.cat([self.decode_images(t[None]) for t in tokens])

    def sequence_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, H, W) codes -> (B, H(W+F) + closing) vocabulary ids: the official image block (each row and
        its F fixed ids, then the closing tokens)."""
        B, H, W = tokens.shape
        device = self.coded.vocab_ids.device
        fixed = torch.tensor(self.fixed_ids(), dtype=torch.int64, device=device).expand(B, H, -1)
        body = torch.cat([self.coded.to_vocab(tokens.to(device)), fixed], dim=2)
        tail = torch.tensor(self.closing_ids(), device=device).expand(B, -1)
        return torch.cat([body.flatten(1), tail], dim=1)


class PromptImages:
    """sample_ddp.py's text-to-image sampler: image i has prompt i % N of the prompt list."""

    def __init__(self, pipeline: TextToImagePipeline, prompts: list[str], size, compile: bool = False):
        self.pipeline, self.prompts, self.size, self.compile = pipeline, prompts, size, compile
        pipeline.prompt_rows(prompts, size)  # every prompt's length, before any image is made
        self.layout = pipeline.layout(size)  # prefix_len 1: the prompts decide theirs
        rows, cols = self.grid = pipeline.grid(size)
        self.ntp_passes = num_passes(self.layout, None)  # fixed tokens ride along
        self.ntp_passes_official = pipeline.ntp_passes_official(rows, cols)

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return idx % len(self.prompts)

    def prompt(self, label: int) -> str:
        return self.prompts[label]

    def make(self, idx: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig
             ) -> tuple[torch.Tensor, DecodeResult]:
        """-> ((B, 3, h, w) images in about [-1, 1], DecodeResult)."""
        prompts = [self.prompts[j] for j in self.labels(idx).tolist()]
        result = self.pipeline.generate(prompts, seeds, config, self.size, compile=self.compile)
        return self.pipeline.images(result.tokens), result
