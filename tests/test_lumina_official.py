"""compat="official" for Lumina-mGPT against outputs of the paper's released code (ThisisBillhe/ZipAR,
Lumina-mGPT-ZipAR), stored by tests/data/make_lumina_official_golden.py: the same tiny Chameleon (a pure
function of the state-dict keys, run in float64 on both sides), greedy, 48 x 48 tokens, windows 2, 3, 14,
48 and 49 in the release's numbering, cfg 1 and 3, the model loaded as released (sdpa config:
bidirectional prompt prefill) and with attn_implementation="eager" (causal prefill). Tokens must be equal on every cell and forward calls equal
to ours plus the release's header passes. Each of the rule's four differences from our defaults
(common.zipar.official: window numbering, header passes, unconditional branch, prompt attention) is needed:
without any one of them these tests fail."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from common.zipar.config import DecodeConfig
from common.zipar.engine import start_decode
from common.models.llama import LlamaConfig, LlamaDecoder
from common.zipar.official import OFFICIAL_RULES, prompt_attention
from lumina_mgpt.generate import cli
from lumina_mgpt.pipeline import LuminaPipeline
from lumina_mgpt.prompt import special_ids
from lumina_mgpt.vqgan import ChameleonVQGAN, VQGANConfig
from tests.data.make_lumina_official_golden import chameleon_weights
from tests.helpers.llamagen import CountingModel
from tests.helpers.lumina import chameleon_id_tokenizer

GOLDEN = torch.load(Path(__file__).parent / "data" / "lumina_official_golden.pt")
RAN = [c for c in GOLDEN["cases"] if "tokens" in c]
ATTENTION = {"sdpa": None, "eager": "causal"}  # how the release was loaded -> our prompt_attention


@pytest.fixture(scope="module")
def pipe() -> LuminaPipeline:
    m = GOLDEN["model"]
    model = LlamaDecoder(LlamaConfig(vocab_size=m["vocab_size"], dim=m["hidden_size"], n_layers=m["num_hidden_layers"],
                                     n_heads=m["num_attention_heads"], n_kv_heads=m["num_key_value_heads"],
                                     ffn_hidden=m["intermediate_size"], qk_norm_heads=1))
    model.load_state_dict(chameleon_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}), strict=True)
    model.to(getattr(torch, GOLDEN["dtype"]))  # as the release ran: no float32 near-tie decides a token
    # a VQGAN with Chameleon's 8192 codes, never decoded here
    vq = ChameleonVQGAN(VQGANConfig(embed_dim=32, n_embed=8192, z_channels=32, ch=32, ch_mult=(1, 1, 2),
                                    num_res_blocks=1))
    tokenizer = chameleon_id_tokenizer()
    return LuminaPipeline(model.eval(), vq, tokenizer, special_ids(tokenizer), resolution=768)


def run_compat(pipe, cases):
    """Our compat decode of the golden cases' prompts as one batch -> (vocabulary ids (B, H, W), forward
    calls of the release for it: ours plus its header passes)."""
    case = cases[0]
    config = DecodeConfig(window=case["window"], compat="official", cfg_scale=case["cfg_scale"], top_k=1,
                          prompt_attention=ATTENTION[case["prefill"]])
    for c in cases:
        assert pipe.prompt_ids(c["prompt"], GOLDEN["size"])[:-3] == c["prompt_ids"]  # the release's prompt
    coded = pipe.coded
    pipe.coded = counting = CountingModel(coded)
    try:
        result = pipe.generate([c["prompt"] for c in cases], torch.arange(len(cases)), config, GOLDEN["size"])
    finally:
        pipe.coded = coded
    assert result.forward_passes == counting.calls
    return coded.to_vocab(result.tokens), counting.calls + OFFICIAL_RULES["lumina-mgpt"].header_passes


def case_id(c):
    return f"{c['prefill']}-cfg{c['cfg_scale']}-w{c['window']}-{c['prompt'].replace(' ', '_')}"


def test_golden_covers_windows_cfg_and_prefills():
    assert GOLDEN["transformers"] == "4.44.2" and tuple(GOLDEN["size"]) == (768, 768)
    ran = {(c["prefill"], c["cfg_scale"], c["window"]) for c in RAN}
    assert ran == {(p, s, w) for p in ("sdpa", "eager") for s in (1.0, 3.0) for w in (2, 3, 14, 48, 49)}
    # the release's image passes: (H-1)(w-1) + W, plus BOI, H and W in a pass each
    assert all(c["forward_calls"] == 47 * (c["window"] - 1) + 48 + 3 for c in RAN)


# the two widest windows (about 2,300 passes each, most of this file's time) run two of the four (prefill, cfg)
# pairs each, together every prefill and every cfg at each window; every pair runs at windows 2, 3 and 14
WIDE = {48: {("sdpa", 3.0), ("eager", 1.0)}, 49: {("sdpa", 1.0), ("eager", 3.0)}}


def single_prompt_cases() -> list[dict]:
    return [c for c in RAN if c["prompt"] == RAN[0]["prompt"]
            and (c["window"] not in WIDE or (c["prefill"], c["cfg_scale"]) in WIDE[c["window"]])]


def test_the_cases_run_cover_every_window_prefill_and_cfg():
    run = {(c["prefill"], c["cfg_scale"], c["window"]) for c in single_prompt_cases()}
    for w in (2, 3, 14, 48, 49):
        assert {p for p, _, x in run if x == w} == {"sdpa", "eager"} and {s for _, s, x in run if x == w} == {1.0, 3.0}
    for p in ("sdpa", "eager"):
        for s in (1.0, 3.0):
            windows = {w for q, t, w in run if (q, t) == (p, s)}
            assert windows >= {2, 3, 14} and windows & {48, 49}


@pytest.mark.parametrize("case", single_prompt_cases(), ids=case_id)
def test_compat_reproduces_released_code(pipe, case):
    tokens, calls = run_compat(pipe, [case])
    assert calls == case["forward_calls"]
    assert torch.equal(tokens[0], case["tokens"].long())


def test_prefills_and_branches_matter():
    """The golden outputs tell the variants apart (else the tests above could not see a reverted rule)."""
    by = {(c["prefill"], c["cfg_scale"], c["window"], c["prompt"]): c["tokens"] for c in RAN}
    prompt = RAN[0]["prompt"]
    for w in (2, 14, 49):
        for cfg in (1.0, 3.0):
            assert not torch.equal(by["sdpa", cfg, w, prompt], by["eager", cfg, w, prompt])
        assert not torch.equal(by["sdpa", 1.0, w, prompt], by["sdpa", 3.0, w, prompt])


@pytest.mark.parametrize("window,cfg_scale", [(14, 3.0), (3, 3.0), (14, 1.0)])
@pytest.mark.parametrize("prefill", ["sdpa", "eager"])
def test_a_batch_of_prompts_of_different_lengths(pipe, window, cfg_scale, prefill):
    """Our extension: the release runs one prompt at a time; a left-padded batch gives each its tokens."""
    cases = [c for c in RAN if (c["window"], c["cfg_scale"], c["prefill"]) == (window, cfg_scale, prefill)]
    assert len(cases) == 2 and len(cases[0]["prompt_ids"]) != len(cases[1]["prompt_ids"])
    tokens, calls = run_compat(pipe, cases)
    assert calls == cases[0]["forward_calls"]
    for got, case in zip(tokens, cases):
        assert torch.equal(got, case["tokens"].long())


@pytest.mark.parametrize("window", [1, 50])
def test_windows_the_release_fails_at_are_refused(pipe, window):
    failed = [c for c in GOLDEN["cases"] if c["window"] == window]
    assert failed and all("error" in c for c in failed)
    with pytest.raises(ValueError, match=r"zipar_window_size, 2 <= window <= W \+ 1 = 49"):
        run_compat(pipe, failed[:1])


def test_the_engine_refuses_a_prefix_against_the_prompt_attention(pipe):
    """A bidirectional prompt is the pipeline's to mark (Condition.bidirectional); the engine checks that
    the condition it gets matches the rule instead of decoding with the wrong prefill."""
    config = DecodeConfig(window=14, compat="official")
    condition, layout = pipe.condition(["a cat"], GOLDEN["size"], replace(config, prompt_attention="causal"))
    with pytest.raises(ValueError, match="bidirectional slots"):
        start_decode(pipe.coded, condition, torch.tensor([0]), layout, config, pipe.fixed_row(layout.rows))


def test_prompt_attention_is_a_compat_choice():
    with pytest.raises(ValueError, match="use it with --compat official"):
        DecodeConfig(window=14, prompt_attention="causal")
    with pytest.raises(ValueError, match="runs causal prompt attention"):  # LlamaGen's release: causal only
        prompt_attention("llamagen", "official", "bidirectional")
    assert prompt_attention("lumina-mgpt", "official", None) == "bidirectional"
    assert prompt_attention("lumina-mgpt", None, None) == "causal"


def test_cli_reports_the_released_counts(tmp_path, capsys):
    """The released code at zipar_window_size 14: 47 * 13 + 48 = 659 image passes, 662 forward calls."""
    rc = cli(["--random-init", "--config", "tiny", "--width", "768", "--height", "768", "--prompt", "a",
              "--prompt", "b", "--compat", "official", "--window", "14", "--json", "--out-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out)
    assert report["image_passes"] == [659, 659] and report["forward_passes"] == 659
    assert (report["official_window"], report["window"]) == (14, 13)
    assert (report["header_passes"], report["official_forward_passes"]) == (3, 662)
    assert report["prompt_attention"] == "bidirectional"
