"""The demo model's image tokenizer: one token per pixel, its grey level quantised to `levels` values.

Why not a learned codebook: ZipAR only needs tokens that sit on a raster grid with spatial locality,
which pixel tokens have by definition; quantised intensities need no training, decode exactly up to
the quantisation step (1/30 of the range at 16 levels) and keep the demo's quality numbers about the
generator alone. The decoded image is upscaled `pixel_scale` times (nearest) for viewing.
Same interface as the VQ decoder where the engine's callers need it: `decode_code(codes, grid)`.
"""
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class IntensityTokenizer(nn.Module):
    downsample = 1  # one token per pixel of the 24x24 image

    def __init__(self, levels: int = 16, pixel_scale: int = 4):
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        self.levels, self.pixel_scale = levels, pixel_scale

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) grey levels in [0, 1] -> (B, H*W) tokens in [0, levels), raster order."""
        return torch.round(images.clamp(0, 1) * (self.levels - 1)).long().flatten(1)

    def codes_to_grey(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, H*W) tokens -> (B, 1, H, W) grey levels in [0, 1]."""
        if codes.min() < 0 or codes.max() >= self.levels:
            raise ValueError(f"tokens must be in [0, {self.levels}), got [{codes.min()}, {codes.max()}]")
        return (codes.float() / (self.levels - 1)).reshape(-1, 1, *grid)

    def decode_code(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, H*W) tokens -> (B, 3, H*s, W*s) in [-1, 1], white digits on black."""
        grey = F.interpolate(self.codes_to_grey(codes, grid), scale_factor=self.pixel_scale, mode="nearest")
        return (grey * 2 - 1).expand(-1, 3, -1, -1)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"type": "intensity", "levels": self.levels,
                                          "pixel_scale": self.pixel_scale}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "IntensityTokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"demo tokenizer file not found: {path}")

        def not_a_spec(reason: str) -> ValueError:  # e.g. a .pt checkpoint passed as --vq-ckpt
            return ValueError(f"{path} is not a demo tokenizer spec (a JSON file like "
                              f"checkpoints/demo/tokenizer.json): {reason}")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise not_a_spec("binary, not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise not_a_spec(f"not JSON ({e})") from None
        if not isinstance(spec, dict) or spec.get("type") != "intensity":
            raise not_a_spec(f'not {{"type": "intensity", ...}}: {str(spec)[:80]}')
        try:
            return cls(int(spec["levels"]), int(spec["pixel_scale"]))
        except (KeyError, TypeError, ValueError) as e:
            raise not_a_spec(f"bad or missing levels/pixel_scale ({type(e).__name__}: {e})") from None
