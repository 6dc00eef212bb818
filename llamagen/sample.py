"""Sample class-conditional LlamaGen images with ZipAR on one device (like the official sample_c2i.py).

With no flags it samples the committed demo model (two of each digit). With official files:
python -m llamagen.sample --gpt-model GPT-L --gpt-ckpt c2i_L_384.pt --vq-path vq_ds16_c2i.pt \
    --image-size 384 --class-labels 207 360 --window 16 --cfg-scale 2.0 --out grid.png
Defaults per model: llamagen/presets.py.
"""
import argparse
import sys

import torch

from common.cli import (HelpFormatter, add_flag, add_renamed, add_runtime_args, check_model_files, check_runtime,
                        checkpoint_file, note_random_init, run_main)
from common.path_checks import check_output_file
from common.report import decode_and_report, save_grid_file
from common.zipar.config import DecodeConfig, add_decode_args, decode_config_from_args
from common.zipar.sampling import image_seeds
from llamagen.generate import decode_images, generate, layout_for
from llamagen.loader import TOKENIZERS, image_grid, load_models
from llamagen.model import GPT_PRESETS
from llamagen.presets import check_image_size, sample_defaults


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Flags left unset take the chosen model's defaults (llamagen.presets), so each has one source."""
    defaults = sample_defaults(args.gpt_model)
    for name in ("vq_model", "image_size", "cfg_scale", "top_k", "temperature", "class_labels"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))
    if not args.random_init:
        for name, default in (("gpt_ckpt", defaults.gpt_ckpt), ("vq_path", defaults.vq_ckpt)):
            if getattr(args, name) is None:
                setattr(args, name, default)
    return args


def check_args(args: argparse.Namespace) -> DecodeConfig:
    """Validate everything cheap before any model is built; raises ValueError/FileNotFoundError."""
    config = decode_config_from_args(args)
    grid = image_grid(args.image_size, args.vq_model)
    check_image_size(args.gpt_model, args.image_size, not args.random_init)
    config.check_grid(grid)
    num_classes = GPT_PRESETS[args.gpt_model].num_classes
    bad = [c for c in args.class_labels if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"--class-labels {bad} out of range: {args.gpt_model} has classes 0..{num_classes - 1}")
    check_model_files(args, ["--gpt-ckpt", "--vq-path"], checkpoint_file)
    check_runtime(args)
    check_output_file(args.out)
    return config


def main(args: argparse.Namespace) -> dict:
    config = check_args(args)
    device = torch.device(args.device)
    note_random_init(args, f"{args.gpt_model} and {args.vq_model}")
    gpt, vq = load_models(args.gpt_model, args.vq_model, args.image_size, args.gpt_ckpt, args.vq_path, device,
                          args.precision, args.seed if args.random_init else None)
    labels = torch.tensor(args.class_labels, device=device)
    seeds = image_seeds(args.seed, torch.arange(len(labels), device=device))
    return decode_and_report(
        lambda on_pass: generate(gpt, labels, seeds, config, on_pass=on_pass, compile=args.compile),
        config, layout_for(gpt), args, save_grid_file(lambda tokens: decode_images(vq, tokens), args.out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--gpt-model", choices=list(GPT_PRESETS), default="demo",
                   help="GPT preset; 'demo' is the small digits model committed in checkpoints/demo")
    add_flag(p, "--gpt-ckpt", help="GPT checkpoint, e.g. c2i_B_256.pt; demo: the committed one")
    p.add_argument("--vq-model", choices=TOKENIZERS, default=None,
                   help="image tokenizer; default VQ-16, or 'demo' for the demo model")
    add_flag(p, "--vq-path", help="VQ checkpoint file, e.g. vq_ds16_c2i.pt (demo: the committed tokenizer.json)")
    p.add_argument("--image-size", type=int, default=None,
                   help="image size in pixels (grid = size / downsample); default 384, demo 24")
    p.add_argument("--class-labels", type=int, nargs="+", default=None,
                   help="one image per label; default the official demo labels (demo: 0-9 twice)")
    add_flag(p, "--out", default="sample_c2i.png", help="output image file (a grid, 4 per row); .png, .jpg or .jpeg")
    add_flag(p, "--random-init")
    add_flag(p, "--json", help="print one JSON object with passes, timing and tokens")
    add_runtime_args(p, "the GPT")
    add_decode_args(p, cfg_scale=None, top_k=None, temperature=None)
    add_renamed(p, "--vq-ckpt", "--vq-path")
    return p


def cli(argv=None) -> int:
    return run_main(main, fill_defaults(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(cli())
