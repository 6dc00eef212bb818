"""Generate Emu3-Gen images with ZipAR on one device (the official Emu3/image_generation.py, on our engine).

python -m emu3.generate --model-path Emu3-Gen --vq-path Emu3-VisionTokenizer --prompt "a portrait of young girl." \
    --ratio 1:1 --window 7 --out-dir out/ --json
With BAAI/Emu3-Gen-hf, --model-path holds the VQ too; the tokenizer stays the original tiktoken one
(--tokenizer-path Emu3-Gen). Speed runs without files: --random-init --config 8B (or tiny on a CPU).
Defaults (emu3/presets.py) follow image_generation.py: CFG 3.0 with its negative prompt, top-k 2048,
temperature 1, top-p 1. The pipeline API (load_pipeline, Emu3Pipeline.generate) lives in emu3/pipeline.py.
"""
import argparse
import sys

import torch

from common.cli import (HelpFormatter, add_flag, add_renamed, add_text_to_image_tail, check_model_files, check_positive,
                        check_runtime, fill_random_init_config, note_random_init, run_main)
from common.path_checks import check_input_dir, check_output_dir
from common.report import run_text_to_image
from common.zipar.config import PRECISIONS, DecodeConfig, decode_config_from_args
from common.prompts import collect_prompts
from emu3.config import PRESETS
from emu3.pipeline import Emu3Pipeline, load_pipeline
from emu3.presets import DEFAULT
from emu3.prompt import parse_ratio
from emu3.vision_decoder import to_uint8_official


def check_args(args: argparse.Namespace) -> tuple[DecodeConfig, list[str]]:
    """Validate everything cheap before any model is built; raises ValueError/FileNotFoundError."""
    config = decode_config_from_args(args)
    prompts = collect_prompts(args.prompt, args.prompts_file)
    parse_ratio(args.ratio)  # the grid itself needs the model's image area
    fill_random_init_config(args, PRESETS, DEFAULT.config)
    check_model_files(args, ["--model-path"], check_input_dir, optional=["--vq-path", "--tokenizer-path"],
                      hint=" (and --vq-path)")
    check_positive(batch_size=args.batch_size)
    check_runtime(args)
    check_output_dir(args.out_dir)
    return config, prompts


def main(args: argparse.Namespace) -> dict:
    config, prompts = check_args(args)
    note_random_init(args, f"Emu3 {args.config}")
    pipe: Emu3Pipeline = load_pipeline(args.model_path, args.vq_path, args.tokenizer_path, args.config,
                                       torch.device(args.device), PRECISIONS[args.precision], args.random_init,
                                       args.seed)
    return run_text_to_image(pipe, prompts, args.ratio, config, args, to_uint8_official)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_flag(p, "--model-path", help="BAAI/Emu3-Gen or BAAI/Emu3-Gen-hf folder (safetensors shards)")
    add_flag(p, "--vq-path", help="BAAI/Emu3-VisionTokenizer folder; default --model-path if that is an -hf folder")
    add_flag(p, "--tokenizer-path", help="folder with emu3.tiktoken and emu3_vision_tokens.txt (default --model-path)")
    add_flag(p, "--prompt")
    add_flag(p, "--prompts-file")
    p.add_argument("--ratio", default=DEFAULT.size, help="aspect ratio W:H; the grid follows the model's image area "
                                                         "(1:1 -> 90x90 tokens, 720x720 px for Emu3-Gen)")
    add_text_to_image_tail(p, DEFAULT, "the text model", out_dir="emu3_out", configs=PRESETS,
                           default_config=DEFAULT.config)
    add_renamed(p, "--out", "--out-dir")
    add_renamed(p, "--prompts", "--prompts-file")
    return p


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(main, args)


if __name__ == "__main__":
    sys.exit(cli())
