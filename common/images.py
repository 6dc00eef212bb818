"""Turning decoder output in [-1, 1] into pixels and files."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.atomic import atomic_path


# formats written by file suffix; an unlisted suffix gets PNG
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


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
    """Write the image whole or not at all (common.atomic), so a killed run or a full disk never leaves a
    half-written image. The format follows the suffix (IMAGE_FORMATS)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format=IMAGE_FORMATS.get(path.suffix.lower(), "PNG"))


def to_fid_uint8(images: torch.Tensor, size: int) -> np.ndarray:
    """(B, 3, h, w) decoder output in [-1, 1] -> (B, size, size, 3) uint8, exactly as LlamaGen's FID script.

    FoundationVision/LlamaGen, autoregressive/sample/sample_c2i_ddp.py: when image_size_eval differs,
    F.interpolate(mode="bicubic") on the float output (align_corners=False, no antialias), then
    clamp(127.5 * x + 128, 0, 255) cast to uint8, which truncates (note + 128, not + 127.5; this
    differs from to_uint8 above, which rounds like torchvision's save_image).
    """
    x = images.detach().float()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic")
    return torch.clamp(127.5 * x + 128.0, 0, 255).permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


def save_png_with_text_atomic(pixels: np.ndarray, path: str | Path, text: dict[str, str]) -> None:
    """save_png_atomic, plus PNG tEXt chunks (key -> value) that travel with the image."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, str(value))
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG", pnginfo=info)


def read_png_checked(path: str | Path, size: tuple[int, int]) -> dict[str, str] | None:
    """The tEXt chunks of a complete PNG of `size` (width, height), or None if the file is missing,
    truncated, corrupt (PIL's verify checks every chunk's CRC up to IEND) or of another size."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify leaves the file unusable; reopen to read the header and text
            if im.format != "PNG" or im.size != tuple(size):
                return None
            return dict(im.text)
    except (OSError, SyntaxError, ValueError):
        return None
