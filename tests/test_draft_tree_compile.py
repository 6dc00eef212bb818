"""The candidate tree compiles with the decode pass: one graph (no graph break, no recompilation across
passes or for a second decode) deciding the same tokens as the eager pass. That its step reads only
the model's parameters and tensors marked static (the tree's state and geometry included), as CUDA
graphs need, is tests/test_compile.py's check, run there with a tree."""
import torch

from common.zipar.config import DecodeConfig
from llamagen.generate import generate
from tests.helpers.llamagen import tiny_gpt
from tests.test_compile import assert_one_graph, compiled_and_eager

TREE = DecodeConfig(window=1, adaptive=True, draft_len=2, draft_ahead=True, draft_tree_width=2, draft_tree_depth=3,
                    cfg_scale=2.0, temperature=1.5, draft_init="random")


def test_compiled_tree_pass_is_one_graph_with_the_same_tokens():
    config = TREE
    gpt = tiny_gpt(5, seed=2)
    labels, seeds = torch.tensor([1, 5]), torch.tensor([0, 3])
    with torch.inference_mode():
        assert_one_graph(*compiled_and_eager(lambda compile: generate(gpt, labels, seeds, config, compile=compile)))

