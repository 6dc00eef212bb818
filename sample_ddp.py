"""Sample images for FID on any number of processes, resumably and reproducibly (walk-through: docs/fid.md).

torchrun --nproc_per_node=8 sample_ddp.py --model llamagen-L --ckpt-dir ckpts --window 16
torchrun --nproc_per_node=8 sample_ddp.py --model lumina-mgpt-768 --model-path Lumina-mGPT-7B-768 \
    --vq-path ckpts/chameleon/tokenizer --prompts-file coco30k.txt --window 14 --num-fid-samples 30000
python sample_ddp.py --window 8 --num-fid-samples 64        # the demo model, one process

Follows DiT's sample_ddp.py (global index -> file name, rank-0 npz, barriers) and LlamaGen's
autoregressive/sample/sample_c2i_ddp.py (folder name, pixel conversion, npz layout), with three changes:
- The image set is a function of the arguments only: image i has class i % num_classes (text-to-image:
  prompt i % N) and seed image_seeds(seed, i); rank r takes i = r, r + world, ... With counter-based
  randomness image i is the same PNG for any world size and batch size on one device type. (The official
  script draws random classes per batch and seeds global_seed * world_size + rank.)
- Resumable and bound to what made it: PNGs are written atomically and a re-run redoes only missing,
  damaged or mismatching ones (common/run_folder.py); args.json records the arguments that decide the
  pixels and every weight file's content (common/fingerprint.py), written once every rank has loaded its
  weights; another image set in the folder is refused unless --overwrite; rank 0 holds an flock on it.
- Reported: each PNG carries its label, seed and passes in tEXt; rank 0 writes summary.json and RUN-nN.npz
  (arr_0: uint8 NHWC, the ADM evaluator's input; arr_1: labels or prompt indices), named by N. Presets:
  families.py. Samplers: llamagen.loader.ClassImages, t2i_pipeline.PromptImages.
"""
import argparse
import hashlib
import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from common.cli import (HelpFormatter, add_flag, add_renamed, add_runtime_args, check_model_files, check_random_init,
                        check_runtime, fill_random_init_config, note_random_init, run_main)
from common.path_checks import check_input_dir, check_input_file
from common.zipar.config import PRECISIONS, DecodeConfig, add_decode_args, decode_config_from_args
from common.fingerprint import fingerprint
from common.images import save_png_with_text_atomic, to_fid_uint8
from common.zipar.official import active_rule
from common.zipar.placeholder import COMPAT_POLICY, DEFAULT_POLICY
from common.prompts import collect_prompts
from common.ranks import agree, attempt, barrier, dist_env
from common.run_folder import (build_npz, check_image_set, check_npz_bounds, check_npz_fits, clear_run_dir,
                               clear_temporaries, existing_state, image_set_digest, image_text, locked_run_dir,
                               npz_path, png_path, write_json_atomic)
from common.zipar.sampling import image_seeds
from common.t2i_pipeline import PromptImages, PromptPreset
import families
from families import PRESETS, TEXT_TO_IMAGE, Family
from llamagen.loader import ClassImages
from llamagen.presets import Preset

STOPPED_EXIT_CODE = 3  # --stop-after: the exit status of a run that was cut short on purpose
PROMPT_PRESETS = [name for name, (family, _) in PRESETS.items() if family.text_to_image]


def preset_of(name: str) -> Preset | PromptPreset:
    return families.preset(name)[1]


def family_of(name: str) -> Family:
    return families.preset(name)[0]


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Flags left unset take the --model preset's values; LlamaGen files default to --ckpt-dir/<official name>."""
    preset = preset_of(args.model)
    for flag, value in (("cfg_scale", preset.cfg_scale), ("top_k", preset.top_k),
                        ("temperature", preset.temperature), ("image_size_eval", preset.image_size_eval)):
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    if isinstance(preset, Preset) and not args.random_init and (ckpt_dir := args.ckpt_dir or preset.ckpt_dir):
        args.gpt_ckpt = args.gpt_ckpt or str(Path(ckpt_dir) / preset.gpt_file)
        args.vq_path = args.vq_path or str(Path(ckpt_dir) / preset.vq_file)
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
    check_npz_bounds(args.num_fid_samples, args.image_size_eval)
    image_seeds(args.seed, torch.zeros(1))  # raises for a seed out of range
    if isinstance(preset, PromptPreset):
        check_prompt_args(args, preset)
    else:
        check_class_args(args, preset)
    check_npz_fits(args.num_fid_samples, args.image_size_eval)
    check_runtime(args)
    return config


def check_class_args(args: argparse.Namespace, preset: Preset) -> None:
    if args.prompt or args.prompts_file:
        raise ValueError(f"--prompt/--prompts-file are for the text-to-image presets ({', '.join(PROMPT_PRESETS)}); "
                         f"--model {args.model} is class-conditional")
    if args.config is not None:
        raise ValueError(f"--config is for the text-to-image presets; --model {args.model} is one architecture")
    check_random_init(args, ["--gpt-ckpt", "--vq-path", "--ckpt-dir"])
    if not args.random_init:
        if args.gpt_ckpt is None or args.vq_path is None:
            raise ValueError(f"--model {args.model}: pass --ckpt-dir holding {preset.gpt_file} and {preset.vq_file}, "
                             "or --gpt-ckpt and --vq-path, or --random-init")
        if args.ckpt_dir is not None:
            check_input_dir(args.ckpt_dir, "--ckpt-dir", f"folder holding {preset.gpt_file} and {preset.vq_file}")
        for flag, path in (("--gpt-ckpt", args.gpt_ckpt), ("--vq-path", args.vq_path)):
            check_input_file(path, flag, "checkpoint file")


def check_prompt_args(args: argparse.Namespace, preset: PromptPreset) -> None:
    if not (args.prompt or args.prompts_file):
        raise ValueError(f"--model {args.model} is text-to-image: pass --prompts-file FILE (one prompt per line) "
                         "or --prompt TEXT")
    collect_prompts(args.prompt, args.prompts_file)
    fill_random_init_config(args, family_of(args.model).configs, preset.config)
    if args.gpt_ckpt or args.ckpt_dir:
        raise ValueError(f"--model {args.model}: use --model-path (and --vq-path, --tokenizer-path), "
                         "not the LlamaGen --gpt-ckpt/--ckpt-dir")
    check_model_files(args, ["--model-path"], check_input_dir, optional=["--vq-path", "--tokenizer-path"],
                      hint=f" (a {preset.checkpoint} folder)", prefix=f"--model {args.model}: ")


def run_name(args: argparse.Namespace, config: DecodeConfig) -> str:
    """The run folder's name: the official pattern, with the ZipAR settings in it."""
    decoding = "ntp" if config.window is None else f"{'adaptive-' if config.adaptive else ''}w{config.window}"
    default = COMPAT_POLICY if config.compat else DEFAULT_POLICY
    placeholder = None if config.placeholder == default else config.placeholder.replace(":", "_")
    first_row = config.first_row and f"first-row-{config.first_row}"  # None: the family's default rule
    attention = config.prompt_attention and f"prompt-{config.prompt_attention}"  # None: compat's default
    decoding += "".join(f"-{x}" for x in (config.compat, attention, placeholder, first_row) if x)
    width, depth = config.tree_shape
    drafts = ("" if config.draft_coupling == "maximal" else f"-{config.draft_coupling}") + \
        ("-ahead" if config.draft_ahead else "") + (f"-tree{width}x{depth + 1}" if width > 1 else "")
    decoding += f"-sjd{config.draft_len}-{config.draft_init}{drafts}" if config.draft_len else ""
    cfg = f"{config.cfg_scale}" + ("" if config.cfg_interval == -1 else f"-interval-{config.cfg_interval}")
    other = args.random_init and args.config is not None and args.config != preset_of(args.model).config
    arch = f"-{args.config}" if other else ""  # --config is None for class presets (check_class_args)
    return (f"{args.model}{arch}-size-{preset_of(args.model).size_tag}-size-{args.image_size_eval}-{decoding}-"
            f"topk-{config.top_k}-topp-{config.top_p}-temperature-{config.temperature}-cfg-{cfg}-"
            f"{args.precision}-seed-{args.seed}")


def image_set(args: argparse.Namespace, config: DecodeConfig, cache_dir: Path | None = None) -> dict:
    """The arguments and files that decide the pixels of image i (not N, batch size or world size). Weight
    and tokenizer files enter by content (common/fingerprint.py: sha256, cached beside each file, else in
    cache_dir), so moving a folder keeps the run and another file of the same name and size does not.
    The key names predate the current flag names (global_seed: --seed; vq_ckpt: a LlamaGen --vq-path)."""
    def weights(path):
        return None if args.random_init or path is None else fingerprint(path, cache_dir)
    prompts = args.model in PROMPT_PRESETS
    files = {} if prompts else {"gpt_ckpt": weights(args.gpt_ckpt), "vq_ckpt": weights(args.vq_path)}
    key = {"model": args.model, **files, "random_init": args.random_init, "image_size_eval": args.image_size_eval,
           "decoding": asdict(config), "global_seed": args.seed, "precision": args.precision,
           "device_type": torch.device(args.device).type, "compile": args.compile}
    if prompts:  # the prompt list decides the images; its file name does not
        text = "\n".join(collect_prompts(args.prompt, args.prompts_file))
        key.update(prompts_sha256=hashlib.sha256(text.encode()).hexdigest(), model_path=weights(args.model_path),
                   vq_path=weights(args.vq_path), tokenizer_path=weights(args.tokenizer_path),
                   random_init_config=(None if not args.random_init else  # "full": the name of earlier runs
                                       "full" if args.config == preset_of(args.model).config else args.config))
    return key


def index_text(sampler, global_seed: int, idx: torch.Tensor, digest: str) -> list[dict[str, str]]:
    """The identity tEXt of images idx, from the index rule and the run: label (class i % num_classes, or
    prompt index i % N), seed image_seeds(global_seed, i), the prompt itself for the text-to-image presets,
    and the run's image-set digest (common.run_folder.image_set_digest)."""
    labels, seeds = sampler.labels(idx).tolist(), image_seeds(global_seed, idx).tolist()
    prompts = [sampler.prompt(label) for label in labels]
    return [{"label": str(label), "seed": str(seed), **({} if prompt is None else {"prompt": prompt}),
             "image_set": digest} for label, seed, prompt in zip(labels, seeds, prompts)]


def stats(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def summarize(args, config: DecodeConfig, sampler, texts: list[dict], per_rank: list[dict], wall: float,
              device: torch.device, npz: Path) -> dict:
    rows, cols = sampler.grid
    rule = active_rule(sampler.layout.family, config.compat)
    generated = sum(r["generated"] for r in per_rank)
    summary = {
        "model": args.model, "preset": asdict(preset_of(args.model)), "num_images": len(texts),
        "grid": [rows, cols], "image_size_eval": args.image_size_eval,
        "decoding": {**asdict(config), "effective_window": config.window_for(sampler.layout)},
        "forward_passes": stats([int(t["forward_passes"]) for t in texts]),
        # compat="official": header passes the released code spends on tokens our prefill holds (common.zipar.official)
        "official_header_passes": None if rule is None else rule.header_passes,
        "ntp_forward_passes": sampler.ntp_passes,  # the engine's NTP (end-of-row tokens ride along)
        "ntp_forward_passes_official": sampler.ntp_passes_official,
        "adaptive": None, "row_drafts": None,
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
    if config.draft_len:
        summary["row_drafts"] = {"draft_len": config.draft_len, "draft_init": config.draft_init,
                                 "draft_coupling": config.draft_coupling, "draft_ahead": config.draft_ahead,
                                 "draft_tree": list(config.tree_shape),
                                 "mean_tokens_per_row_pass": float(np.mean([float(t["tokens_per_row_pass"]) for t in texts])),
                                 "mean_draft_rejections": float(np.mean([int(t["draft_rejections"]) for t in texts]))}
    return summary


def evaluate_command(args, npz: Path) -> str:
    if args.model == "demo":
        return f"python evaluate.py {npz} --digits"
    if args.model in PROMPT_PRESETS:
        return f"python evaluate.py {npz} REFERENCE_IMAGES.npz   (e.g. the COCO images of your prompts)"
    return (f"python evaluate.py {npz} VIRTUAL_imagenet256_labeled.npz   "
            f"(or the ADM evaluator: python evaluations/c2i/evaluator.py VIRTUAL_imagenet256_labeled.npz {npz})")


def load_sampler(args, device: torch.device) -> ClassImages | PromptImages:
    """The sampler of --model: its labels (and prompts) by index, its grid and pass counts, and `make`."""
    family, preset = family_of(args.model), preset_of(args.model)
    seed = args.seed if args.random_init else None
    if not family.text_to_image:
        return ClassImages(preset, args.gpt_ckpt, args.vq_path, device, args.precision, seed, args.compile)
    if args.random_init:
        preset = replace(preset, config=args.config)
    pipeline = family.load(preset, args.model_path, args.vq_path, args.tokenizer_path, device,
                                          PRECISIONS[args.precision], args.random_init, args.seed)
    return PromptImages(pipeline, collect_prompts(args.prompt, args.prompts_file), preset.size, args.compile)


def main(args: argparse.Namespace) -> dict | None:
    rank, world, local_rank = dist_env()
    config = check_args(args, world)
    run_dir = Path(args.out_dir) / run_name(args, config)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    distributed = "WORLD_SIZE" in os.environ
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if distributed:  # a long timeout: rank 0 may hash tens of GB of weights before the first collective
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=1))
    try:
        with ExitStack() as held:
            return run(args, config, rank, world, device, distributed, run_dir, held)
    finally:
        if distributed:
            dist.destroy_process_group()


def claim_run_dir(run_dir: Path, args, config, held: ExitStack) -> dict:
    """Rank 0: lock the run folder for this run (held until `held` closes), compute the image set (weight
    fingerprints) and check it against the folder's record. Returns the image-set key."""
    held.enter_context(locked_run_dir(run_dir))
    key = image_set(args, config, run_dir / ".sha256")
    check_image_set(run_dir, key, args.overwrite)
    return key


def start_run_dir(run_dir: Path, args: argparse.Namespace, key: dict) -> None:
    """Rank 0, once every rank has its model: clear the folder for --overwrite, then record the image
    set. Nothing is written before this, so a start that fails (a bad checkpoint, a wrong preset) leaves
    no record that would refuse the corrected command. Temporary files a killed run left go either way."""
    clear_temporaries(run_dir)
    if args.overwrite:
        clear_run_dir(run_dir)
    write_json_atomic(run_dir / "args.json", {"image_set": key, "args": vars(args)})


def run(args, config, rank, world, device, distributed, run_dir, held: ExitStack) -> dict | None:
    claimed, error = attempt(claim_run_dir, run_dir, args, config, held) if rank == 0 else (None, None)
    agree(distributed, error)
    shared = [claimed]
    if distributed:
        dist.broadcast_object_list(shared, src=0)
    digest = image_set_digest(key := shared[0])

    def load():
        sampler = load_sampler(args, device)
        config.check_grid(sampler.grid[1])
        return sampler
    sampler, error = attempt(load)
    agree(distributed, error)
    agree(distributed, attempt(start_run_dir, run_dir, args, key)[1] if rank == 0 else None)
    size = args.image_size_eval
    npz = npz_path(run_dir, args.num_fid_samples)
    barrier(distributed, device)  # the folder is ready

    mine_idx = torch.arange(rank, args.num_fid_samples, world)
    states = [existing_state(run_dir, i, size, t)
              for i, t in zip(mine_idx.tolist(), index_text(sampler, args.seed, mine_idx, digest))]
    todo = [i for i, state in zip(mine_idx.tolist(), states) if state != "complete"]
    mismatched = [states.count("mismatch")] * world
    if distributed:
        dist.all_gather_object(mismatched, mismatched[rank])
    if rank == 0:
        note_random_init(args, args.model)
        print(f"{args.model}: {args.num_fid_samples} images in {run_dir} on {world} process(es); "
              f"rank 0 has {len(todo)} to make", file=sys.stderr)
        if sum(mismatched):
            print(f"{sum(mismatched)} existing image(s) redone: their metadata did not match their index "
                  "(label or prompt, seed) or this run (image set: arguments, weights)", file=sys.stderr)
    barrier(distributed, device)
    wall_start = start = time.perf_counter()
    written, passes = 0, []
    with tqdm(total=len(todo), desc="rank 0", unit="img", disable=rank != 0 or args.quiet, file=sys.stderr) as bar:
        for b in range(0, len(todo), args.per_proc_batch_size):
            idx = torch.tensor(todo[b:b + args.per_proc_batch_size])
            seeds, identities = image_seeds(args.seed, idx), index_text(sampler, args.seed, idx, digest)
            images, result = sampler.make(idx, seeds.to(device), config)  # (B, 3, h, w)
            pixels = to_fid_uint8(images, size)  # (B, size, size, 3)
            for j, i in enumerate(idx.tolist()):
                save_png_with_text_atomic(pixels[j], png_path(run_dir, i), image_text(identities[j], result, j))
                written += 1
                passes.append(result.image_passes[j])
                bar.set_postfix(passes=f"{np.mean(passes):.1f}", refresh=False)
                bar.update(1)  # per image, so the rate and the estimate count images
                if args.stop_after is not None and written >= args.stop_after:
                    print(f"rank {rank}: stopped after {written} images (--stop-after test hook)", file=sys.stderr)
                    os._exit(STOPPED_EXIT_CODE)  # like a kill: no clean-up, no barrier
    mine = {"rank": rank, "seconds": time.perf_counter() - start, "generated": written}
    per_rank = [mine] * world  # one process: its own; under torchrun filled by every rank
    if distributed:
        dist.all_gather_object(per_rank, mine)
    wall = time.perf_counter() - wall_start

    summary = None
    if rank == 0:
        expected = index_text(sampler, args.seed, torch.arange(args.num_fid_samples), digest)
        texts = build_npz(run_dir, npz, expected, size)
        summary = summarize(args, config, sampler, texts, per_rank, wall, device, npz)
        write_json_atomic(run_dir / "summary.json", summary)
        rate = summary["images_per_second"]
        print(f"{len(texts)} images ({summary['images_generated']} made now, {rate if rate is not None else '-'} "
              f"images/s on {world} process(es)); forward passes per image mean "
              f"{summary['forward_passes']['mean']:.1f} (NTP {summary['ntp_forward_passes']})\n"
              f"npz: {npz}\nsummary: {run_dir / 'summary.json'}\nevaluate: {evaluate_command(args, npz)}",
              file=sys.stderr)
    barrier(distributed, device)  # the npz exists before any rank returns
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default="demo", metavar="NAME",
                   help=f"preset: model, tokenizer, sizes, default cfg/top-k; one of {', '.join(PRESETS)}")
    add_flag(p, "--prompt", help="text-to-image presets: a prompt (repeatable); image i uses prompt i mod N of "
                                 "the --prompt list, then the --prompts-file lines")
    add_flag(p, "--prompts-file", help="text-to-image presets: one prompt per line, after any --prompt")
    add_flag(p, "--model-path", help="text-to-image: the Hugging Face model folder")
    add_flag(p, "--vq-path", help="the image tokenizer: LlamaGen a VQ file (default --ckpt-dir/<official name>; "
                                  "demo: tokenizer.json), Lumina-mGPT a folder with vqgan.yaml + vqgan.ckpt, Emu3 "
                                  "an Emu3-VisionTokenizer folder (Janus-Pro: none, --model-path holds it)")
    add_flag(p, "--tokenizer-path", help="text-to-image: the text tokenizer folder")
    configs = "; ".join(f"{f.title}: {', '.join(f.configs)}" for f in TEXT_TO_IMAGE.values())
    add_flag(p, "--config", help=f"text-to-image with --random-init: the architecture built ({configs}; default the "
                                 "preset's own; tiny for tests)")
    add_flag(p, "--gpt-ckpt", help="LlamaGen: the GPT checkpoint; default --ckpt-dir/<official name>")
    p.add_argument("--ckpt-dir", default=None,
                   help="folder with the official files (c2i_L_384.pt, vq_ds16_c2i.pt, ...); demo: checkpoints/demo")
    add_flag(p, "--random-init")
    p.add_argument("--num-fid-samples", type=int, default=50_000, help="number of images N (indices 0..N-1)")
    p.add_argument("--per-proc-batch-size", type=int, default=32, help="images per forward batch on each process")
    p.add_argument("--image-size-eval", type=int, default=None,
                   help="size of the saved images (bicubic resize as the official script); default per model")
    add_flag(p, "--out-dir", default="samples", help="parent folder of the run folder and its npz")
    p.add_argument("--overwrite", action="store_true",
                   help="delete a run with other arguments found in the run folder instead of refusing")
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help=f"test hook: each process exits ({STOPPED_EXIT_CODE}) after writing K images, like a kill")
    add_runtime_args(p, "the GPT")
    add_decode_args(p, cfg_scale=None, top_k=None, temperature=None)
    for old, new in (("--prompts", "--prompts-file"), ("--vqgan-dir", "--vq-path"), ("--vq-ckpt", "--vq-path"),
                     ("--sample-dir", "--out-dir"), ("--global-seed", "--seed"), ("--random-init-config", "--config")):
        add_renamed(p, old, new)
    return p


def cli(argv=None) -> int:
    return run_main(lambda args: main(fill_defaults(args)), build_parser().parse_args(argv),
                    interrupted="complete images are kept; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(cli())
