"""Golden outputs of the paper's released ZipAR code for Lumina-mGPT, for tests/test_lumina_official.py.

Runs ThisisBillhe/ZipAR, Lumina-mGPT-ZipAR/lumina_mgpt: its ChameleonForConditionalGeneration
(model/chameleon/modeling_chameleon.py, whose `_sample` is the ZipAR decode) with the logits processors of
its inference_solver.py (MultiModalLogitsProcessor_ZIPAR, InterleavedTopKLogitsWarper), set up as
FlexARInferenceSolver.generate and generate_examples/generate.py do, on a tiny Chameleon (dim 32, 2 layers,
the real 65536-id vocabulary) whose weights are a pure function of the state-dict keys (`chameleon_weights`).
It stores only outputs: the image tokens, the model's forward calls, or the error a window raised. The
released code itself is never stored here.

Settings: 768 x 768 (48 x 48 tokens, the only size the release supports), batch 1 (the only batch),
greedy (image top-k 1: the release's multinomial then has one choice), the model in float64 (in float32,
summation order decides near-ties: at eager, cfg 3, window 49 two codes 4e-6 apart at cell 1782 put ours
and the release's float32 run on different paths, and the release's float32 and float64 runs differ there
too; the release casts its logits to float32 either way), BOI and the two size tokens forced
by a logits processor put first (the release samples them), prompts from tests.helpers.lumina's
stand-in tokenizer at the real Chameleon ids. Two prefill variants: "sdpa", the model loaded as the
release loads it (from_pretrained leaves config._attn_implementation = "sdpa"), and "eager", loaded with
attn_implementation="eager".

It needs the transformers the release was written for, installed outside the project:

    pip install --target /tmp/tf444 transformers==4.44.2
    PYTHONPATH=/tmp/tf444:. python tests/data/make_lumina_official_golden.py --repo PATH/TO/ZipAR

The release builds a few constants with device="cuda" (ChameleonForConditionalGeneration.__init__, the
processors' masks); a TorchFunctionMode maps that device to the CPU while they are built. Its
xllmx tokenizer module imports sentencepiece, which this run never uses: a stub stands in.
"""
import argparse
import sys
import tempfile
import types
import zlib
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lumina_mgpt.prompt import prompt_ids, special_ids  # noqa: E402
from tests.helpers.lumina import chameleon_id_tokenizer  # noqa: E402

OUT = Path(__file__).with_name("lumina_official_golden.pt")
TINY = dict(vocab_size=65536, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=64)
SIZE = (768, 768)  # (width, height): the release's tokens_per_row = 49 fixes 48 x 48
PROMPTS = ("a red cube on the mat", "a cat")
WINDOWS = (1, 2, 3, 14, 48, 49, 50)  # the release's zipar_window_size; 1 and 50 fail there
CFG_SCALES = (1.0, 3.0)
PREFILLS = ("sdpa", "eager")
# the second prompt (another length) only where the batch-of-two test reads it
SECOND_PROMPT_CASES = {(14, 1.0), (14, 3.0), (3, 3.0)}
# Chameleon ids the release hard-codes (inference_solver.py, modeling_chameleon.py; fact sheet 2.1)
BOI, EOI, EOL, END_OF_TURN = 8197, 8196, 8803, 8710
DTYPE = torch.float64


def chameleon_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Deterministic weights from the keys alone: each tensor from its own generator seeded by the key's
    CRC-32; norm weights near 1, norm biases near 0, matrices N(0, 1/fan_in), so that logits are O(1)."""
    out = {}
    for key in sorted(shapes):
        gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        noise = torch.randn(shapes[key], generator=gen)
        if "norm" in key:
            out[key] = (1.0 if key.endswith("weight") else 0.0) + 0.1 * noise
        else:
            out[key] = noise / shapes[key][-1] ** 0.5
    return out


def case_prompt_ids(text: str) -> list[int]:
    """The release's prompt: <s>, the templated text, end-of-turn (our prefix without BOI, H, W)."""
    tokenizer = chameleon_id_tokenizer()
    return prompt_ids(tokenizer, special_ids(tokenizer), text, *SIZE)[:-3]


class CudaOnCpu(TorchFunctionMode):
    """device='cuda' in factory calls becomes the CPU."""

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cuda":
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def import_release(repo: Path):
    import transformers  # noqa: F401  (before the stub: transformers probes sentencepiece's spec)

    stub = types.ModuleType("sentencepiece")
    stub.SentencePieceProcessor = None
    sys.modules.setdefault("sentencepiece", stub)
    base = repo / "Lumina-mGPT-ZipAR"
    sys.path[:0] = [str(base / "lumina_mgpt"), str(base)]
    import inference_solver  # the released code, imported from the checkout
    from model.chameleon import ChameleonForConditionalGeneration
    from model.chameleon.configuration_chameleon import ChameleonConfig
    return inference_solver, ChameleonForConditionalGeneration, ChameleonConfig


def save_tiny_model(folder: Path, model_cls, config_cls) -> None:
    config = config_cls(**TINY, mask_image_logits=False, vocabulary_map={"<s>": 0},
                        vq_config={"embed_dim": 8, "num_embeddings": 16, "base_channels": 32,
                                   "channel_multiplier": [1], "num_res_blocks": 1, "latent_channels": 8})
    with CudaOnCpu():
        model = model_cls(config)
    state = model.state_dict()
    text_keys = {k: tuple(v.shape) for k, v in state.items() if not k.startswith("model.vqmodel.")}
    model.load_state_dict(chameleon_weights(text_keys), strict=False)
    model.save_pretrained(folder)


class ForceImageHeader:
    """Forces BOI, then the height and width size tokens (8804 + pixels / 32), where the release samples them."""

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len
        self.header = [BOI, 8804 + SIZE[1] // 32, 8804 + SIZE[0] // 32]

    def __call__(self, input_ids, scores):
        k = input_ids.shape[1] - self.prompt_len
        if k < len(self.header):
            forced = torch.full_like(scores, -float("inf"))
            forced[:, self.header[k]] = 0.0
            return forced
        return scores


def run_release(release, folder: Path, prompt: list[int], window: int, cfg: float, prefill: str) -> dict:
    solver, model_cls, _ = release
    from transformers import GenerationConfig
    from transformers.generation.logits_process import LogitsProcessorList

    kwargs = {"attn_implementation": "eager"} if prefill == "eager" else {}
    with CudaOnCpu():
        model = model_cls.from_pretrained(folder, torch_dtype=DTYPE, **kwargs).eval()
        processors = LogitsProcessorList([
            ForceImageHeader(len(prompt)),
            # create_logits_processor(cfg, image_top_k=1): candidate + top-k; its CFG processor stays unused there
            solver.MultiModalLogitsProcessor_ZIPAR(image_start_token_id=BOI, image_end_token_id=EOI,
                                                   image_next_line_token_id=EOL, patch_size=32,
                                                   voc_size=model.config.vocab_size),
            solver.InterleavedTopKLogitsWarper(image_top_k=1, text_top_k=10, image_start_token_id=BOI,
                                               image_end_token_id=EOI),
        ])
    assert model.config._attn_implementation == prefill
    # what generate_examples/generate.py and FlexARInferenceSolver.generate set
    model.cfg, model.zipar_window_size, model.prompt_len = cfg, window, len(prompt)
    model.reset_zipar()
    calls = [0]
    model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    rows, cols = SIZE[1] // 16, SIZE[0] // 16
    config = GenerationConfig(max_new_tokens=rows * (cols + 1) + 8, max_length=model.config.max_position_embeddings,
                              temperature=1.0, top_k=None, do_sample=True, eos_token_id=[END_OF_TURN])
    case = {"window": window, "cfg_scale": cfg, "prefill": prefill, "prompt_ids": prompt}
    try:
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), config, logits_processor=processors)[0].tolist()
    except Exception as e:  # noqa: BLE001  the released code's own failure is the golden outcome
        case["error"] = f"{type(e).__name__}: {e}"[:300]
        return case
    body = out[len(prompt):]
    assert body[:3] == [BOI, 8804 + rows // 2, 8804 + cols // 2], body[:3]
    grid = torch.tensor(body[3:3 + rows * (cols + 1)]).view(rows, cols + 1)
    assert (grid[:, -1] == EOL).all() and body[3 + rows * (cols + 1):] == [EOI, END_OF_TURN]
    case.update(tokens=grid[:, :-1].to(torch.int16), forward_calls=calls[0])
    return case


def cases():
    for prefill in PREFILLS:
        for cfg in CFG_SCALES:
            for window in WINDOWS:
                yield PROMPTS[0], window, cfg, prefill
                if (window, cfg) in SECOND_PROMPT_CASES:
                    yield PROMPTS[1], window, cfg, prefill


def main(args):
    torch.set_num_threads(args.threads)
    release = import_release(Path(args.repo))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_model(Path(tmp), release[1], release[2])
        for text, window, cfg, prefill in cases():
            case = run_release(release, Path(tmp), case_prompt_ids(text), window, cfg, prefill)
            case["prompt"] = text
            results.append(case)
            print(prefill, cfg, window, repr(text), case.get("forward_calls", case.get("error")), file=sys.stderr)
    import transformers
    payload = {"source": "ThisisBillhe/ZipAR Lumina-mGPT-ZipAR/lumina_mgpt (modeling_chameleon.py _sample, "
                         "inference_solver.py)", "transformers": transformers.__version__, "model": TINY,
               "dtype": str(DTYPE).removeprefix("torch."),
               "size": SIZE, "cases": results}
    torch.save(payload, args.out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", required=True, help="a checkout of ThisisBillhe/ZipAR")
    p.add_argument("--out", type=Path, default=OUT, help="golden file to write")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    main(p.parse_args())
