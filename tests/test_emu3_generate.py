"""Emu3-Gen on the engine (emu3/pipeline.py, emu3/generate.py), tiny random model: NTP parity against an
independent uncached loop over unpadded prompts, the oracle with prefixes of different lengths (two
prompts, and the negative branch), batch invariance, pass counts, the output sequence and the CLI."""
import base64
import copy
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from common.zipar.config import DecodeConfig
from common.zipar.engine import decode, decode_steps
from common.models.llama import random_init_
from common.zipar.sampling import PURPOSE_TOKEN, draw_key, filter_logits, guide, sample_logits
from common.zipar.window import num_passes
from emu3.generate import cli
from emu3.pipeline import Emu3Pipeline, layout_for, load_pipeline, ntp_passes_official
from emu3.prompt import NEGATIVE_PROMPT, prompt_ids
from tests.helpers.llamagen import CountingModel
from tests.oracle import full_forward, oracle_error, record_passes
from tests.helpers.processes import run_python

PROMPTS = ["a fox", "a very long prompt about a red fox in the snow at dawn"]
RATIO = "4:3"  # tiny image area: a 3x5 grid


@pytest.fixture(scope="module")
def pipe() -> Emu3Pipeline:
    p = load_pipeline(None, None, None, "tiny", "cpu", torch.float32, random_init=True, seed=0)
    random_init_(p.model, 7, std=0.1)  # larger weights: peaked, non-uniform distributions
    return Emu3Pipeline(p.config, p.model, p.vq, p.tokenizer, p.ids)  # re-gathers the lm_head rows


@torch.inference_mode()
def reference_ntp(pipe: Emu3Pipeline, prompts, seeds, config: DecodeConfig):
    """Plain NTP written independently of the engine: every row (prompt, and the negative prompt with CFG)
    unpadded at positions 0.., the whole sequence re-run each step, EOL appended after each row."""
    H, W = pipe.grid(RATIO)
    rows = [prompt_ids(pipe.tokenizer, p, H, W) for p in prompts]
    if config.uses_cfg:
        rows += [prompt_ids(pipe.tokenizer, NEGATIVE_PROMPT, H, W, positive=False)] * len(prompts)
    B = len(prompts)
    tokens = torch.zeros(B, H, W, dtype=torch.int64)
    generated = [[] for _ in range(B)]  # vocabulary ids after the prompt
    for r in range(H):
        for c in range(W):
            last = []
            for m, ids in enumerate(rows):
                seq = torch.tensor(ids + generated[m % B])[None]
                L = seq.shape[1]
                out = full_forward(pipe.coded, pipe.model.embed_tokens(seq), torch.arange(L)[None],
                                   torch.ones(L, L, dtype=torch.bool).tril()[None])
                last.append(out[0, -1])
            z = torch.stack(last)  # (B_model, K)
            if config.uses_cfg:
                z = guide(z[:B], z[B:], config.cfg_scale)
            z = filter_logits(z, config.temperature, config.top_k, config.top_p)
            code = sample_logits(z, draw_key(seeds, torch.full((B, 1), r * W + c), PURPOSE_TOKEN)[:, 0])
            tokens[:, r, c] = code
            for b in range(B):
                generated[b].append(pipe.ids.visual_base + int(code[b]))
        for b in range(B):
            generated[b].append(pipe.ids.eol)
    return tokens


@pytest.mark.parametrize("cfg_scale,top_k,top_p", [(3.0, 2048, 1.0), (1.0, 0, 1.0), (2.0, 8, 0.9)])
def test_full_window_reproduces_ntp(pipe, cfg_scale, top_k, top_p):
    seeds = torch.tensor([5, 2**33 + 1])
    H, W = pipe.grid(RATIO)
    ref = reference_ntp(pipe, PROMPTS, seeds, DecodeConfig(cfg_scale=cfg_scale, top_k=top_k, top_p=top_p))
    assert len(set(ref.flatten().tolist())) > 3  # not a degenerate model
    for window in (None, W, W + 4):
        config = DecodeConfig(window=window, cfg_scale=cfg_scale, top_k=top_k, top_p=top_p)
        result = pipe.generate(PROMPTS, seeds, config, RATIO)
        assert torch.equal(result.tokens, ref), window
        assert result.forward_passes == H * W


@pytest.mark.parametrize("config", [DecodeConfig(window=1, cfg_scale=3.0),
                                    DecodeConfig(window=2, cfg_scale=2.0, top_k=10),
                                    DecodeConfig(window=1, adaptive=True, cfg_scale=3.0),
                                    DecodeConfig(window=2, placeholder="above")])
def test_oracle_with_prefixes_of_different_lengths(pipe, config):
    """Two prompts of different lengths and (with CFG) the negative prompt, another length: every logit the
    engine sampled from equals an uncached forward over exactly what its query saw."""
    H, W = pipe.grid(RATIO)
    assert len({len(r) for r in pipe.prefix_rows(PROMPTS, RATIO, config)}) == (3 if config.uses_cfg else 2)
    condition, layout = pipe.condition(PROMPTS, RATIO, config)
    assert layout == layout_for(condition.length, H, W)
    with torch.inference_mode():
        state, passes = record_passes(pipe.coded, layout, config, condition, torch.tensor([3, 4]), pipe.fixed_row(H))
        assert oracle_error(pipe.coded, condition, passes) <= 1e-4
    if not config.adaptive:
        assert len(passes) == (H - 1) * config.window + W


@pytest.mark.parametrize("config", [DecodeConfig(window=2, cfg_scale=3.0, top_k=2048),
                                    DecodeConfig(window=1, adaptive=True, cfg_scale=3.0)])
def test_batch_invariance(pipe, config):
    prompts = PROMPTS + ["cat"]
    seeds = torch.tensor([10, 20, 30])
    batched = pipe.generate(prompts, seeds, config, RATIO).tokens
    for i in range(3):
        assert torch.equal(pipe.generate(prompts[i:i + 1], seeds[i:i + 1], config, RATIO).tokens[0], batched[i])
    perm = [2, 0, 1]
    assert torch.equal(pipe.generate([prompts[i] for i in perm], seeds[perm], config, RATIO).tokens,
                       batched[perm])
    assert not torch.equal(batched[0], batched[1])


class PositionSpy(CountingModel):
    """Records, per forward, the cache slots and RoPE positions each model-batch row's queries use."""

    def __init__(self, model):
        super().__init__(model)
        self.seen = []

    def __call__(self, x, positions, slots, *rest):
        B, Q = x.shape[:2]
        self.seen.append((slots.expand(B, Q).clone(), positions.expand(B, Q).clone()))
        return super().__call__(x, positions, slots, *rest)


def test_every_row_runs_at_the_official_positions(pipe):
    """Each row (two prompts, two negative prompts) sits at positions 0.. as an unpadded official run: prompt
    token i at i, visual token (r, c) at P + r(W+1) + c, EOL of row r at P + r(W+1) + W (P its own length).
    RoPE makes a uniform shift invisible in the logits, so this checks the positions themselves."""
    H, W = pipe.grid(RATIO)
    config = DecodeConfig(window=2, cfg_scale=3.0)
    _, layout = pipe.condition(PROMPTS, RATIO, config)
    T = layout.prefix_len
    spy_pipe = copy.copy(pipe)
    spy_pipe.coded = spy = PositionSpy(pipe.coded)
    spy_pipe.generate(PROMPTS, torch.tensor([0, 1]), config, RATIO)
    for m, P in enumerate(len(r) for r in pipe.prefix_rows(PROMPTS, RATIO, config)):
        position_of_slot = {}
        for slots, positions in spy.seen:
            position_of_slot.update(zip(slots[m].tolist(), positions[m].tolist()))
        assert [position_of_slot[T - P + i] for i in range(P)] == list(range(P))
        for r in range(H):
            for c in range(W + 1 if r < H - 1 else W - 1):  # c == W: the row's EOL; the last token is never fed
                assert position_of_slot[layout.cell_position(r, c)] == P + r * (W + 1) + c, (m, r, c)


def test_notebook_entry_gives_the_same_tokens(pipe):
    config = DecodeConfig(window=2, cfg_scale=3.0)
    seeds = torch.tensor([4, 9])
    with torch.inference_mode():
        state = pipe.start(PROMPTS, seeds, config, RATIO)
        passes = sum(1 for _ in decode_steps(pipe.coded, state))
    H, W = pipe.grid(RATIO)
    result = pipe.generate(PROMPTS, seeds, config, RATIO)
    assert passes == result.forward_passes
    assert torch.equal(state.tokens[:, :H * W].view(2, H, W), result.tokens)


def test_forward_passes(pipe):
    H, W = pipe.grid(RATIO)
    for window, expected in ((1, (H - 1) + W), (2, 2 * (H - 1) + W), (None, H * W)):
        config = DecodeConfig(window=window, cfg_scale=3.0)
        condition, layout = pipe.condition(PROMPTS, RATIO, config)
        counting = CountingModel(pipe.coded)
        with torch.inference_mode():
            result = decode(counting, condition, torch.tensor([0, 1]), layout, config, pipe.fixed_row(H))
        assert counting.calls == result.forward_passes == expected
    # the numbers at Emu3-Gen's 90x90 grid
    assert num_passes(layout_for(1, 90, 90), 7) == 713
    assert num_passes(layout_for(1, 90, 90), 90) == 8100
    assert ntp_passes_official(90, 90) == 8193


def test_sequence_ids_and_images(pipe):
    config = DecodeConfig(window=2, cfg_scale=3.0)
    result = pipe.generate(PROMPTS, torch.tensor([1, 2]), config, RATIO)
    images = pipe.decode_images(result.tokens)
    H, W = pipe.grid(RATIO)
    assert images.shape == (2, 3, 2 * H, 2 * W) and images.dtype == torch.float32
    with torch.inference_mode():
        assert torch.equal(images, pipe.vq.decode(result.tokens))
    seq = pipe.sequence_ids(result.tokens)
    ids = pipe.ids
    assert seq.shape == (2, H * (W + 1) + 3)
    assert seq[:, -3:].tolist() == [[ids.eof, ids.eoi, ids.eos]] * 2
    rows = seq[:, :-3].view(2, H, W + 1)
    assert (rows[:, :, W] == ids.eol).all()
    assert torch.equal(rows[:, :, :W] - ids.visual_base, result.tokens)


def test_bad_prompts_are_refused(pipe):
    with pytest.raises(ValueError, match="at least one prompt"):
        pipe.generate([], torch.zeros(0, dtype=torch.int64), DecodeConfig(), RATIO)
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        pipe.generate(PROMPTS, torch.tensor([0]), DecodeConfig(), RATIO)


def test_cli_random_init_end_to_end(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\na blue bird\n\n")  # a blank line at the end is no prompt
    out = run_python(["-m", "emu3.generate", "--random-init", "--config", "tiny", "--prompt", "a cat",
                      "--prompts-file", str(prompts), "--ratio", RATIO, "--window", "2", "--out-dir", str(tmp_path / "out"),
                      "--json"])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["grid"] == [3, 5]
    assert report["forward_passes"] == (3 - 1) * 2 + 5
    assert report["ntp_passes"] == 15 and report["ntp_passes_official"] == 3 * 6 + 3
    assert len(report["files"]) == 3 and report["seconds"] > 0
    for f in report["files"]:
        with Image.open(f) as im:
            assert im.size == (10, 6)


@pytest.mark.parametrize("argv,message", [
    (["--ratio", "4x3"], "ratio"),
    ([], "--prompt"),
    (["--window", "0"], "window"),
])
def test_cli_bad_input_is_a_clear_error(tmp_path, capsys, argv, message):
    base = ["--random-init", "--config", "tiny", "--out-dir", str(tmp_path)]
    if argv != []:
        base += ["--prompt", "x"]
    assert cli(base + argv) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_files_are_errors(tmp_path, capsys):
    assert cli(["--model-path", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "--model-path: folder not found" in capsys.readouterr().err
    assert cli(["--prompt", "x"]) == 2
    assert "--random-init" in capsys.readouterr().err
    assert cli(["--model-path", str(tmp_path), "--vq-path", str(tmp_path), "--prompt", "x"]) == 2
    assert "config.json" in capsys.readouterr().err


def write_emu3_folders(root: Path, pipe: Emu3Pipeline) -> tuple[Path, Path]:
    """The tiny pipeline saved in the original layout: an Emu3-Gen folder (shards, config.json, tokenizer
    files) and an Emu3-VisionTokenizer folder (model.safetensors with encoder keys, config.json)."""
    from safetensors.torch import save_file
    gen, vq = root / "Emu3-Gen", root / "Emu3-VisionTokenizer"
    gen.mkdir()
    vq.mkdir()
    state = pipe.model.state_dict()
    keys = sorted(state)
    weight_map = {}
    for i, part in enumerate((keys[:5], keys[5:])):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: state[k].contiguous() for k in part}, str(gen / name))
        weight_map.update({k: name for k in part})
    (gen / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    c = pipe.config.text
    (gen / "config.json").write_text(json.dumps({
        "vocab_size": c.vocab_size, "hidden_size": c.dim, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "intermediate_size": c.ffn_hidden,
        "rope_theta": c.rope_theta, "rms_norm_eps": c.norm_eps, "rope_scaling": None,
        "image_area": pipe.config.image_area, **pipe.ids.as_config_ids()}))
    (gen / "emu3.tiktoken").write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
    vision_tokens = ["<|image token|>", "<|image start|>", "<|image end|>"]
    vision_tokens += [f"<|visual token {i:06d}|>" for i in range(pipe.config.vision.codebook_size)]
    (gen / "emu3_vision_tokens.txt").write_text("\n".join(vision_tokens))
    v = pipe.config.vision
    (vq / "config.json").write_text(json.dumps({
        "codebook_size": v.codebook_size, "embed_dim": v.embed_dim, "z_channels": v.z_channels, "ch": v.ch,
        "ch_mult": list(v.ch_mult), "num_res_blocks": v.num_res_blocks, "attn_resolutions": list(v.attn_resolutions),
        "temporal_downsample_factor": v.temporal_downsample_factor, "out_channels": 3, "double_z": False}))
    vq_state = dict(pipe.vq.state_dict()) | {"encoder.conv_out.weight": torch.zeros(4, 64, 3, 3)}
    save_file({k: t.contiguous() for k, t in vq_state.items()}, str(vq / "model.safetensors"))
    return gen, vq


def test_load_pipeline_from_original_folders(tmp_path, pipe):
    gen, vq = write_emu3_folders(tmp_path, pipe)
    loaded = load_pipeline(str(gen), str(vq), None, device="cpu", dtype=torch.float32)
    assert loaded.config == pipe.config and loaded.ids == pipe.ids
    config = DecodeConfig(window=2, cfg_scale=3.0)
    seeds = torch.tensor([1, 2])
    result, expected = loaded.generate(PROMPTS, seeds, config, RATIO), pipe.generate(PROMPTS, seeds, config, RATIO)
    assert torch.equal(result.tokens, expected.tokens)
    assert torch.equal(loaded.decode_images(result.tokens), pipe.decode_images(expected.tokens))
    # a config.json whose special ids disagree with the tokenizer is refused
    cfg = json.loads((gen / "config.json").read_text())
    (gen / "config.json").write_text(json.dumps(cfg | {"eol_token_id": cfg["eol_token_id"] + 1}))
    with pytest.raises(ValueError, match="eol_token_id"):
        load_pipeline(str(gen), str(vq), None)
    with pytest.raises(ValueError, match="--vq-path"):
        load_pipeline(str(gen), None, None)
