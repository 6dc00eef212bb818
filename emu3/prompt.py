"""Emu3's text side: the tiktoken tokenizer with its special tokens, the generation prompt template and
the token grid size of an aspect ratio.

Tokenizer: Emu3/emu3/mllm/tokenization_emu3.py. `emu3.tiktoken` holds the Qwen BPE ranks (one
`base64(bytes) rank` per line); special tokens follow from id len(ranks) (151643) in the order
<|endoftext|>, <|im_start|>, <|im_end|>, <|extra_0..204|>, then the lines of `emu3_vision_tokens.txt`
(<|image token|>, <|image start|>, <|image end|>, <|visual token 000000|>, ...). Text is NFC-normalised
and no BOS is added by the tokenizer: it is part of the template.
Template and prompts: Emu3/emu3/mllm/processing_emu3.py (mode 'G') and Emu3/image_generation.py.
"""
import base64
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import tiktoken

# Emu3/emu3/mllm/tokenization_emu3.py
PAT_STR = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
           r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
NAMED_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>") + tuple(f"<|extra_{i}|>" for i in range(205))
IMAGE_SPECIALS = ("<|image token|>", "<|image start|>", "<|image end|>")
VOCAB_FILE, VISION_TOKENS_FILE = "emu3.tiktoken", "emu3_vision_tokens.txt"

# Emu3/image_generation.py
POSITIVE_PROMPT = " masterpiece, film grained, best quality."
NEGATIVE_PROMPT = ("lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
                   "cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, "
                   "username, blurry.")


def visual_token(code: int) -> str:
    return f"<|visual token {code:06d}|>"  # processing_emu3.py's format string


def build_encoding(ranks: dict[bytes, int], vision_tokens: list[str], special_start: int | None = None
                   ) -> tiktoken.Encoding:
    """The Emu3 encoding: BPE ranks 0..n-1, then the specials from id special_start (default n, as the
    real files: 151643)."""
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError("tokenizer ranks must be exactly 0 .. n-1")
    start = len(ranks) if special_start is None else special_start
    if start < len(ranks):
        raise ValueError(f"special tokens must start at or after the {len(ranks)} BPE ranks, got {start}")
    specials = {tok: start + i for i, tok in enumerate(NAMED_SPECIALS + tuple(vision_tokens))}
    return tiktoken.Encoding("Emu3", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials)


def load_tokenizer(folder: str | Path) -> tiktoken.Encoding:
    """From a BAAI/Emu3-Gen folder holding emu3.tiktoken and emu3_vision_tokens.txt."""
    folder = Path(folder)
    for name in (VOCAB_FILE, VISION_TOKENS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"Emu3 tokenizer: {folder / name} not found (expected in the BAAI/Emu3-Gen folder)")
    ranks = {}
    for n, line in enumerate((folder / VOCAB_FILE).read_bytes().splitlines()):
        if line:
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError:
                raise ValueError(f"Emu3 tokenizer: {folder / VOCAB_FILE} line {n + 1} is not 'base64 rank'") from None
    vision = [t.strip() for t in (folder / VISION_TOKENS_FILE).read_text().splitlines() if t.strip()]
    return build_encoding(ranks, vision)


def stand_in_tokenizer(num_codes: int, special_start: int = 256) -> tiktoken.Encoding:
    """A file-free stand-in with Emu3's special-token layout: 256 byte tokens (no merges), the named
    specials from `special_start`, the three image specials and `num_codes` visual tokens. special_start=256
    gives the tiny vocabulary (467 + num_codes ids); 151643 with 32768 codes puts every special at its
    Emu3-Gen id (random-weight speed runs; prompts encode byte by byte, so they are longer than with BPE)."""
    ranks = {bytes([i]): i for i in range(256)}
    return build_encoding(ranks, list(IMAGE_SPECIALS) + [visual_token(c) for c in range(num_codes)], special_start)


@dataclass(frozen=True)
class SpecialIds:
    """Vocabulary ids of the tokens generation uses (Emu3-Gen: pad 151643, eol 151846, eof 151847,
    bos 151849, eos 151850, img 151851, boi 151852, eoi 151853, visual code c -> 151854 + c)."""

    pad: int
    bos: int
    eos: int
    img: int
    boi: int
    eoi: int
    eol: int
    eof: int
    visual_base: int
    num_codes: int

    def as_config_ids(self) -> dict[str, int]:
        """The names config.json uses for them (Emu3/emu3/mllm/configuration_emu3.py)."""
        return {"pad_token_id": self.pad, "bos_token_id": self.bos, "eos_token_id": self.eos,
                "img_token_id": self.img, "boi_token_id": self.boi, "eoi_token_id": self.eoi,
                "eol_token_id": self.eol, "eof_token_id": self.eof}


def special_ids(enc: tiktoken.Encoding, num_codes: int) -> SpecialIds:
    """Looked up by name in the encoding; the visual tokens must be `num_codes` consecutive ids."""
    one = enc.encode_single_token
    try:
        base, last = one(visual_token(0)), one(visual_token(num_codes - 1))
        ids = SpecialIds(pad=one("<|endoftext|>"), bos=one("<|extra_203|>"), eos=one("<|extra_204|>"),
                         img=one("<|image token|>"), boi=one("<|image start|>"), eoi=one("<|image end|>"),
                         eol=one("<|extra_200|>"), eof=one("<|extra_201|>"), visual_base=base, num_codes=num_codes)
    except KeyError as e:
        raise ValueError(f"Emu3 tokenizer lacks special token {e}: wrong emu3_vision_tokens.txt or "
                         "codebook size?") from None
    if last - base != num_codes - 1:
        raise ValueError(f"visual tokens 0..{num_codes - 1} are not consecutive ids ({base}..{last})")
    return ids


def parse_ratio(ratio: str) -> tuple[int, int]:
    """"W:H" (width first, as the official processor) -> (w, h), positive integers."""
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", ratio)
    if not m or int(m[1]) == 0 or int(m[2]) == 0:
        raise ValueError(f"ratio must be 'W:H' with positive integers, e.g. '1:1' or '16:9', got {ratio!r}")
    return int(m[1]), int(m[2])


def generation_size(ratio: str, image_area: int, spatial_factor: int) -> tuple[int, int]:
    """(H, W) in tokens for ratio "W:H", as Emu3Processor.calculate_generate_size:
    round(side * sqrt(area / (w*h)) / factor), Python's round (half to even)."""
    w, h = parse_ratio(ratio)
    target = (image_area / (w * h)) ** 0.5
    H, W = int(round(h * target / spatial_factor)), int(round(w * target / spatial_factor))
    if H < 1 or W < 1:
        raise ValueError(f"ratio {ratio} gives an empty {H}x{W} grid at image area {image_area}")
    return H, W


SPECIAL_PATTERN = re.compile(r"<\|[^|]*\|>")


def prompt_ids(enc: tiktoken.Encoding, text: str, rows: int, cols: int, positive: bool = True) -> list[int]:
    """BOS + text (+ POSITIVE_PROMPT) + BOI + "{H}*{W}" + IMG, encoded with specials allowed as the official
    tokenizer does. Special-token strings inside `text` are refused (they would encode as control tokens)."""
    if SPECIAL_PATTERN.search(text):
        raise ValueError(f"prompt contains a special-token string {SPECIAL_PATTERN.search(text)[0]!r}: {text!r}")
    text = text + POSITIVE_PROMPT if positive else text
    full = f"<|extra_203|>{text}<|image start|>{rows}*{cols}<|image token|>"
    return enc.encode(unicodedata.normalize("NFC", full), allowed_special="all", disallowed_special=())
