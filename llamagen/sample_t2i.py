"""Sample text-to-image LlamaGen images with ZipAR on one device (like the official sample_t2i.py).

Captions come from flan-t5-xl (a local transformers folder, --t5-path) or from precomputed feature
files (--caption-features, one per image, language/extract_t5_feature.py format). With official files:
python -m llamagen.sample_t2i --gpt-ckpt t2i_XL_stage2_512.pt --vq-path vq_ds16_t2i.pt \
    --t5-path pretrained_models/t5-ckpt --prompt "A blue Porsche 356 parked in front of a yellow brick wall." \
    --window 15 --adaptive --out t2i.png
Defaults (llamagen/presets.py, "t2i") follow FoundationVision/LlamaGen autoregressive/sample/sample_t2i.py:
GPT-XL, VQ-16, 512 px, cfg 7.5, top-k 1000, its four demo prompts.
"""
import argparse
import sys

import torch

from common.cli import (HelpFormatter, add_flag, add_renamed, add_text_to_image_tail, check_model_files, check_runtime,
                        checkpoint_file, note_random_init, run_main)
from common.path_checks import check_input_dir, check_output_file
from common.report import decode_and_report, save_grid_file
from common.zipar.config import PRECISIONS, DecodeConfig, decode_config_from_args
from common.prompts import read_prompt_file
from common.zipar.sampling import image_seeds
from llamagen.captions import T5CaptionEncoder, load_caption_rows, pad_caption_rows, t5_caption_features
from llamagen.checkpoint import load_gpt_weights
from llamagen.generate import decode_images, layout_for
from llamagen.generate_t2i import generate
from llamagen.loader import TOKENIZERS, image_grid, load_tokenizer, tokenizer_downsample
from llamagen.model import CAPTION_TOKENS, GPT_PRESETS, GPTConfig, Transformer, random_init_, t2i_config
from llamagen.presets import T2I


def prompts_of(args: argparse.Namespace) -> list[str]:
    """--prompt TEXT (repeatable), then the lines of --prompts-file; neither: the official demo prompts."""
    prompts = list(args.prompt or []) + (read_prompt_file(args.prompts_file) if args.prompts_file else [])
    return prompts or list(T2I.prompts)


def check_args(args: argparse.Namespace) -> DecodeConfig:
    """Validate everything cheap before any model is built; raises ValueError/FileNotFoundError."""
    config = decode_config_from_args(args)
    config.check_grid(image_grid(args.image_size, args.vq_model))
    if args.caption_features and args.t5_path:
        raise ValueError("pass --t5-path (encode --prompt) or --caption-features, not both")
    if args.caption_features and (args.prompt or args.prompts_file):
        raise ValueError("--caption-features are the captions (one file per image); --prompt/--prompts-file "
                         "would be ignored: give one or the other (prompts need --t5-path)")
    if not args.caption_features:
        if not args.t5_path:
            raise ValueError("pass --t5-path (a local flan-t5-xl folder) or --caption-features")
        check_input_dir(args.t5_path, "--t5-path", "flan-t5-xl folder")
        if not all(p.strip() for p in prompts_of(args)):
            raise ValueError("--prompt must not be empty")
    for path in args.caption_features or ():
        load_caption_rows(path)  # read here: a text, empty or wrong-shape file is refused before any model
    if args.caption_dim < 1:
        raise ValueError(f"--caption-dim must be >= 1, got {args.caption_dim}")
    check_model_files(args, ["--gpt-ckpt", "--vq-path"], checkpoint_file, hint=f" (e.g. {T2I.gpt_file}, {T2I.vq_file})")
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
        features, mask = t5_caption_features(encoder, prompts_of(args), args.left_padding)
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
    note_random_init(args, f"{args.gpt_model} and {args.vq_model}")
    if args.random_init:
        random_init_(gpt, args.seed)
        vq = load_tokenizer(args.vq_model, None)
    else:
        load_gpt_weights(gpt, args.gpt_ckpt, f"{args.gpt_model} (t2i)")
        vq = load_tokenizer(args.vq_model, args.vq_path)
    gpt = gpt.to(device=device, dtype=dtype).eval()
    vq = vq.to(device)
    seeds = image_seeds(args.seed, torch.arange(features.shape[0], device=device))
    return decode_and_report(
        lambda on_pass: generate(gpt, features, mask, seeds, config, on_pass=on_pass, compile=args.compile),
        config, layout_for(gpt), args, save_grid_file(lambda tokens: decode_images(vq, tokens), args.out,
                                                      caption_tokens=mask.sum(dim=1).tolist()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_flag(p, "--prompt", help="a text prompt, encoded with --t5-path; repeat for several images; default "
                                 "(with no --prompts-file either) the official four demo prompts")
    add_flag(p, "--prompts-file")
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
    p.add_argument("--gpt-model", choices=list(GPT_PRESETS), default=T2I.gpt_model,
                   help="GPT preset, built as its t2i variant (the released t2i models are GPT-XL)")
    add_flag(p, "--gpt-ckpt", help=f"t2i GPT checkpoint, e.g. {T2I.gpt_file}")
    p.add_argument("--vq-model", choices=TOKENIZERS, default=T2I.vq_model, help="image tokenizer preset")
    add_flag(p, "--vq-path", help=f"VQ checkpoint file, e.g. {T2I.vq_file}")
    p.add_argument("--image-size", type=int, default=T2I.image_size,
                   help="image size in pixels (grid = size / downsample): 512 for stage 2, 256 for stage 1")
    add_text_to_image_tail(p, T2I, "the GPT", out="sample_t2i.png")
    add_renamed(p, "--prompts", "--prompt")
    add_renamed(p, "--vq-ckpt", "--vq-path")
    return p


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(main, args)


if __name__ == "__main__":
    sys.exit(cli())
