"""The trade-off benchmark runs end to end on a few samples and writes its table, CSV and plot."""
import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import tradeoff  # noqa: E402


def test_tradeoff_benchmark_smoke(tmp_path):
    args = tradeoff.build_parser().parse_args([
        "--num-samples", "2", "--batch-size", "2", "--groups", "1", "--windows", "2", "--adaptive-windows", "4",
        "--compat-windows", "2", "--placeholders", "mean", "--draft-lens", "2", "--draft-windows", "4",
        "--draft-placeholder", "mean", "--out-md", str(tmp_path / "t.md"), "--out-csv", str(tmp_path / "t.csv"),
        "--out-png", str(tmp_path / "t.png")])
    tradeoff.main(args)
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert list(rows[0]) == tradeoff.COLUMNS
    assert [r["setting"] for r in rows] == ["NTP", "fixed 2 mean", "adaptive 4 mean", "official 2",
                                            "SJD L=2", "fixed 4 mean + SJD L=2", "adaptive 4 mean + SJD L=2"]
    by = {r["setting"]: r for r in rows}
    for name in ("SJD L=2", "fixed 4 mean + SJD L=2"):  # drafts decide 1..L+1 tokens a row-pass
        assert 1.0 <= float(by[name]["tokens_per_row_pass"]) <= 3.0
        assert len(by[name]["row_tokens_per_pass"].split()) == 24
    assert float(by["SJD L=2"]["passes_mean"]) < float(by["NTP"]["passes_mean"])
    assert by["SJD L=2"]["draft_init"] == "above" and by["NTP"]["draft_init"] == ""
    assert float(by["NTP"]["agreement"]) == 1.0
    assert float(by["fixed 2 mean"]["passes_mean"]) == 23 * 2 + 24
    assert float(by["fixed 2 mean"]["agreement"]) < 1.0
    assert by["fixed 2 mean"]["placeholder"] == "mean" and by["NTP"]["placeholder"] == ""
    assert by["official 2"]["placeholder"] == "above"
    assert float(by["official 2"]["passes_mean"]) == 2 * 24 + 22 * 2
    assert (tmp_path / "t.png").stat().st_size > 0 and (tmp_path / "t.md").read_text().count("\n") >= 6
    check_merge_of_side_by_side_runs(args, tmp_path)


def check_merge_of_side_by_side_runs(args, tmp_path):
    """--from-csv: two runs, each with its own NTP reference (one of them holding the drafts), give the
    one run's table: the first row of each setting, the settings in draft-length order."""
    lines = (tmp_path / "t.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    drafts = [r for r in rows if "SJD" in r]
    (tmp_path / "a.csv").write_text("\n".join([header, rows[0], *drafts]) + "\n")
    (tmp_path / "b.csv").write_text("\n".join([header, *[r for r in rows if r not in drafts]]) + "\n")
    merged = tradeoff.build_parser().parse_args([
        "--num-samples", "2", "--groups", "1", "--from-csv", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
        "--out-md", str(tmp_path / "m.md"), "--out-csv", str(tmp_path / "m.csv"), "--out-png", str(tmp_path / "m.png")])
    tradeoff.write_outputs(tradeoff.read_rows(merged.from_csv), merged)
    body = lambda name: (tmp_path / name).read_text().splitlines()[1:]  # noqa: E731  (the header says "merged")
    assert body("m.md") == body("t.md")
    assert "Merged from 2 runs" in (tmp_path / "m.md").read_text()
    assert list(csv.reader((tmp_path / "m.csv").open())) == list(csv.reader((tmp_path / "t.csv").open()))


def test_sampling_sweep_smoke(tmp_path):
    import sampling_sweep

    args = sampling_sweep.build_parser().parse_args([
        "--num-samples", "4", "--batch-size", "4", "--groups", "2", "--w-min", "4", "--cfg-scales", "3.0", "--base-cfg", "3.0",
        "--temperatures", "1.0",
        "--out-md", str(tmp_path / "s.md"), "--out-csv", str(tmp_path / "s.csv")])
    sampling_sweep.main(args)
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    # (3, 1) is in both sweeps and runs once: NTP, then adaptive
    assert [(r["method"], float(r["cfg_scale"]), float(r["temperature"])) for r in rows] == [
        ("NTP", 3.0, 1.0), ("adaptive 4", 3.0, 1.0)]
    assert all(float(r["agreement"]) == 1.0 for r in rows if r["method"] == "NTP")
    assert all(float(r["passes_mean"]) < 576 for r in rows if r["method"] != "NTP")


def test_too_few_samples_for_the_groups_is_an_error():
    args = tradeoff.build_parser().parse_args(["--num-samples", "5", "--groups", "5"])
    with pytest.raises(SystemExit, match="--num-samples 5 must be a multiple of --groups 5 with at least 2 samples a group"):
        tradeoff.main(args)
