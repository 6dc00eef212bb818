"""The benchmarks refuse bad input up front, as the CLIs do (one `error:` line, exit status 2, nothing
run or written): benchmarks/gpu_suite.py's device, budget, lists and output folder; tradeoff.py's
--from-csv files and draft lengths longer than a row; fp16 on the CPU and untrained image sizes, by the
CLIs' own checks; each benchmark's counts, lists and output paths."""
import pytest
import torch

from benchmarks import gpu_suite, latency, tradeoff, tradeoff_table
from tests.helpers.processes import run_benchmark, run_python


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def refused_before_work(monkeypatch):
    """Any model built or sampled fails the test: the refusal must come first."""
    for job in ("correctness_rows", "llamagen_jobs", "t2i_rows", "sample_ddp_rows", "ab_rows"):
        monkeypatch.setattr(gpu_suite, job, lambda *a: pytest.fail("ran past the checks"))
    monkeypatch.setattr(tradeoff, "run_setting", lambda *a: pytest.fail("ran past the checks"))


# ----------------------------------------------------------------------------- gpu_suite.py


@pytest.mark.parametrize("argv,needle", [
    (["--budget-s", "nan"], "--budget-s must be a finite number of seconds > 0, got nan"),
    (["--budget-s", "inf"], "--budget-s must be a finite number of seconds > 0, got inf"),
    (["--budget-s=-1"], "--budget-s must be a finite number of seconds > 0, got -1.0"),
    (["--budget-s", "0"], "--budget-s must be a finite number of seconds > 0, got 0.0"),
    (["--windows", "8", "0"], "--windows 0 must be >= 1"),
    (["--adaptive", "0"], "--adaptive 0 must be >= 1"),
    (["--batches", "-2"], "--batches -2 must be >= 1"),
    (["--models", "GPT-Q"], "--models GPT-Q: valid: "),
    (["--out-dir", "FILE"], "is an existing file; give a folder (the report's .md and .csv)"),
    (["--device", "cuda"], "--smoke runs tiny shapes on the CPU, so --device cuda would be ignored"),
])
def test_gpu_suite_refuses_bad_arguments_up_front(argv, needle, tmp_path, capsys, monkeypatch):
    refused_before_work(monkeypatch)
    (tmp_path / "FILE").write_text("a file")
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    out = [] if "--out-dir" in argv else ["--out-dir", str(tmp_path / "out")]
    assert gpu_suite.cli(["--smoke", *out, *argv]) == 2
    assert needle in error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("argv", [[], ["--device", "cpu"]])
def test_gpu_suite_without_cuda_is_one_line(argv, tmp_path, capsys, monkeypatch):
    refused_before_work(monkeypatch)
    assert gpu_suite.cli(["--out-dir", str(tmp_path / "out"), *argv]) == 2
    line = error_line(capsys)
    assert "no CUDA device here" in line and "--smoke" in line


def test_gpu_suite_exit_status_from_the_command_line(tmp_path):
    run = run_python(["-m", "benchmarks.gpu_suite", "--smoke", "--budget-s", "-1", "--out-dir", str(tmp_path)])
    assert run.returncode == 2 and run.stderr.startswith("error: --budget-s") and "Traceback" not in run.stderr


# ----------------------------------------------------------------------------- tradeoff.py


def outputs(tmp_path) -> list[str]:
    return ["--out-md", str(tmp_path / "t.md"), "--out-csv", str(tmp_path / "t.csv"), "--out-png",
            str(tmp_path / "t.png")]


@pytest.mark.parametrize("content,needle", [
    ("name,score\nx,1\n", "is not a table of this benchmark: it lacks the columns setting, kind, placeholder"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "is not a CSV text table"),
    (None, "not found"),
    ("BAD_KIND", "line 2: kind 'zipar'"),
    ("BAD_NUMBER", "line 2: digits_fid 'n/a' is not a number"),
])
def test_tradeoff_from_csv_names_the_file_and_flag(content, needle, tmp_path, capsys):
    path = tmp_path / "in.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None and content.startswith("BAD"):
        row = {c: "1" for c in tradeoff_table.COLUMNS} | {"setting": "s", "kind": "fixed", "first_row": "serial"}
        row |= {"kind": "zipar"} if content == "BAD_KIND" else {"digits_fid": "n/a"}
        columns = tradeoff_table.COLUMNS
        path.write_text(",".join(columns) + "\n" + ",".join(row[c] for c in columns) + "\n")
    elif content is not None:
        path.write_text(content)
    assert tradeoff.cli(["--from-csv", str(path), *outputs(tmp_path)]) == 2
    line = error_line(capsys)
    assert "--from-csv" in line and str(path) in line and needle in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.csv"] if content is not None else [])


def test_tradeoff_draft_lens_longer_than_a_row_refused_before_sampling(tmp_path, capsys, monkeypatch):
    refused_before_work(monkeypatch)
    argv = ["--num-samples", "2", "--groups", "1", "--draft-lens", "100", *outputs(tmp_path)]
    assert tradeoff.cli(argv) == 2
    assert "--draft-len 100 on a grid 24 tokens wide" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the CLIs' checks, reused


@pytest.mark.parametrize("name,args,needle", [
    ("latency.py", ["--device", "cpu", "--precision", "fp16"], "--precision fp16 is not supported on CPU"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "4", "--device", "cpu", "--precision", "fp16"],
     "--precision fp16 is not supported on CPU"),
    ("latency.py", ["--gpt-model", "GPT-B", "--image-size", "320", "--gpt-ckpt", "CKPT"],
     "--image-size 320: GPT-B checkpoints are trained at 256 or 384 or 512 px"),
    ("latency.py", ["--gpt-model", "demo", "--image-size", "48", "--downsample", "1", "--gpt-ckpt", "CKPT"],
     "--image-size 48: demo checkpoints are trained at 24 px"),
])
def test_benchmarks_refuse_what_the_clis_refuse(name, args, needle, tmp_path, capsys, monkeypatch):
    (tmp_path / "c.pt").write_bytes(b"")
    args = [str(tmp_path / "c.pt") if a == "CKPT" else a for a in args]
    import llamagen.checkpoint
    monkeypatch.setattr(llamagen.checkpoint, "build_gpt", lambda *a: pytest.fail("ran past the checks"))
    assert run_benchmark(name.removesuffix(".py"), args, monkeypatch) == 2
    assert needle in error_line(capsys)


def test_random_weights_take_any_size(capsys, monkeypatch):
    """latency.py without --gpt-ckpt times random weights: any grid, as --random-init in the CLIs."""
    args = latency.build_parser().parse_args(["--gpt-model", "GPT-B", "--image-size", "320", "--device", "cpu"])
    latency.check_args(args)


# ----------------------------------------------------------------------------- every benchmark's flags


@pytest.mark.parametrize("name,args,needle", [
    ("latency.py", ["--windows", "0"], "--windows 0 must be >= 1"),
    ("latency.py", ["--batch-size", "0"], "--batch-size 0 must be >= 1"),
    ("latency.py", ["--batch", "-1"], "--batch was renamed; use --batch-size"),
    ("latency.py", ["--repeats", "0"], "--repeats 0 must be >= 1"),
    ("latency.py", ["--threads", "-1"], "--threads must be >= 1"),
    ("latency.py", ["--out-csv", "FILE/x.csv"], "is a file, not a folder"),
    ("latency.py", ["--out-csv", "x.txt"], "must end in .csv"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "0"], "--windows 0 must be >= 1"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "4", "--out-md", "FILE/t.md"], "is a file, not a folder"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "4", "--tiny", "--kv-heads", "3"],
     "--tiny builds its own decoder shape, so --kv-heads would be ignored"),
    ("t2i_latency.py", ["--family", "lumina", "--windows", "4", "--full", "--dim", "64", "--heads", "4"],
     "--full builds its own decoder shape, so --dim and --heads would be ignored; drop them"),
    ("t2i_latency.py", ["--family", "emu3", "--windows", "4", "--full", "--tiny"], "exclude each other"),
    ("engine_overhead.py", ["--grids", "abc"], "--grids 'abc': a grid is its side in tokens"),
    ("engine_overhead.py", ["--batch-sizes", "0"], "--batch-sizes 0 must be >= 1"),
    ("sampling_sweep.py", ["--temperatures", "-1"], "temperature -1.0: --temperature must be a finite number >= 0"),
    ("sampling_sweep.py", ["--cfg-scales", "nan"], "--cfg-scale must be a finite number"),
    ("tradeoff.py", ["--out-png", "x.txt"], "--out-png x.txt: the file name must end in .png"),
    ("tradeoff.py", ["--windows", "0"], "--windows 0 must be >= 1"),
    ("exactness_at_scale.py", ["--run-dir", "FILE"], "--run-dir"),
    ("exactness_at_scale.py", ["--run-dir", "r", "--num-samples", "0"], "--num-samples 0 must be >= 1"),
    ("exactness_at_scale.py", ["--run-dir", "r", "--out-md", "x.txt"], "--out-md x.txt: the file name must end in .md"),
    ("draft_tree_passes.py", ["--widths", "1", "0"], "--widths 0 must be >= 1"),
    ("draft_tree_passes.py", ["--tree-depth", "0"], "--tree-depth 0 must be >= 1"),
])
def test_benchmark_arguments_fail_before_the_run(name, args, needle, tmp_path, capsys, monkeypatch):
    (tmp_path / "FILE").write_text("a file where a folder should be")
    args = [str(tmp_path / a) if a.startswith("FILE") else a for a in args]
    if name in ("sampling_sweep.py", "tradeoff.py"):
        args += ["--out-md", tmp_path / "o.md", "--out-csv", tmp_path / "o.csv"]
        args += ["--out-png", tmp_path / "o.png"] if name == "tradeoff.py" and "--out-png" not in args else []
    import llamagen.checkpoint
    monkeypatch.setattr(llamagen.checkpoint, "load_gpt_weights", lambda *a: pytest.fail("ran past the checks"))
    assert run_benchmark(name.removesuffix(".py"), args, monkeypatch) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
