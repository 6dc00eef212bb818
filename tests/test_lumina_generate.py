"""Lumina-mGPT pipeline from files and the CLI in-process (adds to tests/test_lumina_pipeline.py):
- load_pipeline from an HF folder + Meta-style VQGAN folder + a tokenizer.json elsewhere reproduces the
  random-init pipeline with the same weights bit for bit (tokens and pixels);
- mismatched parts (tokenizer vs VQGAN codebook, tokenizer vs model vocabulary, no tokenizer.json) and
  bad arguments are one-line `error: ...` exits with status 2;
- the CLI from files writes the PNGs it reports, at 16 px per token (4 for the tiny VQGAN);
- the API sample_ddp.py calls (load_preset, ntp_passes_official, grid) and the official pass counts at
  512/768/1024 px.
"""
import json

import pytest
import torch
from PIL import Image

from common.zipar.config import DecodeConfig
from common.zipar.layout import Layout
from common.zipar.window import num_passes
from lumina_mgpt.generate import cli
from lumina_mgpt.pipeline import LuminaPipeline, checkpoint_resolution, load_pipeline, load_preset, ntp_passes_official
from lumina_mgpt.presets import PRESETS
from lumina_mgpt.prompt import stand_in_tokenizer
from lumina_mgpt.vqgan import random_vqgan
from tests.helpers.files import write_folder, write_vqgan
from tests.helpers.lumina import PROMPTS, SIZE


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(random-init tiny pipeline, model dir, vqgan dir, tokenizer dir) holding the same weights."""
    root = tmp_path_factory.mktemp("lumina")
    pipe = load_pipeline(None, None, None, "tiny", 512, random_init=True, seed=3)
    write_folder(root / "model", pipe.model)
    write_vqgan(root / "vq", pipe.vq.state_dict(), cfg=pipe.vq.config)
    (root / "tok").mkdir()
    pipe.tokenizer.save(str(root / "tok" / "tokenizer.json"))  # the -768 repo's file, used for every checkpoint
    return pipe, root / "model", root / "vq", root / "tok"


def test_files_reproduce_the_random_init_pipeline(files):
    pipe, model_dir, vq_dir, tok_dir = files
    # sample_ddp.py's call: the 512-px preset loads as the 512 checkpoint
    loaded = load_preset(PRESETS["lumina-mgpt-512"], str(model_dir), str(vq_dir), str(tok_dir), "cpu", torch.float32)
    assert loaded.ids == pipe.ids and loaded.resolution == 512 and loaded.grid((512, 512)) == (32, 32)
    assert [checkpoint_resolution(*p.size) for p in PRESETS.values()] == [512, 768, 1024]
    a = LuminaPipeline(pipe.model, pipe.vq, pipe.tokenizer, pipe.ids, resolution=64)
    b = LuminaPipeline(loaded.model, loaded.vq, loaded.tokenizer, loaded.ids, resolution=64)
    config = DecodeConfig(window=2, cfg_scale=3.0, top_k=50)
    seeds = torch.tensor([7, 8])
    res_a, res_b = a.generate(PROMPTS, seeds, config, SIZE), b.generate(PROMPTS, seeds, config, SIZE)
    images_a, images_b = a.decode_images(res_a.tokens), b.decode_images(res_b.tokens)
    assert torch.equal(res_a.tokens, res_b.tokens) and torch.equal(images_a, images_b)
    assert images_a.shape == (2, 3, 16, 16) and images_a.dtype == torch.float32  # 4x4 grid, tiny VQGAN x4
    other = a.decode_images(a.generate(PROMPTS, seeds + 1, config, SIZE).tokens)
    assert not torch.equal(other, images_a)


def run_cli(argv, capsys):
    code = cli(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_cli_from_files(files, tmp_path, capsys):
    _, model_dir, vq_dir, tok_dir = files
    out = tmp_path / "out"
    code, stdout, err = run_cli(["--model-path", str(model_dir), "--vq-path", str(vq_dir), "--tokenizer-path",
                                 str(tok_dir / "tokenizer.json"), "--prompt", "a cat", "--width", "1024", "--height",
                                 "256", "--window", "2", "--json", "--out-dir", str(out), "--device", "cpu"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["grid"] == [16, 64] and report["forward_passes"] == 15 * 2 + 64
    assert report["ntp_passes"] == 16 * 64 and report["ntp_passes_official"] == 16 * 65
    assert report["seconds"] > 0 and len(report["files"]) == 1
    with Image.open(report["files"][0]) as im:
        assert im.size == (64 * 4, 16 * 4) and im.mode == "RGB"


@pytest.mark.parametrize("case,message", [
    ("no_files", "pass --model-path and --vq-path, or --random-init"),
    ("missing_model", "--model-path: folder not found"),
    ("no_tokenizer", "only the Lumina-mGPT-7B-768 repo ships tokenizer.json"),
    ("codebook", "the tokenizer has 64 image tokens, the VQGAN 32 codes"),
    ("vocab", "ids, the model 512"),
    ("size", "768x512 is not a size of the 768-px checkpoint"),
    ("any_size", "768x512 is not a size of any Lumina-mGPT checkpoint"),
    ("fp16", "--precision fp16 is not supported on CPU"),
    ("no_prompt", "pass --prompt TEXT"),
])
def test_errors_are_one_line(files, tmp_path, capsys, case, message):
    _, model_dir, vq_dir, tok_dir = files
    paths = ["--model-path", str(model_dir), "--vq-path", str(vq_dir)]
    extra = ["--tokenizer-path", str(tok_dir)]
    if case == "no_files":
        paths, extra = [], []
    elif case == "missing_model":
        paths[1] = str(tmp_path / "nope")
    elif case == "no_tokenizer":
        extra = []  # the model folder has no tokenizer.json
    elif case == "codebook":
        small = random_vqgan(0, "tiny")
        small_cfg = type(small.config)(**{**small.config.__dict__, "n_embed": 32})
        write_vqgan(tmp_path / "vq32", {**small.state_dict(), "quantize.embedding.weight": torch.zeros(32, 32)},
                    cfg=small_cfg)
        paths[3] = str(tmp_path / "vq32")
    elif case == "vocab":
        (tmp_path / "tok").mkdir()
        stand_in_tokenizer(64, 1000).save(str(tmp_path / "tok" / "tokenizer.json"))
        tok = stand_in_tokenizer(64, 1000)
        tok.add_special_tokens([f"<extra{i}>" for i in range(600)])  # more ids than the model's 512
        tok.save(str(tmp_path / "tok" / "tokenizer.json"))
        extra = ["--tokenizer-path", str(tmp_path / "tok")]
    size = ["--width", "1024", "--height", "256"]
    if case in ("size", "any_size"):
        size = ["--width", "768", "--height", "512", *(["--resolution", "768"] if case == "size" else [])]
    prompt = [] if case == "no_prompt" else ["--prompt", "a cat"]
    precision = ["--precision", "fp16"] if case == "fp16" else []
    code, stdout, err = run_cli([*paths, *extra, *prompt, *size, *precision, "--device", "cpu",
                                 "--out-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_official_pass_counts_and_tiny_grid():
    # one pass per generated token of the official loop, EOLs included (fact sheet 2.3: body = H x (W + 1))
    assert [ntp_passes_official(g, g) for g in (32, 48, 64)] == [1056, 2352, 4160]
    assert ntp_passes_official(36, 64) == 36 * 65  # 1024x576 at 768
    # our engine's NTP: EOL rides along with the next row's first token -> H*W passes
    assert num_passes(Layout(48, 48, 30, end_of_row=True), 48) == 2304
    assert num_passes(Layout(48, 48, 30, end_of_row=True), 14) == 47 * 14 + 48 == 706
    # the tiny preset keeps the checkpoint's grid (16 px per token, 32x32 at 512) and a x4 VQGAN
    tiny = load_pipeline(None, None, None, "tiny", 512, random_init=True)
    assert tiny.grid((512, 512)) == (32, 32) and tiny.vq.config.downsample == 4


def test_cli_defaults_and_the_official_cfg_flag():
    from lumina_mgpt.generate import build_parser
    p = build_parser()
    args = p.parse_args([])
    assert (args.cfg_scale, args.top_k, args.temperature, args.top_p) == (3.0, 2000, 1.0, 1.0)  # inference_solver.py
    assert p.parse_args(["--cfg", "4.0"]).cfg_scale == 4.0  # generate_examples/generate.py's flag (README: 4.0)
    assert p.parse_args(["--cfg-scale", "2.5"]).cfg_scale == 2.5
