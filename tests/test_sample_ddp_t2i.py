"""sample_ddp.py with the text-to-image presets (tiny random Emu3/Lumina-mGPT): image i uses prompt i mod N,
the same bytes for 1 and 2 processes and any batch (batch mates have prompts of other lengths), the prompt
in each PNG, one-line errors."""
import json

import numpy as np
import pytest
from PIL import Image

import sample_ddp
from tests.helpers.sample_ddp import launch, npz_of, pngs, run_dir

PROMPTS = ["a red cube", "a cat sitting on a striped mat, photograph, soft light", "x"]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def t2i_args(model, prompts, sample_dir, batch):
    # one thread in every process: the image decoders' convolutions differ in the last float bits between CPU
    # thread counts (1e-5 for the tiny VQGAN), which can move a pixel by one step; tokens do not depend on it
    return ["--model", model, "--random-init", "--config", "tiny", "--prompts-file", str(prompts),
            "--window", "2", "--num-fid-samples", "5", "--per-proc-batch-size", str(batch),
            "--image-size-eval", "32", "--out-dir", str(sample_dir), "--threads", "1"]


@pytest.mark.parametrize("model", ["emu3-gen", "lumina-mgpt-512"])
def test_prompt_presets_are_reproducible_across_processes_and_batches(model, prompts, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert sample_ddp.cli(t2i_args(model, prompts, tmp_path / "one", 3)) == 0  # in this process
    two = launch(t2i_args(model, prompts, tmp_path / "two", 1), nproc=2)
    assert two.returncode == 0, two.stderr
    a, b = run_dir(tmp_path / "one"), run_dir(tmp_path / "two")
    assert pngs(a) == pngs(b) and len(pngs(a)) == 5
    for i in range(5):  # prompt i is line i + 1
        with Image.open(a / f"{i:06d}.png") as im:
            assert im.text["prompt"] == PROMPTS[i % 3] and im.text["label"] == str(i % 3)
    assert np.load(npz_of(a))["arr_1"].tolist() == [0, 1, 2, 0, 1]
    summary = json.loads((a / "summary.json").read_text())
    rows, cols = summary["grid"]
    assert summary["ntp_forward_passes"] == rows * cols
    assert summary["forward_passes"]["max"] == (rows - 1) * 2 + cols
    assert summary["ntp_forward_passes_official"] > rows * cols


@pytest.mark.parametrize("extra,message", [
    (["--model", "emu3-gen", "--random-init"], "pass --prompts-file FILE"),
    (["--model", "emu3-gen"], "pass --model-path"),
    (["--model", "emu3-gen", "--prompts-file", "PROMPTS", "--model-path", "NOPE"], "--model-path: folder not found"),
    (["--model", "lumina-mgpt-768", "--prompts-file", "PROMPTS", "--gpt-ckpt", "x.pt"], "not the LlamaGen"),
    (["--model", "demo", "--prompts-file", "PROMPTS"], "class-conditional"),
    (["--model", "demo", "--prompt", "a cat"], "class-conditional"),
    (["--model", "emu3-gen", "--prompts-file", "EMPTY", "--random-init"], "holds no prompt"),
])
def test_prompt_errors_are_one_line(extra, message, prompts, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (tmp_path / "empty.txt").write_text("\n \n")
    if "--prompts-file" not in extra and "--random-init" not in extra:
        extra = [*extra, "--prompts-file", "PROMPTS"]
    extra = [str(prompts) if x == "PROMPTS" else str(tmp_path / "empty.txt") if x == "EMPTY" else
             str(tmp_path / x) if x == "NOPE" else x for x in extra]
    code = sample_ddp.cli(["--num-fid-samples", "2", "--out-dir", str(tmp_path / "s"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_prompt_flags_and_compile_define_the_image_set(prompts, tmp_path, monkeypatch):
    """--prompt TEXT (repeatable) and --prompts-file FILE give one prompt list, hence one image set; the
    text-to-image presets take --compile like the LlamaGen ones (the engine compiles; same tokens)."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def key(*extra):
        args = sample_ddp.fill_defaults(sample_ddp.build_parser().parse_args(
            ["--model", "lumina-mgpt-512", "--random-init", "--config", "tiny", *extra]))
        return sample_ddp.image_set(args, sample_ddp.check_args(args, 1))

    kept = PROMPTS
    from_file = key("--prompts-file", str(prompts))
    inline = key(*[x for p in kept for x in ("--prompt", p)])
    assert from_file == inline and from_file["compile"] is False
    assert key("--prompt", kept[0], "--prompts-file", str(prompts))["prompts_sha256"] != from_file["prompts_sha256"]
    assert key("--prompts-file", str(prompts), "--compile")["compile"] is True


def test_lumina_preset_runs_the_released_code_with_compat(prompts, tmp_path, monkeypatch):
    """--compat official on a Lumina-mGPT preset (common.zipar.official): --window is the release's
    zipar_window_size, so 3 opens a row after 2 tokens of the one above: (H-1)*2 + W passes, and the
    release's 3 header passes are recorded beside them."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = t2i_args("lumina-mgpt-512", prompts, tmp_path, 2)
    args[args.index("--window") + 1] = "3"
    args[args.index("--num-fid-samples") + 1] = "2"
    assert sample_ddp.cli([*args, "--compat", "official"]) == 0
    folder = run_dir(tmp_path)
    assert "-w3-official-" in folder.name
    summary = json.loads((folder / "summary.json").read_text())
    rows, cols = summary["grid"]
    assert summary["forward_passes"]["max"] == (rows - 1) * 2 + cols
    assert summary["decoding"]["effective_window"] == 2 and summary["official_header_passes"] == 3
