"""Lumina-mGPT prompt side against the official forms (adds to tests/test_lumina_text.py):
- on a vocabulary laid out like Chameleon's (names at their real ids), the ids found by name are the
  fact sheet's numbers (BOS 0, EOI 8196, BOI 8197, end-of-turn 8710, EOL 8803, size tokens 8804 + px/32,
  image codes at 4..8195), with no offset assumed anywhere;
- with a real BPE tokenizer (byte-level, trained in the test, specials as added tokens), our prompt ids
  equal the official encoding `[BOS] + encode(user_text + "<reserved08706>")` followed by BOI, H, W.
"""
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from lumina_mgpt.prompt import (TEMPLATE, SpecialIds, image_header, image_id_map, image_token_name, prompt_ids,
                                special_ids)


def chameleon_layout_tokenizer() -> Tokenizer:
    """Chameleon's id layout: <s> <pad> </s> <unk>, 8192 IMGIMG names at 4.., <eoss> 8196, <racm3:break>
    8197, then `<reservedNNNNN>` at id NNNNN + 4 (fact sheet 2.1), then a few words."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({image_token_name(c): 4 + c for c in range(8192)})
    vocab.update({"<eoss>": 8196, "<racm3:break>": 8197})
    vocab.update({f"<reserved{n:05d}>": n + 4 for n in range(8194, 8900)})
    for word in "a red cube".split():
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([n for n in vocab if n.startswith("<")])
    return tok


def test_ids_by_name_are_the_chameleon_numbers():
    tok = chameleon_layout_tokenizer()
    ids = special_ids(tok)
    assert ids == SpecialIds(bos=0, pad=1, end_of_turn=8710, boi=8197, eoi=8196, eol=8803, size_base=8804)
    assert [ids.size_token(px) for px in (512, 768, 1024)] == [8820, 8828, 8836]
    assert image_header(ids, 1024, 576) == [8197, 8804 + 18, 8804 + 32]  # H (576 px) before W (1024 px)
    assert image_id_map(tok.get_vocab()).tolist() == list(range(4, 8196))  # bpe = code + 4, derived, not assumed


def bpe_tokenizer() -> Tokenizer:
    specials = ["<s>", "<pad>", "</s>", "<unk>", *(image_token_name(c) for c in range(16)), "<eoss>", "<racm3:break>",
                "<reserved08706>", "<reserved08799>", *(f"<reserved{8800 + n:05d}>" for n in range(65))]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [TEMPLATE.format(w=768, h=768, text="a corgi wearing sunglasses on a beach"),
              "a red cube on a striped mat, photograph, soft light", "Generate an image of 1024x576 ..."] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


@pytest.mark.parametrize("text,width,height", [("a corgi wearing sunglasses on a beach", 768, 768),
                                               ("Ünïcode, two\nlines <and> brackets", 1024, 576),
                                               ("x", 384, 1536)])
def test_prompt_ids_equal_the_official_encoding(text, width, height):
    tok = bpe_tokenizer()
    ids = special_ids(tok)
    user = f"Generate an image of {width}x{height} according to the following prompt:\n{text}"  # O generate.py
    official = [ids.bos] + tok.encode(user + "<reserved08706>", add_special_tokens=False).ids  # convertsation.py
    got = prompt_ids(tok, ids, text, width, height)
    assert got == official + [ids.boi, ids.size_token(height), ids.size_token(width)]
    assert official.count(ids.end_of_turn) == 1 and official[-1] == ids.end_of_turn
    assert len(official) > 10
    assert tok.token_to_id("<unk>") not in official  # byte-level BPE: every character is covered
