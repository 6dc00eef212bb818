"""Per-model defaults for the sampling scripts, in one place.

`demo` is the model trained in this repo (llamagen/train_demo.py, files in checkpoints/demo/);
the others follow the official LlamaGen scripts (FoundationVision/LlamaGen,
autoregressive/sample/sample_c2i.py for the demo defaults, GETTING_STARTED.md for FID cfg).
"""
from dataclasses import dataclass
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
# sample_c2i.py's demo labels
IMAGENET_DEMO_LABELS = (207, 360, 387, 974, 88, 979, 417, 279)


@dataclass(frozen=True)
class SampleDefaults:
    vq_model: str
    image_size: int
    cfg_scale: float
    top_k: int
    class_labels: tuple[int, ...]
    gpt_ckpt: str | None = None
    vq_ckpt: str | None = None


DEMO = SampleDefaults(vq_model="demo", image_size=24, cfg_scale=2.0, top_k=0, class_labels=tuple(range(10)) * 2,
                      gpt_ckpt=str(DEMO_DIR / "gpt_demo.pt"), vq_ckpt=str(DEMO_DIR / "tokenizer.json"))
# sample_c2i.py: VQ-16 at 384 px, cfg 4.0, top-k 2000
OFFICIAL_DEMO = SampleDefaults(vq_model="VQ-16", image_size=384, cfg_scale=4.0, top_k=2000,
                               class_labels=IMAGENET_DEMO_LABELS)


def sample_defaults(gpt_model: str) -> SampleDefaults:
    return DEMO if gpt_model == "demo" else OFFICIAL_DEMO
