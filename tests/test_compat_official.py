"""compat="official" against outputs of the paper's released code (ThisisBillhe/ZipAR, LlamaGen-ZipAR,
generate_zipar.generate), stored by tests/data/make_official_golden.py: same tiny weights (a pure
function of the state-dict keys), greedy, two classes, cfg 1 and 2, 5x5 and 7x7 grids, every window.
Where the released code runs, tokens and forward calls must be equal; where it fails, compat must
either refuse with a clear error (w >= W) or follow its documented extension (w = 1)."""
import json
from pathlib import Path

import pytest
import torch

from common.zipar.config import DecodeConfig
from llamagen.generate import generate
from llamagen.model import GPTConfig, Transformer
from tests.data.make_official_golden import key_weights
from tests.helpers.llamagen import CountingModel

GOLDEN = json.loads((Path(__file__).parent / "data" / "official_golden.json").read_text())


def golden_model(grid: int) -> Transformer:
    m = GOLDEN["model"]
    cfg = GPTConfig(dim=m["dim"], n_layer=m["n_layer"], n_head=m["n_head"], multiple_of=m["multiple_of"],
                    vocab_size=m["vocab_size"], num_classes=m["num_classes"], cls_token_num=m["cls_token_num"])
    gpt = Transformer(cfg, grid_size=grid).eval()
    gpt.load_state_dict(key_weights({k: tuple(v.shape) for k, v in gpt.state_dict().items()}), strict=True)
    return gpt


def run_compat(case):
    grid = case["grid"]
    counting = CountingModel(golden_model(grid))
    config = DecodeConfig(window=case["window"], compat="official", cfg_scale=case["cfg_scale"], top_k=1)
    labels = torch.tensor(case["labels"])
    result = generate(counting, labels, torch.arange(len(labels)), config)
    return result.tokens.flatten(1), counting.calls


def test_golden_covers_grids_cfg_and_windows():
    ran = {(c["grid"], c["cfg_scale"], c["window"]) for c in GOLDEN["cases"] if "tokens" in c}
    for grid in (5, 7):
        for cfg in (1.0, 2.0):
            assert {w for g, s, w in ran if g == grid and s == cfg} == set(range(2, grid + 1))


@pytest.mark.parametrize("case", [c for c in GOLDEN["cases"] if "tokens" in c and c["window"] < c["grid"]],
                         ids=lambda c: f"{c['grid']}x{c['grid']}-cfg{c['cfg_scale']}-w{c['window']}")
def test_compat_reproduces_released_code(case):
    tokens, calls = run_compat(case)
    assert calls == case["forward_calls"]
    assert tokens.tolist() == case["tokens"]


def test_released_code_at_full_window_is_refused():
    """At w = W the released code copies row r-1's latest token into (r+1, 0) (fewer calls than NTP,
    golden tokens differ from w = W-1's); above W it fails. compat refuses both."""
    full = [c for c in GOLDEN["cases"] if c["window"] == c["grid"]]
    assert full and all(c["forward_calls"] < c["grid"] ** 2 for c in full)
    assert all("error" in c for c in GOLDEN["cases"] if c["window"] > c["grid"])
    for case in full + [c for c in GOLDEN["cases"] if c["window"] > c["grid"]]:
        with pytest.raises(ValueError, match="window < W"):
            run_compat(case)


def test_window_one_is_an_extension_of_the_released_rule():
    """The released code fails an assertion at w = 1; compat runs its rule there: 2W + (H-2) passes."""
    assert all("error" in c for c in GOLDEN["cases"] if c["window"] == 1)
    for grid in (5, 7):
        tokens, calls = run_compat({"grid": grid, "window": 1, "cfg_scale": 2.0, "labels": [3, 7]})
        assert calls == 2 * grid + (grid - 2)
        # row 0 is decoded serially, as by NTP: it must equal the golden w=2 run's row 0
        golden_w2 = next(c for c in GOLDEN["cases"] if (c["grid"], c["cfg_scale"], c["window"]) == (grid, 2.0, 2))
        assert tokens[:, :grid].tolist() == [row[:grid] for row in golden_w2["tokens"]]
