"""The latency benchmark runs end to end on a tiny config and writes the documented CSV columns."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_latency_benchmark_runs_and_writes_csv(tmp_path):
    out = tmp_path / "lat.csv"
    proc = subprocess.run([sys.executable, "benchmarks/latency.py", "--gpt-model", "GPT-tiny", "--image-size", "64",
                           "--windows", "1", "4", "--adaptive-windows", "2", "--repeats", "1", "--csv", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["setting"] for r in rows] == ["NTP", "1", "4", "adaptive 2"]
    for col in ("passes", "pass_ratio", "time_ratio", "s_per_image", "ms_per_pass", "engine_overhead", "images_per_s"):
        assert all(float(r[col]) >= 0 for r in rows), col
    assert [float(r["passes"]) for r in rows[:3]] == [16, 3 * 1 + 4, 4 * 4]


@pytest.mark.parametrize("family", ["emu3", "lumina"])
def test_t2i_latency_benchmark_runs_on_the_tiny_configs(family, tmp_path):
    out = tmp_path / "t.md"
    proc = subprocess.run([sys.executable, "benchmarks/t2i_latency.py", "--family", family, "--tiny", "--windows", "1", "2",
                           "--ntp-sample", "4", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| w=")]
    assert [r.split("|")[2].strip() for r in rows] == ["7", "10"]  # (H-1)w + W passes on the 4x4 grid
