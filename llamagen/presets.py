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
    temperature: float = 1.0
    gpt_ckpt: str | None = None
    vq_ckpt: str | None = None


# temperature 0.85: benchmarks/results/sampling_sweep.md (500 NTP samples per setting) gives class accuracy
# 0.51 and digits-FID 36 at cfg 2.0, against 0.42 and 45 at temperature 1.0
DEMO = SampleDefaults(vq_model="demo", image_size=24, cfg_scale=2.0, top_k=0, class_labels=tuple(range(10)) * 2,
                      gpt_ckpt=str(DEMO_DIR / "gpt_demo.pt"), vq_ckpt=str(DEMO_DIR / "tokenizer.json"),
                      temperature=0.85)
# sample_c2i.py: VQ-16 at 384 px, cfg 4.0, top-k 2000
OFFICIAL_DEMO = SampleDefaults(vq_model="VQ-16", image_size=384, cfg_scale=4.0, top_k=2000,
                               class_labels=IMAGENET_DEMO_LABELS)


# image sizes the released class-conditional checkpoints are trained at (FoundationVision/LlamaGen,
# autoregressive/sample/sample_c2i.py: --image-size choices 256, 384, 512); the demo at its 24x24 grid
OFFICIAL_IMAGE_SIZES = (256, 384, 512)


def trained_image_sizes(gpt_model: str) -> tuple[int, ...]:
    return (DEMO.image_size,) if gpt_model == "demo" else OFFICIAL_IMAGE_SIZES


def sample_defaults(gpt_model: str) -> SampleDefaults:
    return DEMO if gpt_model == "demo" else OFFICIAL_DEMO


@dataclass(frozen=True)
class FIDPreset:
    """What `sample_ddp.py --model NAME` samples: the GPT and tokenizer, the sizes, the default cfg
    and top-k, and the official file names looked up in --ckpt-dir. Image i has class i % num_classes."""

    gpt_model: str  # llamagen.model.GPT_PRESETS key
    vq_model: str  # llamagen.vq.VQ_PRESETS key, or "demo"
    image_size: int  # pixels the token grid covers: grid = image_size / downsample
    image_size_eval: int  # pixels of the saved PNGs and the npz (bicubic resize when the decoder differs)
    cfg_scale: float
    top_k: int
    gpt_file: str  # file names in --ckpt-dir
    vq_file: str
    ckpt_dir: str | None = None  # default --ckpt-dir
    temperature: float = 1.0


def _official(gpt_model: str, size_tag: str, cfg_scale: float) -> FIDPreset:
    # GETTING_STARTED.md's FID commands: --image-size 384 --image-size-eval 256, DDP defaults top-k 0;
    # cfg per model as listed there (B, L 2.0; XL, XXL 1.75; 3B 1.65)
    return FIDPreset(gpt_model=gpt_model, vq_model="VQ-16", image_size=384, image_size_eval=256,
                     cfg_scale=cfg_scale, top_k=0, gpt_file=f"c2i_{size_tag}_384.pt", vq_file="vq_ds16_c2i.pt")


FID_PRESETS: dict[str, FIDPreset] = {
    # the demo tokenizer decodes its 24x24 tokens to 96x96 pixels (nearest, x4); the eval size keeps
    # those 96 pixels, so there is no resize and every pixel maps back to its token exactly
    "demo": FIDPreset(gpt_model="demo", vq_model=DEMO.vq_model, image_size=DEMO.image_size, image_size_eval=96,
                      cfg_scale=DEMO.cfg_scale, top_k=DEMO.top_k, gpt_file=Path(DEMO.gpt_ckpt).name,
                      vq_file=Path(DEMO.vq_ckpt).name, ckpt_dir=str(DEMO_DIR), temperature=DEMO.temperature),
    "llamagen-B": _official("GPT-B", "B", 2.0),
    "llamagen-L": _official("GPT-L", "L", 2.0),
    "llamagen-XL": _official("GPT-XL", "XL", 1.75),
    "llamagen-XXL": _official("GPT-XXL", "XXL", 1.75),
    "llamagen-3B": _official("GPT-3B", "3B", 1.65),
}


def fid_preset(name: str) -> FIDPreset:
    if name not in FID_PRESETS:
        raise ValueError(f"unknown --model {name!r}; valid: {', '.join(FID_PRESETS)}")
    return FID_PRESETS[name]
