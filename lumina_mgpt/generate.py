"""Generate Lumina-mGPT images with ZipAR on one device (the official generate_examples/generate.py, on our engine).

python -m lumina_mgpt.generate --model-path Lumina-mGPT-7B-768 --vqgan-dir ckpts/chameleon/tokenizer \
    --prompt "a corgi wearing sunglasses on a beach" --width 768 --height 768 --window 14 --out out/ --json
Any resolution checkpoint (--resolution 512/768/1024, default: the smallest one trained on the size)
and every size it was trained on (lumina_mgpt.prompt.crop_sizes: 73 at 768, e.g. 1024x576).
Speed runs without files: --random-init --config 7B (or tiny on a CPU). Defaults: CFG 3.0 (the official
branch that starts at BOI), image top-k 2000, temperature 1, top-p 1 (inference_solver.py).
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
from lumina_mgpt.config import PRESETS
from lumina_mgpt.pipeline import RESOLUTIONS, LuminaPipeline, load_pipeline, ntp_passes_official  # noqa: F401 (API)
from lumina_mgpt.prompt import check_size, crop_sizes, nearest_sizes, size_rule
from lumina_mgpt.vqgan import to_uint8_official


def resolution_for(args: argparse.Namespace) -> int:
    if args.resolution is not None:
        return args.resolution
    fits = [r for r in RESOLUTIONS if (args.width, args.height) in crop_sizes(r)]
    if not fits:
        near = {r: nearest_sizes(args.width, args.height, r, 2) for r in RESOLUTIONS}
        rules = "; ".join(f"{r} px: {size_rule(r)}" for r in RESOLUTIONS)
        raise ValueError(f"{args.width}x{args.height} is not a size of any Lumina-mGPT checkpoint ({rules}); nearest: "
                         + ", ".join(f"{r} px {sizes}" for r, sizes in near.items()))
    return fits[0]


def check_args(args: argparse.Namespace) -> tuple[DecodeConfig, list[str]]:
    """Validate everything cheap before any model is built; raises ValueError/FileNotFoundError."""
    config = decode_config_from_args(args)
    prompts = collect_prompts(args.prompt, args.prompts)
    check_size(args.width, args.height, resolution_for(args))
    if not args.random_init:
        if args.model_path is None or args.vqgan_dir is None:
            raise ValueError("pass --model-path and --vqgan-dir, or --random-init to run without files")
        for flag, path in (("--model-path", args.model_path), ("--vqgan-dir", args.vqgan_dir)):
            if not Path(path).is_dir():
                raise FileNotFoundError(f"{flag}: folder not found: {path}")
    check_runtime(args)
    check_output_dir(args.out)
    return config, prompts


def main(args: argparse.Namespace) -> dict:
    config, prompts = check_args(args)
    device = torch.device(args.device)
    if args.random_init:
        print(f"--random-init: Lumina-mGPT {args.config} with random weights (seed {args.seed}); images are noise",
              file=sys.stderr)
    pipe: LuminaPipeline = load_pipeline(args.model_path, args.vqgan_dir, args.tokenizer_path, args.config,
                                         resolution_for(args), device, PRECISIONS[args.precision], args.random_init,
                                         args.seed)
    rows, cols = pipe.grid(args.width, args.height)
    seeds = image_seeds(args.seed, torch.arange(len(prompts), device=device))

    start = time.perf_counter()
    note_window(config, cols)
    with pass_progress(config, rows, cols, args.quiet or args.json) as on_pass:
        result = pipe.decode_tokens(prompts, seeds, config, args.width, args.height, on_pass=on_pass)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    images = pipe.vq.decode(result.tokens)
    out = Path(args.out)
    files = []
    for i, pixels in enumerate(to_uint8_official(images)):
        files.append(str(out / f"{i:04d}.png"))
        save_png_atomic(pixels, files[-1])
    report = end_of_row_report(result, config, rows, cols, ntp_passes_official(rows, cols), seconds, files)
    print_report(report, args.json, out)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None, help="Alpha-VLLM/Lumina-mGPT-7B-{512,768,768-Omni,1024} folder")
    p.add_argument("--vqgan-dir", default=None, help="Meta's chameleon tokenizer folder with vqgan.yaml and vqgan.ckpt")
    p.add_argument("--tokenizer-path", default=None,
                   help="tokenizer.json or its folder (default --model-path; only the -768 repo ships it)")
    p.add_argument("--prompt", action="append", default=None, help="a text prompt; repeat for several images")
    p.add_argument("--prompts", default=None, help="text file, one prompt per line (added after --prompt)")
    p.add_argument("--width", type=int, default=768, help="image width in pixels (a size the checkpoint supports)")
    p.add_argument("--height", type=int, default=768, help="image height in pixels")
    p.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=None,
                   help="the checkpoint's training size; default: the smallest one trained on --width x --height")
    p.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed (seed, i)")
    p.add_argument("--out", default="lumina_out", help="output folder; image i is written as {i:04d}.png")
    p.add_argument("--random-init", action="store_true", help="random weights for --config, no files")
    p.add_argument("--config", choices=list(PRESETS), default="7B", help="model preset for --random-init")
    p.add_argument("--json", action="store_true", help="print one JSON object with passes, timing and files")
    add_runtime_args(p, "the text model")
    add_decode_args(p, cfg_scale=3.0, top_k=2000)  # inference_solver.py create_logits_processor defaults
    # the official generate_examples/generate.py flag; without it argparse would reject the prefix --cfg as
    # ambiguous (--cfg-scale, --cfg-interval). An exact option string wins over prefix matching.
    p.add_argument("--cfg", dest="cfg_scale", type=float, default=argparse.SUPPRESS, help="alias of --cfg-scale")
    return p


def cli(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_main(main, args)


if __name__ == "__main__":
    sys.exit(cli())
