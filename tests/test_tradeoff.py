"""The quality benchmarks run end to end on a few samples and write their table, CSV and plot; by default into
a run folder of their own, never over the committed results."""
import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import gpu_suite, outputs, sampling_sweep, tradeoff, tradeoff_table


def smoke_args(tmp_path, *extra):
    return tradeoff.build_parser().parse_args([
        "--num-samples", "2", "--batch-size", "2", "--groups", "1", "--windows", "2", "--adaptive-windows", "4",
        "--extra-placeholders", "mean", "--placeholder-windows", "2", "--compat-windows", "2", "--draft-lens", "2",
        "--draft-windows", "4", "--draft-kinds", "fixed", *extra])


def out_args(tmp_path, stem):
    return ["--out-md", str(tmp_path / f"{stem}.md"), "--out-csv", str(tmp_path / f"{stem}.csv"),
            "--out-png", str(tmp_path / f"{stem}.png")]


def test_tradeoff_benchmark_smoke(tmp_path):
    args = smoke_args(tmp_path, *out_args(tmp_path, "t"))
    tradeoff.main(args)
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert list(rows[0]) == tradeoff_table.COLUMNS
    assert [r["setting"] for r in rows] == [
        "NTP", "fixed 2 above serial", "fixed 2 above early", "fixed 2 above-or-mean serial", "fixed 2 mean serial",
        "adaptive 4 above serial", "adaptive 4 above early", "adaptive 4 above-or-mean serial", "official 2",
        "SJD L=2", "fixed 4 above serial + SJD L=2"]
    by = {r["setting"]: r for r in rows}
    for name in ("SJD L=2", "fixed 4 above serial + SJD L=2"):  # drafts decide 1..L+1 tokens a row-pass
        assert 1.0 <= float(by[name]["tokens_per_row_pass"]) <= 3.0
        assert len(by[name]["row_tokens_per_pass"].split()) == 24
    assert float(by["SJD L=2"]["passes_mean"]) < float(by["NTP"]["passes_mean"])
    assert by["SJD L=2"]["draft_init"] == "above" and by["NTP"]["draft_init"] == ""
    assert float(by["NTP"]["agreement"]) == 1.0
    # the two first-row rules, by the paper's formulas
    assert float(by["fixed 2 above serial"]["passes_mean"]) == 2 * 24 + 22 * 2
    assert float(by["fixed 2 above early"]["passes_mean"]) == 23 * 2 + 24
    assert by["fixed 2 above early"]["first_row"] == "early" and by["NTP"]["first_row"] == ""
    assert float(by["fixed 2 mean serial"]["agreement"]) < 1.0
    assert by["fixed 2 mean serial"]["placeholder"] == "mean" and by["NTP"]["placeholder"] == ""
    assert by["official 2"]["placeholder"] == "above" and by["official 2"]["first_row"] == "serial"
    assert float(by["official 2"]["passes_mean"]) == 2 * 24 + 22 * 2
    check_frontier_marks(rows)
    assert (tmp_path / "t.png").stat().st_size > 0 and (tmp_path / "t.md").read_text().count("\n") >= 6
    check_parts_merge_into_the_whole_run(tmp_path)


def check_frontier_marks(rows):
    """A row is marked iff no other row has at most its passes and at most its FID (one strictly less),
    checked here by brute force over the CSV's rounded-trip numbers."""
    num = lambda r, k: float(r[k])  # noqa: E731
    for r in rows:
        dominated = any(num(o, "passes_mean") <= num(r, "passes_mean") and num(o, "digits_fid") <= num(r, "digits_fid")
                        and (num(o, "passes_mean"), num(o, "digits_fid")) != (num(r, "passes_mean"), num(r, "digits_fid"))
                        for o in rows)
        assert (r["frontier_fid"] == "yes") == (not dominated), r["setting"]
    cheapest = min(rows, key=lambda r: (num(r, "passes_mean"), num(r, "digits_fid")))
    assert cheapest["frontier_fid"] == "yes"
    for r in rows:  # beaten by: the cheapest setting at most as dear whose FID is lower beyond both spreads
        better = [o for o in rows if num(o, "passes_mean") <= num(r, "passes_mean") and num(r, "digits_fid")
                  - num(o, "digits_fid") > (num(r, "digits_fid_std") ** 2 + num(o, "digits_fid_std") ** 2) ** 0.5]
        expected = min(better, key=lambda o: (num(o, "passes_mean"), num(o, "digits_fid")))["setting"] if better else ""
        assert r["beaten_by"] == expected, r["setting"]


def check_parts_merge_into_the_whole_run(tmp_path):
    """--part 1/2 and 2/2 each run NTP and half the settings; --from-csv merges them into the one run's table.
    The one run: the smoke run's rows of these settings (same samples, seeds and batches), their frontier
    marks taken among themselves, as a run of only these settings marks them."""
    few = ["--num-samples", "2", "--batch-size", "2", "--groups", "1", "--windows", "2", "--adaptive-windows",
           "--placeholders", "above", "--early-placeholders", "above", "--extra-placeholders", "--compat-windows", "2",
           "--draft-lens"]
    settings = {"NTP", "fixed 2 above serial", "fixed 2 above early", "official 2"}
    whole = [r for r in tradeoff.read_rows([tmp_path / "t.csv"]) if r["setting"] in settings]
    tradeoff_table.write_csv(tradeoff_table.mark_frontier(whole), tmp_path / "w.csv")
    for k in (1, 2):
        tradeoff.main(tradeoff.build_parser().parse_args([*few, "--part", f"{k}/2", *out_args(tmp_path, f"p{k}")]))
    parts = [list(csv.DictReader((tmp_path / f"p{k}.csv").open())) for k in (1, 2)]
    assert parts[0][0]["setting"] == parts[1][0]["setting"] == "NTP"
    assert len(parts[0]) + len(parts[1]) == 3 + 2  # three settings, NTP in each part
    merged = tradeoff.build_parser().parse_args([
        "--num-samples", "2", "--groups", "1", "--from-csv", str(tmp_path / "p1.csv"), str(tmp_path / "p2.csv"),
        *out_args(tmp_path, "m")])
    tradeoff.write_outputs(tradeoff.read_rows(merged.from_csv), merged)
    drop_seconds = lambda path: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                                 for r in csv.DictReader(path.open())]
    assert drop_seconds(tmp_path / "m.csv") == drop_seconds(tmp_path / "w.csv")
    assert "Merged from 2 runs" in (tmp_path / "m.md").read_text()


def test_part_flag_is_checked():
    for bad in ("0/2", "3/2", "1-2"):
        with pytest.raises(SystemExit):
            tradeoff.build_parser().parse_args(["--part", bad])


def test_sampling_sweep_smoke(tmp_path):

    args = sampling_sweep.build_parser().parse_args([
        "--num-samples", "4", "--batch-size", "4", "--groups", "2", "--w-min", "4", "--adaptive", "--cfg-scales", "3.0", "--base-cfg", "3.0",
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
    with pytest.raises(ValueError, match="--num-samples 5 must be a multiple of --groups 5 with at least 2 samples a group"):
        tradeoff.main(args)


def results_bytes() -> dict:
    return {p.name: p.read_bytes() for p in sorted(outputs.RESULTS.glob("*")) if p.is_file()}


def test_a_trial_run_never_writes_the_committed_results(tmp_path, monkeypatch, capsys):
    """Without --out-* or --update-results a benchmark writes a new run folder under the working directory
    (git-ignored), never benchmarks/results/: here a merge of the committed trade-off CSV from elsewhere."""
    before = results_bytes()
    monkeypatch.chdir(tmp_path)
    assert tradeoff.cli(["--from-csv", str(outputs.RESULTS / "tradeoff.csv")]) == 0
    capsys.readouterr()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == 3 and all(re.fullmatch(r"runs/tradeoff-\d{8}-\d{6}/tradeoff\.(md|csv|png)", p)
                                     for p in written), written
    assert results_bytes() == before
    if shutil.which("git") and (outputs.RESULTS.parents[1] / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", "runs/tradeoff-x/tradeoff.md"],
                                 cwd=outputs.RESULTS.parents[1])
        assert ignored.returncode == 0  # a run from the repository root leaves `git status` clean


@pytest.mark.parametrize("module,flags", [
    (tradeoff, tradeoff.OUTPUTS), (sampling_sweep, sampling_sweep.OUTPUTS), (gpu_suite, gpu_suite.OUTPUTS)])
def test_only_update_results_targets_the_committed_results(module, flags):
    for argv, under_results in (([], False), (["--update-results"], True)):
        args = module.build_parser().parse_args(argv)
        outputs.resolve_outputs(args, "x", flags)
        for flag in flags:
            path = Path(getattr(args, flag[2:].replace("-", "_"))).resolve()
            assert (path == outputs.RESULTS or outputs.RESULTS in path.parents) == under_results, (argv, flag, path)
