"""The candidate tree's parts outside the decode loop: its settings and flags, its node geometry against
parent pointers, its visibility rule against a brute-force walk up the tree, its cache slots and
sibling columns in the slot map, and the sibling draw keys."""
import argparse

import pytest
import torch

from common.zipar.config import (DEFAULT_TREE_DEPTH, DEFAULT_TREE_WIDTH, MAX_TREE_WIDTH, DecodeConfig,
                                 add_decode_args, decode_config_from_args)
from common.zipar.layout import Layout, SlotMap, TreeShape
from common.zipar.masks import tree_readable, visibility_mask
from common.zipar.sampling import (PURPOSE_ACCEPT, PURPOSE_SIBLING, PURPOSE_SIBLING_ACCEPT, draw_key_from,
                                   seed_key)
from common.zipar.tree_nodes import tree_nodes


@pytest.mark.parametrize("kwargs,needle", [
    (dict(draft_len=4, draft_tree_width=0), "--draft-tree-width must be in 1.."),
    (dict(draft_len=4, draft_tree_width=MAX_TREE_WIDTH + 1), "--draft-tree-width must be in 1.."),
    (dict(draft_tree_width=3), "needs --draft-len L > 0"),
    (dict(draft_len=4, draft_tree_width=3, draft_tree_depth=1), "must be in 2..5"),
    (dict(draft_len=2, draft_tree_width=2, draft_tree_depth=4), "must be in 2..3"),
])
def test_tree_settings_are_refused_with_the_flag_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace(".", r"\.")):
        DecodeConfig(**kwargs)


def test_tree_shape():
    assert DecodeConfig(draft_len=4).tree_shape == (1, 0)
    assert DecodeConfig(draft_len=4, draft_tree_width=1, draft_tree_depth=9).tree_shape == (1, 0)  # no tree
    assert DecodeConfig(draft_len=4, draft_tree_width=3, draft_tree_depth=5).tree_shape == (3, 4)


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_decode_args(parser, cfg_scale=1.0, top_k=0)
    return decode_config_from_args(parser.parse_args(argv))


def test_tree_flags():
    """On by default with row drafts (its depth at most L + 1), off without them; the flags shape it."""
    default = (DEFAULT_TREE_WIDTH, DEFAULT_TREE_DEPTH - 1)
    assert _parse(["--ntp", "--draft-len", "4"]).tree_shape == default
    assert _parse(["--ntp", "--draft-len", "4", "--draft-tree"]).tree_shape == default
    assert _parse(["--ntp", "--draft-len", "1"]).tree_shape == (DEFAULT_TREE_WIDTH, 1)
    assert _parse(["--ntp"]).tree_shape == (1, 0)
    assert _parse(["--ntp", "--draft-len", "4", "--draft-tree-width", "2", "--draft-tree-depth", "4"]).tree_shape == (2, 3)
    assert _parse(["--ntp", "--draft-len", "4", "--no-draft-tree"]).tree_shape == (1, 0)
    with pytest.raises(ValueError, match="need --draft-len N > 0"):
        _parse(["--ntp", "--draft-len", "4", "--no-draft-tree", "--draft-tree-width", "2"])
    with pytest.raises(ValueError, match="need --draft-len N > 0"):
        _parse(["--ntp", "--draft-tree-depth", "2"])
    with pytest.raises(ValueError, match="needs --draft-len"):
        _parse(["--ntp", "--draft-tree"])
    with pytest.raises(ValueError, match="must be in 2..2"):
        _parse(["--ntp", "--draft-len", "1", "--draft-tree-depth", "3"])


@pytest.mark.parametrize("width,depths", [(2, 1), (2, 3), (3, 2), (4, 1)])
def test_tree_nodes_follow_their_parents(width, depths):
    nodes = tree_nodes(width, depths)
    E = sum(width ** t for t in range(1, depths + 1))
    assert nodes.count == E == nodes.depth.shape[0]
    assert int(nodes.on_chain.sum()) == depths
    paths = {}  # node id -> its candidates, depth 1 first, built from the parent pointers alone
    for i in range(E):
        parent = int(nodes.parent[i])
        assert (parent < 0) == (int(nodes.depth[i]) == 1)
        paths[i] = (paths[parent] if parent >= 0 else ()) + (int(nodes.candidate[i]),)
        assert len(paths[i]) == int(nodes.depth[i])
    assert len(set(paths.values())) == E  # every path through the candidates once
    for i in range(E):
        assert nodes.on_chain[i] == all(c == 0 for c in paths[i])
        for j in range(E):
            assert bool(nodes.ancestors[i, j]) == (paths[i][:len(paths[j])] == paths[j]), (i, j)


def test_tree_visibility_reads_its_path_only():
    """tree_readable against a walk up the parent pointers: a query reads the slots of its own node and
    of every node above it on its path, in its own row, and nothing else (no sibling, no cousin, no
    other row's node, no slot without a node)."""
    width, depths, H = 3, 2, 3
    nodes = tree_nodes(width, depths)
    E = nodes.count
    g = torch.Generator().manual_seed(0)
    rows, Q, S = 2, 12, 20
    query_nodes = torch.randint(-1, H * E, (rows, Q), generator=g)
    slot_nodes = torch.randint(-1, H * E, (rows, S), generator=g)
    got = tree_readable(query_nodes, slot_nodes, nodes.ancestors)
    for b in range(rows):
        for q in range(Q):
            on_path = set()
            key = int(query_nodes[b, q])
            if key >= 0:
                row, i = divmod(key, E)
                while i >= 0:
                    on_path.add(row * E + i)
                    i = int(nodes.parent[i])
            for s in range(S):
                assert bool(got[b, q, s]) == (int(slot_nodes[b, s]) in on_path), (b, q, s)
    assert got.any() and not got.all()


def test_tree_reads_pass_the_position_rule_and_add_nothing_without_a_tree():
    live = torch.tensor([[True, False, False, False]])
    slot_pos, pos = torch.tensor([0, 1, 0, 0]), torch.tensor([[1, 1]])
    plain = visibility_mask(live, slot_pos, pos)
    tree = torch.zeros(1, 2, 4, dtype=torch.bool)
    tree[0, 1, 3] = True  # a node read by the second query, in a slot of position 0
    both = visibility_mask(live, slot_pos, pos, tree=tree)
    assert torch.equal(both, plain | tree)
    assert torch.equal(visibility_mask(live, slot_pos, pos, tree=torch.zeros_like(tree)), plain)


@pytest.mark.parametrize("end_of_row", [False, True])
def test_tree_slots_and_sibling_columns_are_new_and_never_regular(end_of_row):
    layout = Layout(4, 5, 2, end_of_row=end_of_row)
    plain = SlotMap.build(layout, "cpu")
    shape = TreeShape(width=3, depths=2, rows=2)
    tree = SlotMap.build(layout, "cpu", shape)
    E = shape.nodes
    assert E == 12 and shape.siblings == 4
    assert tree.num_slots == plain.num_slots + 2 * E and tree.scratch == tree.num_slots - 1
    assert tree.token_buffer_width == plain.token_buffer_width + 2 * 4
    n = plain.scratch  # every slot before the tree's keeps its place and position
    assert torch.equal(tree.slot_positions[:n], plain.slot_positions[:n])
    assert torch.equal(tree.regular[:n], plain.regular[:n]) and not tree.regular[n:].any()
    node_slots = tree.tree.node_slots(torch.arange(4))  # (H, E): rows 0 and 2 share ring entry 0
    assert torch.equal(node_slots[0], node_slots[2]) and not set(node_slots[0].tolist()) & set(node_slots[1].tolist())
    assert set(node_slots.flatten().tolist()) == set(range(n, n + 2 * E))
    columns = tree.tree.sibling_columns(torch.arange(4))  # (H, T, K-1)
    assert columns.shape == (4, 2, 2)
    assert set(columns.flatten().tolist()) == set(range(plain.token_buffer_width, tree.token_buffer_width))
    assert torch.equal(columns[1], columns[3]) and not set(columns[0].flatten().tolist()) & set(columns[1].flatten().tolist())
    with pytest.raises(ValueError, match="width >= 2"):
        TreeShape(width=1, depths=2, rows=1)


def test_sibling_keys_are_their_own():
    seeds = seed_key(torch.tensor([7, 8]))
    cells = torch.arange(6).expand(2, -1)
    plain = draw_key_from(seeds, cells, PURPOSE_ACCEPT, 3)
    assert torch.equal(draw_key_from(seeds, cells, PURPOSE_ACCEPT, 3, index=None), plain)
    keys = [draw_key_from(seeds, cells, purpose, 3, index=k) for purpose in (PURPOSE_SIBLING, PURPOSE_SIBLING_ACCEPT)
            for k in (1, 2, 3)]
    every = torch.stack([plain, *keys]).flatten().tolist()
    assert len(set(every)) == len(every)  # no two draws share a key
    batched = draw_key_from(seeds, cells[..., None], PURPOSE_SIBLING, 3, index=torch.tensor([1, 2, 3]))
    assert torch.equal(batched, torch.stack(keys[:3], dim=-1))
