"""The shared Llama-style decoder (common/models/llama.py) and the sharded safetensors loader (common/weights/hf_shards.py)."""
import pytest
import torch

from common.weights.checkpoint import CheckpointError
from common.weights.hf_shards import empty_model, load_shards
from common.models.llama import LlamaConfig, LlamaDecoder, random_init_
from tests.helpers.files import write_shards

TINY = LlamaConfig(vocab_size=100, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=96, rope_theta=1e6)


def causal_logits(model, ids):
    L = ids.shape[1]
    mask = torch.ones(L, L, dtype=torch.bool).tril()[None]
    return model(model.embed_tokens(ids), torch.arange(L)[None], torch.arange(L), mask,
                 model.new_cache(ids.shape[0], L, "cpu"))


def test_matches_transformers_llama_with_gqa():
    from transformers import LlamaConfig as HFConfig, LlamaForCausalLM
    ours = LlamaDecoder(TINY).eval()
    random_init_(ours, 0, std=0.1)
    ref = LlamaForCausalLM(HFConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, intermediate_size=96, rope_theta=1e6, rms_norm_eps=1e-5,
                                    tie_word_embeddings=False)).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    ids = torch.randint(0, 100, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (causal_logits(ours, ids) - ref(ids).logits).abs().max() <= 1e-4


def test_sharded_load_round_trip_in_bf16(tmp_path):
    src = LlamaDecoder(TINY)
    random_init_(src, 3)
    write_shards(src.state_dict(), tmp_path)
    model = empty_model(lambda: LlamaDecoder(TINY), torch.bfloat16, "cpu")
    load_shards(model, tmp_path, "tiny")
    for key, value in src.state_dict().items():
        assert model.state_dict()[key].dtype == torch.bfloat16
        assert torch.equal(model.state_dict()[key], value.to(torch.bfloat16))


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.pop("model.norm.weight"), "missing key 'model.norm.weight'"),
    (lambda s: s.update({"model.extra.weight": torch.zeros(1)}), "unexpected key 'model.extra.weight'"),
    (lambda s: s.update({"lm_head.weight": torch.zeros(3, 64)}), "'lm_head.weight' has shape"),
])
def test_load_errors_name_the_key(tmp_path, damage, message):
    state = LlamaDecoder(TINY).state_dict()
    damage(state)
    write_shards(state, tmp_path)
    with pytest.raises(CheckpointError, match=message):
        load_shards(empty_model(lambda: LlamaDecoder(TINY), torch.float32, "cpu"), tmp_path, "tiny")


def test_missing_shard_is_named(tmp_path):
    write_shards(LlamaDecoder(TINY).state_dict(), tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        load_shards(LlamaDecoder(TINY), tmp_path, "tiny")


def test_image_vocab_decoder_is_the_full_model_restricted_to_image_ids():
    from common.models.image_vocab import ImageVocabDecoder
    model = LlamaDecoder(TINY).eval()
    random_init_(model, 5, std=0.1)
    image_ids, eol = torch.tensor([40, 41, 42, 43, 44, 90]), torch.tensor([7])
    coded = ImageVocabDecoder(model, image_ids, eol)
    codes = torch.tensor([[0, 5, coded.fixed_code(0), 2]])
    assert torch.equal(coded.to_vocab(codes), torch.tensor([[40, 90, 7, 42]]))
    L = codes.shape[1]
    args = (torch.arange(L)[None], torch.arange(L), torch.ones(L, L, dtype=torch.bool).tril()[None])
    with torch.no_grad():
        full = model(model.embed_tokens(coded.to_vocab(codes)), *args, model.new_cache(1, L, "cpu"))
        ours = coded(coded.embed_tokens(codes), *args, coded.new_cache(1, L, "cpu"))
    assert ours.shape == (1, L, 6)
    assert (ours - full[..., image_ids]).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="distinct"):
        ImageVocabDecoder(model, image_ids, torch.tensor([40]))
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        ImageVocabDecoder(model, image_ids, torch.tensor([100]))


def test_image_vocab_decoder_with_contiguous_ids_uses_a_view_of_the_head():
    from common.models.image_vocab import ImageVocabDecoder
    model = LlamaDecoder(TINY).eval()
    random_init_(model, 6, std=0.1)
    coded = ImageVocabDecoder(model, torch.arange(50, 60), torch.tensor([3]))
    assert coded.image_head.data_ptr() == model.lm_head.weight[50].data_ptr()  # no copy
    codes = torch.tensor([[1, 9, coded.fixed_code(0), 4]])
    L = codes.shape[1]
    args = (torch.arange(L)[None], torch.arange(L), torch.ones(L, L, dtype=torch.bool).tril()[None])
    with torch.no_grad():
        full = model(model.embed_tokens(coded.to_vocab(codes)), *args, model.new_cache(1, L, "cpu"))
        ours = coded(coded.embed_tokens(codes), *args, coded.new_cache(1, L, "cpu"))
    assert (ours - full[..., 50:60]).abs().max() <= 1e-5
