"""emu3.generate and lumina_mgpt.generate decode their prompts --batch-size at a time (tiny random models):
no decode sees more prompts than that, the PNGs are byte for byte those of one batch holding every prompt
(image i: seed (seed, i), its pixels decoded alone), and the --json report joins the batches (per-image
entries in order, pass counts summed)."""
import json

import pytest

import emu3.generate
import lumina_mgpt.generate
from common.report import PER_BATCH, join_reports
from common.t2i_pipeline import TextToImagePipeline

PROMPTS = ["a fox", "a very long prompt about a red fox in the snow at dawn", "cat", "two birds on a wire", "sea"]
FAMILIES = {
    "emu3": (emu3.generate.cli, ["--ratio", "4:3"]),
    "lumina": (lumina_mgpt.generate.cli, ["--width", "1024", "--height", "256"]),
}


def run(family, tmp_path, capsys, monkeypatch, batch_size, extra=()):
    """The CLI's --json report, its PNGs by name, and the prompt count of every decode it ran."""
    cli, size = FAMILIES[family]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / f"out-{batch_size}-{len(extra)}"
    sizes, generate = [], TextToImagePipeline.generate

    def counted(self, prompts, *args, **kwargs):
        sizes.append(len(prompts))
        return generate(self, prompts, *args, **kwargs)
    monkeypatch.setattr(TextToImagePipeline, "generate", counted)
    code = cli(["--random-init", "--config", "tiny", "--prompts-file", str(prompts), *size, "--window", "2",
                "--batch-size", str(batch_size), "--out-dir", str(out), "--json", "--device", "cpu", *extra])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(stdout)
    assert report["files"] == [str(out / f"{i:04d}.png") for i in range(len(PROMPTS))]
    return report, {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}, sizes


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("extra", [(), ("--adaptive", "--draft-len", "2")])
def test_batches_give_the_images_of_one_batch(family, extra, tmp_path, capsys, monkeypatch):
    whole, whole_pngs, sizes = run(family, tmp_path, capsys, monkeypatch, len(PROMPTS), extra)
    assert sizes == [5]
    batched, batched_pngs, sizes = run(family, tmp_path, capsys, monkeypatch, 2, extra)
    assert sizes == [2, 2, 1]
    assert batched_pngs == whole_pngs and len(set(whole_pngs.values())) == len(PROMPTS)
    for key, value in whole.items():
        if key in PER_BATCH or key in ("out", "files"):
            continue
        assert batched[key] == value, key  # per-image entries in order; the rest the same
    passes = lambda report: [max(report["image_passes"][lo:lo + 2]) for lo in range(0, 5, 2)]  # noqa: E731
    assert batched["forward_passes"] == sum(passes(batched)) and whole["forward_passes"] == max(whole["image_passes"])


def test_join_reports_refuses_an_entry_it_does_not_know():
    a, b = {"grid": [3, 5], "forward_passes": 7, "new": [1]}, {"grid": [3, 5], "forward_passes": 8, "new": [2]}
    with pytest.raises(RuntimeError, match="'new' differs between batches"):
        join_reports([a, b])
    assert join_reports([dict(a, new=0), dict(b, new=0)]) == {"grid": [3, 5], "forward_passes": 15, "new": 0}


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_size_below_one_is_refused(family, tmp_path, capsys):
    cli, size = FAMILIES[family]
    assert cli(["--random-init", "--config", "tiny", "--prompt", "x", *size, "--batch-size", "0",
                "--out-dir", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch-size 0 must be >= 1"
    assert not (tmp_path / "o").exists()
