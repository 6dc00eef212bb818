"""The kernel budget of one eager decode pass (common/kernel_count.py defines what is counted: aten
ops, and of them the real kernels, those that compute or fill memory; views and metadata are not).

On a GPU at batch 1 an eager pass is launch-bound: its time is about its kernel count times a few
microseconds. Counted on the CPU at GPT-L depth (24 layers; a small width, which changes no count),
batch 1, CFG 2, each pass padded to one shape as a GPU runs it. The budget:
  NTP and fixed 16: at most 1000 kernels a pass (1350 before RoPE, RMSNorm, the attention mask and the
    draw keys were made cheap), and no host read;
  adaptive 16: at most 5% over fixed 16 (752 against 717 kernels): the opener's acceptance test on every
    query at once, its resample drawn in the pass's one sampler call (the residual takes the place of
    the verifying query's distribution), the pending distribution kept by one gather, and the opener
    bookkeeping (attempts, rejections, windows);
  fixed 16 + row drafts (L 8): reported, bounded only loosely (drafts add their checks).
benchmarks/gpu_suite.py prints the same counts beside its timings."""
import pytest
import torch

from common.kernel_count import count_decode_passes
from common.zipar.config import DecodeConfig
from llamagen.generate import condition_prefix, layout_for
from llamagen.model import Transformer, gpt_config, random_init_

NTP_FIXED_BUDGET = 1000
ADAPTIVE_OVER_FIXED = 1.05
SETTINGS = {"NTP": DecodeConfig(cfg_scale=2.0), "fixed 16": DecodeConfig(window=16, cfg_scale=2.0),
            "adaptive 16": DecodeConfig(window=16, adaptive=True, cfg_scale=2.0),
            "fixed 16 + drafts L 8": DecodeConfig(window=16, draft_len=8, cfg_scale=2.0)}


@pytest.fixture(scope="module")
def counts():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: before conftest's one_torch_thread applies
    gpt = Transformer(gpt_config("GPT-L", dim=128, vocab_size=256, num_classes=10, multiple_of=32), grid_size=24)
    random_init_(gpt.eval(), 0)
    labels, seeds = torch.tensor([3]), torch.tensor([7])
    out = {}
    for name, config in SETTINGS.items():
        # 24 passes: past the first row openings of window 16 (pass 16 on)
        out[name] = count_decode_passes(gpt, condition_prefix(gpt, labels, config), seeds, layout_for(gpt), config, 24)
        print(f"{name}: {out[name].line()}")
    torch.set_num_threads(threads)
    return out


def test_ntp_and_fixed_passes_stay_within_the_kernel_budget(counts):
    for name in ("NTP", "fixed 16"):
        assert counts[name].passes == 24
        assert counts[name].kernels <= NTP_FIXED_BUDGET, (name, counts[name].kernels_by_op)
        assert counts[name].host_reads == 0
        assert counts[name].kernels < counts[name].ops  # views are counted as ops, not as kernels


def test_adaptive_and_drafted_passes_cost_little_more_than_fixed(counts):
    fixed = counts["fixed 16"].kernels
    assert counts["adaptive 16"].kernels <= ADAPTIVE_OVER_FIXED * fixed
    assert counts["fixed 16 + drafts L 8"].kernels <= 1.5 * fixed


def test_the_counter_separates_kernels_views_and_host_reads():
    from common.kernel_count import KernelCounter

    x = torch.arange(12.0).reshape(3, 4)
    with torch.inference_mode(), KernelCounter() as counter:
        y = x.t().reshape(12)  # a view, then a copy (the transpose is not contiguous)
        y.add_(1)  # in place: a kernel
        x.view(4, 3)[0]  # views only
        float(y.sum())  # a kernel and a host read
    assert counter.kernels == {"clone": 1, "add_": 1, "sum": 1}, counter.kernels
    assert counter.host_reads == 1
    assert counter.total_ops > counter.total_kernels + counter.host_reads
