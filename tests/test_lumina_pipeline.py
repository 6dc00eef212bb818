"""Lumina-mGPT on the engine (tiny random configs): decoder parity with transformers' Chameleon, strict HF
folder loading, NTP parity with an independent uncached loop, the oracle with prompts of different
lengths and the BOI-started CFG branch, pass counts, batch invariance, the CLI."""
import json
from pathlib import Path

import pytest
import torch

from common.weights.checkpoint import CheckpointError
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode
from common.models.llama import LlamaConfig, LlamaDecoder, random_init_
from common.zipar.sampling import PURPOSE_TOKEN, draw_key, filter_logits, guide, sample_logits
from common.zipar.layout import Layout
from common.zipar.window import num_passes
from lumina_mgpt.checkpoint import load_model
from lumina_mgpt.pipeline import LuminaPipeline, load_pipeline, ntp_passes_official
from lumina_mgpt.prompt import image_header, prompt_ids
from tests.helpers.files import write_folder
from tests.helpers.llamagen import CountingModel
from tests.helpers.lumina import PROMPTS, SIZE, TINY, hf_chameleon, to_transformers
from tests.oracle import full_forward, oracle_error, record_passes
from tests.helpers.processes import run_python



@pytest.fixture(scope="module")
def pipe() -> LuminaPipeline:
    p = load_pipeline(None, None, None, "tiny", 512, random_init=True, seed=0)
    random_init_(p.model, 7, std=0.1)  # larger weights: peaked, non-uniform distributions
    return LuminaPipeline(p.model, p.vq, p.tokenizer, p.ids, resolution=64)  # re-gathers the lm_head rows


# ------------------------------------------------------------------ decoder parity and loading

@pytest.mark.parametrize("heads", [1, 4])
def test_decoder_matches_transformers_chameleon(heads):
    ours = LlamaDecoder(LlamaConfig(**{**TINY.__dict__, "qk_norm_heads": heads})).eval()
    random_init_(ours, 0, std=0.1)
    ref = hf_chameleon()
    missing = ref.load_state_dict(to_transformers(ours.state_dict()), strict=False)
    assert not missing.unexpected_keys and all(k.startswith("vqmodel.") for k in missing.missing_keys)
    ids = torch.randint(0, 120, (2, 40), generator=torch.Generator().manual_seed(1))
    L = ids.shape[1]
    with torch.no_grad():
        expected = ours.lm_head(ref(ids).last_hidden_state).float()  # raw logits, no image-token masking
        got = ours(ours.embed_tokens(ids), torch.arange(L)[None], torch.arange(L),
                   torch.ones(L, L, dtype=torch.bool).tril()[None], ours.new_cache(2, L, "cpu"))
    assert (got - expected).abs().max() <= 1e-4
    # the qk-norm is live: changing its bias changes the logits
    with torch.no_grad():
        ours.model.layers[0].self_attn.q_norm.bias.add_(1.0)
        moved = ours(ours.embed_tokens(ids), torch.arange(L)[None], torch.arange(L),
                     torch.ones(L, L, dtype=torch.bool).tril()[None], ours.new_cache(2, L, "cpu"))
    assert (moved - got).abs().max() > 1e-3


@pytest.mark.parametrize("heads", [1, 4])
def test_loads_both_qk_norm_layouts_in_bf16(tmp_path, heads):
    src = LlamaDecoder(LlamaConfig(**{**TINY.__dict__, "qk_norm_heads": heads}))
    random_init_(src, 2)
    # transformers' save_pretrained adds its VQ encoder under model.vqmodel.*: skipped by name
    write_folder(tmp_path / "m", src, extra={"model.vqmodel.encoder.conv_in.weight": torch.zeros(2)})
    model = load_model(tmp_path / "m", torch.bfloat16, "cpu")
    assert model.config.qk_norm_heads == heads
    for key, value in src.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.to(torch.bfloat16))


@pytest.mark.parametrize("damage,message", [
    (dict(drop=["model.norm.weight"]), "missing key 'model.norm.weight'"),
    (dict(extra={"model.layers.0.self_attn.q_bias": torch.zeros(3)}), "unexpected key 'model.layers.0.self_attn.q_bias'"),
    (dict(extra={"lm_head.weight": torch.zeros(7, 64)}), "'lm_head.weight' has shape"),
])
def test_load_errors_name_the_key(tmp_path, damage, message):
    src = LlamaDecoder(TINY)
    write_folder(tmp_path / "m", src, **damage)
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "m", torch.float32, "cpu")


def test_missing_shard_is_named(tmp_path):
    write_folder(tmp_path / "m", LlamaDecoder(TINY))
    (tmp_path / "m" / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        load_model(tmp_path / "m", torch.float32, "cpu")


# ------------------------------------------------------------------ decoding

@torch.inference_mode()
def reference_ntp(pipe: LuminaPipeline, prompts, seeds, config: DecodeConfig, size=SIZE):
    """Plain NTP written independently of the engine: each prompt (and, with CFG, the [BOI, H, W]
    branch) unpadded at positions 0.., the whole sequence re-run every step, EOL after each row."""
    width, height = size
    H, W = height // 16, width // 16
    rows = [prompt_ids(pipe.tokenizer, pipe.ids, p, width, height) for p in prompts]
    if config.uses_cfg:
        rows += [image_header(pipe.ids, width, height)] * len(prompts)
    B = len(prompts)
    tokens = torch.zeros(B, H, W, dtype=torch.int64)
    generated = [[] for _ in range(B)]  # vocabulary ids after the prefix
    for r in range(H):
        for c in range(W):
            last = []
            for m, ids in enumerate(rows):
                seq = torch.tensor(ids + generated[m % B])[None]
                L = seq.shape[1]
                out = full_forward(pipe.coded, pipe.model.embed_tokens(seq), torch.arange(L)[None],
                                   torch.ones(L, L, dtype=torch.bool).tril()[None])
                last.append(out[0, -1])
            z = torch.stack(last)
            if config.uses_cfg:
                z = guide(z[:B], z[B:], config.cfg_scale)
            z = filter_logits(z, config.temperature, config.top_k, config.top_p)
            code = sample_logits(z, draw_key(seeds, torch.full((B, 1), r * W + c), PURPOSE_TOKEN)[:, 0])
            tokens[:, r, c] = code
            for b in range(B):
                generated[b].append(int(pipe.coded.to_vocab(code[b])))
        for b in range(B):
            generated[b].append(pipe.ids.eol)
    return tokens


@pytest.mark.parametrize("cfg_scale,top_k", [(3.0, 2000), (1.0, 0), (2.0, 8)])
def test_full_window_reproduces_ntp(pipe, cfg_scale, top_k):
    seeds = torch.tensor([5, 2**33 + 1])
    config = DecodeConfig(cfg_scale=cfg_scale, top_k=top_k)
    ref = reference_ntp(pipe, PROMPTS, seeds, config)
    assert len(set(ref.flatten().tolist())) > 3  # not a degenerate model
    for window in (None, 4, 9):
        got = pipe.generate(PROMPTS, seeds, DecodeConfig(window=window, cfg_scale=cfg_scale, top_k=top_k), SIZE)
        assert torch.equal(got.tokens, ref)


@pytest.mark.parametrize("config", [DecodeConfig(window=1, cfg_scale=3.0), DecodeConfig(window=2, cfg_scale=2.0, top_k=20),
                                    DecodeConfig(window=1, adaptive=True, cfg_scale=3.0)])
def test_oracle_with_prompts_of_different_lengths_and_the_boi_branch(pipe, config):
    seeds = torch.tensor([3, 4])
    condition, layout = pipe.condition(PROMPTS, SIZE, config)
    assert len(set(condition.position_shift.tolist())) == 3  # two prompt lengths and the 3-token unconditional branch
    with torch.inference_mode():
        state, passes = record_passes(pipe.coded, layout, config, condition, seeds, pipe.fixed_row(layout.rows))
        err = oracle_error(pipe.coded, condition, passes)
    assert err <= 1e-4
    # the unconditional rows really run at [BOI, H, W] = positions 0, 1, 2, then 3 for cell (0, 0)
    first_cell_query = passes[1][2]  # pass 1, model-batch row 2 (uncond of image 0): cell (0, 0) fed
    assert first_cell_query[1][0].item() == 3


def test_pass_counts(pipe):
    counting = CountingModel(pipe.coded)
    seeds = torch.tensor([1])
    for window, size in ((1, SIZE), (2, (128, 32)), (None, SIZE)):
        counting.calls = 0
        condition, layout = pipe.condition(PROMPTS[:1], size, DecodeConfig(window=window))
        with torch.inference_mode():
            res = decode(counting, condition, seeds, layout, DecodeConfig(window=window), pipe.fixed_row(layout.rows))
        H, W = layout.rows, layout.cols
        w = W if window is None else min(window, W)
        assert counting.calls == res.forward_passes == (H - 1) * w + W
    big = Layout(48, 48, 30, end_of_row=True)  # 768 x 768
    assert num_passes(big, 14) == 706 and num_passes(big, 48) == 2304 and ntp_passes_official(48, 48) == 2352


def test_an_image_does_not_depend_on_its_batch_mates(pipe):
    config = DecodeConfig(window=2, cfg_scale=3.0, top_k=50)
    seeds = torch.tensor([11, 12, 13])
    prompts = [PROMPTS[0], PROMPTS[1], "dog"]
    batch = pipe.generate(prompts, seeds, config, SIZE).tokens
    for i in range(3):
        alone = pipe.generate([prompts[i]], seeds[i:i + 1], config, SIZE).tokens
        assert torch.equal(alone[0], batch[i])
    assert not torch.equal(batch[0], batch[1])


def test_sequence_ids_follow_the_official_block(pipe):
    tokens = torch.tensor([[[0, 1], [2, 3]]])
    seq = pipe.sequence_ids(tokens)[0].tolist()
    img = pipe.coded.to_vocab(torch.arange(4)).tolist()
    eol, eoi = pipe.ids.eol, pipe.ids.eoi
    assert seq == [img[0], img[1], eol, img[2], img[3], eol, eoi]


def test_cli_random_init_tiny(tmp_path, capsys):
    from lumina_mgpt.generate import cli

    argv = ["--random-init", "--config", "tiny", "--prompt", "a cat", "--prompt", "a red cube on a mat",
            "--width", "256", "--height", "1024", "--window", "3", "--json", "--threads", "1", "--out-dir", str(tmp_path)]
    assert cli(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["grid"] == [64, 16]
    assert report["forward_passes"] == 63 * 3 + 16 and report["ntp_passes"] == 64 * 16
    assert report["ntp_passes_official"] == 64 * 17
    assert len(report["files"]) == 2 and all(Path(f).is_file() for f in report["files"])
    assert cli(["--random-init", "--config", "tiny", "--prompt", "x", "--width", "500", "--height", "512",
                "--out-dir", str(tmp_path / "bad")]) == 2
    assert capsys.readouterr().err.startswith("error: 500x512 is not a size")
