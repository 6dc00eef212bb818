"""Lumina-mGPT's text side (lumina_mgpt/prompt.py): ids by name, the IMGIMG <-> code map, the template, sizes."""
import random

import pytest
import torch
from tokenizers import Tokenizer, models

from lumina_mgpt.prompt import (check_size, crop_sizes, image_code, image_header, image_id_map, image_token_name,
                                prompt_ids, special_ids, stand_in_tokenizer)


def test_image_names_round_trip_on_a_shuffled_vocabulary():
    rng = random.Random(0)
    names = [image_token_name(c) for c in range(300)] + ["<s>", "hello", "<reserved08799>"]
    ids = list(range(1000, 1000 + len(names)))
    rng.shuffle(ids)  # no offset to assume: the map must come from the names
    vocab = dict(zip(names, ids))
    table = image_id_map(vocab)
    assert table.tolist() == [vocab[image_token_name(c)] for c in range(300)]
    assert image_token_name(8191) == "IMGIMGIBJBZ" and image_code("IMGIMGIBJBZ") == 8191
    assert image_code("IMGIMGAZ") == 0
    del vocab[image_token_name(17)]
    with pytest.raises(ValueError, match="not 0..298"):
        image_id_map(vocab)
    with pytest.raises(ValueError, match="no IMGIMG"):
        image_id_map({"<s>": 0})


def test_template_ids():
    tok = stand_in_tokenizer(16, 512)
    ids = special_ids(tok)
    got = prompt_ids(tok, ids, "a red cube", 768, 512)
    text = tok.encode("Generate an image of 768x512 according to the following prompt:\na red cube",
                      add_special_tokens=False).ids
    assert got == [ids.bos, *text, ids.end_of_turn, ids.boi, ids.size_base + 16, ids.size_base + 24]
    assert image_header(ids, 768, 512) == [ids.boi, ids.size_base + 16, ids.size_base + 24]  # H before W
    assert tok.token_to_id("<reserved08706>") == ids.end_of_turn and ids.bos == 0  # Chameleon: <s> is 0
    assert "<unk>" not in [tok.id_to_token(i) for i in text]  # the stand-in knows the template's words


def test_special_ids_come_from_names():
    tok = Tokenizer(models.WordLevel({"<s>": 0, "<unk>": 1}, unk_token="<unk>"))
    with pytest.raises(ValueError, match="lacks '<pad>'"):
        special_ids(tok)


def test_sizes_follow_the_official_crop_list():
    for target, count in ((512, 49), (768, 73), (1024, 97)):
        sizes = crop_sizes(target)
        assert len(sizes) == count and (target, target) in sizes
        assert all(w % 32 == 0 and h % 32 == 0 and w * h <= target ** 2 and max(w, h) / min(w, h) <= 4
                   for w, h in sizes)
    assert crop_sizes(768)[0] == (1536, 384) and crop_sizes(768)[-1] == (384, 1536) and (1024, 576) in crop_sizes(768)
    assert check_size(768, 768, 768) == (48, 48) and check_size(1024, 576, 768) == (36, 64)
    assert check_size(1024, 1024, 1024) == (64, 64)  # 64 x 65 + prompt > 4096 positions: plain RoPE, no cap
    with pytest.raises(ValueError, match="768x512 is not a size of the 768-px checkpoint"):
        check_size(768, 512, 768)


def test_stand_in_places_image_tokens_like_chameleon():
    tok = stand_in_tokenizer(64, 512)
    assert image_id_map(tok.get_vocab()).tolist() == list(range(4, 68))  # Chameleon's 4.. layout
    assert torch.is_tensor(image_id_map(tok.get_vocab()))
