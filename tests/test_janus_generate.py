"""Janus-Pro on the engine (janus/pipeline.py, janus/generate.py), tiny random model: NTP parity against an
independent uncached loop (sampled, with CFG), every logit against an uncached forward over what its query
saw (prompts of different lengths, both CFG branches, fixed and adaptive windows, row drafts), fed tokens
decided, batch invariance, the serial first row's pass count 2W + (H-2)w, and the CLI."""
import json

import pytest
import torch
from PIL import Image

from common.zipar.config import DecodeConfig
from common.zipar.engine import decode
from common.zipar.sampling import PURPOSE_TOKEN, draw_key, filter_logits, guide, sample_logits
from common.zipar.window import num_passes
from janus.generate import cli
from janus.pipeline import JanusPipeline, load_pipeline
from tests.helpers.llamagen import CountingModel
from tests.helpers.processes import run_python
from tests.oracle import full_forward, oracle_error, record_passes

PROMPTS = ["a red cube", "a blue cat on a mat in the snow at night"]


@pytest.fixture(scope="module")
def pipe() -> JanusPipeline:
    p = load_pipeline(None, None, "tiny", random_init=True, seed=0)
    from janus.model import random_init_janus_
    random_init_janus_(p.model, 7, std=0.15)  # larger weights: peaked, non-uniform distributions
    return p


SIZE = 384  # the tiny preset: 6 x 6 codes decoded to 384 px


@torch.inference_mode()
def reference_ntp(pipe: JanusPipeline, prompts, seeds, config: DecodeConfig) -> torch.Tensor:
    """Plain NTP written independently of the engine: every row (prompt, and its unconditional prompt with CFG)
    unpadded at positions 0.., the whole sequence re-run each step, codes entering through the adapter."""
    H, W = pipe.grid(SIZE)
    rows = [pipe.prompt_ids(p, SIZE) for p in prompts]
    if config.uses_cfg:
        rows += [pipe.unconditional_ids(r, SIZE) for r in rows]
    B = len(prompts)
    tokens = torch.zeros(B, H * W, dtype=torch.int64)
    for n in range(H * W):
        last = []
        for m, ids in enumerate(rows):
            x = torch.cat([pipe.model.embed_text(torch.tensor(ids)[None]),
                           pipe.model.embed_tokens(tokens[m % B, :n][None])], dim=1)
            L = x.shape[1]
            last.append(full_forward(pipe.model, x, torch.arange(L)[None], torch.ones(L, L, dtype=torch.bool).tril()[None])[0, -1])
        z = torch.stack(last)
        if config.uses_cfg:
            z = guide(z[:B], z[B:], config.cfg_scale)
        z = filter_logits(z, config.temperature, config.top_k, config.top_p)
        tokens[:, n] = sample_logits(z, draw_key(seeds, torch.full((B, 1), n), PURPOSE_TOKEN)[:, 0])
    return tokens.view(B, H, W)


@pytest.mark.parametrize("cfg_scale,top_k,top_p", [(5.0, 0, 1.0), (1.0, 0, 1.0), (3.0, 8, 0.9)])
def test_full_window_reproduces_ntp(pipe, cfg_scale, top_k, top_p):
    seeds = torch.tensor([5, 2**33 + 1])
    H, W = pipe.grid(SIZE)
    ref = reference_ntp(pipe, PROMPTS, seeds, DecodeConfig(cfg_scale=cfg_scale, top_k=top_k, top_p=top_p))
    assert len(set(ref.flatten().tolist())) > 3  # not a degenerate model
    for window in (None, W, W + 4):
        config = DecodeConfig(window=window, cfg_scale=cfg_scale, top_k=top_k, top_p=top_p)
        result = pipe.generate(PROMPTS, seeds, config, SIZE)
        assert torch.equal(result.tokens, ref), window
        assert result.forward_passes == H * W


CONFIGS = [DecodeConfig(window=1, cfg_scale=5.0), DecodeConfig(window=2, cfg_scale=3.0, top_k=10),
           DecodeConfig(window=3, cfg_scale=5.0, first_row="early"),
           DecodeConfig(window=1, adaptive=True, cfg_scale=5.0), DecodeConfig(window=2, placeholder="above"),
           DecodeConfig(window=2, cfg_scale=5.0, draft_len=2), DecodeConfig(window=2, draft_len=3, draft_ahead=True),
           DecodeConfig(window=1, adaptive=True, draft_len=2, cfg_scale=5.0)]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("unconditional", ["release", "transformers"])
def test_oracle_and_fed_tokens(pipe, config, unconditional):
    """Two prompts of different lengths and (with CFG) their unconditional prompts: every logit the engine
    sampled from equals an uncached forward over exactly what its query saw; every query was fed a token
    decided in an earlier pass or the placeholder (record_passes checks it)."""
    pipe = JanusPipeline(pipe.config, pipe.model, pipe.vq, pipe.tokenizer, pipe.ids, unconditional)
    H, W = pipe.grid(SIZE)
    condition, layout = pipe.condition(PROMPTS, SIZE, config)
    assert not layout.end_of_row and pipe.fixed_row(H) is None
    with torch.inference_mode():
        state, passes = record_passes(pipe.coded, layout, config, condition, torch.tensor([3, 4]))
        assert oracle_error(pipe.coded, condition, passes) <= 1e-4
    if not config.per_image_schedule:
        w = config.window
        expected = (H - 1) * w + W if config.first_row == "early" else 2 * W + (H - 2) * w
        assert len(passes) == expected


@pytest.mark.parametrize("config", [DecodeConfig(window=2, cfg_scale=5.0),
                                    DecodeConfig(window=1, adaptive=True, cfg_scale=5.0),
                                    DecodeConfig(window=2, cfg_scale=5.0, draft_len=2)])
def test_batch_invariance(pipe, config):
    prompts = PROMPTS + ["a fox"]
    seeds = torch.tensor([10, 20, 30])
    batched = pipe.generate(prompts, seeds, config, SIZE).tokens
    for i in range(3):
        assert torch.equal(pipe.generate(prompts[i:i + 1], seeds[i:i + 1], config, SIZE).tokens[0], batched[i])
    perm = [2, 0, 1]
    assert torch.equal(pipe.generate([prompts[i] for i in perm], seeds[perm], config, SIZE).tokens, batched[perm])
    assert not torch.equal(batched[0], batched[1])


def test_forward_passes_serial_first_row(pipe):
    """No end-of-row tokens: row 1 opens once row 0 is complete, 2W + (H-2)w passes (24 x 24 at 384 px:
    2*24 + 22*16 = 400 at w = 16, 224 at w = 8, 576 for NTP = the release's loop)."""
    H, W = pipe.grid(SIZE)
    for window, expected in ((1, 2 * W + (H - 2)), (3, 2 * W + 3 * (H - 2)), (None, H * W)):
        config = DecodeConfig(window=window, cfg_scale=5.0)
        condition, layout = pipe.condition(PROMPTS, SIZE, config)
        counting = CountingModel(pipe.coded)
        with torch.inference_mode():
            result = decode(counting, condition, torch.tensor([0, 1]), layout, config, None)
        assert counting.calls == result.forward_passes == expected
    big = pipe.layout(SIZE, 1).__class__(rows=24, cols=24, prefix_len=1, family="janus")
    assert (num_passes(big, 16), num_passes(big, 8), num_passes(big, None)) == (400, 224, 576)
    assert pipe.ntp_passes_official(24, 24) == 576


def test_compat_official_is_refused(pipe):
    with pytest.raises(ValueError, match="not for 'janus'"):
        pipe.generate(PROMPTS[:1], torch.tensor([0]), DecodeConfig(window=2, compat="official"), SIZE)


def test_sequence_and_images(pipe):
    result = pipe.generate(PROMPTS, torch.tensor([1, 2]), DecodeConfig(window=2, cfg_scale=5.0), SIZE)
    assert torch.equal(pipe.sequence_ids(result.tokens), result.tokens.flatten(1))
    images = pipe.decode_images(result.tokens)
    assert images.shape == (2, 3, SIZE, SIZE) and images.dtype == torch.float32
    with pytest.raises(ValueError, match="384 x 384 px"):
        pipe.grid(512)


def test_cli_random_init_end_to_end(tmp_path):
    """The command of the docs: --window 3 on the tiny 6 x 6 grid takes 2W + (H-2)w = 24 passes."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\na blue bird\n")
    out = run_python(["-m", "janus.generate", "--random-init", "--config", "tiny", "--prompt", "a red cube",
                      "--prompts-file", str(prompts), "--window", "3", "--out-dir", str(tmp_path / "out"), "--json"])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    H, W, w = 6, 6, 3
    assert report["grid"] == [H, W] and report["first_row"] == "serial"
    assert report["forward_passes"] == 2 * W + (H - 2) * w == 24
    assert report["ntp_passes"] == report["ntp_passes_official"] == H * W
    assert len(report["files"]) == 3
    for f in report["files"]:
        with Image.open(f) as im:
            assert im.size == (SIZE, SIZE)


@pytest.mark.parametrize("argv,message", [
    (["--size", "512"], "--size 512"),
    (["--window", "0"], "window"),
    (["--draft-len", "9"], "--draft-len 9 on a grid 6 tokens wide"),
    (["--compat", "official"], "not for 'janus'"),
    (["--unconditional", "none"], "invalid choice"),
])
def test_cli_bad_input_is_a_clear_error(tmp_path, capsys, argv, message):
    code = None
    try:
        code = cli(["--random-init", "--config", "tiny", "--prompt", "x", "--out-dir", str(tmp_path), "--quiet", *argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_wrong_folder_is_one_line(tmp_path, capsys):
    torch.save({"transformer.wte.weight": torch.zeros(2, 2)}, tmp_path / "pytorch_model.bin")
    assert cli(["--model-path", str(tmp_path), "--prompt", "x", "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither deepseek-ai/Janus-Pro keys" in err
    assert cli(["--prompt", "x", "--out-dir", str(tmp_path / "o")]) == 2
    assert "--random-init" in capsys.readouterr().err


def test_cli_vocabulary_is_emu3s():
    """The same flags as emu3.generate (its shared, runtime and decoding flags, declared the same way), but for
    Emu3's own --ratio and --vq-path, plus Janus's --size and --unconditional."""
    import argparse

    from emu3.generate import build_parser as emu3_parser
    from janus.generate import build_parser

    def options(parser):
        return {f: a for f, a in parser._option_string_actions.items() if a.help != argparse.SUPPRESS}

    ours, emu3 = options(build_parser()), options(emu3_parser())
    assert set(ours) == set(emu3) - {"--ratio", "--vq-path"} | {"--size", "--unconditional"}
    for flag in set(ours) & set(emu3):
        assert (ours[flag].metavar, ours[flag].choices, ours[flag].nargs) == \
               (emu3[flag].metavar, emu3[flag].choices, emu3[flag].nargs), flag
