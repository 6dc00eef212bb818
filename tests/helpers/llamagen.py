"""Tiny random LlamaGen models and what the engine tests build on them: a forward-call counter, an
independent uncached NTP loop, and the oracle (tests.oracle) on class-conditional decodes."""
import torch

from common.zipar.condition import Condition
from common.zipar.sampling import PURPOSE_TOKEN, draw_key, filter_logits, guide, sample_logits
from llamagen.generate import condition_prefix, generate
from llamagen.model import Transformer, gpt_config, random_init_
from tests.oracle import full_forward, oracle_error, record_passes


def tiny_gpt(grid, seed=0, preset="GPT-tiny", **overrides):
    gpt = Transformer(gpt_config(preset, **overrides), grid_size=grid).eval()
    random_init_(gpt, seed, std=0.1)  # larger weights: peaked, non-uniform distributions
    return gpt


class CountingModel:
    """Wraps a model and counts forward calls, independently of the engine's own count."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, *args):
        self.calls += 1
        return self.model(*args)


@torch.inference_mode()
def reference_ntp(gpt, labels, seeds, config):
    """Plain NTP written independently of the engine: re-run the whole prefix + tokens every step."""
    H = W = gpt.grid_size
    prefix = condition_prefix(gpt, labels, config).embeddings
    B = len(labels)
    tokens = torch.zeros(B, 0, dtype=torch.int64)
    for n in range(H * W):
        ids = torch.cat([tokens, tokens]) if config.uses_cfg else tokens
        x = torch.cat([prefix, gpt.embed_tokens(ids)], dim=1)
        L = x.shape[1]
        logits = full_forward(gpt, x, torch.arange(L), torch.ones(L, L, dtype=torch.bool).tril())[:, -1]
        if config.uses_cfg:
            guided = config.cfg_interval < 0 or n <= config.cfg_interval + 1
            logits = guide(logits[:B], logits[B:], config.cfg_scale) if guided else logits[:B]
        logits = filter_logits(logits, config.temperature, config.top_k, config.top_p)
        nxt = sample_logits(logits, draw_key(seeds, torch.full((B, 1), n), PURPOSE_TOKEN)[:, 0])
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return tokens.reshape(B, H, W)


def record_decode(gpt, layout, config, labels, seeds, fixed_tokens=None, valid=None):
    """tests.oracle.record_passes with LlamaGen's class-condition prefix, its slots marked by valid
    ((B_model, T) bool, Condition.valid; None: all valid): (state, condition, passes)."""
    condition = Condition(condition_prefix(gpt, labels, config).embeddings, valid)
    state, passes = record_passes(gpt, layout, config, condition, seeds, fixed_tokens)
    return state, condition, passes


def run_oracle(gpt, layout, config, labels, seeds, fixed_tokens=None, valid=None):
    """Invariant (b) (tests.oracle) on a class-conditional decode: (max abs logit error, passes)."""
    state, condition, passes = record_decode(gpt, layout, config, labels, seeds, fixed_tokens, valid)
    return oracle_error(gpt, condition, passes), len(passes)


def formula_passes(H, W, w, first_row):
    """Pass counts as the paper states them, independent of common.zipar.window: (H-1)w + W with the early
    first row, 2W + (H-2)w with the serial one (row 1 waits for all of row 0)."""
    w = min(w, W)
    return (H - 1) * w + W if first_row == "early" or H == 1 else 2 * W + (H - 2) * w


def assert_each_image_alone(gpt, labels, seeds, config, batched):
    """Invariant (d): each image of the `batched` DecodeResult, decoded alone, gives the same tokens, passes
    and per-image telemetry (adaptive windows, rejections, row drafts' tokens per row-pass)."""
    per_image = ("image_passes", "accepted_windows", "rejections", "tokens_per_row_pass", "row_tokens_per_pass",
                 "draft_rejections")
    for i in range(len(labels)):
        alone = generate(gpt, labels[i:i + 1], seeds[i:i + 1], config)
        assert torch.equal(alone.tokens[0], batched.tokens[i])
        for field in per_image:
            if getattr(batched, field) is not None:
                assert getattr(alone, field)[0] == getattr(batched, field)[i], field
