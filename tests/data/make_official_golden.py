"""Golden outputs of the paper's released ZipAR code for LlamaGen, for tests/test_compat_official.py.

Runs `generate` of ThisisBillhe/ZipAR, LlamaGen-ZipAR/autoregressive/models/generate_zipar.py (with
that repo's gpt.py) on tiny class-conditional models whose weights are a pure function of the
state-dict keys (`key_weights`), greedy (top_k=1, so the run is deterministic), and stores only the
outputs: tokens, the number of model forward calls, or the error a window raised. The released
code itself is never stored here. Give it a checkout of that repository:

    python tests/data/make_official_golden.py --repo PATH/TO/ZipAR
"""
import argparse
import json
import sys
import zlib
from pathlib import Path

import torch

OUT = Path(__file__).with_name("official_golden.json")
# tiny c2i shape: LlamaGen ModelArgs fields (the released gpt.py builds exactly these keys)
TINY = dict(dim=32, n_layer=2, n_head=4, multiple_of=32, vocab_size=48, num_classes=10, cls_token_num=1)
GRIDS = (5, 7)
CFG_SCALES = (1.0, 2.0)
LABELS = (3, 7)


def key_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Deterministic weights from the keys alone: each tensor from its own generator seeded by the
    key's CRC-32; norms near 1, matrices N(0, 1/fan_in) so that logits are O(1) and greedy choices
    are far from ties."""
    out = {}
    for key in sorted(shapes):
        gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        shape = shapes[key]
        noise = torch.randn(shape, generator=gen)
        out[key] = 1.0 + 0.1 * noise if len(shape) == 1 else noise / shape[-1] ** 0.5
    return out


def cases():
    for grid in GRIDS:
        for cfg in CFG_SCALES:
            for window in range(1, grid + 2):
                yield grid, cfg, window


def run_released(repo: Path) -> list[dict]:
    sys.path.insert(0, str(repo / "LlamaGen-ZipAR"))
    from autoregressive.models import generate_zipar, gpt  # the released code, imported from the checkout

    results = []
    for grid, cfg, window in cases():
        model = gpt.Transformer(gpt.ModelArgs(**TINY, block_size=grid * grid, class_dropout_prob=0.1)).eval()
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict(key_weights(shapes), strict=True)
        model.zipar_window_size = window  # as LlamaGen-ZipAR/autoregressive/sample/sample_c2i.py sets it
        calls = [0]
        model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        case = {"grid": grid, "cfg_scale": cfg, "window": window, "labels": list(LABELS)}
        try:
            with torch.no_grad():
                ids = generate_zipar.generate(model, torch.tensor(LABELS), grid * grid, cfg_scale=cfg,
                                              cfg_interval=-1, temperature=1.0, top_k=1, top_p=1.0,
                                              sample_logits=True)
            case.update(tokens=ids.tolist(), forward_calls=calls[0])
        except Exception as e:  # noqa: BLE001  the released code's own failure is the golden outcome
            case.update(error=f"{type(e).__name__}: {e}"[:300])
        results.append(case)
        print(grid, cfg, window, case.get("forward_calls", case.get("error")), file=sys.stderr)
    return results


def main(args):
    payload = {"source": "ThisisBillhe/ZipAR LlamaGen-ZipAR/autoregressive/models/generate_zipar.py",
               "model": TINY, "cases": run_released(Path(args.repo))}
    args.out.write_text(json.dumps(payload, indent=None, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="a checkout of ThisisBillhe/ZipAR")
    p.add_argument("--out", type=Path, default=OUT, help="golden JSON to write")
    main(p.parse_args())
