"""Emu3-Gen's text decoder (common.models.llama with the Emu3 presets) against transformers' Emu3 models, and
loading both checkpoint layouts (emu3/checkpoint.py)."""
import json

import pytest
import torch

from common.weights.checkpoint import CheckpointError
from common.models.llama import LlamaDecoder, random_init_
from emu3.checkpoint import detect_layout, load_text_model, load_vision_decoder
from emu3.config import PRESETS, text_config_from_json, vision_config_from_json
from emu3.vision_decoder import VisionDecoder
from tests.helpers.files import write_shards

TINY = PRESETS["tiny"]


def tiny_text(seed=0):
    model = LlamaDecoder(TINY.text).eval()
    random_init_(model, seed, std=0.1)
    return model


def hf_text_config():
    from transformers import Emu3TextConfig
    c = TINY.text
    return Emu3TextConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_hidden,
                          num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads,
                          rms_norm_eps=c.norm_eps, pad_token_id=256, bos_token_id=462, eos_token_id=463)


def logits(model, ids, positions, mask):
    L = ids.shape[1]
    return model(model.embed_tokens(ids), positions, torch.arange(L), mask, model.new_cache(ids.shape[0], L, "cpu"))


def test_text_decoder_matches_transformers_emu3_with_gqa():
    from transformers import Emu3ForCausalLM
    assert TINY.text.n_kv_heads < TINY.text.n_heads  # GQA
    ours = tiny_text()
    ref = Emu3ForCausalLM(hf_text_config()).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # same key names
    ids = torch.randint(0, TINY.text.vocab_size, (2, 13), generator=torch.Generator().manual_seed(1))
    causal = torch.ones(13, 13, dtype=torch.bool).tril()[None]
    with torch.no_grad():
        assert (logits(ours, ids, torch.arange(13)[None], causal) - ref(ids).logits).abs().max() <= 1e-4
        # a left-padded row (3 pads, masked, positions shifted by 3) = transformers on the unpadded prompt
        valid = torch.arange(13) >= 3
        padded = logits(ours, ids[:1], (torch.arange(13) - 3).clamp(min=0)[None], causal & valid)[:, 3:]
        assert (padded - ref(ids[:1, 3:]).logits).abs().max() <= 1e-4


def hf_layout(state):
    """Our (= original) names -> Emu3-Gen-hf on-disk names, plus one VQ key the text loader must skip."""
    out = {("text_model.lm_head.weight" if k == "lm_head.weight" else "text_model." + k): v for k, v in state.items()}
    out["vqmodel.decoder.conv_in.weight"] = torch.zeros(2, 2)
    return out


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_sharded_load_of_both_layouts_in_bf16(tmp_path, layout):
    src = tiny_text(seed=3)
    state = src.state_dict()
    write_shards(state if layout == "original" else hf_layout(state), tmp_path, split=3)
    assert detect_layout(tmp_path) == layout
    model = load_text_model(tmp_path, TINY.text, torch.bfloat16, "cpu")
    for key, value in state.items():
        assert model.state_dict()[key].dtype == torch.bfloat16
        assert torch.equal(model.state_dict()[key], value.to(torch.bfloat16)), key


@pytest.mark.parametrize("layout", ["original", "hf"])
@pytest.mark.parametrize("damage,message", [
    (lambda s, p: s.pop(p + "norm.weight"), "missing key 'model.norm.weight'"),
    (lambda s, p: s.update({p + "extra.weight": torch.zeros(1)}), "unexpected key '.*extra.weight'"),
    (lambda s, p: s.update({p + "layers.1.self_attn.k_proj.weight": torch.zeros(64, 64)}),
     "'.*layers.1.self_attn.k_proj.weight' has shape"),
])
def test_text_load_errors_name_the_key(tmp_path, layout, damage, message):
    state = tiny_text().state_dict()
    state = dict(state) if layout == "original" else hf_layout(state)
    damage(state, "model." if layout == "original" else "text_model.model.")
    write_shards(state, tmp_path)
    with pytest.raises(CheckpointError, match=message):
        load_text_model(tmp_path, TINY.text, torch.float32, "cpu")


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_missing_shard_is_named(tmp_path, layout):
    state = tiny_text().state_dict()
    write_shards(state if layout == "original" else hf_layout(state), tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors"):
        load_text_model(tmp_path, TINY.text, torch.float32, "cpu")


def test_unknown_layout_is_an_error(tmp_path):
    write_shards({"transformer.wte.weight": torch.zeros(2, 2)}, tmp_path, split=1)
    with pytest.raises(CheckpointError, match="neither Emu3-Gen keys"):
        detect_layout(tmp_path)


def randomize_(module, seed):
    """Non-trivial values everywhere (BatchNorm variances positive) so parity exercises every tensor."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=gen)
                if name.endswith("running_var"):
                    t.copy_(0.5 + noise.abs())
                elif t.dim() > 1:
                    t.copy_(noise / t[0].numel() ** 0.5)
                else:
                    t.copy_(noise * 0.1 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))


def test_loads_a_transformers_saved_emu3_gen_hf_folder(tmp_path):
    """A tiny Emu3ForConditionalGeneration saved by transformers (sharded, -hf names on disk): our text model
    and vision decoder load from it and reproduce its logits and its decoded image."""
    from transformers import Emu3Config, Emu3ForConditionalGeneration
    v = TINY.vision
    vq_config = dict(codebook_size=v.codebook_size, embed_dim=v.embed_dim, latent_channels=v.z_channels,
                     base_channels=v.ch, channel_multiplier=list(v.ch_mult), num_res_blocks=v.num_res_blocks,
                     attn_resolutions=list(v.attn_resolutions), hidden_size=v.ch * v.ch_mult[-1])
    vocabulary_map = {"<image>": 5} | {f"<|visual token {c:06d}|>": 467 + c for c in range(v.codebook_size)}
    ref = Emu3ForConditionalGeneration(Emu3Config(vq_config=vq_config, text_config=hf_text_config().to_dict(),
                                                  vocabulary_map=vocabulary_map)).eval()
    randomize_(ref, 0)
    ref.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert text_config_from_json(cfg) == TINY.text and vision_config_from_json(cfg) == v

    assert detect_layout(tmp_path) == "hf"
    text = load_text_model(tmp_path, TINY.text, torch.float32, "cpu")
    vq = load_vision_decoder(tmp_path, v, "cpu")
    assert isinstance(vq, VisionDecoder)
    ids = torch.randint(0, TINY.text.vocab_size, (1, 9), generator=torch.Generator().manual_seed(2))
    codes = torch.randint(0, v.codebook_size, (1, 3, 4), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = logits(text, ids, torch.arange(9)[None], torch.ones(9, 9, dtype=torch.bool).tril()[None])
        assert (ours - ref(input_ids=ids).logits).abs().max() <= 1e-4
        assert (vq.decode(codes) - ref.model.vqmodel.decode(codes)).abs().max() <= 1e-4
