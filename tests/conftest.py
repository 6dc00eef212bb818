"""Every test runs its tiny CPU models on one thread: on a shared 2-core machine, spinning OpenMP threads
made single tests 30-250x slower under load (measured while other jobs held the CPUs)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
