"""--deterministic and --cuda-graphs: what each sets, in every CLI through common/cli.py."""
import json
import os

import torch

from common import cli as common_cli
from common.determinism import deterministic_kernels
from common.zipar.engine import CUDA_GRAPHS
from llamagen.sample import build_parser, cli

TINY = ["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init", "--image-size", "8", "--class-labels", "1",
        "--window", "2", "--json"]


def test_deterministic_kernels_switch_everything_they_name_and_restore_it(monkeypatch):
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cuda.matmul.allow_tf32, torch.backends.cuda.flash_sdp_enabled())
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with deterministic_kernels():
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cuda.flash_sdp_enabled() and not torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert before == (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
                      torch.backends.cuda.matmul.allow_tf32, torch.backends.cuda.flash_sdp_enabled())


def test_runtime_flags_reach_the_engine(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(common_cli, "use_deterministic_kernels", lambda: calls.append("deterministic"))
    assert cli([*TINY, "--deterministic", "--out", str(tmp_path / "a.png")]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert calls == ["deterministic"]
    assert cli([*TINY, "--out", str(tmp_path / "b.png")]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == plain["tokens"] and calls == ["deterministic"]
    assert build_parser().parse_args(["--cuda-graphs"]).compile == CUDA_GRAPHS
    assert build_parser().parse_args(["--compile"]).compile is True
    assert build_parser().parse_args([]).compile is False
