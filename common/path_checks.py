"""Checks of the paths a command line names, made before any work: input files and folders exist (and are
what the flag expects), output files and folders can be written, nothing created before the work."""
import tempfile
from pathlib import Path

from common.images import IMAGE_FORMATS


def check_output_file(path: str | Path, flag: str = "--out", suffixes=tuple(IMAGE_FORMATS),
                      kind: str = "the format written") -> Path:
    """A file we can write, checked before the work: one of `suffixes` (what the suffix means: `kind`), not
    a folder, its folder writable (or creatable)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name, e.g. {path / ('out' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {path}: the file name must end in {', '.join(suffixes)} ({kind})")
    _check_writable_dir(path.parent, flag, path)
    return path


def check_input_file(path: str | Path, flag: str, what: str = "file") -> Path:
    """An existing file (not a folder) given by `flag`; FileNotFoundError or ValueError saying which."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; expected a {what}")
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: {what} not found: {path}")
    return path


def check_input_dir(path: str | Path, flag: str, what: str = "folder") -> Path:
    """An existing folder (not a file) given by `flag`; FileNotFoundError or ValueError saying which."""
    path = Path(path)
    if path.is_file():
        raise ValueError(f"{flag} {path} is a file; expected a {what}")
    if not path.is_dir():
        raise FileNotFoundError(f"{flag}: {what} not found: {path}")
    return path


def check_output_dir(path: str | Path, flag: str = "--out-dir",
                     holds: str = "images are written as 0000.png, ...") -> Path:
    """A folder we can write into (made when the outputs are saved; `holds`: what goes in it), checked
    before the work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is an existing file; give a folder ({holds})")
    _check_writable_dir(path, flag, path)
    return path


def _check_writable_dir(folder: Path, flag: str, given: Path) -> None:
    """The folder, or its nearest existing ancestor (nothing is created before the work), takes a file."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {given}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {given}: cannot write to {existing}: {e.strerror or e}") from None
