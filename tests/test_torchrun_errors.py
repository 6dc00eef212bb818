"""Under torchrun a rank's `error:` line is followed by the launcher's own traceback and failure summary, and
torchrun exits 1 whatever the ranks' status: the project's line is left in the error file torchrun reads
(common.cli.tell_torchrun), so the summary it prints last shows that line, and each rank's own status (2)."""
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


@pytest.mark.parametrize("argv,line", [
    (["--window", "0"], "error: --window must be >= 1 (or --ntp for next-token prediction), got 0"),
])
def test_torchrun_summary_ends_with_the_projects_line(argv, line, tmp_path):
    proc = launch([*argv, "--out-dir", str(tmp_path)], nproc=2)
    assert proc.returncode == 1  # torchrun's status for any failed rank (docs/cli.md)
    lines = proc.stderr.splitlines()
    assert lines.count(line) == 2, proc.stderr  # each rank's own line
    summary = [x.strip() for x in lines if x.strip().startswith(("traceback :", "exitcode  :"))]
    assert summary[-2].startswith("exitcode  : 2") and summary[-1] == f"traceback : {line}", proc.stderr
