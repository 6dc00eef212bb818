"""Generate Emu3-Gen images with ZipAR on one device (the official Emu3/image_generation.py, on our engine).

python -m emu3.generate --model-path Emu3-Gen --vq-path Emu3-VisionTokenizer --prompt "a portrait of young girl." \
    --ratio 1:1 --window 7 --out out/ --json
With BAAI/Emu3-Gen-hf, --model-path holds the VQ too; the tokenizer stays the original tiktoken one
(--tokenizer-path Emu3-Gen). Speed runs without files: --random-init --config 8B (or tiny on a CPU).
Defaults follow image_generation.py: CFG 3.0 with its negative prompt, top-k 2048, temperature 1, top-p 1.
The pipeline API (load_pipeline, Emu3Pipeline.generate) lives in emu3/pipeline.py.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

from common.cli import (add_runtime_args, check_output_dir, check_runtime, end_of_row_report,
                        note_window, pass_progress, print_report, run_main)
from common.config import PRECISIONS, DecodeConfig, add_decode_args, decode_config_from_args
from common.images import save_png_atomic
from common.prompts import collect_prompts
from common.sampling import image_seeds
from emu3.config import PRESETS
from emu3.pipeline import Emu3Pipeline, layout_for, load_pipeline, ntp_passes_official  # noqa: F401 (API)
from emu3.prompt import parse_ratio, prompt_ids
from emu3.vision_decoder import to_uint8_official

def check_args(args: argparse.Namespace) -> tuple[DecodeConfig, list[str]]:
    """Validate everything cheap before any model is built; raises ValueError/FileNotFoundError."""
    config = decode_config_from_args(args)
    prompts = collect_prompts(args.prompt, args.prompts)
    parse_ratio(args.ratio)  # the grid itself needs the model's image area
    if not args.random_init:
        if args.model_path is None:
            raise ValueError("pass --model-path (and --vq-path), or --random-init to run without files")
        for flag, path in (("--model-path", args.model_path), ("--vq-path", args.vq_path),
                           ("--tokenizer-path", args.tokenizer_path)):
            if path is not None and not Path(path).is_dir():
                raise FileNotFoundError(f"{flag}: folder not found: {path}")
    check_runtime(args)
    check_output_dir(args.out)
    return config, prompts


def main(args: argparse.Namespace) -> dict:
    config, prompts = check_args(args)
    device = torch.device(args.device)
    if args.random_init:
        print(f"--random-init: Emu3 {args.config} with random weights (seed {args.seed}); images are noise",
              file=sys.stderr)
    pipe: Emu3Pipeline = load_pipeline(args.model_path, args.vq_path, args.tokenizer_path, args.config, device,
                                       PRECISIONS[args.precision], args.random_init, args.seed)
    rows, cols = pipe.grid(args.ratio)
    seeds = image_seeds(args.seed, torch.arange(len(prompts), device=device))

    start = time.perf_counter()
    note_window(config, cols)
    with pass_progress(config, rows, cols, args.quiet or args.json) as on_pass:
        result = pipe.decode_tokens(prompts, seeds, config, args.ratio, on_pass=on_pass)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        images = pipe.vq.decode(result.tokens)
    out = Path(args.out)
    files = []
    for i, pixels in enumerate(to_uint8_official(images).numpy()):
        files.append(str(out / f"{i:04d}.png"))
        save_png_atomic(pixels, files[-1])
    report = end_of_row_report(result, config, rows, cols, ntp_passes_official(rows, cols), seconds, files)
    report["prompt_tokens"] = [len(prompt_ids(pipe.tokenizer, p, rows, cols)) for p in prompts]
    print_report(report, args.json, out)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None, help="BAAI/Emu3-Gen or BAAI/Emu3-Gen-hf folder (safetensors shards)")
    p.add_argument("--vq-path", default=None,
                   help="BAAI/Emu3-VisionTokenizer folder; default --model-path if that is an -hf folder")
    p.add_argument("--tokenizer-path", default=None,
                   help="folder with emu3.tiktoken and emu3_vision_tokens.txt (default --model-path)")
    p.add_argument("--prompt", action="append", default=None, help="a text prompt; repeat for several images")
    p.add_argument("--prompts", default=None, help="text file, one prompt per line (added after --prompt)")
    p.add_argument("--ratio", default="1:1", help="aspect ratio W:H; the grid follows the model's image area "
                                                  "(1:1 -> 90x90 tokens, 720x720 px for Emu3-Gen)")
    p.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed (seed, i)")
    p.add_argument("--out", default="emu3_out", help="output folder; image i is written as {i:04d}.png")
    p.add_argument("--random-init", action="store_true", help="random weights for --config, no files")
    p.add_argument("--config", choices=list(PRESETS), default="8B", help="model preset for --random-init")
    p.add_argument("--json", action="store_true", help="print one JSON object with passes, timing and files")
    add_runtime_args(p, "the text model")
    add_decode_args(p, cfg_scale=3.0, top_k=2048)  # Emu3/image_generation.py: guidance 3.0, top_k 2048
    return p


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(main, args)


if __name__ == "__main__":
    sys.exit(cli())
