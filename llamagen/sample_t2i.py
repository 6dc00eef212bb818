"""Sample text-to-image LlamaGen images with ZipAR on one device (like the official sample_t2i.py).

Captions come from flan-t5-xl (a local transformers folder, --t5-path) or from precomputed feature
files (--caption-features, one per image, language/extract_t5_feature.py format). With official files:
python -m llamagen.sample_t2i --gpt-ckpt t2i_XL_stage2_512.pt --vq-ckpt vq_ds16_t2i.pt \
    --t5-path pretrained_models/t5-ckpt --prompts "A blue Porsche 356 parked in front of a yellow brick wall." \
    --window 15 --adaptive --out t2i.png
Defaults follow FoundationVision/LlamaGen autoregressive/sample/sample_t2i.py: GPT-XL, VQ-16, 512 px,
cfg 7.5, top-k 1000, its four demo prompts.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

from common.cli import add_runtime_args, check_output_file, check_runtime, note_window, pass_progress, run_main
from common.config import DecodeConfig, add_decode_args, decode_config_from_args
from common.images import save_grid
from common.sampling import image_seeds
from common.schedule import num_passes
from llamagen.captions import T5CaptionEncoder, load_caption_rows, pad_caption_rows, t5_caption_features
from llamagen.checkpoint import load_gpt_weights
from llamagen.generate import layout_for
from llamagen.generate_t2i import generate
from llamagen.model import CAPTION_TOKENS, GPT_PRESETS, GPTConfig, Transformer, random_init_, t2i_config
from llamagen.sample import PRECISIONS, TOKENIZERS, load_tokenizer, tokenizer_downsample

# sample_t2i.py's demo prompts, verbatim (the "grassin" typo included)
DEMO_PROMPTS = (
    "A portrait photo of a kangaroo wearing an orange hoodie and blue sunglasses standing on the grassin front of "
    "the Sydney Opera House holding a sign on the chest that says Welcome Friends!",
    "A blue Porsche 356 parked in front of a yellow brick wall.",
    "A photo of an astronaut riding a horse in the forest. There is a river in front of them with water lilies.",
    "A map of the United States made out of sushi. It is on a table next to a glass of red wine.",
)


def check_args(args: argparse.Namespace) -> DecodeConfig:
    """Validate everything cheap before any model is built; raises ValueError/FileNotFoundError."""
    config = decode_config_from_args(args)
    downsample = tokenizer_downsample(args.vq_model)
    if args.image_size <= 0 or args.image_size % downsample:
        raise ValueError(f"--image-size {args.image_size} must be a positive multiple of {downsample} ({args.vq_model})")
    if args.caption_features and args.t5_path:
        raise ValueError("pass --t5-path (encode --prompts) or --caption-features, not both")
    if not args.caption_features:
        if not args.t5_path:
            raise ValueError("pass --t5-path (a local flan-t5-xl folder) or --caption-features")
        if not Path(args.t5_path).is_dir():
            raise FileNotFoundError(f"--t5-path: folder not found: {args.t5_path}")
        if not args.prompts or not all(p.strip() for p in args.prompts):
            raise ValueError("--prompts must hold at least one non-empty prompt")
    for path in args.caption_features or ():
        if not Path(path).is_file():
            raise FileNotFoundError(f"--caption-features: file not found: {path}")
    if args.caption_dim < 1:
        raise ValueError(f"--caption-dim must be >= 1, got {args.caption_dim}")
    if not args.random_init:
        if args.gpt_ckpt is None or args.vq_ckpt is None:
            raise ValueError("pass --gpt-ckpt and --vq-ckpt, or --random-init to run without checkpoints")
        for flag, path in (("--gpt-ckpt", args.gpt_ckpt), ("--vq-ckpt", args.vq_ckpt)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{flag}: checkpoint file not found: {path}")
    check_runtime(args)
    check_output_file(args.out)
    return config


def caption_features(args: argparse.Namespace, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 120, C) features and (B, 120) bool mask, from T5 or from files; T5 is freed before the GPT loads."""
    if args.caption_features:
        rows = [load_caption_rows(p) for p in args.caption_features]
        features, mask = pad_caption_rows(rows, CAPTION_TOKENS, args.left_padding)
    else:
        encoder = T5CaptionEncoder(args.t5_path, device, dtype, CAPTION_TOKENS)
        features, mask = t5_caption_features(encoder, list(args.prompts), args.left_padding)
        del encoder
    if features.shape[-1] != args.caption_dim:
        raise ValueError(f"caption features have width {features.shape[-1]}, "
                         f"the GPT expects --caption-dim {args.caption_dim}")
    return features.to(device), mask.to(device)


def main(args: argparse.Namespace) -> dict:
    config = check_args(args)
    device = torch.device(args.device)
    dtype = PRECISIONS[args.precision]
    features, mask = caption_features(args, device, dtype)
    grid = args.image_size // tokenizer_downsample(args.vq_model)
    gpt = Transformer(t2i_config(args.gpt_model, caption_dim=args.caption_dim), grid_size=grid)
    if args.random_init:
        print(f"--random-init: {args.gpt_model} and {args.vq_model} have random weights (seed {args.seed}); "
              "images are noise", file=sys.stderr)
        random_init_(gpt, args.seed)
        vq = load_tokenizer(args.vq_model, None)
    else:
        load_gpt_weights(gpt, args.gpt_ckpt, f"{args.gpt_model} (t2i)")
        vq = load_tokenizer(args.vq_model, args.vq_ckpt)
    gpt = gpt.to(device=device, dtype=dtype).eval()
    vq = vq.to(device)
    seeds = image_seeds(args.seed, torch.arange(features.shape[0], device=device))

    start = time.perf_counter()
    model = torch.compile(gpt, dynamic=False) if args.compile else gpt
    note_window(config, grid)
    with pass_progress(config, grid, grid, args.quiet or args.json) as on_pass:
        result = generate(model, features, mask, seeds, config, static_shapes=args.compile and not config.adaptive,
                          on_pass=on_pass)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    layout = layout_for(gpt)
    with torch.inference_mode():
        images = vq.decode_code(result.tokens.flatten(1), (layout.rows, layout.cols))
    save_grid(images, args.out, nrow=4)
    report = {
        "forward_passes": result.forward_passes,
        "ntp_forward_passes": num_passes(layout, layout.cols),
        "seconds": round(seconds, 4),
        "grid": [layout.rows, layout.cols],
        "window": config.window_for(layout.cols),
        "compat": config.compat,
        "caption_tokens": mask.sum(dim=1).tolist(),
        "out": str(args.out),
        "image_passes": result.image_passes,
        "tokens": result.tokens.tolist(),
    }
    if config.adaptive:
        report["adaptive"] = True
        report["accepted_window"] = [{"mean": sum(w) / len(w), "min": min(w), "max": max(w)} if w else None
                                     for w in result.accepted_windows]
        report["rejections"] = result.rejections
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{result.forward_passes} forward passes (NTP: {report['ntp_forward_passes']}) in {seconds:.2f}s; "
              f"saved {args.out}", file=sys.stderr)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", nargs="+", default=list(DEMO_PROMPTS),
                   help="one image per prompt (encoded with --t5-path); default the official four demo prompts")
    p.add_argument("--t5-path", default=None,
                   help="local flan-t5-xl folder for transformers (config.json, tokenizer), or its parent "
                        "holding flan-t5-xl/ as in the official pretrained_models/t5-ckpt")
    p.add_argument("--caption-features", nargs="+", default=None,
                   help="precomputed T5 features instead of --t5-path: one .npy/.pt per image holding the "
                        "caption's valid rows, (n, C) or (1, n, C) (language/extract_t5_feature.py format)")
    p.add_argument("--left-padding", action=argparse.BooleanOptionalAction, default=True,
                   help="move the valid caption tokens to the end of the 120 slots, as the model was trained")
    p.add_argument("--caption-dim", type=int, default=GPTConfig.caption_dim,
                   help="caption feature width the GPT takes (flan-t5-xl: 2048; smaller for tiny test encoders)")
    p.add_argument("--gpt-model", choices=list(GPT_PRESETS), default="GPT-XL",
                   help="GPT preset, built as its t2i variant (the released t2i models are GPT-XL)")
    p.add_argument("--gpt-ckpt", default=None, help="t2i GPT checkpoint, e.g. t2i_XL_stage2_512.pt")
    p.add_argument("--vq-model", choices=TOKENIZERS, default="VQ-16", help="image tokenizer preset")
    p.add_argument("--vq-ckpt", default=None, help="VQ checkpoint, e.g. vq_ds16_t2i.pt")
    p.add_argument("--image-size", type=int, default=512,
                   help="image size in pixels (grid = size / downsample): 512 for stage 2, 256 for stage 1")
    p.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed (seed, i)")
    p.add_argument("--out", default="sample_t2i.png", help="output PNG (a grid, 4 per row)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the GPT and pad passes to one shape (worth it on CUDA; off by default)")
    p.add_argument("--random-init", action="store_true", help="random GPT and VQ weights, no checkpoints")
    p.add_argument("--json", action="store_true", help="print one JSON object with passes, timing and tokens")
    add_runtime_args(p, "the GPT")
    add_decode_args(p, cfg_scale=7.5, top_k=1000)  # sample_t2i.py: --cfg-scale 7.5, --top-k 1000
    return p


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(main, args)


if __name__ == "__main__":
    sys.exit(cli())
