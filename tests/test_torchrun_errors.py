"""Under torchrun a rank's `error:` line is followed by the launcher's own traceback and failure summary, and
torchrun exits 1 whatever the ranks' status: the project's line is left in the error file torchrun reads
(common.cli.tell_torchrun), so the summary it prints last shows that line, and each rank's own status (2).
A flag argparse refuses takes the same way (common.cli._DashValues.error), not a usage block from every rank."""
import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from common.cli import run_main
from tests.helpers.sample_ddp import launch


def test_the_error_file_holds_the_line_in_torchs_layout(tmp_path, monkeypatch, capsys):
    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))

    def bad(args):
        raise ValueError("--window must be >= 1")
    assert run_main(bad, None) == 2
    assert capsys.readouterr().err == "error: --window must be >= 1\n"
    failure = ProcessFailure(local_rank=0, pid=1, exitcode=2, error_file=str(path))  # torchrun's own reader
    summary = ChildFailedError("sample_ddp.py", {0: failure}).format_msg()
    assert "traceback : error: --window must be >= 1\n" in summary and "exitcode  : 2" in summary


def test_no_error_file_outside_torchrun(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run_main(lambda args: (_ for _ in ()).throw(FileNotFoundError("x not found")), None) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_bad_flag_under_torchrun_is_one_line_and_in_the_error_file(tmp_path, monkeypatch, capsys):
    """argparse's own errors (a flag that does not exist, a value of the wrong type) never reach run_main:
    under torchrun they too are one line per rank, left in the error file, exit status 2."""
    import sample_ddp
    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr("sys.argv", ["sample_ddp.py"])  # argparse's prog, as torchrun runs it
    for argv, message in ((["--bogus"], "unrecognized arguments: --bogus"),
                          (["--window", "x"], "argument --window: invalid int value: 'x'"),
                          (["--prompt", "-a"], "argument --prompt: expected one argument; to give it a value that "
                                               "starts with '-', join them: --prompt=-a")):
        with pytest.raises(SystemExit) as e:
            sample_ddp.cli(argv)
        line = f"error: {message} (sample_ddp.py --help lists the flags)"
        assert e.value.code == 2 and capsys.readouterr().err == line + "\n"
        failure = ProcessFailure(local_rank=0, pid=1, exitcode=2, error_file=str(path))
        assert f"traceback : {line}\n" in ChildFailedError("sample_ddp.py", {0: failure}).format_msg()
    monkeypatch.delenv("WORLD_SIZE")  # a plain run keeps argparse's usage and message
    with pytest.raises(SystemExit):
        sample_ddp.cli(["--bogus"])
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and err.endswith("error: unrecognized arguments: --bogus\n")


@pytest.mark.parametrize("argv,line", [
    (["--window", "0"], "error: --window must be >= 1 (or --ntp for next-token prediction), got 0"),
    (["--bogus"], "error: unrecognized arguments: --bogus (sample_ddp.py --help lists the flags)"),
])
def test_torchrun_summary_ends_with_the_projects_line(argv, line, tmp_path):
    proc = launch([*argv, "--out-dir", str(tmp_path)], nproc=2)
    assert proc.returncode == 1  # torchrun's status for any failed rank (docs/cli.md)
    lines = proc.stderr.splitlines()
    assert lines.count(line) == 2 and "usage:" not in proc.stderr, proc.stderr  # each rank's own line
    summary = [x.strip() for x in lines if x.strip().startswith(("traceback :", "exitcode  :"))]
    assert summary[-2].startswith("exitcode  : 2") and summary[-1] == f"traceback : {line}", proc.stderr
