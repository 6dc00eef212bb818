"""Building LlamaGen for sampling: the image tokenizer (a VQ model or the demo's intensity tokenizer), the GPT
with its weights, and sample_ddp.py's class-conditional sampler. Shared by the CLIs, sample_ddp.py and the
notebooks."""
import torch

from common.zipar.config import PRECISIONS, DecodeConfig
from common.zipar.state import DecodeResult
from common.zipar.window import num_passes
from llamagen.checkpoint import build_gpt, load_gpt_weights, load_vq
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.generate import decode_images, generate, layout_for
from llamagen.model import random_init_
from llamagen.presets import Preset
from common.models.vq import VQ_PRESETS, vq_config

TOKENIZERS = [*VQ_PRESETS, "demo"]


# tokens per side of the largest grid an --image-size may ask for: 4x the released LlamaGen models' largest
# (512 px / 16 = 32), above Emu3-Gen's 90; a 160000 px image (10^8 tokens) would fail allocating its cache
MAX_GRID = 128


def tokenizer_downsample(name: str) -> int:
    return IntensityTokenizer.downsample if name == "demo" else vq_config(name).downsample


def image_grid(image_size: int, vq_model: str) -> int:
    """--image-size: a positive multiple of the tokenizer's downsample factor, at most MAX_GRID tokens a side.
    Returns the grid side."""
    downsample = tokenizer_downsample(vq_model)
    if image_size <= 0 or image_size % downsample:
        raise ValueError(f"--image-size {image_size} must be a positive multiple of {downsample} ({vq_model})")
    if image_size // downsample > MAX_GRID:
        raise ValueError(f"--image-size {image_size}: a {image_size // downsample}x{image_size // downsample}-token "
                         f"grid; at most {MAX_GRID}x{MAX_GRID} tokens ({MAX_GRID * downsample} px with {vq_model}) "
                         "are supported")
    return image_size // downsample


def load_tokenizer(name: str, path: str | None):
    """The image decoder: the demo's intensity tokenizer or a VQ model; path None = random/default."""
    if name == "demo":
        return IntensityTokenizer.load(path) if path is not None else IntensityTokenizer()
    return load_vq(name, path)


def load_models(gpt_model: str, vq_model: str, image_size: int, gpt_ckpt: str | None, vq_path: str | None,
                device: torch.device, precision: str = "fp32", random_init_seed: int | None = None):
    """(gpt, image decoder) ready for inference; random_init_seed given: random weights, no files read (the
    VQ keeps its default init, drawn after seeding torch's generator: the same weights on every rank)."""
    gpt = build_gpt(gpt_model, image_size, tokenizer_downsample(vq_model))
    if random_init_seed is not None:
        random_init_(gpt, random_init_seed)
        torch.manual_seed(random_init_seed)
        vq = load_tokenizer(vq_model, None)
    else:
        load_gpt_weights(gpt, gpt_ckpt, gpt_model)
        vq = load_tokenizer(vq_model, vq_path)
    return gpt.to(device=device, dtype=PRECISIONS[precision]).eval(), vq.to(device).eval()


class ClassImages:
    """sample_ddp.py's class-conditional sampler: image i has class i % num_classes."""

    def __init__(self, preset: Preset, gpt_ckpt: str | None, vq_path: str | None, device: torch.device,
                 precision: str, random_init_seed: int | None = None, compile: bool = False):
        self.gpt, self.vq = load_models(preset.gpt_model, preset.vq_model, preset.image_size, gpt_ckpt, vq_path,
                                        device, precision, random_init_seed)
        self.compile = compile
        self.layout = layout = layout_for(self.gpt)  # prefix_len: the condition's
        self.grid, self.ntp_passes = (layout.rows, layout.cols), num_passes(layout, layout.cols)
        self.ntp_passes_official = self.ntp_passes

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return idx % self.gpt.config.num_classes

    def prompt(self, label: int) -> None:
        return None

    def make(self, idx: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig
             ) -> tuple[torch.Tensor, DecodeResult]:
        """-> ((B, 3, h, w) images in [-1, 1], DecodeResult). The VQ decodes one image at a time: its
        convolutions' results depend on the batch (CPU threads split it), the PNGs must not."""
        result = generate(self.gpt, self.labels(idx).to(seeds.device), seeds, config, compile=self.compile)
        return torch.cat([decode_images(self.vq, t[None]) for t in result.tokens]), result
