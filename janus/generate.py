"""Generate Janus-Pro images with ZipAR on one device (deepseek-ai/Janus generation_inference.py, on our engine).

python -m janus.generate --model-path Janus-Pro-7B --prompt "a red cube on a mat" --window 16 --out-dir out/ --json
--model-path: a deepseek-ai/Janus-Pro-1B/-7B folder (pytorch_model*.bin) or a deepseek-community/Janus-Pro-1B/-7B
one (safetensors); both hold the tokenizer and the VQ decoder. Speed runs without files: --random-init
--config 7B (or tiny on a CPU). Defaults (janus/presets.py) follow generation_inference.py: CFG 5 with the
release's unconditional prompt (--unconditional transformers: transformers' generate), temperature 1, no
top-k, 384 x 384 px (24 x 24 codes). The pipeline API (load_pipeline, JanusPipeline.generate) lives in
janus/pipeline.py; docs/janus.md has pass counts and what was checked against what.
"""
import argparse
import sys

import torch

from common.cli import (HelpFormatter, add_flag, add_text_to_image_tail, check_model_files, check_positive,
                        check_runtime, fill_random_init_config, note_random_init, run_main)
from common.path_checks import check_input_dir, check_output_dir
from common.prompts import collect_prompts
from common.report import run_text_to_image
from common.zipar.layout import Layout
from common.zipar.window import num_passes
from common.zipar.config import PRECISIONS, DecodeConfig, decode_config_from_args
from common.weights.hf_shards import read_config_json
from janus.checkpoint import check_folder_is_janus
from janus.config import PRESETS, config_from_json
from janus.pipeline import JanusPipeline, load_pipeline
from janus.presets import DEFAULT
from janus.prompt import UNCONDITIONALS
from janus.vq import to_uint8_official


def check_args(args: argparse.Namespace) -> tuple[DecodeConfig, list[str], int]:
    """Validate everything cheap before any model is built (the architecture from --config or the folder's
    config.json); raises ValueError/FileNotFoundError. -> (decode config, prompts, image size)."""
    config = decode_config_from_args(args)
    prompts = collect_prompts(args.prompt, args.prompts_file)
    fill_random_init_config(args, PRESETS, DEFAULT.config)
    check_model_files(args, ["--model-path"], check_input_dir, unchecked=["--tokenizer-path"])
    check_positive(batch_size=args.batch_size)
    check_runtime(args)
    check_output_dir(args.out_dir)
    if args.random_init:
        model = PRESETS[args.config]
    else:
        check_folder_is_janus(args.model_path)
        model = config_from_json(read_config_json(args.model_path, "Janus-Pro"))
    size = model.image_size if args.size is None else args.size
    if size != model.image_size:
        raise ValueError(f"--size {size}: the model generates {model.image_size} px images (omit --size)")
    config.check_grid(model.grid)
    # the schedule's own checks (a window, first-row rule or compat the family cannot run) before loading
    num_passes(Layout(rows=model.grid, cols=model.grid, prefix_len=1, family=JanusPipeline.family), config.window,
               config.compat, config.first_row)
    return config, prompts, size


def main(args: argparse.Namespace) -> dict:
    config, prompts, size = check_args(args)
    note_random_init(args, f"Janus-Pro {args.config}")
    pipe: JanusPipeline = load_pipeline(args.model_path, args.tokenizer_path, args.config, torch.device(args.device),
                                        PRECISIONS[args.precision], args.random_init, args.seed, args.unconditional)
    return run_text_to_image(pipe, prompts, size, config, args, to_uint8_official)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_flag(p, "--model-path", help="deepseek-ai/Janus-Pro-{1B,7B} or deepseek-community/Janus-Pro-{1B,7B} folder")
    add_flag(p, "--tokenizer-path", help="tokenizer.json or its folder (default --model-path)")
    add_flag(p, "--prompt")
    add_flag(p, "--prompts-file")
    p.add_argument("--size", type=int, default=None,
                   help="image side in pixels; Janus-Pro generates 384 only (24 x 24 codes); default: the model's")
    p.add_argument("--unconditional", choices=UNCONDITIONALS, default="release",
                   help="the CFG branch's prompt: release = the prompt with every token but the first and last "
                        "replaced by the pad id (generation_inference.py, what published numbers use); transformers "
                        "= every token but BOS and <begin_of_image> padded (JanusForConditionalGeneration.generate); "
                        "the same ids unless the prompt text holds those tokens")
    add_text_to_image_tail(p, DEFAULT, "the language model", out_dir="janus_out", configs=PRESETS,
                           default_config=DEFAULT.config)
    return p


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(main, args)


if __name__ == "__main__":
    sys.exit(cli())
