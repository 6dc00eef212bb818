"""A write that fails (a full disk, simulated by a writer that writes part of its file and then raises
OSError(ENOSPC)) leaves no partial file, hidden temporary files included, keeps any earlier file of the
name, and ends a CLI with one `error: disk full writing PATH` line and exit status 2: the npz and PNGs of
sample_ddp.py, the PNGs of the text-to-image CLIs and the safetensors of common.convert."""
import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import common.run_folder
import sample_ddp
from common.atomic import WriteError, atomic_path, leftover_temporaries, write_text_atomic
from common.convert import cli as convert
from common.images import save_png_atomic, save_png_with_text_atomic
from tests.helpers.sample_ddp import npz_of, run_dir


def disk_full_after(nbytes: int = 10):
    """A stand-in writer: writes nbytes to the file it is given (a real partial file), then fails as a
    full disk does."""
    def write(path, *args, **kwargs):
        Path(str(path)).write_bytes(b"\x89partial"[:nbytes] * 4)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("earlier")
    with pytest.raises(WriteError) as e:
        with atomic_path(target) as tmp:
            disk_full_after()(tmp)
    assert str(e.value) == (f"disk full writing {target}; no partial file was left: free some space and rerun")
    assert e.value.errno == errno.ENOSPC
    assert files_in(tmp_path) == ["table.md"] and target.read_text() == "earlier"
    write_text_atomic(target, "new")
    assert files_in(tmp_path) == ["table.md"] and target.read_text() == "new"


def test_other_errors_pass_through_and_still_clean_up(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{")
            raise KeyboardInterrupt
    with pytest.raises(WriteError, match="cannot write .*b.json: Permission denied"):
        with atomic_path(tmp_path / "b.json") as tmp:
            tmp.write_text("{")
            raise PermissionError(errno.EACCES, "Permission denied")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("save", [lambda p, x: save_png_atomic(x, p),
                                  lambda p, x: save_png_with_text_atomic(x, p, {"label": "3"})])
def test_png_writers_on_a_full_disk(tmp_path, monkeypatch, save):
    monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **k: disk_full_after()(fp))
    with pytest.raises(WriteError, match="disk full writing .*0001.png"):
        save(tmp_path / "0001.png", np.zeros((4, 4, 3), np.uint8))
    assert files_in(tmp_path) == []


def test_leftover_temporaries_are_found_by_name(tmp_path):
    names = [".000001.png.77.tmp.png", ".000002.png.tmp", ".args.json.5.tmp.json", "000001.png", ".lock"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert [p.name for p in leftover_temporaries(tmp_path)] == sorted(names[:3])


RUN = ["--num-fid-samples", "2", "--per-proc-batch-size", "2", "--window", "8", "--quiet"]


def test_sample_ddp_npz_on_a_full_disk_then_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with monkeypatch.context() as m:
        m.setattr(common.run_folder.np, "savez", disk_full_after(100))
        assert sample_ddp.cli([*RUN, "--out-dir", str(tmp_path)]) == 2
    folder = run_dir(tmp_path)
    npz = npz_of(folder, 2)
    assert one_error_line(capsys.readouterr().err) == (
        f"error: disk full writing {npz}; no partial file was left: free some space and rerun")
    assert files_in(tmp_path) == sorted(["000000.png", "000001.png", "args.json", ".lock"])  # no npz, no temp
    assert sample_ddp.cli([*RUN, "--out-dir", str(tmp_path)]) == 0  # the images are kept: only the npz is made
    assert "0 to make" in capsys.readouterr().err
    with np.load(npz) as f:
        assert f["arr_0"].shape == (2, 96, 96, 3)


def test_sample_ddp_png_on_a_full_disk(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    writes = []
    real = Image.Image.save

    def second_fails(self, fp, *args, **kwargs):
        writes.append(fp)
        return disk_full_after()(fp) if len(writes) == 2 else real(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", second_fails)
    assert sample_ddp.cli([*RUN, "--out-dir", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: disk full writing ") and line.split()[4].endswith("000001.png;")
    folder = run_dir(tmp_path)
    assert files_in(tmp_path) == sorted(["000000.png", "args.json", ".lock"])
    with Image.open(folder / "000000.png") as im:
        im.verify()


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, monkeypatch):
    """A kill between writing and renaming leaves a temporary file; the next run into the folder deletes it."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert sample_ddp.cli([*RUN, "--out-dir", str(tmp_path)]) == 0
    folder = run_dir(tmp_path)
    stale = [folder / ".000001.png.4242.tmp.png", folder.parent / f".{folder.name}-n2.npz.4242.tmp.npz",
             folder.parent / f".{folder.name}-n2.tmp.npz"]  # the last: the name earlier versions used
    for path in stale:
        path.write_bytes(b"partial")
    assert sample_ddp.cli([*RUN, "--out-dir", str(tmp_path)]) == 0
    assert not any(p.exists() for p in stale)


def test_convert_on_a_full_disk(tmp_path, monkeypatch, capsys):
    import safetensors.torch
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, path)
    monkeypatch.setattr(safetensors.torch, "save_file", lambda state, name, metadata=None: disk_full_after()(name))
    assert convert([str(path)]) == 2
    out = tmp_path / "model.safetensors"
    assert one_error_line(capsys.readouterr().err) == (
        f"error: disk full writing {out}; no partial file was left: free some space and rerun")
    assert files_in(tmp_path) == ["model.pt"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_convert_refuses_weights_holding_nan_or_inf(tmp_path, capsys, bad):
    path = tmp_path / "model.pt"
    torch.save({"ok": torch.ones(3), "w": torch.tensor([1.0, bad, 2.0])}, path)
    assert convert([str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "'w'" in line and "1 non-finite value(s)" in line and str(path) in line
    assert files_in(tmp_path) == ["model.pt"]


def test_text_to_image_cli_on_a_full_disk(tmp_path, monkeypatch, capsys):
    import emu3.generate
    writes, real = [], Image.Image.save

    def second_fails(self, fp, *args, **kwargs):
        writes.append(fp)
        return disk_full_after()(fp) if len(writes) == 2 else real(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", second_fails)
    out = tmp_path / "out"
    argv = ["--random-init", "--config", "tiny", "--prompt", "a", "--prompt", "b", "--prompt", "c", "--ratio", "4:3",
            "--window", "2", "--batch-size", "2", "--out-dir", str(out), "--device", "cpu", "--quiet"]
    assert emu3.generate.cli(argv) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: disk full writing {out / '0001.png'}; no partial file was left: free some space and rerun")
    assert files_in(tmp_path) == ["0000.png"]
