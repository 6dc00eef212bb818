"""Where a decode's tokens sit: the sequence layout (`Layout`) and the slot map built from it
(`SlotMap`: cache slots, their positions and grid rows, and the token buffer's columns). Fixed for
a whole decode; the window rule (common.zipar.window) and the scheduler's per-pass state
(common.zipar.scheduler) are built on it.

Slots (= cache indices), per model-batch row:
  [0, T)                       condition prefix
  T + r*stride + c             grid cell (r, c); c == W is row r's end-of-row token (if any)
  opener_base + r - 1          the placeholder opener of row r (layouts without end-of-row tokens;
                               with them, openers write the end-of-row slot itself)
  tree_base + (r % R)*E + n    candidate-tree node n of row r (common.zipar.tree_nodes; R rows of
                               E nodes, only with a tree): written every pass a tree runs, never live
  scratch                      written by padding, never live
A slot's position is that of the cell it belongs to (openers: the position predicting (r, 0)); tree
slots have position 0: they are read by the tree rule alone (common.zipar.masks.tree_readable), never
by position.
Token buffer columns: the N = H*W grid cells in raster order, the H end-of-row tokens (if any), the
placeholder column (a fixed code fed to openers), the trash column (decided by padding), then with a
tree the siblings (r % R, depth t, candidate k >= 1) at sibling_base + ((r % R)*T + t - 1)*(K-1) + k - 1.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """Where image tokens sit in the sequence.

    prefix_len condition slots come first; then H rows of W content tokens, each row followed by
    one fixed end-of-row token when `end_of_row` (Lumina-mGPT, Emu3), not for LlamaGen. `family` names
    the model family, whose released code compat="official" reproduces (common.zipar.official).
    """

    rows: int
    cols: int
    prefix_len: int
    end_of_row: bool = False
    family: str | None = None

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"grid must be at least 1x1, got {self.rows}x{self.cols}")
        if self.prefix_len < 1:
            raise ValueError(f"prefix_len must be >= 1 (the last prefix slot predicts the first token), got {self.prefix_len}")

    @property
    def num_cells(self) -> int:
        return self.rows * self.cols

    @property
    def row_stride(self) -> int:
        return self.cols + int(self.end_of_row)

    def cell_position(self, r: int, c: int) -> int:
        """Sequence position (and cache slot) of grid cell (r, c); c == cols is the end-of-row token."""
        return self.prefix_len + r * self.row_stride + c



@dataclass(frozen=True)
class TreeShape:
    """A candidate tree (common.zipar.draft_tree): `width` K candidates at each of a row's first `depths`
    T drafts, run by up to `rows` R rows at once (a ring: row r uses entry r % R)."""

    width: int
    depths: int
    rows: int

    def __post_init__(self):
        if self.width < 2 or self.depths < 1 or self.rows < 1:
            raise ValueError(f"a candidate tree has width >= 2, depths >= 1 and rows >= 1, got {self}")

    @property
    def nodes(self) -> int:
        """E = K + K^2 + ... + K^T: the paths through a row's tree, one query each (the all-0 paths
        are the chain's queries fed drafts 1..T; they have cache slots here too, unused)."""
        return sum(self.width ** t for t in range(1, self.depths + 1))

    @property
    def siblings(self) -> int:
        """Sibling columns per ring row: (K - 1) at each of the T depths."""
        return self.depths * (self.width - 1)


@dataclass(frozen=True)
class TreeSlots:
    """Where a candidate tree's entries and siblings sit (see the module docstring)."""

    shape: TreeShape
    slot_base: int  # the cache slot of ring row 0's node 0
    sibling_base: int  # the token-buffer column of ring row 0's depth-1 sibling 1

    def node_slots(self, rows: torch.Tensor) -> torch.Tensor:
        """(..., E) the cache slot of each tree node of grid rows `rows` (...)."""
        E = self.shape.nodes
        return self.slot_base + (rows % self.shape.rows)[..., None] * E + torch.arange(E, device=rows.device)

    def sibling_columns(self, rows: torch.Tensor) -> torch.Tensor:
        """(..., T, K-1) the token-buffer column of each sibling of grid rows `rows` (...)."""
        K, T = self.shape.width, self.shape.depths
        first = self.sibling_base + (rows % self.shape.rows) * self.shape.siblings
        return first[..., None, None] + torch.arange(T * (K - 1), device=rows.device).view(T, K - 1)


@dataclass(frozen=True)
class SlotMap:
    """The slot geometry of one decode (see the module docstring), on the decode device."""

    layout: Layout
    opener_base: int  # first placeholder-opener slot (one past the grid's, end-of-row tokens included)
    scratch: int  # the slot padding writes, never live
    placeholder_column: int  # token-buffer column holding a fixed placeholder code
    trash: int  # token-buffer column that padding decides
    cell_start: torch.Tensor  # (H,) slot of (r, 0)
    slot_positions: torch.Tensor  # (S,) sequence position of each slot
    slot_rows: torch.Tensor  # (S,) grid row of each cell slot, H for every other slot
    slot_cols: torch.Tensor  # (S,) grid column of each cell slot, 0 for every other slot
    regular: torch.Tensor  # (S,) bool: prefix and grid slots (not openers, tree nodes or scratch)
    tree: TreeSlots | None = None  # the candidate tree's slots and sibling columns (None without a tree)

    @classmethod
    def build(cls, layout: Layout, device, tree: "TreeShape | None" = None) -> "SlotMap":
        """tree: the candidate tree's shape and the rows that may run one at once, or None."""
        H, W, T = layout.rows, layout.cols, layout.prefix_len
        opener_base = T + H * layout.row_stride
        tree_base = opener_base + (0 if layout.end_of_row else max(H - 1, 0))
        scratch = tree_base + (0 if tree is None else tree.rows * tree.nodes)
        num_slots = scratch + 1
        placeholder_column = layout.num_cells + (H if layout.end_of_row else 0)
        r = torch.arange(H, device=device)
        cell_start = T + r * layout.row_stride
        pos = torch.zeros(num_slots, dtype=torch.int64, device=device)
        pos[:opener_base] = torch.arange(opener_base, device=device)
        if H > 1:
            pos[opener_base:tree_base] = _opener_position(layout, cell_start, r[1:])[:tree_base - opener_base]
        slot_rows = torch.full((num_slots,), H, dtype=torch.int64, device=device)
        cell_slots = (cell_start[:, None] + torch.arange(W, device=device)).reshape(-1)
        slot_rows[cell_slots] = r.repeat_interleave(W)
        slot_cols = torch.zeros(num_slots, dtype=torch.int64, device=device)
        slot_cols[cell_slots] = torch.arange(W, device=device).repeat(H)
        trash = placeholder_column + 1
        slots = None if tree is None else TreeSlots(shape=tree, slot_base=tree_base, sibling_base=trash + 1)
        return cls(layout=layout, opener_base=opener_base, scratch=scratch, placeholder_column=placeholder_column,
                   trash=trash, cell_start=cell_start, slot_positions=pos, slot_rows=slot_rows, slot_cols=slot_cols,
                   regular=torch.arange(num_slots, device=device) < opener_base, tree=slots)

    @property
    def num_slots(self) -> int:
        return self.scratch + 1

    @property
    def opener_end(self) -> int:
        """One past the last placeholder-opener slot."""
        return self.scratch if self.tree is None else self.tree.slot_base

    @property
    def token_buffer_width(self) -> int:
        """Columns of the token buffer: cells, end-of-row tokens, placeholder column, trash column, siblings."""
        return self.trash + 1 + (0 if self.tree is None else self.tree.shape.rows * self.tree.shape.siblings)

    def opener_position(self, r: torch.Tensor) -> torch.Tensor:
        """Position of the query that predicts (r, 0): (r-1, W-1), or row r-1's end-of-row token."""
        return _opener_position(self.layout, self.cell_start, r)


def _opener_position(layout: Layout, cell_start: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return cell_start[r - 1] + (layout.cols if layout.end_of_row else layout.cols - 1)
