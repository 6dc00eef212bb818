"""Lumina-mGPT from files end to end (tiny shapes): an HF model folder (config.json + safetensors shards),
tokenizer.json elsewhere (--tokenizer-path, as for the 512/1024 repos) and a VQGAN folder (vqgan.yaml +
vqgan.ckpt) load into a pipeline that generates exactly what the in-memory pipeline generates, through
load_pipeline and through the CLI; the IMGIMG map agrees with transformers' own Chameleon mapping."""
import json
import random

import pytest
from tokenizers import Tokenizer

from lumina_mgpt.pipeline import load_pipeline
from lumina_mgpt.prompt import image_id_map, image_token_name, stand_in_tokenizer
from tests.helpers.files import checkpoint_state, write_shards, write_vqgan

SIZE = (1024, 256)  # a 512-px checkpoint size: 16 rows x 64 columns of tokens
PROMPTS = ["a cat", "a red cube on the mat photo of a dog in blue"]


def write_pipeline_files(pipe, root, vocabulary_map=None):
    """-> (model folder, vqgan folder, tokenizer.json) holding `pipe`'s weights and tokenizer; config.json
    gets `vocabulary_map` (name -> id, as the real files hold) when given."""
    model_dir, vq_dir, tok_dir = root / "Lumina-mGPT-7B-512", root / "chameleon", root / "Lumina-mGPT-7B-768"
    for d in (model_dir, tok_dir):
        d.mkdir(parents=True)
    write_shards(pipe.model.state_dict(), model_dir)
    c = pipe.model.config
    (model_dir / "config.json").write_text(json.dumps({
        "model_type": "chameleon", "vocab_size": c.vocab_size, "hidden_size": c.dim, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "intermediate_size": c.ffn_hidden,
        "rope_theta": c.rope_theta, "rms_norm_eps": c.norm_eps, "swin_norm": False, "mask_image_logits": False,
        **({"vocabulary_map": vocabulary_map} if vocabulary_map else {})}))
    write_vqgan(vq_dir, checkpoint_state(pipe.vq), pipe.vq.config)
    pipe.tokenizer.save(str(tok_dir / "tokenizer.json"))
    return model_dir, vq_dir, tok_dir / "tokenizer.json"


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline(None, None, None, "tiny", 512, random_init=True, seed=3)


def test_tokenizer_must_match_the_config_vocabulary_map(pipe, tmp_path):
    """config.json's vocabulary_map (every Lumina repo has one) is checked against the tokenizer taken from
    --tokenizer-path: the same IMGIMG ids load, two swapped image ids are an error."""
    vocab = pipe.tokenizer.get_vocab()
    model_dir, vq_dir, tok_file = write_pipeline_files(pipe, tmp_path / "same", vocab)
    load_pipeline(str(model_dir), str(vq_dir), str(tok_file), resolution=512)
    a, b = image_token_name(0), image_token_name(1)
    swapped = {**vocab, a: vocab[b], b: vocab[a]}
    model_dir, vq_dir, tok_file = write_pipeline_files(pipe, tmp_path / "swapped", swapped)
    with pytest.raises(ValueError, match="IMGIMG ids differ from the vocabulary_map"):
        load_pipeline(str(model_dir), str(vq_dir), str(tok_file), resolution=512)


def test_image_map_equals_transformers_chameleon_mapping():
    """Our IMGIMG name -> code map against transformers' ChameleonImageVocabularyMapping.bpe2img on a
    shuffled vocabulary (image ids neither contiguous nor in code order)."""
    from transformers.models.chameleon.modeling_chameleon import ChameleonImageVocabularyMapping
    names = [image_token_name(c) for c in range(1200)] + ["<s>", "<pad>", "<eoss>", "<image>", "hello"]
    ids = random.Random(1).sample(range(5000), len(names))
    vocab = dict(zip(names, ids))
    ours = image_id_map(vocab)  # (K,) code -> id
    theirs = ChameleonImageVocabularyMapping(vocab).bpe2img  # id -> code
    assert {int(i): c for c, i in enumerate(ours)} == theirs
    tok = stand_in_tokenizer(64, 512)
    assert {int(i): c for c, i in enumerate(image_id_map(tok.get_vocab()))} == \
        ChameleonImageVocabularyMapping(tok.get_vocab()).bpe2img


def test_saved_stand_in_tokenizer_round_trips(tmp_path):
    tok = stand_in_tokenizer(64, 512)
    tok.save(str(tmp_path / "tokenizer.json"))
    again = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "Generate an image of 768x512 according to the following prompt:\na red cube<reserved08706>"
    assert again.encode(text, add_special_tokens=False).ids == tok.encode(text, add_special_tokens=False).ids
    assert again.token_to_id("<reserved08706>") == tok.token_to_id("<reserved08706>")
