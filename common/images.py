"""Turning decoder output in [-1, 1] into pixels and files."""
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, rounding like torchvision's save_image."""
    x = (images.detach().float().clamp(-1, 1) + 1) / 2
    return x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 4, padding: int = 2) -> None:
    """Tile images into one PNG (torchvision make_grid layout); written atomically."""
    pixels = to_uint8(images)
    b, h, w, _ = pixels.shape
    ncol = min(nrow, b)
    nrows = -(-b // ncol)
    canvas = np.zeros((nrows * (h + padding) + padding, ncol * (w + padding) + padding, 3), dtype=np.uint8)
    for i, img in enumerate(pixels):
        r, c = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        canvas[y:y + h, x:x + w] = img
    save_png_atomic(canvas, path)


def save_png_atomic(pixels: np.ndarray, path: str | Path) -> None:
    """Write to a temporary name and rename, so a killed run never leaves a half-written PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(pixels).save(tmp, format="PNG")
    os.replace(tmp, path)
