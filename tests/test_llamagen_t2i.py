"""LlamaGen text-to-image: the t2i GPT against the official keys, the caption path against transformers'
T5 encoder, and the engine with a 120-token caption prefix and its mask (NTP parity, uncached oracle,
batch invariance, pass counts). Facts: /work/shared/reference/llamagen.md sections 1.4, 1.8, 4.1, 6.
"""
import json
import string

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.weights.checkpoint import CheckpointError
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode, decode_steps, start_decode
from common.zipar.sampling import PURPOSE_TOKEN, draw_key, filter_logits, guide, sample_logits
from common.zipar.layout import Layout
from common.zipar.window import num_passes
from llamagen.captions import (T5CaptionEncoder, left_pad, load_caption_rows, pad_caption_rows, resolve_t5_path,
                               t5_caption_features)
from llamagen.checkpoint import load_gpt_weights
from llamagen.generate import layout_for
from llamagen.generate_t2i import caption_prefix, generate
from llamagen.model import CAPTION_TOKENS, GPTConfig, Transformer, gpt_config, t2i_config
from llamagen.sample_t2i import cli
from tests.helpers.llamagen import CountingModel, formula_passes, tiny_gpt
from tests.official_keys import official_keys
from tests.oracle import full_forward

T = CAPTION_TOKENS
CAPTION_DIM = 32


def tiny_t2i(grid, seed=0):
    return tiny_gpt(grid, seed=seed, model_type="t2i", cls_token_num=T, caption_dim=CAPTION_DIM)


def captions_of_lengths(lengths, seed=0):
    """Left-padded random caption features with the given valid lengths: (B, T, C), (B, T) bool."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.randn(n, CAPTION_DIM, generator=gen) for n in lengths]
    return pad_caption_rows(rows, T)


# ----------------------------------------------------------------------------- the model

@pytest.mark.parametrize("grid", [32, 64])  # 512 px is grid 32; the keys do not depend on it
def test_t2i_state_dict_matches_official(grid):
    official = official_keys("llamagen_GPT-XL_t2i_1024")
    assert len(official) == 258
    with torch.device("meta"):
        model = Transformer(t2i_config("GPT-XL"), grid_size=grid)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(ours.items()) == list(official.items())
    assert sum(p.numel() for p in model.parameters()) == 777_678_080  # fact sheet 1.2
    assert [tuple(b.shape) for b in model.buffers()] == [(120, 2048)]  # the persistent null caption


def test_t2i_config_is_checked_and_c2i_untouched():
    with pytest.raises(ValueError, match="120"):
        gpt_config("GPT-tiny", model_type="t2i")  # the official embedder is fixed at 120 tokens
    with pytest.raises(ValueError, match="model_type"):
        gpt_config("GPT-tiny", model_type="i2t")
    assert gpt_config("GPT-B") == GPTConfig(dim=768, n_layer=12, n_head=12)
    assert gpt_config("GPT-B").model_type == "c2i"


def test_t2i_checkpoint_round_trip_keeps_the_null_caption(tmp_path):
    src = tiny_t2i(4, seed=3)
    torch.save({"model": src.state_dict(), "args": None}, tmp_path / "t2i.pt")  # the DDP container
    dst = Transformer(t2i_config("GPT-tiny", caption_dim=CAPTION_DIM), grid_size=4)
    load_gpt_weights(dst, tmp_path / "t2i.pt", "GPT-tiny (t2i)")
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="uncond_embedding"):  # a c2i file is refused by name
        torch.save({"model": tiny_gpt(4).state_dict()}, tmp_path / "c2i.pt")
        load_gpt_weights(dst, tmp_path / "c2i.pt", "GPT-tiny (t2i)")


def test_caption_embedding_is_the_official_mlp():
    gpt = tiny_t2i(4)
    sd = gpt.state_dict()
    x = torch.randn(3, T, CAPTION_DIM)
    fc1, fc2 = sd["cls_embedding.cap_proj.fc1.weight"], sd["cls_embedding.cap_proj.fc2.weight"]
    ref = F.gelu(x @ fc1.T, approximate="tanh") @ fc2.T
    with torch.no_grad():
        torch.testing.assert_close(gpt.embed_condition(x), ref)


def test_caption_prefix_uses_the_null_caption_under_the_same_mask():
    gpt = tiny_t2i(4)
    feats, valid = captions_of_lengths([3, 7])
    with torch.no_grad():
        condition = caption_prefix(gpt, feats, valid, DecodeConfig(cfg_scale=2.0))
        prefix, pv = condition.embeddings, condition.valid
        null = gpt.embed_condition(gpt.cls_embedding.uncond_embedding[None])[0]
    assert prefix.shape == (4, T, 64) and torch.equal(pv, torch.cat([valid, valid]))
    torch.testing.assert_close(prefix[2], null)
    torch.testing.assert_close(prefix[3], null)
    with pytest.raises(ValueError, match="t2i"):
        caption_prefix(tiny_gpt(4), feats, valid, DecodeConfig())
    with pytest.raises(ValueError, match="valid token"):
        caption_prefix(gpt, feats, torch.zeros_like(valid), DecodeConfig())


# ----------------------------------------------------------------------------- the engine with captions

def official_t2i_mask(valid_row: torch.Tensor, length: int) -> torch.Tensor:
    """generate.py: tril(ones), key columns [:T] times emb_mask, then the diagonal forced on."""
    mask = torch.ones(length, length, dtype=torch.bool).tril()
    mask[:, :T] &= valid_row[None]
    return mask | torch.eye(length, dtype=torch.bool)


@torch.inference_mode()
def reference_ntp_t2i(gpt, feats, valid, seeds, config):
    """Plain NTP written independently of the engine: the whole sequence re-run every step, each
    model-batch row with its own official caption mask."""
    H = W = gpt.grid_size
    B = feats.shape[0]
    cond = feats
    masks = valid
    if config.uses_cfg:  # generate.py: [cond; zeros_like(cond) + uncond_embedding], same emb_masks
        cond = torch.cat([feats, torch.zeros_like(feats) + gpt.cls_embedding.uncond_embedding])
        masks = torch.cat([valid, valid])
    prefix = gpt.embed_condition(cond)
    tokens = torch.zeros(B, 0, dtype=torch.int64)
    for n in range(H * W):
        ids = torch.cat([tokens, tokens]) if config.uses_cfg else tokens
        x = torch.cat([prefix, gpt.embed_tokens(ids)], dim=1)
        L = x.shape[1]
        mask = torch.stack([official_t2i_mask(row, L) for row in masks])  # (B_model, L, L)
        logits = full_forward(gpt, x, torch.arange(L), mask)[:, -1]
        if config.uses_cfg:
            logits = guide(logits[:B], logits[B:], config.cfg_scale)
        logits = filter_logits(logits, config.temperature, config.top_k, config.top_p)
        nxt = sample_logits(logits, draw_key(seeds, torch.full((B, 1), n), PURPOSE_TOKEN)[:, 0])
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return tokens.reshape(B, H, W)


@pytest.mark.parametrize("cfg_scale,top_k", [(1.0, 0), (4.0, 20)])
def test_full_window_reproduces_ntp_with_captions(cfg_scale, top_k):
    gpt = tiny_t2i(4, seed=1)
    feats, valid = captions_of_lengths([2, 17])
    seeds = torch.tensor([5, 9])
    ref = reference_ntp_t2i(gpt, feats, valid, seeds, DecodeConfig(cfg_scale=cfg_scale, top_k=top_k))
    for window in (None, 4, 7):
        result = generate(gpt, feats, valid, seeds, DecodeConfig(window=window, cfg_scale=cfg_scale, top_k=top_k))
        assert torch.equal(result.tokens, ref), window
        assert result.forward_passes == 16
    # the caption mask matters: reading the padded (zero) slots changes the images
    everything = torch.ones_like(valid)
    unmasked = reference_ntp_t2i(gpt, feats, everything, seeds, DecodeConfig(cfg_scale=cfg_scale, top_k=top_k))
    assert not torch.equal(unmasked, ref)


def replay_error(gpt, layout, config, condition, seeds):
    """Record every query of a decode and replay each model-batch row in one uncached forward with
    the recorded visibility (tests/helpers/llamagen.run_oracle with a given condition); also check that no
    query but a padded slot's own reads it. Returns (max abs logit difference, passes)."""
    prefix, valid_rows = condition.embeddings, condition.valid
    state = start_decode(gpt, condition, seeds, layout, config)
    scratch = state.scheduler.slot_map.scratch
    entries = [[] for _ in range(prefix.shape[0])]  # per row: (position, embedding, visible entries, logits)
    entry_of_slot = [{} for _ in range(prefix.shape[0])]  # per row: the latest entry written at each slot
    passes = 0
    for rec in decode_steps(gpt, state):
        passes += 1
        for m in range(prefix.shape[0]):
            pick = lambda t: t[min(m % len(seeds), t.shape[0] - 1)]  # noqa: E731  leading dim B or 1
            mask = rec.mask[min(m, rec.mask.shape[0] - 1)]
            slots, positions = pick(rec.batch.slots), pick(rec.batch.positions)
            x = prefix[m, slots] if rec.index == 0 else gpt.embed_tokens(rec.input_ids[m])
            kept = [(i, s) for i, s in enumerate(slots.tolist()) if s != scratch]
            for j, (_, s) in enumerate(kept):  # an adaptive opener's next attempt rewrites its slot
                entry_of_slot[m][s] = len(entries[m]) + j
            for i, s in kept:
                seen = mask[i].nonzero()[:, 0].tolist()
                padded_seen = [k for k in seen if k < T and not valid_rows[m, k]]
                assert padded_seen in ([], [s]), (m, s, padded_seen)
                # a query reads only slots written in its own or an earlier pass (KeyError otherwise)
                visible = [entry_of_slot[m][k] for k in seen]
                entries[m].append((int(positions[i]), x[i], visible, rec.logits[m, i]))
    worst = 0.0
    for row in entries:
        oracle = torch.zeros(len(row), len(row), dtype=torch.bool)
        for e, (_, _, visible, _) in enumerate(row):
            oracle[e, visible] = True
            assert oracle[e, e]
        replay = full_forward(gpt, torch.stack([r[1] for r in row])[None], torch.tensor([r[0] for r in row]), oracle)[0]
        worst = max(worst, (replay - torch.stack([r[3] for r in row])).abs().max().item())
    return worst, passes


@pytest.mark.parametrize("grid,window,cfg_scale,adaptive,first_row", [
    (4, 1, 3.0, False, "serial"), (5, 2, 2.0, False, "early"), (4, 2, 1.0, False, "serial"), (5, 1, 2.0, True, "serial"),
    (5, 1, 2.0, True, "early")])
def test_oracle_with_caption_mask(grid, window, cfg_scale, adaptive, first_row):
    gpt = tiny_t2i(grid, seed=grid)
    feats, valid = captions_of_lengths([1, 40], seed=grid)
    # placeholder "above": this replay embeds the fed ids itself (the mean input has none; tests/oracle.py covers it)
    config = DecodeConfig(window=window, cfg_scale=cfg_scale, top_k=30, adaptive=adaptive, first_row=first_row,
                          placeholder="above")
    seeds = torch.tensor([3, 4])
    with torch.inference_mode():
        err, passes = replay_error(gpt, layout_for(gpt), config, caption_prefix(gpt, feats, valid, config), seeds)
    assert err <= 1e-4
    if not adaptive:
        assert passes == formula_passes(grid, grid, window, first_row)


@pytest.mark.parametrize("config", [DecodeConfig(window=2, cfg_scale=7.5, top_k=40),
                                    DecodeConfig(window=1, cfg_scale=1.0, placeholder="above"),
                                    DecodeConfig(window=1, adaptive=True, cfg_scale=3.0)])
def test_batch_invariance_with_captions_of_different_lengths(config):
    gpt = tiny_t2i(5)
    feats, valid = captions_of_lengths([1, 9, 120, 33])
    seeds = torch.tensor([10, 20, 30, 2**40 + 1])
    batched = generate(gpt, feats, valid, seeds, config).tokens
    for i in range(4):
        alone = generate(gpt, feats[i:i + 1], valid[i:i + 1], seeds[i:i + 1], config).tokens
        assert torch.equal(alone[0], batched[i]), i
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.equal(generate(gpt, feats[perm], valid[perm], seeds[perm], config).tokens, batched[perm])


def test_passes_at_512px_and_counted_on_a_tiny_grid():
    layout = Layout(32, 32, T)  # t2i_XL_stage2_512: 32x32 tokens after a 120-token caption
    assert {w: num_passes(layout, w) for w in (3, 7, 11, 15)} == {w: 2 * 32 + 30 * w for w in (3, 7, 11, 15)}
    assert {w: num_passes(layout, w, first_row="early") for w in (3, 15)} == {w: 31 * w + 32 for w in (3, 15)}
    assert num_passes(layout, 32) == 1024
    gpt = tiny_t2i(5)
    feats, valid = captions_of_lengths([4])
    for w in (1, 3):
        config = DecodeConfig(window=w, cfg_scale=2.0)
        counting = CountingModel(gpt)
        with torch.inference_mode():
            result = decode(counting, caption_prefix(gpt, feats, valid, config), torch.tensor([0]), layout_for(gpt),
                            config)
        assert counting.calls == result.forward_passes == 2 * 5 + 3 * w


# ----------------------------------------------------------------------------- caption features

def official_left_pad(embs, masks):
    """sample_t2i.py's loop, as written there: flip the mask, rotate each caption, zero the padding."""
    new_masks = torch.flip(masks, dims=[-1])
    rows = []
    for emb, mask in zip(embs, masks):
        n = int(mask.sum().item())
        rows.append(torch.cat([emb[n:], emb[:n]]))
    return torch.stack(rows) * new_masks[:, :, None], new_masks


WORDS = ["a", "the", "photo", "of", "dog", "blue", "car", "red", "on", "wall"]


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    """A tiny random flan-t5-style encoder and a Unigram T5 tokenizer, saved as a local folder."""
    transformers = pytest.importorskip("transformers")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -3.0) for w in WORDS] + [(c, -6.0) for c in string.ascii_lowercase + string.digits + ".,!'"]
    tokenizer = transformers.T5Tokenizer(vocab=vocab, extra_ids=0)
    config = transformers.T5Config(vocab_size=len(vocab), d_model=CAPTION_DIM, d_kv=8, d_ff=64, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                   feed_forward_proj="gated-gelu", dropout_rate=0.0)  # flan-t5: gated-gelu
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(config).eval()
    folder = tmp_path_factory.mktemp("t5") / "flan-t5-xl"
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


PROMPTS = ["A photo of a blue dog!", "red car", " ".join(["the blue car on the red wall"] * 25)]  # the last > 120 tokens


def test_caption_features_equal_transformers_t5(tiny_t5):
    from transformers import AutoTokenizer, T5EncoderModel
    tok = AutoTokenizer.from_pretrained(tiny_t5)
    t5 = T5EncoderModel.from_pretrained(tiny_t5).eval()
    batch = tok([p.lower().strip() for p in PROMPTS], max_length=120, padding="max_length", truncation=True,
                return_attention_mask=True, add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        raw = t5(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["last_hidden_state"]
    ref, ref_mask = official_left_pad(raw, batch["attention_mask"])
    assert ref_mask.sum(1).tolist()[2] == 120 and ref_mask.sum(1).tolist()[1] < 10  # truncation and padding happen

    encoder = T5CaptionEncoder(tiny_t5.parent)  # the official layout: {t5_path}/flan-t5-xl
    feats, mask = t5_caption_features(encoder, PROMPTS)
    assert feats.shape == (3, 120, CAPTION_DIM) and mask.dtype == torch.bool
    assert torch.equal(mask, ref_mask.bool())
    torch.testing.assert_close(feats, ref, atol=0, rtol=0)
    assert feats[1, :-ref_mask[1].sum()].abs().max() == 0  # padding rows zeroed, in front
    assert bool(mask[:, -1].all())  # the EOS sits at slot 119 and predicts image token 0


def test_left_pad_and_precomputed_rows_agree(tmp_path):
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 5, 120, 130]
    rows = [torch.randn(n, CAPTION_DIM, generator=gen) for n in lengths]
    right, right_mask = pad_caption_rows(rows, T, left_padding=False)
    ref, ref_mask = official_left_pad(right, right_mask.long())
    feats, mask = pad_caption_rows(rows, T)
    assert torch.equal(feats, ref) and torch.equal(mask, ref_mask.bool())
    feats2, mask2 = left_pad(right, right_mask)
    assert torch.equal(feats2, ref) and torch.equal(mask2, mask)
    assert mask.sum(1).tolist() == [1, 5, 120, 120]
    # files in extract_t5_feature.py's format: (1, n, C) float32 .npy; a .pt tensor too
    np.save(tmp_path / "a.npy", rows[1][None].numpy())
    torch.save(rows[0], tmp_path / "b.pt")
    assert torch.equal(load_caption_rows(tmp_path / "a.npy"), rows[1])
    assert torch.equal(load_caption_rows(tmp_path / "b.pt"), rows[0])
    with pytest.raises(FileNotFoundError):
        resolve_t5_path(tmp_path)


# ----------------------------------------------------------------------------- the CLI

CLI_BASE = ["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init", "--image-size", "8",
            "--caption-dim", str(CAPTION_DIM), "--device", "cpu", "--json"]


def test_cli_with_tiny_t5(tiny_t5, tmp_path, capsys):
    out_png = tmp_path / "t2i.png"
    rc = cli([*CLI_BASE, "--t5-path", str(tiny_t5), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--window", "2",
              "--adaptive",
              "--cfg-scale", "7.5", "--top-k", "1000", "--out", str(out_png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out)
    assert report["grid"] == [4, 4] and report["adaptive"] is True
    assert report["caption_tokens"][1] < report["caption_tokens"][0] <= 120
    assert torch.tensor(report["tokens"]).shape == (2, 4, 4)
    assert out_png.is_file() and "random" in err


def test_cli_with_precomputed_features(tmp_path, capsys):
    files = []
    for i, n in enumerate([3, 50]):
        np.save(tmp_path / f"{i}.npy", np.random.default_rng(i).standard_normal((1, n, CAPTION_DIM), dtype=np.float32))
        files.append(str(tmp_path / f"{i}.npy"))
    rc = cli([*CLI_BASE, "--caption-features", *files, "--window", "2", "--out", str(tmp_path / "g.png")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out)
    assert report["forward_passes"] == 2 * 4 + 2 * 2 and report["ntp_passes"] == 16
    assert report["caption_tokens"] == [3, 50]


@pytest.mark.parametrize("extra,needle", [
    ([], "--t5-path"),
    (["--t5-path", "/nonexistent"], "/nonexistent"),
    (["--caption-features", "/nonexistent.npy"], "/nonexistent.npy"),
    (["--caption-features", "FEATS", "--caption-dim", "16"], "16"),
    (["--caption-features", "FEATS", "--window", "0"], "window"),
])
def test_cli_errors_are_one_line(extra, needle, tmp_path, capsys):
    feats = tmp_path / "f.npy"
    np.save(feats, np.zeros((1, 4, CAPTION_DIM), dtype=np.float32))
    extra = [str(feats) if a == "FEATS" else a for a in extra]
    rc = cli([*CLI_BASE, *extra, "--out", str(tmp_path / "g.png")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("--random-init")]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
