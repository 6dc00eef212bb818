"""Every test runs its tiny CPU models on one thread: on a shared 2-core machine, spinning OpenMP threads
made single tests 30-250x slower under load (measured while other jobs held the CPUs). In-process CLI
calls default to one thread too (their --threads default is the host's cores)."""
import pytest
import torch

import common.cli


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(common.cli, "default_threads", lambda: 1)
    yield
    torch.set_num_threads(before)
