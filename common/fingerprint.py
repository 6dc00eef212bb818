"""Content fingerprints of weight and tokenizer files: what sample_ddp.py's run identity records.

A file's fingerprint is the sha256 of all its bytes: a file name and size say nothing about which
weights a file holds (another checkpoint of the same name and size is another run). Hashing reads the
whole file once, at disk speed or sha256's (about 0.5-2 GB/s on one core, whichever is slower: a
3 GB LlamaGen-XXL file takes seconds, a 7B model's 15-50 GB of shards about half a minute to minutes),
so the digest is cached beside the file in `.NAME.sha256.json`, keyed by the file's size, modification
time, inode number and inode change time (ctime), in nanoseconds. A later run whose file has the same
four reads the cache (a stat and a small read per file). mtime alone is not enough: `cp -p`, `rsync -t`,
`touch -r` and restore tools set it back after rewriting a file in place; the kernel sets ctime on every
write (and rename, chmod, utime) and no tool can set it back, and a file replaced by another (a download
renamed into place) has another inode. Where the file's folder is not writable (a shared, read-only
model store), the cache goes to `fallback_dir` (sample_ddp.py: `.sha256/` in the run folder); with
neither writable the file is hashed on every run. The key's limit: a rewrite within the timestamp
tick (the kernel clock's granularity, a few milliseconds at most) of the stat taken before hashing keeps
the old digest. Any copy of the files (another inode) is hashed once more.

A folder's fingerprint (Hugging Face model and tokenizer folders) is the sha256 over the relative
paths and fingerprints of all its files, recursively, hidden ones (names starting with '.', such as
these caches, .git or .cache) left out. Symbolic links are followed (the Hugging Face cache links
each snapshot file to its blob).
"""
import hashlib
import json
import os
import sys
from pathlib import Path

CHUNK = 16 << 20  # bytes read per update
LOUD_BYTES = 1 << 30  # files at least this large say on stderr that they are being hashed


def _stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "ctime_ns": st.st_ctime_ns}


def _cache_files(path: Path, fallback_dir: Path | None) -> list[Path]:
    """Where the digest of `path` may be cached, in order: beside it, then in fallback_dir."""
    places = [path.with_name(f".{path.name}.sha256.json")]
    if fallback_dir is not None:
        key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
        places.append(Path(fallback_dir) / f"{key}.json")
    return places


def _read_cache(place: Path, path: Path, stamp: dict) -> str | None:
    try:
        entry = json.loads(place.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or {k: entry.get(k) for k in stamp} != stamp:
        return None
    if entry.get("path", str(path.resolve())) != str(path.resolve()):  # the fallback folder holds many files
        return None
    digest = entry.get("sha256")
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _write_cache(place: Path, path: Path, stamp: dict, digest: str) -> bool:
    tmp = place.with_name(f"{place.name}.{os.getpid()}.tmp")
    try:
        place.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**stamp, "path": str(path.resolve()), "sha256": digest}) + "\n")
        os.replace(tmp, place)
        return True
    except OSError:  # an unwritable folder, a full disk: the next place, or none
        tmp.unlink(missing_ok=True)
        return False


def hash_file(path: Path) -> str:
    """The sha256 of every byte of `path` (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path, fallback_dir: str | Path | None = None) -> str:
    """The sha256 of the file's content, from the cache when the file's stat stamp (_stamp) matches it,
    else computed and cached (beside the file, else in fallback_dir, else nowhere)."""
    path = Path(path)
    stamp = _stamp(path)
    places = _cache_files(path, None if fallback_dir is None else Path(fallback_dir))
    for place in places:
        if (digest := _read_cache(place, path, stamp)) is not None:
            return digest
    if stamp["size"] >= LOUD_BYTES:
        print(f"fingerprinting {path} ({stamp['size'] / 1e9:.1f} GB, sha256; cached for later runs)",
              file=sys.stderr)
    digest = hash_file(path)
    if _stamp(path) != stamp:  # written while we read it: the digest describes no stable file
        raise ValueError(f"{path} changed while it was being fingerprinted; wait for the write to finish and rerun")
    for place in places:
        if _write_cache(place, path, stamp, digest):
            break
    return digest


def _files(folder: Path) -> list[Path]:
    """The non-hidden files under folder, recursively, sorted by relative path."""
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / n for n in names if not n.startswith(".") and (Path(root) / n).is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def fingerprint(path: str | Path, fallback_dir: str | Path | None = None) -> str:
    """'sha256:<hex>' of a file's content, or of a folder's files (relative paths and file digests)."""
    path = Path(path)
    if path.is_file():
        return f"sha256:{file_sha256(path, fallback_dir)}"
    if not path.is_dir():
        raise FileNotFoundError(f"cannot fingerprint {path}: no such file or folder")
    h = hashlib.sha256()
    for f in _files(path):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f, fallback_dir)}\n".encode())
    return f"sha256:{h.hexdigest()}"
