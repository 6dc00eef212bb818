"""The tail every command-line script ends with once its models are loaded: note a window that is plain
NTP, decode under a progress bar over the passes (batch after batch, each saved before the next is decoded),
time it, save the images and report them in one --json layout (`decode_and_report`, `decode_report`)."""
import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from common.images import save_grid, save_png_atomic
from common.zipar.config import DecodeConfig
from common.zipar.state import DecodeResult
from common.zipar.layout import Layout
from common.zipar.official import active_rule, prompt_attention
from common.zipar.sampling import image_seeds
from common.zipar.window import first_row_rule, num_passes


@contextmanager
def pass_progress(config: DecodeConfig, layout: Layout, quiet: bool, batches: int = 1):
    """A tqdm bar over forward passes on stderr; yields the engine's on_pass callback (None when quiet).
    Total: the schedule's pass count (adaptive windows: NTP's, an upper bound) times the batches."""
    if quiet:
        yield None
        return
    from tqdm import tqdm

    window = None if config.adaptive else config.window
    bar = tqdm(total=batches * num_passes(layout, window, config.compat, config.first_row),
               desc="decoding", unit="pass",
               file=sys.stderr, leave=False)
    try:
        yield lambda record: bar.update()
    finally:
        bar.close()


def note_window(config: DecodeConfig, layout: Layout, args: argparse.Namespace) -> None:
    """Say on stderr when a window at least the row width makes the run plain next-token prediction. Equal
    tokens are promised where they hold: on a CPU, or in fp32 (a GPU's bf16/fp16 kernels differ by pass
    shape, and NTP's passes have other shapes than a window's; benchmarks/gpu_suite.py measures it)."""
    cols, w = layout.cols, config.window_for(layout)
    if config.window is not None and w >= cols:
        exact = torch.device(args.device).type == "cpu" or args.precision == "fp32"
        same = "same tokens as --ntp" if exact else f"same schedule as --ntp; in {args.precision} on a GPU tokens can differ"
        asked = f"--window {config.window}" + (f" (the released code's numbering; ours {w})" if config.compat else "")
        if config.compat:  # its prefix and guidance may differ from ours (common.zipar.official)
            same = "the schedule of --ntp"
        print(f"note: {asked} >= the row width {cols}: this is plain next-token prediction "
              f"({'adaptive openings are never drafted' if config.adaptive else same})",
              file=sys.stderr)


def decode_and_report(decode: Callable, config: DecodeConfig, layout: Layout, args: argparse.Namespace,
                      save: Callable[[DecodeResult], dict]) -> dict:
    """The end of every CLI once its models are loaded: note a window that is plain NTP, decode
    (decode(on_pass) -> DecodeResult) under a progress bar over the passes, wait for the device, time it,
    save the images (save(result) -> the report's output entries, "out" among them) and report: --json, one
    object on stdout (`decode_report`); else one line on stderr."""
    return decode_batches_and_report([(decode, save)], config, layout, args)


def decode_batches_and_report(batches: Sequence[tuple[Callable, Callable]], config: DecodeConfig, layout: Layout,
                              args: argparse.Namespace) -> dict:
    """decode_and_report over batches, each a (decode, save) pair run in turn: a batch's images are saved
    before the next batch is decoded, so memory holds one batch. The report joins the batches' reports
    (join_reports); its seconds are the decodes' alone."""
    device = torch.device(args.device)
    note_window(config, layout, args)
    reports = []
    with pass_progress(config, layout, args.quiet or args.json, len(batches)) as on_pass:
        for decode, save in batches:
            start = time.perf_counter()
            result = decode(on_pass)
            if device.type == "cuda":
                torch.cuda.synchronize()
            reports.append({**decode_report(result, config, layout, time.perf_counter() - start), **save(result)})
    report = join_reports(reports)
    print_report(report, args.json)
    return report


# report entries holding one value per image: a run decoded in batches lists them batch after batch
PER_IMAGE = ("image_passes", "accepted_window", "rejections", "tokens_per_row_pass", "row_tokens_per_pass",
             "draft_rejections", "files", "prompt_tokens", "tokens")
# entries counting what a batch ran: added up over the batches
PER_BATCH = ("forward_passes", "official_forward_passes", "seconds")


def join_reports(reports: list[dict]) -> dict:
    """One report of a run decoded in batches: PER_IMAGE entries concatenated, PER_BATCH ones summed, every
    other entry (grid, window, the output folder, ...) the same in every batch."""
    joined = dict(reports[0])
    for report in reports[1:]:
        for key, value in report.items():
            if key in PER_IMAGE or key in PER_BATCH:
                joined[key] = joined[key] + value
            elif joined[key] != value:
                raise RuntimeError(f"report entry {key!r} differs between batches ({joined[key]!r}, {value!r}): "
                                   "list it in PER_IMAGE or PER_BATCH")
    if "seconds" in joined:
        joined["seconds"] = round(joined["seconds"], 4)
    return joined


def decode_report(result: DecodeResult, config: DecodeConfig, layout: Layout, seconds: float) -> dict:
    """The one --json layout of every CLI: passes against plain NTP on our engine (`ntp_passes`; end-of-row
    tokens ride along), timing, the schedule run, then the compat and telemetry entries; the CLI adds where
    its images went ("out", text-to-image "files") and its own entries (e.g. `ntp_passes_official`)."""
    report = {
        "forward_passes": result.forward_passes,
        "ntp_passes": num_passes(layout, None),
        "seconds": round(seconds, 4),
        "grid": [layout.rows, layout.cols],
        "window": config.window_for(layout),
        "compat": config.compat,
        "first_row": first_row_rule(layout, config.first_row, config.compat),
        "image_passes": result.image_passes,
    }
    report.update(official_report(config, layout, result))
    report.update(decode_telemetry(config, result))
    return report


def save_text_to_image(pipe, prompts: list[str], size, out_dir: str, to_uint8: Callable,
                       first: int = 0) -> Callable[[DecodeResult], dict]:
    """decode_and_report's `save` for the text-to-image pipelines (common.t2i_pipeline): image i (of prompts,
    which start at index `first` of the run) as out_dir/{first + i:04d}.png (to_uint8: the family's official
    pixel conversion, (B, 3, h, w) -> (B, h, w, 3) uint8)."""
    def save(result: DecodeResult) -> dict:
        out, files = Path(out_dir), []
        for i, pixels in enumerate(to_uint8(pipe.images(result.tokens)), start=first):
            files.append(str(out / f"{i:04d}.png"))
            save_png_atomic(np.asarray(pixels), files[-1])
        layout = pipe.layout(size)
        return {"out": str(out), "files": files,
                "ntp_passes_official": pipe.ntp_passes_official(layout.rows, layout.cols),
                "prompt_tokens": [len(pipe.prompt_ids(p, size)) for p in prompts]}
    return save


def save_grid_file(decode_images: Callable, out, **entries) -> Callable[[DecodeResult], dict]:
    """decode_and_report's `save` for LlamaGen's CLIs: decode_images(tokens) as one grid file `out`, 4 a
    row; the report holds the tokens and `entries`."""
    def save(result: DecodeResult) -> dict:
        save_grid(decode_images(result.tokens), out, nrow=4)
        return {"out": str(out), **entries, "tokens": result.tokens.tolist()}
    return save


def run_text_to_image(pipe, prompts: list[str], size, config: DecodeConfig, args: argparse.Namespace,
                      to_uint8: Callable) -> dict:
    """What the text-to-image CLIs do once their pipeline (common.t2i_pipeline) is loaded: decode --batch-size
    prompts at a time (decode_batches_and_report), image i written as --out-dir/{i:04d}.png. Image i has seed
    (--seed, i) and its pixels are decoded alone, so the images do not depend on --batch-size."""
    pipe.prompt_rows(prompts, size)  # every prompt within the model's context, before the decode says anything
    seeds = image_seeds(args.seed, torch.arange(len(prompts), device=torch.device(args.device)))

    def batch(lo: int) -> tuple[Callable, Callable]:
        chunk, chunk_seeds = prompts[lo:lo + args.batch_size], seeds[lo:lo + args.batch_size]
        return (lambda on_pass: pipe.generate(chunk, chunk_seeds, config, size, on_pass=on_pass, compile=args.compile),
                save_text_to_image(pipe, chunk, size, args.out_dir, to_uint8, first=lo))
    return decode_batches_and_report([batch(lo) for lo in range(0, len(prompts), args.batch_size)], config,
                                     pipe.layout(size), args)


def official_report(config: DecodeConfig, layout: Layout, result: DecodeResult) -> dict:
    """compat="official": the released code's window and forward calls (common.zipar.official), whose header
    passes (Lumina-mGPT: BOI, H and W, one pass each) our prefill covers in its one pass."""
    rule = active_rule(layout.family, config.compat)
    if rule is None:
        return {}
    return {"compat": config.compat, "official_window": config.window,
            "prompt_attention": prompt_attention(layout.family, config.compat, config.prompt_attention),
            "header_passes": rule.header_passes,
            "official_forward_passes": result.forward_passes + rule.header_passes}


def decode_telemetry(config, result) -> dict:
    """The adaptive-window and row-draft figures of a DecodeResult, for every CLI's --json report."""
    out = {}
    if config.adaptive:
        out["adaptive"] = True
        out["accepted_window"] = [{"mean": sum(w) / len(w), "min": min(w), "max": max(w)} if w else None
                                  for w in result.accepted_windows]
        out["rejections"] = result.rejections
    if config.draft_len:
        out.update(draft_len=config.draft_len, draft_init=config.draft_init, draft_coupling=config.draft_coupling,
                   draft_ahead=config.draft_ahead, draft_tree=list(config.tree_shape))
        out["tokens_per_row_pass"] = result.tokens_per_row_pass
        out["row_tokens_per_pass"] = result.row_tokens_per_pass
        out["draft_rejections"] = result.draft_rejections
    return out


def print_report(report: dict, as_json: bool) -> None:
    """`decode_report`'s report: one JSON object on stdout, or one line on stderr."""
    if as_json:
        print(json.dumps(report))
        return
    rows, cols = report["grid"]
    released = ""
    if "official_forward_passes" in report:
        released = (f" (the released code: {report['official_forward_passes']} forward calls, "
                    f"{report['header_passes']} of them for the image header)")
    official = f", {report['ntp_passes_official']} official" if "ntp_passes_official" in report else ""
    saved = f"{len(report['files'])} images to {report['out']}" if "files" in report else report["out"]
    print(f"{report['forward_passes']} forward passes{released} (NTP: {report['ntp_passes']} engine{official}) "
          f"in {report['seconds']:.2f}s on a {rows}x{cols} grid; saved {saved}", file=sys.stderr)
