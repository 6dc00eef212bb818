"""The decode pass compiles as one graph: torch.compile(fullgraph=True) captures it without graph
breaks, once per decode shape (no recompilation across the passes of a decode, nor for a second
decode of the same shape), and the compiled pass decides the same tokens as the eager one, for
fixed and adaptive windows. The tests use the aot_eager backend (dynamo's capture plus AOTAutograd's
functionalised graph, run by eager kernels) to stay fast on CPU; inductor's code generation is
exercised by `benchmarks/latency.py --compile`."""
import pytest
import torch
from torch._dynamo.utils import counters

from common.condition import Condition
from common.config import DecodeConfig
from common.engine import decode
from common.schedule import Layout
from llamagen.checkpoint import load_gpt_weights
from llamagen.generate import generate
from llamagen.model import Transformer, gpt_config
from llamagen.demo_data import GRID
from llamagen.presets import DEMO
from tests.helpers.llamagen import tiny_gpt


def compiled_and_eager(run, twice=True):
    torch._dynamo.reset()
    counters.clear()
    eager = run(False)
    compiled = [run("aot_eager") for _ in range(2 if twice else 1)]  # a second decode reuses the graph
    return eager, compiled


def assert_one_graph(eager, compiled):
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 1
    for result in compiled:
        assert torch.equal(result.tokens, eager.tokens)
        assert result.image_passes == eager.image_passes
        assert result.rejections == eager.rejections
        assert result.row_tokens_per_pass == eager.row_tokens_per_pass


@pytest.mark.parametrize("config", [
    DecodeConfig(window=2, cfg_scale=2.0, top_k=10, top_p=0.9),
    DecodeConfig(window=2, adaptive=True, cfg_scale=3.0, placeholder="mean"),
    DecodeConfig(window=3, compat="official"),
    DecodeConfig(window=None, cfg_scale=2.0, cfg_interval=4),
    DecodeConfig(window=2, draft_len=3, temperature=1.5),
    DecodeConfig(window=1, adaptive=True, draft_len=2, cfg_scale=2.0),
], ids=["fixed", "adaptive-mean", "compat", "ntp", "fixed-drafts", "adaptive-drafts"])
def test_compiled_pass_is_one_graph_with_the_same_tokens(config):
    gpt = tiny_gpt(5)
    labels, seeds = torch.tensor([1, 5, 7]), torch.tensor([0, 3, 9])
    with torch.inference_mode():
        results = compiled_and_eager(lambda compile: generate(gpt, labels, seeds, config, compile=compile))
    assert_one_graph(*results)


def test_compiled_pass_with_padded_prefix_and_end_of_row_tokens():
    gpt = tiny_gpt(5, preset="GPT-tiny-gqa", cls_token_num=3)
    layout = Layout(4, 5, 3, end_of_row=True)
    config = DecodeConfig(window=2, adaptive=True, cfg_scale=2.0)
    embeddings = gpt.embed_condition(torch.tensor([1, 2, 10, 10]))
    valid = torch.tensor([[False, True, True], [True, True, True], [True, True, True], [False, False, True]])
    condition = Condition(embeddings, valid, torch.tensor([1, 0, 0, 2]))
    with torch.inference_mode():
        results = compiled_and_eager(lambda compile: decode(gpt, condition, torch.tensor([4, 5]), layout, config,
                                                            torch.full((4,), 63), compile=compile))
    assert_one_graph(*results)


def test_compiled_pass_on_the_demo_model():
    """Adaptive windows (a per-image schedule) at the demo's real sizes; fixed ones: the tiny tests."""
    gpt = Transformer(gpt_config("demo"), grid_size=GRID).eval()
    load_gpt_weights(gpt, DEMO.gpt_ckpt, "demo")
    config = DecodeConfig(window=4, adaptive=True, cfg_scale=DEMO.cfg_scale, temperature=DEMO.temperature)
    labels, seeds = torch.tensor([3, 8]), torch.tensor([0, 1])
    with torch.inference_mode():
        results = compiled_and_eager(lambda compile: generate(gpt, labels, seeds, config, compile=compile), False)
    assert_one_graph(*results)
