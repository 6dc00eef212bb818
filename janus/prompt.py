"""Janus-Pro's text side: the tokenizer, the special ids by name, the generation prompt and the two
unconditional (CFG) prompts.

Prompt (deepseek-ai/Janus generation_inference.py and README, janus/utils/conversation.py "deepseek"
template with an empty system prompt): BOS + "<|User|>: {text}\\n\\n<|Assistant|>:" + <begin_of_image>;
transformers' chat template (models/janus/convert_janus_weights_to_hf.py CHAT_TEMPLATE, processor with
generation_mode="image") builds the same text. The tokenizer adds BOS (here: placed by name) and the
image-start tag ends the prompt (here: placed by name, not parsed from text).

The unconditional prompt of classifier-free guidance (UNCONDITIONALS), both of the conditional one's length:
  release       generation_inference.py: `tokens[i, 1:-1] = pad_id`, every token but the first (BOS) and the
                last (<begin_of_image>) replaced by the pad id (vl_chat_processor.pad_id = "<｜▁pad▁｜>").
  transformers  JanusForConditionalGeneration.generate: every token that is neither the BOS id nor the
                begin-of-image id replaced by the pad id (generation_config.pad_token_id).
For a prompt whose text holds neither token the two are the same ids; they differ when the text itself
contains BOS or <begin_of_image> (the tokenizer maps those strings to the special ids), which the
transformers branch keeps and the release's pads.
"""
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from common.hf_tokenizer import load_tokenizer_json, special_token_ids, word_level_tokenizer

TEMPLATE = "<|User|>: {text}\n\n<|Assistant|>:"
NAMES = {"bos": "<｜begin▁of▁sentence｜>", "pad": "<｜▁pad▁｜>", "boi": "<begin_of_image>"}
UNCONDITIONALS = ("release", "transformers")


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    pad: int
    boi: int


def special_ids(tokenizer: Tokenizer) -> SpecialIds:
    return SpecialIds(**special_token_ids(tokenizer, NAMES, "Janus-Pro"))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """tokenizer.json, or a folder holding it (both Janus-Pro layouts ship one)."""
    return load_tokenizer_json(path, "the deepseek-ai/Janus-Pro-* and deepseek-community/Janus-Pro-* folders "
                                     "ship tokenizer.json")


def stand_in_tokenizer(vocab_size: int) -> Tokenizer:
    """A word-level tokenizer with Janus's special names and a small word list, for runs without files
    (--random-init); unknown words map to <unk>."""
    names = ["<unk>", *NAMES.values(), "<｜end▁of▁sentence｜>", "<end_of_image>", "<|User|>", "<|Assistant|>"]
    words = ("a an the of in on with and photo image red blue green cube cat dog fox mat sky snow night sun "
             "tree house car").split()
    names += words + [":", ".", ","] + [str(d) for d in range(10)]
    return word_level_tokenizer(names, vocab_size)


def prompt_ids(tokenizer: Tokenizer, ids: SpecialIds, text: str) -> list[int]:
    """The conditional prefix: BOS, the templated text, <begin_of_image>."""
    body = tokenizer.encode(TEMPLATE.format(text=text.strip()), add_special_tokens=False).ids
    return [ids.bos, *body, ids.boi]


def unconditional_ids(conditional: list[int], ids: SpecialIds, rule: str) -> list[int]:
    """The CFG branch's prefix from the conditional one (see UNCONDITIONALS in the module docstring)."""
    if rule == "release":
        return [conditional[0], *[ids.pad] * (len(conditional) - 2), conditional[-1]]
    if rule == "transformers":
        return [t if t in (ids.bos, ids.boi) else ids.pad for t in conditional]
    raise ValueError(f"--unconditional must be one of {', '.join(UNCONDITIONALS)}, got {rule!r}")
