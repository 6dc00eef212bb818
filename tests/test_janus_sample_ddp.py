"""sample_ddp.py with the Janus-Pro presets (tiny random model): the same PNG bytes for 1 process and 2 under
torchrun (batch mates with prompts of other lengths), the serial first row's pass count, one-line errors."""
import json

import pytest
from PIL import Image

import sample_ddp
from tests.helpers.sample_ddp import launch, pngs, run_dir

PROMPTS = ["a red cube", "a cat on a mat in the snow at night", "x"]


def janus_args(model, prompts, sample_dir, batch):
    # one thread in every process: the VQ decoder's convolutions may differ in the last bits between thread counts
    return ["--model", model, "--random-init", "--config", "tiny", "--prompts-file", str(prompts),
            "--window", "2", "--num-fid-samples", "5", "--per-proc-batch-size", str(batch),
            "--image-size-eval", "16", "--out-dir", str(sample_dir), "--threads", "1"]


@pytest.mark.parametrize("model", ["janus-pro-1b", "janus-pro-7b"])
def test_janus_presets_under_torchrun(model, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    assert sample_ddp.cli(janus_args(model, prompts, tmp_path / "one", 3)) == 0
    if model == "janus-pro-7b":  # one torchrun run is enough for the family
        two = launch(janus_args(model, prompts, tmp_path / "two", 1), nproc=2)
        assert two.returncode == 0, two.stderr
        assert pngs(run_dir(tmp_path / "one")) == pngs(run_dir(tmp_path / "two"))
    folder = run_dir(tmp_path / "one")
    assert len(pngs(folder)) == 5
    with Image.open(folder / "000004.png") as im:
        assert im.text["prompt"] == PROMPTS[1] and im.size == (16, 16)
    summary = json.loads((folder / "summary.json").read_text())
    rows, cols = summary["grid"]
    assert (rows, cols) == (6, 6)
    assert summary["ntp_forward_passes"] == summary["ntp_forward_passes_official"] == rows * cols
    assert summary["forward_passes"]["max"] == 2 * cols + (rows - 2) * 2  # serial first row, w = 2


def test_janus_vq_path_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    code = sample_ddp.cli(["--model", "janus-pro-7b", "--prompts-file", str(prompts), "--model-path", str(tmp_path),
                           "--vq-path", str(tmp_path), "--num-fid-samples", "1", "--out-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "--vq-path" in err[-1], err
