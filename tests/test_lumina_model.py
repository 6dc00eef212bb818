"""Lumina-mGPT decoder (Chameleon-7B on common.models.llama): what tests/test_lumina_pipeline.py does not cover.

- cached, token-by-token decoding past the prompt equals transformers' Chameleon full forward, also at
  positions beyond max_position_embeddings (4096; 1024-px sequences reach ~4.2k: plain RoPE, no cap);
- the 7B preset is what a Chameleon config.json describes, with exactly the official key names and
  shapes (419 keys, 7,013,158,912 parameters, qk-norm [1, 128]);
- config.json edge cases (transformers >= 5 `rope_parameters`, rope scaling, swin_norm, missing fields);
- the official processor chain (CFG on full-vocabulary fp32 logits, image-id mask, image top-k,
  temperature) gives the same distribution as our code-space sampling (guide + filter_logits).
"""
import pytest
import torch

from common.weights.checkpoint import CheckpointError
from common.models.llama import LlamaConfig, LlamaDecoder, random_init_
from common.zipar.sampling import filter_logits, guide
from lumina_mgpt.config import PRESETS, config_from_json
from tests.helpers.lumina import TINY, hf_chameleon, to_transformers


def causal_mask(q_from: int, q_to: int, slots: int) -> torch.Tensor:
    """(1, Q, S): query at slot i (q_from <= i < q_to) sees slots 0..i."""
    return (torch.arange(slots)[None, :] <= torch.arange(q_from, q_to)[:, None])[None]


@pytest.mark.parametrize("offset", [0, 4070])
def test_cached_steps_past_the_prompt_match_transformers(offset):
    """Prefill a 12-token prompt, then feed 24 tokens one or two at a time through our KV cache; every
    step's logits (full vocabulary, fp32, no image masking) equal transformers' uncached forward at the
    same absolute positions. offset 4070 runs positions 4070..4105, across 4096."""
    ours = LlamaDecoder(TINY).eval()
    random_init_(ours, 3, std=0.1)
    ref = hf_chameleon()
    ref.load_state_dict(to_transformers(ours.state_dict()), strict=False)
    assert ref.config.max_position_embeddings == 4096
    B, P, L = 2, 12, 36
    ids = torch.randint(0, TINY.vocab_size, (B, L), generator=torch.Generator().manual_seed(4))
    positions = torch.arange(L) + offset
    with torch.no_grad():
        expected = ours.lm_head(ref(ids, position_ids=positions[None].expand(B, -1)).last_hidden_state).float()
        cache = ours.new_cache(B, L, "cpu")
        got = [ours(ours.embed_tokens(ids[:, :P]), positions[None, :P], torch.arange(P), causal_mask(0, P, L), cache)]
        t = P
        while t < L:
            n = 1 if t % 3 else 2  # single tokens and two-token chunks
            got.append(ours(ours.embed_tokens(ids[:, t:t + n]), positions[None, t:t + n], torch.arange(t, t + n),
                            causal_mask(t, t + n, L), cache))
            t += n
        got = torch.cat(got, dim=1)
    assert (got - expected).abs().max() <= 1e-4
    # the positions matter: a capped/clamped position would not match (RoPE is relative, so shift by a
    # non-constant amount: the second half of the sequence moved by 7)
    moved = positions.clone()
    moved[L // 2:] += 7
    with torch.no_grad():
        other = ours(ours.embed_tokens(ids), moved[None], torch.arange(L), causal_mask(0, L, L),
                     ours.new_cache(B, L, "cpu"))
    assert (other - expected)[:, L // 2:].abs().max() > 1e-3


def chameleon_7b_json(**overrides) -> dict:
    from transformers import ChameleonConfig
    cfg = ChameleonConfig().to_dict()
    cfg.update(overrides)
    return cfg


def test_7b_preset_is_the_chameleon_config_with_the_official_keys():
    cfg = chameleon_7b_json()
    assert config_from_json(cfg) == PRESETS["7B"]
    assert config_from_json(cfg, qk_norm_heads=32) == LlamaConfig(**{**PRESETS["7B"].__dict__, "qk_norm_heads": 32})
    with torch.device("meta"):
        ours = LlamaDecoder(PRESETS["7B"])
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert len(shapes) == 419 and sum(v.numel() for v in ours.parameters()) == 7_013_158_912  # "7.01B params"
    assert shapes["model.layers.31.self_attn.q_norm.bias"] == (1, 128)  # Lumina's model_parallel_size 1 layout
    assert shapes["model.layers.0.mlp.gate_proj.weight"] == (11008, 4096) and shapes["lm_head.weight"] == (65536, 4096)
    # transformers' ChameleonForConditionalGeneration: the same names (its vqmodel aside), qk-norm [32, 128]
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration
    with torch.device("meta"):
        hf = ChameleonForConditionalGeneration(ChameleonConfig(vocabulary_map={"<image>": 8711}))
    theirs = {k: tuple(v.shape) for k, v in hf.state_dict().items() if not k.startswith("model.vqmodel.")}
    assert set(theirs) == set(shapes)
    differ = {k for k in shapes if shapes[k] != theirs[k]}
    assert differ and all(("q_norm" in k or "k_norm" in k) and theirs[k] == (32, 128) for k in differ)


def test_config_json_fields():
    # transformers >= 5 writes rope_theta inside rope_parameters; 4.43 (Lumina's files) at the top level
    new_style = chameleon_7b_json(rope_parameters={"rope_theta": 5e5, "rope_type": "default"})
    new_style.pop("rope_theta", None)
    assert config_from_json(new_style).rope_theta == 5e5
    assert config_from_json({**chameleon_7b_json(), "rope_theta": 2e4}).rope_theta == 2e4
    with pytest.raises(CheckpointError, match="rope scaling"):
        config_from_json(chameleon_7b_json(rope_scaling={"type": "linear", "factor": 2.0}))
    with pytest.raises(CheckpointError, match="swin_norm"):
        config_from_json(chameleon_7b_json(swin_norm=True))
    cfg = chameleon_7b_json()
    del cfg["intermediate_size"]
    with pytest.raises(CheckpointError, match="lacks 'intermediate_size'"):
        config_from_json(cfg)


@pytest.mark.parametrize("cfg_scale,top_k,temperature", [(3.0, 2000, 1.0), (4.0, 20, 0.7), (1.0, 0, 1.3)])
def test_official_processor_chain_equals_code_space_sampling(cfg_scale, top_k, temperature):
    """inference_solver.py: CFG (scores = cfg*(cond - uncond) + uncond on raw fp32 logits over the whole
    vocabulary), then MultiModalLogitsProcessor (-inf outside ids 4..8195), then InterleavedTopK
    (scores < k-th value -> -inf), then temperature, softmax. Ours: logits over the image ids only
    (ImageVocabDecoder), common.zipar.sampling.guide, filter_logits. Same values on the image ids, so the same
    distribution (no per-row constant at all, since both use raw logits)."""
    gen = torch.Generator().manual_seed(0)
    V, K = 9000, 8192
    cond, uncond = torch.randn(2, 3, V, generator=gen) * 3
    image_ids = torch.randperm(V, generator=gen)[:K]  # any layout: the map comes from the names
    # official chain, full vocabulary
    scores = cfg_scale * (cond - uncond) + uncond if cfg_scale != 1.0 else cond.clone()
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[image_ids] = True
    scores = scores.masked_fill(~allowed, float("-inf"))
    if top_k:
        scores = scores.masked_fill(scores < torch.topk(scores, top_k).values[..., -1:], float("-inf"))
    official = torch.softmax(scores / temperature, dim=-1)[:, image_ids]
    ours = torch.softmax(filter_logits(guide(cond[:, image_ids], uncond[:, image_ids], cfg_scale), temperature,
                                       top_k, 1.0), dim=-1)
    assert (official - ours).abs().max() <= 1e-6
    assert ((ours > 0).sum(-1) == (top_k or K)).all()
