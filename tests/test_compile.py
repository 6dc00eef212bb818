"""The decode pass compiles as one graph: torch.compile(fullgraph=True) captures it without graph
breaks, once per decode shape (no recompilation across the passes of a decode, nor for a second
decode of the same shape), and the compiled pass decides the same tokens as the eager one, for
fixed and adaptive windows. The tests use the aot_eager backend (dynamo's capture plus AOTAutograd's
functionalised graph, run by eager kernels) to stay fast on CPU; inductor's code generation is
exercised by `benchmarks/latency.py --compile`."""
import pytest
import torch
from torch._dynamo.utils import counters

from common.zipar.condition import Condition
from common.zipar.config import DecodeConfig
from common.zipar.engine import decode
from common.zipar.layout import Layout
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
    DecodeConfig(window=1, draft_len=2, draft_ahead=True, temperature=1.5),
], ids=["fixed", "adaptive-mean", "compat", "ntp", "fixed-drafts", "adaptive-drafts", "fixed-drafts-ahead"])
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


def state_tensors(state) -> dict:
    """Every tensor a decode pass reads or updates between passes (what a CUDA graph would hold)."""
    from dataclasses import fields
    out = {f"schedule.{f.name}": getattr(state.schedule, f.name) for f in fields(state.schedule)}
    out.update({name: getattr(state, name) for name in ("tokens", "draws", "opener_probs", "seeds")
                if getattr(state, name) is not None})
    if state.row_drafts is not None:
        out.update({f"row_drafts.{f.name}": getattr(state.row_drafts, f.name) for f in fields(state.row_drafts)})
    out.update({f"cache.keys.{i}": k for i, k in enumerate(state.cache.keys)})
    out.update({f"cache.values.{i}": v for i, v in enumerate(state.cache.values)})
    return out


@pytest.mark.parametrize("config", [DecodeConfig(window=2, cfg_scale=2.0), DecodeConfig(window=1, adaptive=True),
                                    DecodeConfig(window=2, adaptive=True, draft_len=2, placeholder="mean")],
                         ids=["fixed", "adaptive", "adaptive-drafts"])
def test_decode_state_lives_at_static_addresses(config):
    """CUDA graphs replay kernels on fixed memory: every state tensor keeps its storage from the first
    decode pass to the last (updated in place), and the padded step runs every pass at one shape."""
    from common.zipar.engine import decode_steps, start_decode
    from llamagen.generate import condition_prefix, layout_for

    gpt = tiny_gpt(5)
    labels, seeds = torch.tensor([1, 5]), torch.tensor([0, 3])
    state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout_for(gpt), config, compile="eager")
    with torch.inference_mode():
        steps = decode_steps(gpt, state)
        next(steps)  # the prefix pass allocates the drafts' buffers
        before = {name: (t.data_ptr(), tuple(t.shape)) for name, t in state_tensors(state).items()}
        # and every state tensor is marked static for dynamo, without a guard (inductor replays CUDA graphs
        # that mutate their inputs only if those are static; a new decode re-records, never recompiles)
        static = {name: getattr(t, "_dynamo_static_input_type", None) for name, t in state_tensors(state).items()}
        assert set(static.values()) == {"unguarded"}, static
        shapes = {tuple(r.batch.slots.shape) for r in steps}
    after = {name: (t.data_ptr(), tuple(t.shape)) for name, t in state_tensors(state).items()}
    assert after == before
    assert len(shapes) == 1


def test_cuda_graphs_compile_inductor_in_reduce_overhead_mode(monkeypatch):
    """--cuda-graphs asks torch.compile for mode="reduce-overhead" (inductor + CUDA graphs), fullgraph and
    static shapes; the CUDA-graph replay itself needs a GPU (benchmarks/gpu_suite.py reports it). Here
    the request is checked and the step run by aot_eager in its place: the same tokens."""
    from common.zipar import engine

    seen, real_compile = [], torch.compile

    def spy(fn, **kwargs):
        seen.append(kwargs)
        return real_compile(fn, fullgraph=True, dynamic=False, backend="aot_eager")
    monkeypatch.setattr(engine.torch, "compile", spy)
    gpt = tiny_gpt(5)
    config = DecodeConfig(window=2, adaptive=True, cfg_scale=2.0)
    labels, seeds = torch.tensor([1, 5]), torch.tensor([0, 3])
    torch._dynamo.reset()
    with torch.inference_mode():
        eager = generate(gpt, labels, seeds, config)
        graphs = generate(gpt, labels, seeds, config, compile=engine.CUDA_GRAPHS)
    assert seen == [dict(fullgraph=True, dynamic=False, mode="reduce-overhead")]
    assert torch.equal(graphs.tokens, eager.tokens) and graphs.image_passes == eager.image_passes
