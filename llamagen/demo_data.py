"""Data for the demo model: scikit-learn's handwritten digits (1,797 8x8 images, 10 classes,
UCI optdigits test set), rendered at 24x24 with a random affine augmentation.

Split once, by a fixed permutation: the generator trains on one part; the digit classifier that
scores samples trains on a second part and is tested on a third, neither seen by the generator.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

GRID = 24  # the token grid of LlamaGen-L at 384 px
SPLITS = {"generator": (0, 1200), "classifier_train": (1200, 1600), "classifier_test": (1600, 1797)}


def load_digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 8, 8) float grey levels in [0, 1] and (n,) int64 labels of one split."""
    from sklearn.datasets import load_digits

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    lo, hi = SPLITS[split]
    idx = order[lo:hi]
    images = torch.tensor(digits.images[idx] / 16.0, dtype=torch.float32)[:, None]
    return images, torch.tensor(digits.target[idx], dtype=torch.int64)


def render(images: torch.Tensor, gen: torch.Generator | None, size: int = GRID,
           max_rotation_deg: float = 12.0, max_shift: float = 0.12, scale_range: tuple = (0.9, 1.1)) -> torch.Tensor:
    """(n, 1, 8, 8) -> (n, 1, size, size) in [0, 1]: bilinear upsampling, plus a random rotation,
    scale and shift per image when `gen` is given (None renders the plain upsampled digit)."""
    n = images.shape[0]
    if gen is None:
        angle, scale, shift = torch.zeros(n), torch.ones(n), torch.zeros(n, 2)
    else:
        angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_rotation_deg)
        scale = scale_range[0] + torch.rand(n, generator=gen) * (scale_range[1] - scale_range[0])
        shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)
