"""The run folder of a resumable image-sampling job (sample_ddp.py): its lock, the image-set check,
atomic JSON, one PNG per global index and what its tEXt must say, the resume verdict, and the npz.

An image's identity is its tEXt label, seed and prompt (made from the index alone by the sampler) and
the digest of the run's image set (arguments and weight fingerprints); `metadata_matches` is the one
rule deciding whether a PNG on disk is the image of its index in this run.
"""
import fcntl
import glob
import hashlib
import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from common.atomic import atomic_path, leftover_temporaries, write_text_atomic
from common.images import read_png_checked


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (held by another run, holding another image set)."""


LOCK_NAME = ".lock"


@contextmanager
def locked_run_dir(run_dir: Path):
    """Make run_dir and hold an exclusive lock on it while the block runs.

    The lock is fcntl.flock on run_dir/.lock: the kernel drops it when the holder exits, however it
    exits (a kill, a crash), so a stale lock never needs clearing by hand. The holder writes its pid and
    host into the file for the message another run gets. flock is advisory and local: on a network
    file system it holds only between processes of one host (NFS) or not at all, so two hosts sampling
    into one shared folder are not kept apart by it.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
        f = open(run_dir / LOCK_NAME, "a+")
    except OSError as e:
        raise RunFolderError(f"cannot write to the run folder {run_dir} (under --out-dir): {e.strerror or e}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunFolderError(f"{run_dir} is in use by a running sample_ddp.py ({holder}); wait for it to "
                                 "finish, or stop it, or give another --out-dir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # the lock goes with the file's closing; a stale holder line would mislead nobody
            fcntl.flock(f, fcntl.LOCK_UN)


def image_set_digest(key: dict) -> str:
    """sha256 of the image-set key (canonical JSON): the tEXt every PNG of the run carries."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def check_image_set(run_dir: Path, key: dict, overwrite: bool) -> None:
    """Refuse a folder holding another image set (unless overwrite, which deletes it later)."""
    meta = run_dir / "args.json"
    if overwrite:
        return
    if meta.is_file():
        try:
            stored = json.loads(meta.read_text())["image_set"]
        except (ValueError, KeyError, TypeError) as e:
            raise RunFolderError(f"{meta} is unreadable ({e}); pass --overwrite to start the run afresh") from None
        differ = [k for k in [*key, *(k for k in stored if k not in key)] if stored.get(k) != key.get(k)]
        if differ:
            older = any(isinstance(stored.get(k), dict) and "bytes" in stored[k] for k in differ)
            raise RunFolderError(f"{run_dir} holds a run with other arguments (differ: {', '.join(differ)}"
                                 + ("; its record names weight files by name and size, from before content "
                                    "fingerprints, so its images cannot be matched to weights" if older else "")
                                 + "); use another --out-dir, or --overwrite to delete it")
    elif any(run_dir.glob("[0-9]*.png")):
        raise RunFolderError(f"{run_dir} holds PNGs but no args.json (not a run of this script, or one whose "
                             "start failed); use another --out-dir, or --overwrite to delete them")


def npz_path(run_dir: Path, n: int) -> Path:
    """The npz of images 0..n-1, beside the run folder and named by n: a run with a smaller
    --num-fid-samples writes its own file and never shrinks a larger one."""
    return run_dir.with_name(f"{run_dir.name}-n{n}.npz")


def clear_run_dir(run_dir: Path) -> None:
    """--overwrite: delete the run's images, summary, record and every npz of it."""
    npzs = [*run_dir.parent.glob(f"{glob.escape(run_dir.name)}-n*.npz"), run_dir.with_name(run_dir.name + ".npz")]
    for path in [*run_dir.glob("[0-9]*.png"), run_dir / "summary.json", run_dir / "args.json", *npzs]:
        path.unlink(missing_ok=True)


def clear_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of writes that a killed run left (common.atomic): PNGs, JSON, the npz.
    Only while the folder's lock is held and before any rank writes."""
    for path in [*leftover_temporaries(run_dir), *leftover_temporaries(run_dir.parent, f"{glob.escape(run_dir.name)}-n*")]:
        path.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def png_path(run_dir: Path, i: int) -> Path:
    return run_dir / f"{i:06d}.png"


IDENTITY_KEYS = ("label", "seed", "prompt", "image_set")  # the tEXt that an image's index and the run decide


def metadata_matches(text: dict[str, str], expected: dict[str, str]) -> bool:
    """Whether a PNG's tEXt says it is the image of the index that `expected` (index_text) describes.

    The rule: its label, seed, prompt and image_set entries equal exactly what this run writes for that
    index (a class image has no prompt entry; image_set is image_set_digest of the run's arguments and
    weight fingerprints). Anything else, e.g. a valid PNG copied over from another index, made by another
    prompt list or by other weights, is not that image: resume redoes it, like a damaged one, and
    build_npz refuses it.
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
    text["image_set"] = identity["image_set"]
    if result.accepted_windows is not None:
        text["accepted_windows"] = json.dumps(result.accepted_windows[j])
        text["rejections"] = str(result.rejections[j])
    if result.tokens_per_row_pass is not None:
        text["tokens_per_row_pass"] = f"{result.tokens_per_row_pass[j]:.4f}"
        text["draft_rejections"] = str(result.draft_rejections[j])
    return text


# --image-size-eval's bound: FID's Inception network resizes every image to 299 px and sizes in use are 256
# to 1024 px; a 100000 px image would need 120 GB for its float pixels
MAX_IMAGE_SIZE_EVAL = 4096


def check_npz_bounds(n: int, size: int) -> None:
    """--num-fid-samples and --image-size-eval within their bounds: image indices 0..2**32-1 each have a seed
    of their own (common.zipar.sampling.image_seeds), and sizes at most MAX_IMAGE_SIZE_EVAL."""
    if not 1 <= size <= MAX_IMAGE_SIZE_EVAL:
        raise ValueError(f"--image-size-eval must be in 1..{MAX_IMAGE_SIZE_EVAL}, got {size}")
    if n > 2**32:
        raise ValueError(f"--num-fid-samples {n}: at most 2**32 images (indices 0..2**32-1 each have a seed of "
                         "their own)")


def check_npz_fits(n: int, size: int, flag: str = "--num-fid-samples") -> None:
    """The npz of n images of size x size px must fit this host's memory: build_npz holds all of its pixels
    (n * size^2 * 3 bytes) at once. Checked before the run, so that no sampling precedes an npz that cannot
    be built."""
    need = n * size * size * 3
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # a platform without these: nothing to check against
        return
    if need > have:
        raise ValueError(f"{flag} {n} at --image-size-eval {size}: the npz holds {need / 1e9:.3g} GB of pixels, "
                         f"which are gathered in memory, and this host has {have / 1e9:.3g} GB; use fewer images "
                         "or a smaller --image-size-eval")


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
            raise RunFolderError(f"{png_path(run_dir, i)} is not image {i}: its metadata {got} does not match "
                                 f"{expected[i]}; rerun the same command to redo it")
    labels = np.array([int(t["label"]) for t in expected], dtype=np.int64)
    with atomic_path(npz) as tmp:
        np.savez(tmp, arr_0=pixels, arr_1=labels)
    return texts
