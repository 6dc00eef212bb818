"""benchmarks/gpu_suite.py --smoke: every code path of the GPU suite, on tiny shapes on the CPU, where
its correctness pairs are real properties (one device, deterministic kernels: all equal)."""
import csv

from benchmarks import gpu_suite
from families import TEXT_TO_IMAGE


def test_smoke_run_covers_every_section(tmp_path):
    md = gpu_suite.main(gpu_suite.build_parser().parse_args(["--smoke", "--out-dir", str(tmp_path)]))
    assert md == tmp_path / "gpu_cpu_smoke.md"
    rows = list(csv.DictReader(md.with_suffix(".csv").open()))
    checks = [r for r in rows if r["section"] == "correctness"]
    assert {r["check"] for r in checks} >= {"NTP, run twice", "w = W (4) vs NTP", "compiled vs eager, fixed 2",
                                            "compiled vs eager, adaptive 2", "cuda graphs vs eager, adaptive 2",
                                            "image 3 alone vs in a batch of 8"}
    assert any("sample_ddp, torchrun (gloo" in r["check"] for r in checks)
    assert all(r["result"] == "equal" for r in checks), [r for r in checks if r["result"] != "equal"]
    timed = [r for r in rows if r["section"] == "llamagen"]
    assert {(r["step"], r["setting"]) for r in timed} == {(s, x) for s in gpu_suite.STEPS
                                                          for x in ("NTP", "2", "adaptive 2")}
    assert not any(r.get("error") for r in timed)
    assert all(float(r["kernels_per_pass"]) > 0 for r in timed if r["step"] == "eager")
    assert all(float(r["passes"]) == 16 for r in timed if r["setting"] == "NTP")
    assert all(int(r["host_reads"]) == 0 for r in timed if not r["setting"].startswith("adaptive"))
    assert {r["family"] for r in rows if r["section"] == "t2i"} == set(TEXT_TO_IMAGE)
    text = md.read_text()
    assert "## Skipped (budget)\n\n(none)" in text and "smoke run" in text


def test_budget_skips_with_a_line(tmp_path):
    budget = gpu_suite.Budget(1.0)
    assert budget.fits("a", 0.5) and not budget.fits("b", 100.0)
    assert budget.skipped and budget.skipped[0].startswith("b: would take about 100 s")


def test_ab_mode_alternates_two_settings_in_one_run(tmp_path):
    args = gpu_suite.build_parser().parse_args(["--smoke", "--out-dir", str(tmp_path), "--ab-settings", "eager/NTP",
                                                "eager/2", "--ab-repeats", "2"])
    rows = list(csv.DictReader(gpu_suite.main(args).with_suffix(".csv").open()))
    ab = [r for r in rows if r["section"] == "ab"]
    assert [(r["setting"], r["repeats"]) for r in ab] == [("NTP", "2"), ("2", "2")] and not any(r["error"] for r in ab)
    assert float(ab[0]["min_ms"]) <= float(ab[0]["median_ms_per_pass"]) <= float(ab[0]["max_ms"])
    assert float(ab[1]["ratio_to_a"]) > 0 and float(ab[0]["kernels_per_pass"]) > 0
    assert not [r for r in rows if r["section"] == "llamagen"]  # the A/B comparison alone


def test_ab_settings_are_checked():
    from benchmarks.ab_runs import parse_setting
    assert parse_setting("cuda-graphs/a16") == {"step": "cuda graphs", "window": 16, "adaptive": True}
    for bad in ("eager", "warp/NTP", "eager/x3"):
        try:
            parse_setting(bad)
        except ValueError as e:
            assert "STEP/SETTING" in str(e) or "window" in str(e)
        else:
            raise AssertionError(bad)
