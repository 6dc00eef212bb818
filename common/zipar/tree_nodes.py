"""The nodes of a row's candidate tree (common.zipar.draft_tree) and who reads whom: the tree's geometry,
a pure function of its width K and tree depths T, shared by the scheduler (one query per node), the
mask (common.zipar.masks.tree_readable) and the verification (draft_tree.verify_tree's layout).

A node is a path through the candidates of depths 1..t (t = 1..T), one per depth, written as its index
p in base K with depth 1 the most significant digit (verify_tree's `levels[t]` order). Its query is
fed the path's last candidate (candidate p % K of depth t, the row's cell count + t - 1) and yields
the distribution of depth t + 1 along the path. Node ids run depth by depth: node (t, p) is
K + K^2 + ... + K^(t-1) + p, E = K + ... + K^T nodes in all. The all-0 paths (p = 0) are the chain's
queries fed drafts 1..T (candidate 0 is the draft); every other node is a query of its own.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TreeNodes:
    """Per node (E,) int64 tensors, and the ancestor relation."""

    width: int  # K candidates per depth
    depths: int  # T tree depths
    depth: torch.Tensor  # t in 1..T: the node is fed the candidate of cell count + t - 1
    path: torch.Tensor  # p in [0, K^t): the index among depth t's paths
    candidate: torch.Tensor  # p % K: which candidate of depth t the node is fed
    parent: torch.Tensor  # the node fed the path's candidate of depth t - 1; -1 at depth 1 (its parent is
    # the query fed the row's last decided token)
    ancestors: torch.Tensor  # (E, E) bool: [i, j] node j lies on node i's path (i itself included)

    @property
    def count(self) -> int:
        """E = K + K^2 + ... + K^T."""
        return level_start(self.width, self.depths + 1)

    @property
    def on_chain(self) -> torch.Tensor:
        """(E,) bool: the all-0 paths, the chain's own queries."""
        return self.path == 0


def level_start(width: int, depth: int) -> int:
    """The id of node (depth, 0): K + K^2 + ... + K^(depth-1)."""
    return sum(width ** t for t in range(1, depth))


def tree_nodes(width: int, depths: int, device="cpu") -> TreeNodes:
    """The nodes of a tree of `width` candidates at each of `depths` depths."""
    depth, path, parent = [], [], []
    for t in range(1, depths + 1):
        for p in range(width ** t):
            depth.append(t)
            path.append(p)
            parent.append(level_start(width, t - 1) + p // width if t > 1 else -1)
    as_tensor = lambda v: torch.tensor(v, dtype=torch.int64, device=device)  # noqa: E731
    depth, path, parent = as_tensor(depth), as_tensor(path), as_tensor(parent)
    # j is on i's path iff depth_j <= depth_i and i's path cut to depth_j digits is j's path
    cut = path[:, None] // width ** (depth[:, None] - depth[None, :]).clamp(min=0)
    ancestors = (depth[None, :] <= depth[:, None]) & (cut == path[None, :])
    return TreeNodes(width=width, depths=depths, depth=depth, path=path, candidate=path % width, parent=parent, ancestors=ancestors)
