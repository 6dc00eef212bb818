"""Every file the scripts write (PNG, npz, JSON, safetensors, tables) is written whole or not at all: into
a hidden temporary file beside it, then renamed over it (os.replace, atomic within one file system). A
failed write (disk full, over quota, an I/O error) removes the temporary file, leaves any earlier file of
that name as it was, and is reported as WriteError: one line naming the file."""
import csv
import errno
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class WriteError(OSError):
    """A file could not be written; nothing partial was left. The message names the file and the cause."""


def temporary_name(path: Path) -> Path:
    """Hidden, per process (two processes writing one file never share it), and ending in the file's own
    suffix: writers that add a missing suffix (np.savez adds .npz) write exactly this name."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def write_failure(path: Path, e: OSError) -> WriteError:
    """The one-line report of a failed write of `path`."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "disk full" if e.errno == errno.ENOSPC else "disk quota exceeded"
        message = f"{cause} writing {path}; no partial file was left: free some space and rerun"
    else:
        message = f"cannot write {path}: {e.strerror or e}; no partial file was left"
    error = WriteError(message)  # one argument: str() is the message alone, not "[Errno 28] ..."
    error.errno = e.errno
    return error


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields the temporary name to write `path` under (its folder is made first); once the block ends
    without an error it replaces `path`. On any error the temporary file is removed; an OSError becomes
    WriteError (write_failure), anything else (Ctrl-C, an encoder's ValueError) passes through."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as e:
        raise write_failure(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv_atomic(path: str | Path, rows: list[dict], fieldnames: list[str]) -> None:
    """The benchmarks' tables: a header, then one line per row (csv.DictWriter's dialect)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def leftover_temporaries(folder: Path, names: str = "*") -> list[Path]:
    """Temporary files that a killed writer left in `folder` for files matching the glob `names`
    (temporary_name's, and the `.NAME.tmp` of earlier versions); only for a folder no other process is
    writing into."""
    return sorted(Path(folder).glob(f".{names}.*tmp*"))
