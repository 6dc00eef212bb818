"""Generate Lumina-mGPT images with ZipAR on one device (the official generate_examples/generate.py, on our engine).

python -m lumina_mgpt.generate --model-path Lumina-mGPT-7B-768 --vq-path ckpts/chameleon/tokenizer \
    --prompt "a corgi wearing sunglasses on a beach" --width 768 --height 768 --window 14 --out-dir out/ --json
Any resolution checkpoint (--resolution 512/768/1024, default: the smallest one trained on the size)
and every size it was trained on (lumina_mgpt.prompt.crop_sizes: 73 at 768, e.g. 1024x576).
Speed runs without files: --random-init --config 7B (or tiny on a CPU). Defaults (lumina_mgpt/presets.py):
CFG 3.0 (the official branch that starts at BOI), image top-k 2000, temperature 1, top-p 1 (inference_solver.py).
"""
import argparse
import dataclasses
import sys

import torch

from common.cli import (HelpFormatter, add_flag, add_renamed, add_text_to_image_tail, check_model_files, check_positive,
                        check_runtime, fill_random_init_config, note_random_init, run_main)
from common.path_checks import check_input_dir, check_output_dir
from common.report import run_text_to_image
from common.zipar.config import PRECISIONS, DecodeConfig, decode_config_from_args
from common.prompts import collect_prompts
from lumina_mgpt.config import PRESETS, RESOLUTIONS
from lumina_mgpt.pipeline import LuminaPipeline, checkpoint_resolution, load_pipeline
from lumina_mgpt.presets import DEFAULT
from lumina_mgpt.prompt import check_size
from lumina_mgpt.vqgan import to_uint8_official


def resolution_for(args: argparse.Namespace) -> int:
    return args.resolution if args.resolution is not None else checkpoint_resolution(args.width, args.height)


def check_args(args: argparse.Namespace) -> tuple[DecodeConfig, list[str]]:
    """Validate everything cheap before any model is built; raises ValueError/FileNotFoundError."""
    config = decode_config_from_args(args)
    prompts = collect_prompts(args.prompt, args.prompts_file)
    check_size(args.width, args.height, resolution_for(args))
    fill_random_init_config(args, PRESETS, DEFAULT.config)
    check_model_files(args, ["--model-path", "--vq-path"], check_input_dir, unchecked=["--tokenizer-path"])
    check_positive(batch_size=args.batch_size)
    check_runtime(args)
    check_output_dir(args.out_dir)
    return config, prompts


def main(args: argparse.Namespace) -> dict:
    config, prompts = check_args(args)
    note_random_init(args, f"Lumina-mGPT {args.config}")
    pipe: LuminaPipeline = load_pipeline(args.model_path, args.vq_path, args.tokenizer_path, args.config,
                                         resolution_for(args), torch.device(args.device), PRECISIONS[args.precision],
                                         args.random_init, args.seed)
    return run_text_to_image(pipe, prompts, (args.width, args.height), config, args, to_uint8_official)


class Parser(argparse.ArgumentParser):
    """Resolves --cfg, the official generate_examples/generate.py flag, into --cfg-scale after parsing (an exact
    option string: argparse would reject the prefix --cfg as ambiguous otherwise). Both spellings with
    different values are refused rather than the later one silently winning; neither: the preset's."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        cfg = parsed.__dict__.pop("cfg", None)
        if cfg is not None and parsed.cfg_scale is not None and cfg != parsed.cfg_scale:
            self.exit(2, f"error: --cfg {cfg} and --cfg-scale {parsed.cfg_scale} are two spellings of one setting "
                         "with different values; give one of them\n")
        parsed.cfg_scale = next(v for v in (cfg, parsed.cfg_scale, DEFAULT.cfg_scale) if v is not None)
        return parsed, rest


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=HelpFormatter)
    add_flag(p, "--model-path", help="Alpha-VLLM/Lumina-mGPT-7B-{512,768,768-Omni,1024} folder")
    add_flag(p, "--vq-path", help="Meta's chameleon tokenizer folder with vqgan.yaml and vqgan.ckpt")
    add_flag(p, "--tokenizer-path", help="tokenizer.json or its folder (default --model-path; only the -768 repo "
                                         "ships it)")
    add_flag(p, "--prompt")
    add_flag(p, "--prompts-file")
    width, height = DEFAULT.size
    p.add_argument("--width", type=int, default=width, help="image width in pixels (a size the checkpoint supports)")
    p.add_argument("--height", type=int, default=height, help="image height in pixels")
    p.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=None,
                   help="the checkpoint's training size; default: the smallest one trained on --width x --height")
    # --cfg-scale unset (None) until Parser resolves it with --cfg
    add_text_to_image_tail(p, dataclasses.replace(DEFAULT, cfg_scale=None), "the text model", out_dir="lumina_out",
                           configs=PRESETS, default_config=DEFAULT.config)
    p.add_argument("--cfg", type=float, default=None, metavar="G",
                   help=f"generate_examples/generate.py's spelling of --cfg-scale (both unset: {DEFAULT.cfg_scale})")
    add_renamed(p, "--out", "--out-dir")
    add_renamed(p, "--prompts", "--prompts-file")
    add_renamed(p, "--vqgan-dir", "--vq-path")
    return p


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(main, args)


if __name__ == "__main__":
    sys.exit(cli())
