"""Lumina-mGPT text side: the tokenizer, the special ids by name, the BPE <-> codebook map, the prompt
template and the supported image sizes.

Facts (Alpha-VLLM/Lumina-mGPT lumina_mgpt/data/item_processor.py, chameleon_vae_ori/vocab.py,
data/convertsation.py; fact sheet section 2): the prompt is BOS + "Generate an image of {w}x{h}
according to the following prompt:\\n{text}" + end-of-turn (`<reserved08706>`); the image block is
BOI (`<racm3:break>`), the height token, the width token (`<reserved{8800 + n:05d}>` for n = pixels / 32),
then rows of codes each followed by EOL (`<reserved08799>`), then EOI (`<eoss>`). Image tokens are the
vocabulary names `IMGIMG<digits as letters A..J>Z`; their codebook index is read from the name.
Every id comes from the tokenizer by name, none is assumed.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from common.hf_tokenizer import load_tokenizer_json, special_token_ids, word_level_tokenizer

TEMPLATE = "Generate an image of {w}x{h} according to the following prompt:\n{text}"
NAMES = {"bos": "<s>", "pad": "<pad>", "end_of_turn": "<reserved08706>", "boi": "<racm3:break>",
         "eoi": "<eoss>", "eol": "<reserved08799>", "size_base": "<reserved08800>"}
PATCH = 32  # pixels per size-token unit; one unit is 2x2 VQ tokens (16 px each)
MAX_SIZE_UNITS = 64  # 2048 px, the largest side of the 1024 checkpoint's sizes


def image_code(name: str) -> int:
    """'IMGIMGBAZ' -> 10: drop 'IMGIMG' and the final char, letters A..J are digits 0..9."""
    digits = name[6:-1]
    if not digits or any(ch < "A" or ch > "J" for ch in digits):
        raise ValueError(f"not an image token name: {name!r}")
    return int("".join(str(ord(ch) - ord("A")) for ch in digits))


def image_token_name(code: int) -> str:
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


def image_id_map(vocab: dict[str, int]) -> torch.Tensor:
    """(K,) vocabulary id of each codebook index, from the IMGIMG names; codes must be exactly 0..K-1."""
    by_code = {image_code(name): i for name, i in vocab.items() if name.startswith("IMGIMG")}
    if not by_code:
        raise ValueError("the vocabulary has no IMGIMG image tokens: not a Chameleon/Lumina-mGPT tokenizer")
    if sorted(by_code) != list(range(len(by_code))):
        raise ValueError(f"image token codes are not 0..{len(by_code) - 1}")
    return torch.tensor([by_code[c] for c in range(len(by_code))], dtype=torch.int64)


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    pad: int
    end_of_turn: int
    boi: int
    eoi: int
    eol: int
    size_base: int

    def size_token(self, pixels: int) -> int:
        return self.size_base + pixels // PATCH


def special_ids(tokenizer: Tokenizer) -> SpecialIds:
    return SpecialIds(**special_token_ids(tokenizer, NAMES, "Lumina-mGPT"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """tokenizer.json (a file, or a folder holding it: Alpha-VLLM/Lumina-mGPT-7B-768 ships it)."""
    return load_tokenizer_json(path,
                               "only the Lumina-mGPT-7B-768 repo ships tokenizer.json; point --tokenizer-path there")


def stand_in_tokenizer(num_codes: int, vocab_size: int) -> Tokenizer:
    """A word-level tokenizer with Lumina's special names and `num_codes` IMGIMG tokens, for runs
    without files (--random-init): ids 0..3 as Chameleon, image tokens from 4, then the specials and size
    tokens, then a small lowercase word list; unknown words map to <unk>."""
    names = ["<s>", "<pad>", "</s>", "<unk>", *(image_token_name(c) for c in range(num_codes)),
             "<eoss>", "<racm3:break>", "<reserved08706>", "<reserved08799>",
             *(f"<reserved{8800 + n:05d}>" for n in range(MAX_SIZE_UNITS + 1))]
    words = ("generate an image of according to the following prompt : a the cat dog red blue cube on mat photo "
             "of in with and x").split()
    names += [w for w in dict.fromkeys(words)] + [str(d) for d in range(10)]
    return word_level_tokenizer(names, vocab_size)


def prompt_ids(tokenizer: Tokenizer, ids: SpecialIds, text: str, width: int, height: int) -> list[int]:
    """The conditional prefix: BOS, the templated text, end-of-turn, then BOI, H and W size tokens
    (forced: the official loop samples them; we place the requested size, a documented deviation)."""
    body = tokenizer.encode(TEMPLATE.format(w=width, h=height, text=text), add_special_tokens=False).ids
    return [ids.bos, *body, ids.end_of_turn, *image_header(ids, width, height)]


def image_header(ids: SpecialIds, width: int, height: int) -> list[int]:
    """BOI, height token, width token: also the whole unconditional prefix (the official CFG branch
    starts at BOI with positions from 0 and no text: inference_solver.py's CFG logits processor)."""
    return [ids.boi, ids.size_token(height), ids.size_token(width)]


def crop_sizes(target: int, max_ratio: float = 4.0) -> list[tuple[int, int]]:
    """(width, height) sizes a checkpoint trained at `target` px supports (item_processor.py
    generate_crop_size_list with (target/32)^2 patches of 32 px): 73 at 768, 49 at 512, 97 at 1024."""
    patches = (target // PATCH) ** 2
    sizes, wp, hp = [], patches, 1
    while wp > 0:
        if max(wp, hp) / min(wp, hp) <= max_ratio:
            sizes.append((wp * PATCH, hp * PATCH))
        if (hp + 1) * wp <= patches:
            hp += 1
        else:
            wp -= 1
    return sizes


def nearest_sizes(width: int, height: int, target: int, count: int = 3) -> list[tuple[int, int]]:
    """The supported sizes closest in aspect ratio (log scale), then in area, to width x height."""
    want = math.log(max(width, 1) / max(height, 1))
    return sorted(crop_sizes(target), key=lambda s: (round(abs(math.log(s[0] / s[1]) - want), 2),
                                                     abs(s[0] * s[1] - width * height)))[:count]


def size_rule(target: int) -> str:
    """The rule crop_sizes enumerates, in words: its walk visits exactly the (wp, hp) patch counts with
    wp*hp <= P < (wp+1)*(hp+1), P = (target/32)^2 (tested against the enumeration)."""
    p = (target // PATCH) ** 2
    return (f"width = wp*{PATCH}, height = hp*{PATCH} px with wp*hp <= {p} < (wp+1)*(hp+1) "
            f"and aspect ratio <= 4")


def check_size(width: int, height: int, target: int) -> tuple[int, int]:
    """-> (rows, cols) of the token grid; raises for sizes the checkpoint was not trained on."""
    if (width, height) not in crop_sizes(target):
        near = nearest_sizes(width, height, target)
        raise ValueError(f"{width}x{height} is not a size of the {target}-px checkpoint ({size_rule(target)}); "
                         f"nearest: {near}")
    return height // 16, width // 16
