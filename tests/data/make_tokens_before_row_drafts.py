"""Tokens of the engine before row drafts existed (commit 8c713d6), for tests/test_row_drafts.py.

Run from a checkout of that commit: python make_tokens_before_row_drafts.py CHECKOUT OUT.pt"""
import sys, torch
sys.path.insert(0, sys.argv[1])
from common.zipar.config import DecodeConfig
from common.zipar.layout import Layout
from llamagen.generate import generate, layout_for
from tests.helpers.llamagen import tiny_gpt
out = {}
gpt = tiny_gpt(5, seed=3)
labels, seeds = torch.tensor([0, 4, 9]), torch.tensor([1, 22, 333])
for name, cfg in [("ntp", DecodeConfig(cfg_scale=2.0, top_k=20)), ("fixed", DecodeConfig(window=2, cfg_scale=2.0)),
                  ("adaptive", DecodeConfig(window=1, adaptive=True, placeholder="left", temperature=1.3))]:
    with torch.inference_mode():
        out[name] = generate(gpt, labels, seeds, cfg).tokens
torch.save(out, sys.argv[2])
print({k: v.flatten()[:8].tolist() for k, v in out.items()})
