"""The run folder of a resumable image-sampling job (sample_ddp.py): the image-set check, atomic
JSON, one PNG per global index and what its tEXt must say, the resume verdict, and the npz.

An image's identity is its tEXt label, seed and prompt (made from the index alone by the sampler);
`metadata_matches` is the one rule deciding whether a PNG on disk is the image of its index.
"""
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from common.images import read_png_checked


def check_run_dir(run_dir: Path, key: dict, overwrite: bool) -> None:
    """Refuse a folder holding another image set (unless overwrite); make sure we can write there."""
    meta = run_dir / "args.json"
    if not overwrite and meta.is_file():
        try:
            stored = json.loads(meta.read_text())["image_set"]
        except (ValueError, KeyError) as e:
            raise ValueError(f"{meta} is unreadable ({e}); pass --overwrite to start the run afresh") from None
        differ = [k for k in key if stored.get(k) != key[k]]
        if differ:
            raise ValueError(f"{run_dir} holds a run with other arguments (differ: {', '.join(differ)}); "
                             "use another --sample-dir, or --overwrite to delete it")
    elif not overwrite and any(run_dir.glob("[0-9]*.png")):
        raise ValueError(f"{run_dir} holds PNGs but no args.json (not a run of this script); "
                         "use another --sample-dir, or --overwrite to delete them")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to the sample dir {run_dir}: {e.strerror or e}") from None


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def png_path(run_dir: Path, i: int) -> Path:
    return run_dir / f"{i:06d}.png"


IDENTITY_KEYS = ("label", "seed", "prompt")  # the tEXt that an image's index decides


def metadata_matches(text: dict[str, str], expected: dict[str, str]) -> bool:
    """Whether a PNG's tEXt says it is the image of the index that `expected` (index_text) describes.

    The rule: its label, seed and prompt entries equal exactly what this run writes for that index (a class
    image has no prompt entry). Anything else, e.g. a valid PNG copied over from another index or made by
    another prompt list, is not that image: resume redoes it, like a damaged one, and build_npz refuses it.
    """
    return all(text.get(key) == expected.get(key) for key in IDENTITY_KEYS)


def existing_state(run_dir: Path, i: int, size: int, expected: dict[str, str]) -> str:
    """Image i on disk: "complete" (kept on resume), "mismatch" (a valid PNG of another index: redone) or
    "damaged" (missing, truncated, corrupt, of another size or without forward passes: redone)."""
    text = read_png_checked(png_path(run_dir, i), (size, size))
    if text is None or "forward_passes" not in text:
        return "damaged"
    return "complete" if metadata_matches(text, expected) else "mismatch"


def image_text(identity: dict[str, str], result, j: int) -> dict[str, str]:
    """What travels in image j's PNG: which image it is (index_text: label, seed, prompt) and what it cost."""
    text = {"label": identity["label"], "seed": identity["seed"], "forward_passes": str(result.image_passes[j])}
    if "prompt" in identity:  # after forward_passes: the chunk order (and bytes) of earlier runs
        text["prompt"] = identity["prompt"]
    if result.accepted_windows is not None:
        text["accepted_windows"] = json.dumps(result.accepted_windows[j])
        text["rejections"] = str(result.rejections[j])
    if result.tokens_per_row_pass is not None:
        text["tokens_per_row_pass"] = f"{result.tokens_per_row_pass[j]:.4f}"
        text["draft_rejections"] = str(result.draft_rejections[j])
    return text


def build_npz(run_dir: Path, npz: Path, expected: list[dict[str, str]], size: int) -> list[dict[str, str]]:
    """Rank 0: images 0..n-1 into npz (arr_0 (n, size, size, 3) uint8, arr_1 (n,) labels); their tEXt.

    expected: index_text of images 0..n-1. The labels come from it (the index rule), and every PNG's tEXt
    must match it (metadata_matches): a PNG of another index raises instead of entering the npz."""
    n = len(expected)
    pixels = np.empty((n, size, size, 3), dtype=np.uint8)
    texts = []
    for i in range(n):
        with Image.open(png_path(run_dir, i)) as im:
            pixels[i] = np.asarray(im.convert("RGB"))
            texts.append(dict(im.text))
        if not metadata_matches(texts[i], expected[i]):
            got = {k: texts[i][k] for k in IDENTITY_KEYS if k in texts[i]}
            raise RuntimeError(f"{png_path(run_dir, i)} is not image {i}: its metadata {got} does not match "
                               f"{expected[i]}; re-run to redo it")
    labels = np.array([int(t["label"]) for t in expected], dtype=np.int64)
    tmp = npz.with_name(f".{npz.stem}.tmp.npz")
    np.savez(tmp, arr_0=pixels, arr_1=labels)
    os.replace(tmp, npz)
    return texts
