"""sample_ddp.py and evaluate.py on the demo model, on CPU: the same PNG bytes for 1 and 2 processes and any
batch size, resume after a kill, summary.json against llamagen.generate, refusals and one-line errors."""
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evaluate
import sample_ddp
from common.zipar.config import DecodeConfig
from common.images import to_fid_uint8
from common.zipar.sampling import image_seeds
from llamagen.checkpoint import load_gpt_weights
from llamagen.demo_classifier import DigitScorer
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.generate import generate
from llamagen.model import Transformer, gpt_config
from llamagen.presets import DEMO, DEMO_DIR, FID_PRESETS, fid_preset
from tests.helpers.sample_ddp import launch, npz_of, pngs, run_dir

N = 12
RUN_ARGS = ["--window", "2", "--num-fid-samples", str(N)]  # w = 2: 23 * 2 + 24 = 70 passes an image
PASSES = 2 * 24 + 22 * 2  # the serial first row


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process (this one, on one thread), batch 3: the reference run."""
    out = tmp_path_factory.mktemp("single")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WORLD_SIZE", raising=False)
        threads = torch.get_num_threads()
        assert sample_ddp.cli([*RUN_ARGS, "--per-proc-batch-size", "3", "--threads", "1", "--out-dir", str(out)]) == 0
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def demo_gpt():
    gpt = Transformer(gpt_config("demo"), grid_size=DEMO.image_size).eval()
    load_gpt_weights(gpt, DEMO.gpt_ckpt, "demo")
    return gpt


def test_two_processes_give_the_same_bytes_as_one(single, tmp_path):
    proc = launch([*RUN_ARGS, "--per-proc-batch-size", "4", "--out-dir", str(tmp_path)], nproc=2)
    assert proc.returncode == 0, proc.stderr
    ref, got = pngs(run_dir(single)), pngs(run_dir(tmp_path))
    assert list(ref) == [f"{i:06d}.png" for i in range(N)] and got == ref
    npz = npz_of(run_dir(tmp_path))
    assert f"npz: {npz}" in proc.stderr and f"python evaluate.py {npz} --digits" in proc.stderr
    with np.load(npz) as f, np.load(npz_of(run_dir(single))) as g:
        assert f["arr_0"].shape == (N, 96, 96, 3) and f["arr_0"].dtype == np.uint8
        assert np.array_equal(f["arr_0"], g["arr_0"]) and f["arr_1"].tolist() == [i % 10 for i in range(N)]
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert summary["world_size"] == 2 and len(summary["per_rank_seconds"]) == 2
    assert summary["images_generated"] == N and summary["args"]["per_proc_batch_size"] == 4


def test_summary_and_digits_match_llamagen_generate(single, demo_gpt):
    labels, seeds = torch.arange(N) % 10, image_seeds(0, torch.arange(N))
    result = generate(demo_gpt, labels, seeds, DecodeConfig(window=2, cfg_scale=2.0, temperature=DEMO.temperature))
    summary = json.loads((run_dir(single) / "summary.json").read_text())
    assert summary["forward_passes"] == {"mean": PASSES, "min": PASSES, "max": PASSES}
    assert set(result.image_passes) == {PASSES} and summary["ntp_forward_passes"] == 24 * 24
    assert summary["num_images"] == N and summary["world_size"] == 1 and summary["adaptive"] is None
    assert summary["decoding"]["window"] == 2 and summary["decoding"]["cfg_scale"] == 2.0
    for key in ("wall_seconds", "images_per_second", "per_rank_seconds", "device", "torch_version", "args"):
        assert summary[key] is not None
    # the npz holds exactly the generated tokens: the digits scores from pixels equal those from tokens
    grey = IntensityTokenizer().codes_to_grey(result.tokens.flatten(1), (24, 24))
    direct = DigitScorer.load(DEMO_DIR / "digit_classifier.pt").score(grey, labels)
    images, npz_labels = evaluate.load_samples(npz_of(run_dir(single)))
    assert torch.equal(evaluate.digits_grey(images), grey)
    scores = evaluate.digits_metrics(images, npz_labels, DEMO_DIR / "digit_classifier.pt")
    assert scores["accuracy"] == direct["accuracy"] and scores["digits_fid"] == pytest.approx(direct["digits_fid"])


def test_resume_after_kill_redoes_only_missing_and_corrupt(single, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = [*RUN_ARGS, "--per-proc-batch-size", "4", "--out-dir", str(tmp_path)]
    killed = launch([*args, "--threads", "1", "--stop-after", "6"])  # as the inline resume runs (conftest)
    assert killed.returncode == sample_ddp.STOPPED_EXIT_CODE, killed.stderr
    folder = run_dir(tmp_path)
    assert len(list(folder.glob("*.png"))) == 6 and not npz_of(folder, N).exists()
    truncated = folder / "000002.png"
    truncated.write_bytes(truncated.read_bytes()[:200])  # a damaged file that looks finished by name
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png") if p != truncated}
    code, err = run_inline(args, capsys)
    assert code == 0, err
    assert "rank 0 has 7 to make" in "\n".join(err)
    assert pngs(folder) == pngs(run_dir(single))  # exactly N, none corrupt, the same bytes
    assert {name: (folder / name).stat().st_mtime_ns for name in kept} == kept  # complete ones untouched
    assert not list(folder.glob(".*tmp*"))
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["images_generated"], summary["images_resumed"]) == (7, 5)
    assert summary["forward_passes"]["mean"] == PASSES


def test_resume_redoes_a_png_copied_from_another_index(single, tmp_path, capsys, monkeypatch):
    """A valid PNG of another index (another label, or the same label and another seed) is redone on resume."""
    args = [*RUN_ARGS, "--per-proc-batch-size", "4", "--out-dir", str(tmp_path)]
    folder = tmp_path / run_dir(single).name  # a finished run: the reference's files
    shutil.copytree(run_dir(single), folder)
    num_classes = gpt_config("demo").num_classes
    assert 10 % num_classes == 0 < N - 10  # image 10 has image 0's label, but not its seed
    for i in (1, 10):  # image 1: another label; image 10: the same label, another seed
        (folder / f"{i:06d}.png").write_bytes((folder / "000000.png").read_bytes())
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png") if p.name not in ("000001.png", "000010.png")}
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, err = run_inline(args, capsys)
    assert code == 0, err
    assert "rank 0 has 2 to make" in "\n".join(err)
    assert "2 existing image(s) redone: their metadata did not match their index" in "\n".join(err)
    assert pngs(folder) == pngs(run_dir(single))  # image 1 and 10 redone, byte for byte
    assert {name: (folder / name).stat().st_mtime_ns for name in kept} == kept
    with np.load(npz_of(folder)) as f, np.load(npz_of(run_dir(single))) as g:
        assert f["arr_1"].tolist() == [i % num_classes for i in range(N)]
        assert np.array_equal(f["arr_0"], g["arr_0"])
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["images_generated"], summary["images_resumed"]) == (2, N - 2)


def run_inline(args: list[str], capsys) -> tuple[int, list[str]]:
    code = sample_ddp.cli(args)
    return code, capsys.readouterr().err.strip().splitlines()


def test_adaptive_summary_matches_generate(tmp_path, demo_gpt, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, err = run_inline(["--window", "4", "--adaptive", "--num-fid-samples", "3", "--per-proc-batch-size", "2",
                            "--out-dir", str(tmp_path)], capsys)
    assert code == 0, err
    labels, seeds = torch.arange(3) % 10, image_seeds(0, torch.arange(3))
    result = generate(demo_gpt, labels, seeds, DecodeConfig(window=4, adaptive=True, cfg_scale=2.0, temperature=DEMO.temperature))
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    passes = result.image_passes
    assert summary["forward_passes"] == {"mean": np.mean(passes), "min": min(passes), "max": max(passes)}
    windows = [w for ws in result.accepted_windows for w in ws]
    assert summary["adaptive"]["mean_accepted_window"] == pytest.approx(np.mean(windows))
    assert summary["adaptive"]["mean_rejections"] == pytest.approx(np.mean(result.rejections))
    assert "adaptive-w4" in run_dir(tmp_path).name


def test_other_arguments_are_refused_unless_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["--window", "2", "--num-fid-samples", "2", "--out-dir", str(tmp_path)]
    assert run_inline(args, capsys)[0] == 0
    folder = run_dir(tmp_path)
    code, err = run_inline([*args, "--random-init"], capsys)
    assert code == 2 and len(err) == 1 and "holds a run with other arguments (differ: gpt_ckpt, vq_ckpt, random_init)" in err[0]
    assert run_inline(args, capsys)[0] == 0  # the same arguments resume
    code, err = run_inline([*args, "--random-init", "--overwrite"], capsys)
    assert code == 0 and json.loads((folder / "args.json").read_text())["image_set"]["random_init"] is True
    (folder / "args.json").unlink()  # PNGs without a record of how they were made
    code, err = run_inline(args, capsys)
    assert code == 2 and len(err) == 1 and "no args.json" in err[0]


def test_first_row_rule_names_its_run(tmp_path, capsys, monkeypatch):
    """An explicit --first-row is part of the run folder's name and identity; the default is not named."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["--window", "2", "--num-fid-samples", "1", "--out-dir", str(tmp_path)]
    assert run_inline(args, capsys)[0] == 0
    assert run_inline([*args, "--first-row", "early"], capsys)[0] == 0
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(names) == 2 and sum("-first-row-early-" in n for n in names) == 1, names
    early = next(p for p in tmp_path.iterdir() if p.is_dir() and "first-row-early" in p.name)
    assert json.loads((early / "args.json").read_text())["image_set"]["decoding"]["first_row"] == "early"
    assert json.loads((early / "summary.json").read_text())["forward_passes"]["mean"] == 23 * 2 + 24


def test_draft_coupling_names_its_run(tmp_path, capsys, monkeypatch):
    """Row drafts name their length and start; a non-default coupling is named too and enters the identity."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["--window", "2", "--draft-len", "2", "--num-fid-samples", "1", "--out-dir", str(tmp_path)]
    assert run_inline(args, capsys)[0] == 0
    assert run_inline([*args, "--draft-coupling", "independent"], capsys)[0] == 0
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(names) == 2 and sum("-sjd2-above-independent-" in n for n in names) == 1, names
    for name in names:
        record = json.loads((tmp_path / name / "args.json").read_text())["image_set"]["decoding"]
        assert record["draft_coupling"] == ("independent" if "independent" in name else "maximal")


@pytest.mark.parametrize("extra,message", [
    (["--model", "llamagen-XS"], "unknown --model 'llamagen-XS'; valid: demo, llamagen-B, llamagen-L"),
    (["--gpt-ckpt", "missing.pt"], "--gpt-ckpt: checkpoint file not found: missing.pt"),
    (["--model", "llamagen-L"], "--model llamagen-L: pass --ckpt-dir holding c2i_L_384.pt and vq_ds16_c2i.pt"),
    (["--ckpt-dir", "nowhere"], "--ckpt-dir: folder holding gpt_demo.pt and tokenizer.json not found: nowhere"),
    (["--out-dir", "FILE/sub"], "cannot write to the run folder"),
])
def test_errors_are_one_line(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (tmp_path / "FILE").write_text("a file where a folder should be")
    extra = [str(tmp_path / x) if x.startswith("FILE") else x for x in extra]
    code, err = run_inline(["--num-fid-samples", "2", "--out-dir", str(tmp_path / "s"), *extra], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_more_processes_than_images_fail_with_one_verdict_without_hanging(tmp_path):
    proc = launch(["--num-fid-samples", "1", "--out-dir", str(tmp_path)], nproc=2)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    # every rank that gets this far says the same; torchrun stops the others once the first has failed, so
    # a rank still importing torch on a loaded machine may be stopped before it says anything
    assert 1 <= len(errors) <= 2
    assert set(errors) == {"error: 2 processes for 1 images: use at most as many processes as --num-fid-samples"}
    assert not list(tmp_path.iterdir())  # refused before any work


def test_presets():
    assert [FID_PRESETS[f"llamagen-{s}"].cfg_scale for s in ("B", "L", "XL", "XXL", "3B")] == [2.0, 2.0, 1.75, 1.75, 1.65]
    xl = fid_preset("llamagen-XL")
    assert (xl.gpt_model, xl.vq_model, xl.image_size, xl.image_size_eval, xl.top_k) == ("GPT-XL", "VQ-16", 384, 256, 0)
    assert (xl.gpt_file, xl.vq_file) == ("c2i_XL_384.pt", "vq_ds16_c2i.pt")
    assert fid_preset("demo").cfg_scale == DEMO.cfg_scale
    with pytest.raises(ValueError, match="valid: demo, llamagen-B"):
        fid_preset("GPT-L")


def test_fid_pixels_follow_the_official_conversion():
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1
    expected = torch.clamp(127.5 * F.interpolate(images, size=(8, 8), mode="bicubic") + 128, 0, 255)
    assert np.array_equal(to_fid_uint8(images, 8), expected.permute(0, 2, 3, 1).to(torch.uint8).numpy())
    # clamp(127.5 x + 128, 0, 255), truncated: -1 -> 0.5 -> 0, 0 -> 128, 1 -> 255.5 -> 255
    line = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 1.2]).reshape(1, 1, 1, 6).expand(1, 3, 6, 6)
    assert to_fid_uint8(line, 6)[0, 0, :, 0].tolist() == [0, 0, 128, 191, 255, 255]


def test_inception_fid_needs_library_and_weights(tmp_path, monkeypatch, capsys):
    samples = tmp_path / "s.npz"
    np.savez(samples, arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails, as without the library
    assert evaluate.cli([str(samples), str(samples), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FID needs torch-fidelity" in err[0]
    fake = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    fake.FeatureExtractorInceptionV3 = object
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", fake)
    assert evaluate.cli([str(samples), str(samples), "--inception-weights", str(tmp_path / "w.pth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"Inception weights not found: {tmp_path / 'w.pth'}" in err[0]


def test_inception_metrics_with_a_stand_in_extractor(tmp_path):
    """The FID/IS plumbing, with a fixed random projection standing in for Inception."""
    proj = torch.randn(3 * 8 * 8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def extractor(x):  # uint8 (B, 3, 8, 8) -> (B, 6) features, (B, 6) logits
        f = x.double().flatten(1) / 255 @ proj
        return f, f

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=images)
    same = evaluate.inception_metrics(images, ref, extractor, 16, torch.device("cpu"))
    assert abs(same["fid"]) < 1e-6 and same["reference_statistics"] == "40 images"
    np.savez(ref, arr_0=images[:1], mu=np.full(6, 5.0), sigma=np.eye(6))
    stored = evaluate.inception_metrics(images, ref, extractor, 16, torch.device("cpu"))
    assert stored["reference_statistics"] == "stored mu/sigma" and stored["fid"] > 1
    assert 1.0 <= stored["inception_score"] <= 6.0
