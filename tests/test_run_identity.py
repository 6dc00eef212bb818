"""sample_ddp.py's run folders are bound to what made them: weights by content (sha256, cached beside the
file), every PNG naming its run's image set, one run at a time in a folder (flock), an npz per N, and no
record of a start that failed."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import sample_ddp
from common import fingerprint as fp
from common.run_folder import locked_run_dir
from llamagen.presets import DEMO
from tests.helpers.processes import ENV, ROOT
from tests.helpers.sample_ddp import npz_of, pngs, run_dir

RUN = ["--window", "2", "--per-proc-batch-size", "2", "--quiet"]


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def run_inline(args, capsys) -> tuple[int, list[str]]:
    code = sample_ddp.cli([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def demo_copy(folder: Path, perturb: bool = False) -> Path:
    """The demo GPT as folder/gpt_demo.pt; perturb: one weight changed, so the same name and byte size
    hold other weights."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(DEMO.gpt_ckpt, weights_only=True)
    if perturb:
        name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
        ckpt["model"][name].view(-1)[0] += 0.5
    path = folder / "gpt_demo.pt"
    torch.save(ckpt, path)
    return path


def with_text(path: Path, **changes) -> None:
    """Rewrite a PNG's tEXt entries (same pixels)."""
    with Image.open(path) as im:
        text, pixels = {**im.text, **changes}, im.copy()
    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    pixels.save(path, pnginfo=info)


# ----------------------------------------------------------------------------- fingerprints


def test_fingerprint_is_content_not_name_or_size(tmp_path):
    a, b = tmp_path / "a" / "w.pt", tmp_path / "b" / "w.pt"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"\x00" * 1000)
    b.write_bytes(b"\x00" * 999 + b"\x01")
    assert fp.fingerprint(a) != fp.fingerprint(b)
    assert fp.fingerprint(a) == "sha256:" + hashlib.sha256(b"\x00" * 1000).hexdigest()


def test_fingerprint_is_cached_beside_the_file_by_its_stat_stamp(tmp_path, monkeypatch):
    path = tmp_path / "w.pt"
    path.write_bytes(b"weights one")
    calls = []
    real = fp.hash_file
    monkeypatch.setattr(fp, "hash_file", lambda p: calls.append(p) or real(p))
    first = fp.fingerprint(path)
    assert fp.fingerprint(path) == first and len(calls) == 1  # the second read the cache
    cache = tmp_path / ".w.pt.sha256.json"
    assert json.loads(cache.read_text())["sha256"] == first.removeprefix("sha256:")
    path.write_bytes(b"weights two")  # same size, new content and mtime
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 10**9))
    assert fp.fingerprint(path) != first and len(calls) == 2


def rewrite_keeping_mtime(path: Path, content: bytes) -> None:
    """Rewrite a file in place (same inode) and set its times back, as `cp -p` or `rsync -t` of a same-size
    file leave it: size and mtime say nothing changed."""
    before = path.stat()
    with open(path, "r+b") as f:
        f.write(content)
        f.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_a_file_rewritten_in_place_with_its_mtime_set_back_is_hashed_again(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"weights one")
    first = fp.fingerprint(path)
    rewrite_keeping_mtime(path, b"weights two")
    assert fp.fingerprint(path) == "sha256:" + hashlib.sha256(b"weights two").hexdigest() != first
    store = tmp_path / "store" / "w.pt"  # the run folder's fallback cache, where the file's folder takes none
    store.parent.mkdir()
    store.write_bytes(b"weights one")
    (tmp_path / "store" / ".w.pt.sha256.json").mkdir()
    run = tmp_path / "run" / ".sha256"
    assert fp.fingerprint(store, run) == first and len(list(run.glob("*.json"))) == 1
    rewrite_keeping_mtime(store, b"weights two")
    assert fp.fingerprint(store, run) != first


def test_fingerprint_falls_back_when_the_files_folder_takes_no_cache(tmp_path, monkeypatch):
    path = tmp_path / "store" / "w.pt"
    path.parent.mkdir()
    path.write_bytes(b"weights")
    (tmp_path / "store" / ".w.pt.sha256.json").mkdir()  # where the cache would go cannot take a file
    calls = []
    real = fp.hash_file
    monkeypatch.setattr(fp, "hash_file", lambda p: calls.append(p) or real(p))
    digest = fp.fingerprint(path)
    assert fp.fingerprint(path) == digest and len(calls) == 2  # no cache at all: recomputed each time
    run = tmp_path / "run" / ".sha256"
    assert fp.fingerprint(path, run) == digest and fp.fingerprint(path, run) == digest and len(calls) == 3
    assert len(list(run.glob("*.json"))) == 1


def test_folder_fingerprint_covers_every_file_but_hidden_ones(tmp_path):
    model = tmp_path / "Model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "tokenizer.json").write_text("tok")
    before = fp.fingerprint(model)
    (model / ".cache").mkdir()
    (model / ".cache" / "x").write_text("download bookkeeping")
    assert fp.fingerprint(model) == before  # hidden files (and the digest caches) are not content
    os.rename(model, tmp_path / "Moved")
    assert fp.fingerprint(tmp_path / "Moved") == before  # moving the folder keeps it
    (tmp_path / "Moved" / "sub" / "tokenizer.json").write_text("tak")
    assert fp.fingerprint(tmp_path / "Moved") != before


# ----------------------------------------------------------------------------- sample_ddp


def test_another_checkpoint_of_the_same_name_and_size_is_another_run(tmp_path, capsys):
    a, b = demo_copy(tmp_path / "a"), demo_copy(tmp_path / "b", perturb=True)
    assert a.name == b.name and a.stat().st_size == b.stat().st_size  # the premise: only content differs
    out = tmp_path / "out"
    args = [*RUN, "--num-fid-samples", "2", "--vq-path", DEMO.vq_ckpt, "--out-dir", out]
    assert run_inline([*args, "--gpt-ckpt", a], capsys)[0] == 0
    code, err = run_inline([*args, "--gpt-ckpt", b], capsys)
    assert code == 2 and len(err) == 1 and "holds a run with other arguments (differ: gpt_ckpt)" in err[0]
    assert "use another --out-dir" in err[0] and "--sample-dir" not in err[0]
    record = json.loads((run_dir(out) / "args.json").read_text())["image_set"]
    assert record["gpt_ckpt"] == fp.fingerprint(a) != fp.fingerprint(b)


def test_a_resume_after_the_weights_changed_in_place_with_mtime_set_back_is_refused(tmp_path, capsys):
    ckpt = demo_copy(tmp_path / "a")
    other = demo_copy(tmp_path / "b", perturb=True).read_bytes()
    out = tmp_path / "out"
    args = [*RUN, "--gpt-ckpt", ckpt, "--vq-path", DEMO.vq_ckpt, "--out-dir", out]
    assert run_inline([*args, "--num-fid-samples", "1"], capsys)[0] == 0
    rewrite_keeping_mtime(ckpt, other)  # same name, size and mtime; other weights
    code, err = run_inline([*args, "--num-fid-samples", "2"], capsys)
    assert code == 2 and len(err) == 1 and "holds a run with other arguments (differ: gpt_ckpt)" in err[0]
    assert len(list(run_dir(out).glob("*.png"))) == 1


def test_a_record_from_before_fingerprints_is_refused_with_the_reason(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*RUN, "--num-fid-samples", "1", "--out-dir", out]
    assert run_inline(args, capsys)[0] == 0
    record = run_dir(out) / "args.json"
    meta = json.loads(record.read_text())
    meta["image_set"]["gpt_ckpt"] = {"name": "gpt_demo.pt", "bytes": Path(DEMO.gpt_ckpt).stat().st_size}
    record.write_text(json.dumps(meta))
    code, err = run_inline(args, capsys)
    assert code == 2 and len(err) == 1 and "differ: gpt_ckpt; its record names weight files by name and size" in err[0]


def test_a_png_of_another_image_set_is_redone_not_kept(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*RUN, "--num-fid-samples", "3", "--out-dir", out]
    assert run_inline(args, capsys)[0] == 0
    folder = run_dir(out)
    reference = pngs(folder)
    with Image.open(folder / "000001.png") as im:
        assert len(im.text["image_set"]) == 64
    with_text(folder / "000001.png", image_set="0" * 64)  # made by other weights or arguments
    code, err = run_inline(args, capsys)
    assert code == 0 and "1 existing image(s) redone" in "\n".join(err)
    assert pngs(folder) == reference


def test_a_running_run_holds_its_folder(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*RUN, "--num-fid-samples", "1", "--out-dir", out]
    assert run_inline(args, capsys)[0] == 0
    with locked_run_dir(run_dir(out)):
        code, err = run_inline(args, capsys)
    assert code == 2 and len(err) == 1
    assert f"is in use by a running sample_ddp.py (pid {os.getpid()} on host " in err[0]
    assert run_inline(args, capsys)[0] == 0  # released with its holder


def test_two_runs_started_together_leave_one_runs_images(tmp_path):
    """Two runs with other weights of the same name and size share a run folder; whichever starts second
    is refused (the lock while the first runs, its record after), so the folder holds one run's images."""
    out = tmp_path / "out"
    ckpts = [demo_copy(tmp_path / "a"), demo_copy(tmp_path / "b", perturb=True)]
    procs = [subprocess.Popen([sys.executable, "sample_ddp.py", *RUN, "--num-fid-samples", "4", "--threads", "1",
                               "--gpt-ckpt", str(c), "--vq-path", DEMO.vq_ckpt, "--out-dir", str(out)],
                              cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True) for c in ckpts]
    results = [(p.wait(timeout=1800), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(refused) == 1 and ("is in use by a running sample_ddp.py" in refused[0]
                                  or "holds a run with other arguments (differ: gpt_ckpt)" in refused[0])
    folder = run_dir(out)
    digest = sample_ddp.image_set_digest(json.loads((folder / "args.json").read_text())["image_set"])
    for png in folder.glob("*.png"):
        with Image.open(png) as im:
            assert im.text["image_set"] == digest
    assert len(list(folder.glob("*.png"))) == 4
    with np.load(npz_of(folder, 4)) as f:
        assert len(f["arr_0"]) == 4


def test_a_smaller_n_never_shrinks_a_larger_npz(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*RUN, "--out-dir", out]
    assert run_inline([*args, "--num-fid-samples", "3"], capsys)[0] == 0
    folder = run_dir(out)
    assert run_inline([*args, "--num-fid-samples", "2"], capsys)[0] == 0
    with np.load(npz_of(folder, 3)) as big, np.load(npz_of(folder, 2)) as small:
        assert len(big["arr_0"]) == 3 and len(small["arr_0"]) == 2
        assert np.array_equal(big["arr_0"][:2], small["arr_0"])


def test_overwrite_leaves_no_npz_of_the_old_run(tmp_path, capsys):
    """--overwrite with other weights: every npz of the old run goes (each N, and RUN.npz, the name
    before npzs were named by N), so none of the old images sits beside the new run under its name."""
    out = tmp_path / "out"
    args = [*RUN, "--out-dir", out]
    assert run_inline([*args, "--num-fid-samples", "2"], capsys)[0] == 0
    folder = run_dir(out)
    assert run_inline([*args, "--num-fid-samples", "1"], capsys)[0] == 0
    old_npzs = [npz_of(folder, 2), npz_of(folder, 1), folder.with_name(folder.name + ".npz")]
    old_npzs[2].write_bytes(old_npzs[0].read_bytes())
    with np.load(old_npzs[1]) as f:
        old_image = f["arr_0"][0].copy()
    assert run_inline([*args, "--num-fid-samples", "1", "--random-init", "--overwrite"], capsys)[0] == 0
    assert not old_npzs[0].exists() and not old_npzs[2].exists()
    with np.load(old_npzs[1]) as f:  # written afresh by the new run
        assert len(f["arr_0"]) == 1 and not np.array_equal(f["arr_0"][0], old_image)
    assert [p.name for p in folder.glob("*.png")] == ["000000.png"]


@pytest.mark.parametrize("damage", ["truncated", "wrong-preset"])
def test_a_failed_start_leaves_no_record_that_blocks_the_corrected_command(damage, tmp_path, capsys):
    out = tmp_path / "out"
    ckpt = demo_copy(tmp_path / "ckpt")
    good = ckpt.read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(good[:len(good) // 2])
    else:  # a checkpoint of another architecture under the demo's name
        from tests.helpers.llamagen import tiny_gpt
        torch.save({"model": tiny_gpt(24).state_dict()}, ckpt)
    args = [*RUN, "--num-fid-samples", "1", "--gpt-ckpt", ckpt, "--vq-path", DEMO.vq_ckpt, "--out-dir", out]
    code, err = run_inline(args, capsys)
    assert code == 2 and len(err) == 1 and str(ckpt) in err[0]
    assert not list(out.rglob("args.json")) and not list(out.rglob("*.png"))
    ckpt.write_bytes(good)
    code, err = run_inline(args, capsys)
    assert code == 0, err


def test_ctrl_c_is_one_line_that_says_how_to_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = [*RUN, "--num-fid-samples", "2", "--out-dir", out]
    real = sample_ddp.load_sampler

    def interrupted(*a):
        sampler = real(*a)
        sampler.make = lambda *_: (_ for _ in ()).throw(KeyboardInterrupt())
        return sampler
    monkeypatch.setattr(sample_ddp, "load_sampler", interrupted)
    code, err = run_inline(args, capsys)
    assert code == 130 and err[-1] == "interrupted: complete images are kept; rerun the same command to resume"
    assert len(err) == 2 and "Traceback" not in "\n".join(err)  # the run's one start line, then this
    monkeypatch.setattr(sample_ddp, "load_sampler", real)
    assert run_inline(args, capsys)[0] == 0  # the folder was released: the same command resumes
