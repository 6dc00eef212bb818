"""Emu3 prompt side (emu3/prompt.py): tokenizer layout, template ids, grid sizes of aspect ratios."""
import base64

import pytest

from emu3.config import PRESETS, TINY_VOCAB
from emu3.prompt import (NEGATIVE_PROMPT, POSITIVE_PROMPT, build_encoding, generation_size, load_tokenizer,
                         prompt_ids, special_ids, stand_in_tokenizer, visual_token)


def test_prompt_ids_follow_the_template():
    enc = stand_in_tokenizer(32)  # byte-level ranks: a text byte b encodes as id b
    ids = special_ids(enc, 32)
    got = prompt_ids(enc, "a cat", 3, 5)
    assert got == [ids.bos, *b"a cat", *POSITIVE_PROMPT.encode(), ids.boi, *b"3*5", ids.img]
    neg = prompt_ids(enc, NEGATIVE_PROMPT, 12, 7, positive=False)
    assert neg == [ids.bos, *NEGATIVE_PROMPT.encode(), ids.boi, *b"12*7", ids.img]
    # NFC: a decomposed e + combining acute is encoded as the composed character
    assert prompt_ids(enc, "e\u0301", 1, 1)[1:3] == list("\u00e9".encode())


def test_special_token_strings_in_prompts_are_refused():
    with pytest.raises(ValueError, match="special-token"):
        prompt_ids(stand_in_tokenizer(4), "a <|image start|> b", 2, 2)


def test_digits_split_one_per_token():
    """Qwen's pattern splits numbers digit by digit, so the size header never uses a '90' merge."""
    ranks = {bytes([i]): i for i in range(256)} | {b"90": 256}
    enc = build_encoding(ranks, ["<|image token|>", "<|image start|>", "<|image end|>", visual_token(0)])
    assert enc.encode("x90") == [ord("x"), ord("9"), ord("0")]
    assert enc.encode(" 90") == [ord(" "), ord("9"), ord("0")]
    assert enc.encode("ab") == [ord("a"), ord("b")]


def test_special_ids_at_the_emu3_gen_positions():
    """The stand-in with 151643 text ids puts every special where Emu3-Gen's config.json has it."""
    ids = special_ids(stand_in_tokenizer(32768, special_start=151643), 32768)
    assert (ids.pad, ids.eol, ids.eof, ids.bos, ids.eos, ids.img, ids.boi, ids.eoi, ids.visual_base) == \
           (151643, 151846, 151847, 151849, 151850, 151851, 151852, 151853, 151854)
    assert ids.visual_base + 32768 == PRESETS["8B"].text.vocab_size
    assert stand_in_tokenizer(32).n_vocab == TINY_VOCAB == PRESETS["tiny"].text.vocab_size
    with pytest.raises(ValueError, match="visual token"):
        special_ids(stand_in_tokenizer(32), 33)


def test_load_tokenizer_from_files(tmp_path):
    ranks = {bytes([i]): i for i in range(256)} | {b"ca": 256, b"cat": 257}
    (tmp_path / "emu3.tiktoken").write_text("".join(f"{base64.b64encode(k).decode()} {v}\n" for k, v in ranks.items()))
    vision = ["<|image token|>", "<|image start|>", "<|image end|>"] + [visual_token(c) for c in range(8)]
    (tmp_path / "emu3_vision_tokens.txt").write_text("\n".join(vision) + "\n\n")
    enc = load_tokenizer(tmp_path)
    assert enc.encode("cat") == [257]
    ids = special_ids(enc, 8)
    assert (ids.pad, ids.bos, ids.img, ids.visual_base) == (258, 258 + 3 + 203, 258 + 208, 258 + 211)
    assert enc.encode(visual_token(7), allowed_special="all") == [258 + 211 + 7]
    (tmp_path / "emu3_vision_tokens.txt").unlink()
    with pytest.raises(FileNotFoundError, match="emu3_vision_tokens.txt"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("ratio,size", [("1:1", (90, 90)), ("16:9", (68, 120)), ("9:16", (120, 68)),
                                        ("4:3", (78, 104)), ("3:4", (104, 78)), ("3:2", (73, 110))])
def test_generation_size_of_the_fact_sheet_ratios(ratio, size):
    assert generation_size(ratio, 518400, 8) == size


def test_generation_size_details():
    assert generation_size("1:1", 1600, 8) == (5, 5)  # transformers' Emu3 test (image_area 1600)
    assert generation_size("16:9", 518400, 8)[0] == 68  # 67.5 rounds half to even
    assert generation_size("1:1", PRESETS["tiny"].image_area, 2) == (4, 4)
    for bad in ("4x3", "0:1", "1:", "-1:2", "a:b"):
        with pytest.raises(ValueError, match="ratio"):
            generation_size(bad, 518400, 8)
    with pytest.raises(ValueError, match="empty"):
        generation_size("100:1", 64, 2)
