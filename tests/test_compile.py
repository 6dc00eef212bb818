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
    """Every tensor the decode step reads (what a CUDA graph would hold), by name."""
    from common.zipar.step_buffers import step_tensors
    return {name: (o[k] if isinstance(o, list) else getattr(o, k)) for name, (o, k) in step_tensors(state).items()}


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


@pytest.mark.parametrize("config", [DecodeConfig(window=2, cfg_scale=2.0),
                                    DecodeConfig(window=1, adaptive=True, draft_len=2, draft_ahead=True,
                                                 placeholder="mean"),
                                    DecodeConfig(window=1, adaptive=True, draft_len=2, draft_ahead=True,
                                                 draft_tree_width=2, draft_tree_depth=3, cfg_scale=2.0,
                                                 temperature=1.5, draft_init="random")],
                         ids=["fixed", "adaptive-drafts-ahead", "adaptive-drafts-ahead-tree"])
def test_the_compiled_step_reads_only_parameters_and_static_tensors(config):
    """A CUDA graph copies every non-static tensor input into its memory on each replay (and skips graphs
    if one is mutated): list the captured step's tensor inputs and require each to be a model parameter
    or buffer or marked static (scheduler and slot-map constants included)."""
    gpt = tiny_gpt(5)
    own = {t.data_ptr() for t in [*gpt.parameters(), *gpt.buffers()]}
    inputs = []

    def spy(gm, example_inputs):
        for node in gm.graph.nodes:
            arg = node.meta.get("grapharg") if node.op == "placeholder" else None
            if arg is not None and isinstance(arg.example, torch.Tensor):
                inputs.append((arg.source.name, arg.example))
        return gm.forward
    torch._dynamo.reset()
    with torch.inference_mode():
        generate(gpt, torch.tensor([1, 5]), torch.tensor([0, 3]), config, compile=spy)
    assert inputs
    loose = [name for name, t in inputs
             if t.data_ptr() not in own and getattr(t, "_dynamo_static_input_type", None) is None]
    assert loose == [], loose


def test_a_second_decode_reuses_the_step_buffers():
    """With the caller's StepBuffers, a second decode of the same shape runs its step on the first one's
    tensors (the same addresses: a CUDA graph replays without recording) and compiles nothing new;
    its tokens are those of a decode without buffers."""
    from common.zipar.step_buffers import StepBuffers

    gpt = tiny_gpt(5)
    config = DecodeConfig(window=2, adaptive=True, cfg_scale=2.0, placeholder="mean")
    buffers, seen = StepBuffers(), []
    with torch.inference_mode():
        torch._dynamo.reset()
        counters.clear()
        for labels, seeds in ((torch.tensor([1, 5]), torch.tensor([0, 3])), (torch.tensor([7, 2]), torch.tensor([4, 9]))):
            result = generate(gpt, labels, seeds, config, compile="aot_eager", buffers=buffers)
            seen.append(({n: t.data_ptr() for n, t in buffers.tensors.items()}, dict(counters["stats"]), result))
        fresh = generate(gpt, torch.tensor([7, 2]), torch.tensor([4, 9]), config)
    (ptrs1, stats1, _), (ptrs2, stats2, second) = seen
    assert ptrs1 == ptrs2 and len(ptrs1) > 20
    assert stats1 == stats2 and stats1["unique_graphs"] == 1
    assert torch.equal(second.tokens, fresh.tokens) and second.image_passes == fresh.image_passes
    with pytest.raises(ValueError, match="another shape"):
        generate(gpt, torch.tensor([1]), torch.tensor([0]), config, compile="aot_eager", buffers=buffers)


def test_records_are_not_overwritten_by_later_passes():
    """A replayed CUDA graph writes every pass's outputs into the same memory. Simulated with a step that
    returns its outputs in fixed tensors: the records a caller kept still hold their own pass's values."""
    from common.zipar import engine
    from llamagen.generate import start

    gpt = tiny_gpt(5)
    config = DecodeConfig(window=2, cfg_scale=2.0)
    held = {}

    def replaying_step(model, state):  # outputs rewritten in place, as a graph replay does
        outputs = engine.decode_pass(model, state)
        for i, t in enumerate(outputs):
            if t is not None:
                held.setdefault(i, torch.empty_like(t)).copy_(t)
        return tuple(None if t is None else held[i] for i, t in enumerate(outputs))
    with torch.inference_mode():
        state = start(gpt, torch.tensor([1, 5]), torch.tensor([0, 3]), config)
        state.step, state.pass_sizes = replaying_step, None
        kept, snapshots = [], []
        for record in engine.decode_steps(gpt, state):
            kept.append(record)
            snapshots.append((record.logits.clone(), record.decided.clone(), record.batch.cells.clone()))
    assert len(kept) > 3
    for record, (logits, decided, cells) in zip(kept, snapshots):
        assert torch.equal(record.logits, logits) and torch.equal(record.decided, decided)
        assert torch.equal(record.batch.cells, cells)


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
