"""The latency benchmarks run end to end on tiny configs (in this process, as `python -m benchmarks.X ...`
would) and write the documented columns."""
import csv

import pytest

from families import TEXT_TO_IMAGE
from tests.helpers.processes import run_benchmark as run_script


def test_latency_benchmark_runs_and_writes_csv(tmp_path, monkeypatch):
    out = tmp_path / "lat.csv"
    assert run_script("latency", ["--gpt-model", "GPT-tiny", "--image-size", "64", "--windows", "1", "4",
                                     "--adaptive-windows", "2", "--repeats", "1", "--threads", "1",
                                     "--out-csv", str(out)], monkeypatch) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["setting"] for r in rows] == ["NTP", "1", "4", "adaptive 2"]
    for col in ("passes", "pass_ratio", "time_ratio", "s_per_image", "ms_per_pass", "engine_overhead", "images_per_s"):
        assert all(float(r[col]) >= 0 for r in rows), col
    assert [float(r["passes"]) for r in rows[:3]] == [16, 2 * 4 + 2 * 1, 4 * 4]


@pytest.mark.parametrize("family", list(TEXT_TO_IMAGE))
def test_t2i_latency_benchmark_runs_on_the_tiny_configs(family, tmp_path, monkeypatch):
    out = tmp_path / "t.md"
    assert run_script("t2i_latency", ["--family", family, "--tiny", "--windows", "1", "2", "--ntp-sample", "4",
                                         "--out-md", str(out)], monkeypatch) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| w=")]
    # (H-1)w + W passes on the 4x4 grid; Janus-Pro (no end-of-row tokens, first row serial): 2W + (H-2)w on 6x6
    expected = ["16", "20"] if family == "janus" else ["7", "10"]
    assert [r.split("|")[2].strip() for r in rows] == expected
