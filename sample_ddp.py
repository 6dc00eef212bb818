"""Sample images for FID on any number of processes, resumably and reproducibly.

torchrun --nproc_per_node=8 sample_ddp.py --model llamagen-L --ckpt-dir ckpts --window 16
torchrun --nproc_per_node=8 sample_ddp.py --model lumina-mgpt-768 --model-path Lumina-mGPT-7B-768 \
    --vqgan-dir ckpts/chameleon/tokenizer --prompts coco30k.txt --window 14 --num-fid-samples 30000
python sample_ddp.py --window 8 --num-fid-samples 64        # the demo model, one process

Follows DiT's sample_ddp.py (global index -> file name, rank-0 npz, barriers) and LlamaGen's
autoregressive/sample/sample_c2i_ddp.py (folder name, pixel conversion, npz layout), with three changes:
- The image set is a function of the arguments only. Image i has class i % num_classes (text-to-image
  presets: prompt i % N of --prompts, one per line) and seed image_seeds(global_seed, i); rank r takes i = r, r + world, r + 2 world, ... The engine's randomness is
  counter-based, so image i is the same PNG for any world size and batch size on one device type. (The
  official script draws random classes per batch and seeds global_seed * world_size + rank.)
- Resumable. PNGs are written atomically; a re-run skips images already complete (PIL verify, and the
  tEXt label, prompt and seed those of the index: common/run_folder.py's metadata_matches) and redoes
  missing, damaged or mismatching ones (a PNG of another index). args.json in the run folder records the
  arguments that define the image set (not N, batch size or world size: re-running with a larger N
  extends a run); a folder holding another image set is refused unless --overwrite, which deletes it.
- Reported. Each PNG carries its label, seed and forward passes in tEXt chunks (so resumed images are
  counted too); rank 0 writes summary.json beside the PNGs and the npz (arr_0: uint8 NHWC images, the
  ADM evaluator's input; arr_1: labels, as guided-diffusion's image_sample.py saves them, or prompt indices).
"""
import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from common.cli import add_runtime_args, check_runtime, run_main
from common.config import PRECISIONS, DecodeConfig, add_decode_args, decode_config_from_args
from common.images import save_png_with_text_atomic, to_fid_uint8
from common.placeholder import DEFAULT_POLICY
from common.prompts import read_prompt_file
from common.run_folder import build_npz, check_run_dir, existing_state, image_text, png_path, write_json_atomic
from common.sampling import image_seeds
from common.schedule import Layout, num_passes
from llamagen.checkpoint import build_gpt, load_gpt_weights
from llamagen.generate import generate, layout_for
from llamagen.model import random_init_
from llamagen.presets import FID_PRESETS, FIDPreset
from llamagen.sample import load_tokenizer, tokenizer_downsample

STOPPED_EXIT_CODE = 3  # --stop-after: the exit status of a run that was cut short on purpose


@dataclass(frozen=True)
class PromptPreset:
    """What --model NAME samples for a text-to-image model: image i has prompt i % N of --prompts."""

    family: str  # "lumina_mgpt" or "emu3": the folder whose load_pipeline builds it
    size: tuple[tuple[str, object], ...]  # the pipeline's generate() size arguments
    cfg_scale: float
    top_k: int
    image_size_eval: int  # square PNGs, bicubic resize (256: the usual COCO-FID input)
    checkpoint: str  # the Hugging Face folder --model-path should hold
    temperature: float = 1.0


PROMPT_PRESETS: dict[str, PromptPreset] = {
    # cfg 3.0 / top-k 2000: Lumina-mGPT's inference defaults; top-k 2048: Emu3/image_generation.py
    **{f"lumina-mgpt-{r}": PromptPreset("lumina_mgpt", (("width", r), ("height", r)), 3.0, 2000, 256,
                                        f"Alpha-VLLM/Lumina-mGPT-7B-{r}") for r in (512, 768, 1024)},
    "emu3-gen": PromptPreset("emu3", (("ratio", "1:1"),), 3.0, 2048, 256, "BAAI/Emu3-Gen"),
}
ALL_PRESETS = [*FID_PRESETS, *PROMPT_PRESETS]


def preset_of(name: str) -> FIDPreset | PromptPreset:
    if name in FID_PRESETS:
        return FID_PRESETS[name]
    if name in PROMPT_PRESETS:
        return PROMPT_PRESETS[name]
    raise ValueError(f"unknown --model {name!r}; valid: {', '.join(ALL_PRESETS)}")


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) under plain python."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Flags left unset take the --model preset's values (llamagen.presets.FID_PRESETS, PROMPT_PRESETS)."""
    preset = preset_of(args.model)
    for flag, value in (("cfg_scale", preset.cfg_scale), ("top_k", preset.top_k),
                        ("temperature", preset.temperature), ("image_size_eval", preset.image_size_eval)):
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    if isinstance(preset, FIDPreset) and not args.random_init:
        ckpt_dir = args.ckpt_dir or preset.ckpt_dir
        if args.gpt_ckpt is None and ckpt_dir is not None:
            args.gpt_ckpt = str(Path(ckpt_dir) / preset.gpt_file)
        if args.vq_ckpt is None and ckpt_dir is not None:
            args.vq_ckpt = str(Path(ckpt_dir) / preset.vq_file)
    return args


def check_args(args: argparse.Namespace, world_size: int) -> DecodeConfig:
    """Everything cheap, before a process group or model exists; every rank reaches the same verdict."""
    preset = preset_of(args.model)
    config = decode_config_from_args(args)
    if args.num_fid_samples < 1 or args.per_proc_batch_size < 1:
        raise ValueError("--num-fid-samples and --per-proc-batch-size must be >= 1")
    if world_size > args.num_fid_samples:
        raise ValueError(f"{world_size} processes for {args.num_fid_samples} images: "
                         "use at most as many processes as --num-fid-samples")
    if args.image_size_eval < 1:
        raise ValueError(f"--image-size-eval must be >= 1, got {args.image_size_eval}")
    image_seeds(args.global_seed, torch.zeros(1))  # raises for a seed out of range
    if isinstance(preset, PromptPreset):
        if args.compile:  # the text-to-image pipelines run eagerly; a silently ignored flag would enter the run key
            raise ValueError(f"--compile is not supported for the text-to-image presets ({args.model}); drop it")
        check_prompt_args(args, preset)
    elif args.prompts is not None:
        raise ValueError(f"--prompts is for the text-to-image presets ({', '.join(PROMPT_PRESETS)}); "
                         f"--model {args.model} is class-conditional")
    elif not args.random_init:
        if args.gpt_ckpt is None or args.vq_ckpt is None:
            raise ValueError(f"--model {args.model}: pass --ckpt-dir holding {preset.gpt_file} and {preset.vq_file}, "
                             "or --gpt-ckpt and --vq-ckpt, or --random-init")
        for flag, path in (("--gpt-ckpt", args.gpt_ckpt), ("--vq-ckpt", args.vq_ckpt)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{flag}: checkpoint file not found: {path}")
    check_runtime(args)
    return config


def check_prompt_args(args: argparse.Namespace, preset: PromptPreset) -> None:
    if args.prompts is None:
        raise ValueError(f"--model {args.model} is text-to-image: pass --prompts FILE (one prompt per line)")
    read_prompt_file(args.prompts)
    if args.gpt_ckpt or args.vq_ckpt or args.ckpt_dir:
        raise ValueError(f"--model {args.model}: use --model-path (and --vq-path, --tokenizer-path), "
                         "not the LlamaGen --gpt-ckpt/--vq-ckpt/--ckpt-dir")
    if not args.random_init:
        if args.model_path is None:
            raise ValueError(f"--model {args.model}: pass --model-path (a {preset.checkpoint} folder), or --random-init")
        for flag, path in (("--model-path", args.model_path), ("--vq-path", args.vq_path),
                           ("--tokenizer-path", args.tokenizer_path)):
            if path is not None and not Path(path).is_dir():
                raise FileNotFoundError(f"{flag}: folder not found: {path}")


def size_tag(args: argparse.Namespace) -> str:
    preset = preset_of(args.model)
    if isinstance(preset, FIDPreset):
        return str(preset.image_size)
    return "x".join(str(v) for _, v in preset.size).replace(":", "_")


def run_name(args: argparse.Namespace, config: DecodeConfig) -> str:
    """The run folder's name: the official pattern, with the ZipAR settings in it."""
    decoding = "ntp" if config.window is None else f"{'adaptive-' if config.adaptive else ''}w{config.window}"
    placeholder = None if config.placeholder == DEFAULT_POLICY else config.placeholder.replace(":", "_")
    decoding += "".join(f"-{x}" for x in (config.compat, placeholder) if x)
    cfg = f"{config.cfg_scale}" + ("" if config.cfg_interval == -1 else f"-interval-{config.cfg_interval}")
    arch = f"-{args.random_init_config}" if args.random_init and args.random_init_config != "full" else ""
    return (f"{args.model}{arch}-size-{size_tag(args)}-size-{args.image_size_eval}-{decoding}-"
            f"topk-{config.top_k}-topp-{config.top_p}-temperature-{config.temperature}-cfg-{cfg}-"
            f"{args.precision}-seed-{args.global_seed}")


def image_set(args: argparse.Namespace, config: DecodeConfig) -> dict:
    """The arguments that decide the pixels of image i (not N, batch size or world size)."""
    def weights(path):  # name and size: moving the folder keeps the run, another file does not
        if args.random_init or path is None:
            return None
        path = Path(path)
        files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.ckpt")) if path.is_dir() else [path]
        return {"name": path.name, "bytes": sum(f.stat().st_size for f in files)}
    key = {"model": args.model, "gpt_ckpt": weights(args.gpt_ckpt), "vq_ckpt": weights(args.vq_ckpt),
           "random_init": args.random_init, "image_size_eval": args.image_size_eval, "decoding": asdict(config),
           "global_seed": args.global_seed, "precision": args.precision,
           "device_type": torch.device(args.device).type, "compile": args.compile}
    if args.prompts is not None:  # the prompt list decides the images; its file name does not
        key.update(prompts_sha256=hashlib.sha256("\n".join(read_prompt_file(args.prompts)).encode()).hexdigest(),
                   model_path=weights(args.model_path), vq_path=weights(args.vq_path),
                   random_init_config=args.random_init_config if args.random_init else None)
    return key


def start_run_dir(run_dir: Path, npz: Path, args: argparse.Namespace, key: dict) -> None:
    """Rank 0, after every rank's checks: clear the folder for --overwrite, then record the arguments."""
    if args.overwrite:
        for path in [*run_dir.glob("[0-9]*.png"), *run_dir.glob(".*.png.tmp"), run_dir / "summary.json", npz]:
            path.unlink(missing_ok=True)
    write_json_atomic(run_dir / "args.json", {"image_set": key, "args": vars(args)})


def index_text(sampler, global_seed: int, idx: torch.Tensor) -> list[dict[str, str]]:
    """The identity tEXt of images idx, from the index rule alone: label (class i % num_classes, or prompt
    index i % N), seed image_seeds(global_seed, i), and the prompt itself for the text-to-image presets."""
    labels, seeds = sampler.labels(idx).tolist(), image_seeds(global_seed, idx).tolist()
    texts = []
    for label, seed in zip(labels, seeds):
        prompt = sampler.prompt(label)
        texts.append({"label": str(label), "seed": str(seed), **({} if prompt is None else {"prompt": prompt})})
    return texts


def stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def summarize(args, config: DecodeConfig, sampler, texts: list[dict], per_rank: list[dict], wall: float,
              device: torch.device, npz: Path) -> dict:
    rows, cols = sampler.grid
    generated = sum(r["generated"] for r in per_rank)
    summary = {
        "model": args.model, "preset": asdict(preset_of(args.model)), "num_images": len(texts),
        "grid": [rows, cols], "image_size_eval": args.image_size_eval,
        "decoding": {**asdict(config), "effective_window": config.window_for(cols)},
        "forward_passes": stats([int(t["forward_passes"]) for t in texts]),
        "ntp_forward_passes": sampler.ntp_passes,  # the engine's NTP (end-of-row tokens ride along)
        "ntp_forward_passes_official": getattr(sampler, "ntp_passes_official", sampler.ntp_passes),
        "adaptive": None,
        "images_generated": generated, "images_resumed": len(texts) - generated,
        "wall_seconds": round(wall, 3), "images_per_second": round(generated / wall, 3) if generated else None,
        "per_rank_seconds": [round(r["seconds"], 3) for r in per_rank],
        "world_size": len(per_rank), "device": str(device), "torch_version": torch.__version__,
        "npz": str(npz), "args": vars(args),
    }
    if config.adaptive:
        windows = [w for t in texts for w in json.loads(t["accepted_windows"])]
        summary["adaptive"] = {"mean_accepted_window": float(np.mean(windows)) if windows else None,
                               "mean_rejections": float(np.mean([int(t["rejections"]) for t in texts]))}
    return summary


def evaluate_command(args, npz: Path) -> str:
    if args.model == "demo":
        return f"python evaluate.py {npz} --digits"
    if args.model in PROMPT_PRESETS:
        return f"python evaluate.py {npz} REFERENCE_IMAGES.npz   (e.g. the COCO images of your prompts)"
    return (f"python evaluate.py {npz} VIRTUAL_imagenet256_labeled.npz   "
            f"(or the ADM evaluator: python evaluations/c2i/evaluator.py VIRTUAL_imagenet256_labeled.npz {npz})")


class ClassImages:
    """LlamaGen class-to-image: image i has class i % num_classes."""

    def __init__(self, args, device: torch.device):
        preset = FID_PRESETS[args.model]
        gpt = build_gpt(preset.gpt_model, preset.image_size, tokenizer_downsample(preset.vq_model))
        if args.random_init:
            random_init_(gpt, args.global_seed)
            torch.manual_seed(args.global_seed)  # the VQ's default init: the same weights on every rank
            vq = load_tokenizer(preset.vq_model, None)
        else:
            load_gpt_weights(gpt, args.gpt_ckpt, preset.gpt_model)
            vq = load_tokenizer(preset.vq_model, args.vq_ckpt)
        self.gpt = gpt.to(device=device, dtype=PRECISIONS[args.precision]).eval()
        self.vq = vq.to(device).eval()
        self.model = torch.compile(self.gpt, dynamic=False) if args.compile else self.gpt
        self.compiled = args.compile
        layout = layout_for(self.gpt)
        self.grid, self.ntp_passes = (layout.rows, layout.cols), num_passes(layout, layout.cols)

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return idx % self.gpt.config.num_classes

    def prompt(self, label: int) -> None:
        return None

    def make(self, idx: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig):
        """-> ((B, 3, h, w) images in [-1, 1], DecodeResult)."""
        result = generate(self.model, self.labels(idx).to(seeds.device), seeds, config,
                          static_shapes=self.compiled and not config.adaptive)
        with torch.inference_mode():
            return self.vq.decode_code(result.tokens.flatten(1), self.grid), result


class PromptImages:
    """Text-to-image (Lumina-mGPT, Emu3): image i has prompt i % N of --prompts."""

    def __init__(self, args, device: torch.device):
        preset = PROMPT_PRESETS[args.model]
        self.prompts = read_prompt_file(args.prompts)
        self.size = dict(preset.size)
        dtype = PRECISIONS[args.precision]
        config_name = args.random_init_config
        if preset.family == "emu3":
            from emu3.pipeline import load_pipeline, ntp_passes_official
            config_name = "8B" if config_name == "full" else config_name
            self.pipeline = load_pipeline(args.model_path, args.vq_path, args.tokenizer_path, config_name, device,
                                          dtype, args.random_init, args.global_seed)
        else:
            from lumina_mgpt.generate import load_pipeline, ntp_passes_official
            config_name = "7B" if config_name == "full" else config_name
            self.pipeline = load_pipeline(args.model_path, args.vq_path, args.tokenizer_path, config_name,
                                          self.size["height"], device, dtype, args.random_init, args.global_seed)
        rows, cols = self.grid = self.pipeline.grid(**self.size)
        self.ntp_passes = num_passes(Layout(rows, cols, 1, end_of_row=True), cols)
        self.ntp_passes_official = ntp_passes_official(rows, cols)

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return idx % len(self.prompts)

    def prompt(self, label: int) -> str:
        return self.prompts[label]

    def make(self, idx: torch.Tensor, seeds: torch.Tensor, config: DecodeConfig):
        prompts = [self.prompts[j] for j in self.labels(idx).tolist()]
        return self.pipeline.generate(prompts, seeds, config, **self.size)


def load_sampler(args, device: torch.device) -> ClassImages | PromptImages:
    return PromptImages(args, device) if args.model in PROMPT_PRESETS else ClassImages(args, device)


def barrier(distributed: bool, device: torch.device) -> None:
    if distributed and device.type == "cuda":
        dist.barrier(device_ids=[device.index])
    elif distributed:
        dist.barrier()


def main(args: argparse.Namespace) -> dict | None:
    rank, world, local_rank = dist_env()
    config = check_args(args, world)
    run_dir = Path(args.sample_dir) / run_name(args, config)
    npz = run_dir.with_name(run_dir.name + ".npz")
    key = image_set(args, config)
    check_run_dir(run_dir, key, args.overwrite)

    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    distributed = "WORLD_SIZE" in os.environ
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return run(args, config, rank, world, device, distributed, run_dir, npz, key)
    finally:
        if distributed:
            dist.destroy_process_group()


def run(args, config, rank, world, device, distributed, run_dir, npz, key) -> dict | None:
    if rank == 0:
        start_run_dir(run_dir, npz, args, key)
    sampler = load_sampler(args, device)
    size = args.image_size_eval
    barrier(distributed, device)  # the folder is ready

    mine_idx = torch.arange(rank, args.num_fid_samples, world)
    states = [existing_state(run_dir, i, size, t)
              for i, t in zip(mine_idx.tolist(), index_text(sampler, args.global_seed, mine_idx))]
    todo = [i for i, state in zip(mine_idx.tolist(), states) if state != "complete"]
    mismatched = [states.count("mismatch")] * world
    if distributed:
        dist.all_gather_object(mismatched, mismatched[rank])
    if rank == 0:
        if args.random_init:
            print(f"--random-init: {args.model} has random weights (seed {args.global_seed}); images are noise",
                  file=sys.stderr)
        print(f"{args.model}: {args.num_fid_samples} images in {run_dir} on {world} process(es); "
              f"rank 0 has {len(todo)} to make", file=sys.stderr)
        if sum(mismatched):
            print(f"{sum(mismatched)} existing image(s) redone: their metadata did not match their index "
                  "(label or prompt, seed)", file=sys.stderr)
    barrier(distributed, device)
    wall_start = start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="rank 0", unit="img", disable=rank != 0, file=sys.stderr)
    written, passes = 0, []
    for b in range(0, len(todo), args.per_proc_batch_size):
        idx = torch.tensor(todo[b:b + args.per_proc_batch_size])
        seeds, identities = image_seeds(args.global_seed, idx), index_text(sampler, args.global_seed, idx)
        images, result = sampler.make(idx, seeds.to(device), config)  # (B, 3, h, w)
        pixels = to_fid_uint8(images, size)  # (B, size, size, 3)
        for j, i in enumerate(idx.tolist()):
            save_png_with_text_atomic(pixels[j], png_path(run_dir, i), image_text(identities[j], result, j))
            written += 1
            if args.stop_after is not None and written >= args.stop_after:
                print(f"rank {rank}: stopped after {written} images (--stop-after test hook)", file=sys.stderr)
                os._exit(STOPPED_EXIT_CODE)  # like a kill: no clean-up, no barrier
        passes += result.image_passes
        bar.update(len(idx))
        bar.set_postfix(passes=f"{np.mean(passes):.1f}")
    bar.close()
    seconds = time.perf_counter() - start
    mine = {"rank": rank, "seconds": seconds, "generated": written}
    per_rank = [None] * world
    if distributed:
        dist.all_gather_object(per_rank, mine)
    else:
        per_rank = [mine]
    wall = time.perf_counter() - wall_start

    summary = None
    if rank == 0:
        expected = index_text(sampler, args.global_seed, torch.arange(args.num_fid_samples))
        texts = build_npz(run_dir, npz, expected, size)
        summary = summarize(args, config, sampler, texts, per_rank, wall, device, npz)
        write_json_atomic(run_dir / "summary.json", summary)
        fp = summary["forward_passes"]
        rate = summary["images_per_second"]
        print(f"{len(texts)} images ({summary['images_generated']} made now, "
              f"{rate if rate is not None else '-'} images/s on {world} process(es)); forward passes per image "
              f"mean {fp['mean']:.1f} (NTP {summary['ntp_forward_passes']})\n"
              f"npz: {npz}\nsummary: {run_dir / 'summary.json'}\nevaluate: {evaluate_command(args, npz)}",
              file=sys.stderr)
    barrier(distributed, device)  # the npz exists before any rank returns
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo", metavar="NAME",
                   help=f"preset: model, tokenizer, sizes, default cfg/top-k; one of {', '.join(ALL_PRESETS)}")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="text-to-image presets: one prompt per line; image i uses prompt i mod N")
    p.add_argument("--model-path", default=None, help="text-to-image: the Hugging Face model folder")
    p.add_argument("--vq-path", "--vqgan-dir", dest="vq_path", default=None,
                   help="text-to-image: the image tokenizer folder (Lumina: vqgan.yaml + vqgan.ckpt; "
                        "Emu3: Emu3-VisionTokenizer)")
    p.add_argument("--tokenizer-path", default=None, help="text-to-image: the text tokenizer folder")
    p.add_argument("--random-init-config", choices=["full", "tiny"], default="full",
                   help="text-to-image with --random-init: the real architecture, or a tiny one (tests)")
    p.add_argument("--gpt-ckpt", default=None, help="GPT checkpoint; default --ckpt-dir/<official name>")
    p.add_argument("--vq-ckpt", default=None, help="VQ checkpoint (demo: tokenizer.json); default --ckpt-dir/<official name>")
    p.add_argument("--ckpt-dir", default=None,
                   help="folder with the official files (c2i_L_384.pt, vq_ds16_c2i.pt, ...); demo: checkpoints/demo")
    p.add_argument("--random-init", action="store_true", help="random weights, no checkpoints (tests, speed)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the GPT and pad passes to one shape (worth it on CUDA)")
    p.add_argument("--num-fid-samples", type=int, default=50_000, help="number of images N (indices 0..N-1)")
    p.add_argument("--per-proc-batch-size", type=int, default=32, help="images per forward batch on each process")
    p.add_argument("--global-seed", type=int, default=0, help="image i uses seed (global seed, i)")
    p.add_argument("--image-size-eval", type=int, default=None,
                   help="size of the saved images (bicubic resize as the official script); default per model")
    p.add_argument("--sample-dir", default="samples", help="parent folder of the run folder and its npz")
    p.add_argument("--overwrite", action="store_true",
                   help="delete a run with other arguments found in the run folder instead of refusing")
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help=f"test hook: each process exits ({STOPPED_EXIT_CODE}) after writing K images, like a kill")
    add_runtime_args(p, "the GPT")
    add_decode_args(p, cfg_scale=None, top_k=None, temperature=None)
    return p


def cli(argv=None) -> int:
    return run_main(lambda args: main(fill_defaults(args)), build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
