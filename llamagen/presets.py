"""LlamaGen's per-model defaults, one table read by the CLIs (llamagen/sample.py, llamagen/sample_t2i.py)
and by sample_ddp.py.

`demo` is the model trained in this repo (llamagen/train_demo.py, files in checkpoints/demo/); `c2i` and
`t2i` are the defaults of the official sample scripts (FoundationVision/LlamaGen,
autoregressive/sample/sample_c2i.py and sample_t2i.py), which llamagen.sample applies to every official
--gpt-model; `llamagen-*` are what `sample_ddp.py --model NAME` samples for FID (GETTING_STARTED.md).
"""
from dataclasses import dataclass
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
# sample_c2i.py's demo labels
IMAGENET_DEMO_LABELS = (207, 360, 387, 974, 88, 979, 417, 279)
# sample_t2i.py's demo prompts, verbatim (the "grassin" typo included)
T2I_DEMO_PROMPTS = (
    "A portrait photo of a kangaroo wearing an orange hoodie and blue sunglasses standing on the grassin front of "
    "the Sydney Opera House holding a sign on the chest that says Welcome Friends!",
    "A blue Porsche 356 parked in front of a yellow brick wall.",
    "A photo of an astronaut riding a horse in the forest. There is a river in front of them with water lilies.",
    "A map of the United States made out of sushi. It is on a table next to a glass of red wine.",
)


@dataclass(frozen=True)
class Preset:
    """The GPT and tokenizer, the sizes, the sampling defaults and the official file names of one setting.
    sample_ddp.py presets (image_size_eval set): image i has class i % num_classes."""

    gpt_model: str  # llamagen.model.GPT_PRESETS key
    vq_model: str  # common.models.vq.VQ_PRESETS key, or "demo"
    image_size: int  # pixels the token grid covers: grid = image_size / downsample
    cfg_scale: float
    top_k: int
    temperature: float = 1.0
    gpt_file: str | None = None  # official file names (in --ckpt-dir for sample_ddp.py)
    vq_file: str | None = None
    ckpt_dir: str | None = None  # the folder holding them by default
    image_size_eval: int | None = None  # sample_ddp.py: pixels of the saved PNGs and the npz (bicubic resize)
    class_labels: tuple[int, ...] = ()  # the CLI's default labels (one image each)
    prompts: tuple[str, ...] = ()  # the t2i CLI's default prompts

    @property
    def size_tag(self) -> str:
        """The size in sample_ddp.py's folder names."""
        return str(self.image_size)

    @property
    def gpt_ckpt(self) -> str | None:
        return str(Path(self.ckpt_dir) / self.gpt_file) if self.ckpt_dir and self.gpt_file else None

    @property
    def vq_ckpt(self) -> str | None:
        return str(Path(self.ckpt_dir) / self.vq_file) if self.ckpt_dir and self.vq_file else None


def _fid(gpt_model: str, size_tag: str, cfg_scale: float) -> Preset:
    # GETTING_STARTED.md's FID commands: --image-size 384 --image-size-eval 256, DDP defaults top-k 0;
    # cfg per model as listed there (B, L 2.0; XL, XXL 1.75; 3B 1.65)
    return Preset(gpt_model=gpt_model, vq_model="VQ-16", image_size=384, image_size_eval=256, cfg_scale=cfg_scale,
                  top_k=0, gpt_file=f"c2i_{size_tag}_384.pt", vq_file="vq_ds16_c2i.pt")


PRESETS: dict[str, Preset] = {
    # temperature 0.85: benchmarks/results/sampling_sweep.md (500 NTP samples per setting) gives class accuracy
    # 0.51 and digits-FID 36 at cfg 2.0, against 0.42 and 45 at temperature 1.0. The demo tokenizer decodes
    # its 24x24 tokens to 96x96 pixels (nearest, x4); the eval size keeps those 96 pixels, so there is no
    # resize and every pixel maps back to its token exactly
    "demo": Preset(gpt_model="demo", vq_model="demo", image_size=24, cfg_scale=2.0, top_k=0, temperature=0.85,
                   gpt_file="gpt_demo.pt", vq_file="tokenizer.json", ckpt_dir=str(DEMO_DIR), image_size_eval=96,
                   class_labels=tuple(range(10)) * 2),
    # sample_c2i.py: VQ-16 at 384 px, cfg 4.0, top-k 2000
    "c2i": Preset(gpt_model="GPT-B", vq_model="VQ-16", image_size=384, cfg_scale=4.0, top_k=2000,
                  class_labels=IMAGENET_DEMO_LABELS),
    # sample_t2i.py: GPT-XL, VQ-16 at 512 px (stage 2), cfg 7.5, top-k 1000, its four demo prompts
    "t2i": Preset(gpt_model="GPT-XL", vq_model="VQ-16", image_size=512, cfg_scale=7.5, top_k=1000,
                  gpt_file="t2i_XL_stage2_512.pt", vq_file="vq_ds16_t2i.pt", prompts=T2I_DEMO_PROMPTS),
    "llamagen-B": _fid("GPT-B", "B", 2.0),
    "llamagen-L": _fid("GPT-L", "L", 2.0),
    "llamagen-XL": _fid("GPT-XL", "XL", 1.75),
    "llamagen-XXL": _fid("GPT-XXL", "XXL", 1.75),
    "llamagen-3B": _fid("GPT-3B", "3B", 1.65),
}
DEMO, C2I, T2I = PRESETS["demo"], PRESETS["c2i"], PRESETS["t2i"]
# what sample_ddp.py --model takes
FID_PRESETS: dict[str, Preset] = {name: p for name, p in PRESETS.items() if p.image_size_eval is not None}

# image sizes the released class-conditional checkpoints are trained at (FoundationVision/LlamaGen,
# autoregressive/sample/sample_c2i.py: --image-size choices 256, 384, 512); the demo at its 24x24 grid
OFFICIAL_IMAGE_SIZES = (256, 384, 512)


def trained_image_sizes(gpt_model: str) -> tuple[int, ...]:
    return (DEMO.image_size,) if gpt_model == "demo" else OFFICIAL_IMAGE_SIZES


def check_image_size(gpt_model: str, image_size: int, trained_weights: bool, random: str = "--random-init") -> None:
    """--image-size of a class-conditional GPT loaded from a checkpoint must be one it was trained at
    (another gives a grid the model never saw); random weights (the flag or its absence: `random`) take any."""
    sizes = trained_image_sizes(gpt_model)
    if trained_weights and image_size not in sizes:
        raise ValueError(f"--image-size {image_size}: {gpt_model} checkpoints are trained at "
                         f"{' or '.join(map(str, sizes))} px; another size gives a grid the model never saw "
                         f"(random weights take any size: {random})")


def sample_defaults(gpt_model: str) -> Preset:
    """llamagen.sample's defaults for --gpt-model: the demo's, or sample_c2i.py's for an official model."""
    return DEMO if gpt_model == "demo" else C2I


def fid_preset(name: str) -> Preset:
    if name not in FID_PRESETS:
        raise ValueError(f"unknown --model {name!r}; valid: {', '.join(FID_PRESETS)}")
    return FID_PRESETS[name]
