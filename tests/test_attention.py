"""Attention recording and the Fig. 3 / Fig. 5 analysis functions (common/attention.py)."""
import math

import numpy as np
import pytest
import torch

from common.attention import (AttentionRecorder, attention_by_slot, cell_slots, covering_window,
                              generating_slots, grid_heatmap, offset_mass, prefix_share, record_attention,
                              window_needed)
from common.config import DecodeConfig
from common.engine import decode, start_decode
from common.llama import LlamaConfig, LlamaDecoder, random_init_
from common.schedule import Layout
from llamagen.generate import condition_prefix, layout_for
from tests.test_engine import tiny_gpt

LAYOUT = Layout(rows=4, cols=5, prefix_len=2)


def attention_from(target):
    """(S, S) probabilities where the query generating (r, c) puts all its mass on target(r, c)'s slot
    (a cell (r', c') or ('prefix', i)); other queries are irrelevant and left at 0."""
    S = LAYOUT.prefix_len + LAYOUT.num_cells
    probs = np.zeros((S, S))
    cells, gen = cell_slots(LAYOUT), generating_slots(LAYOUT)
    for r in range(LAYOUT.rows):
        for c in range(LAYOUT.cols):
            for key, mass in target(r, c).items():
                slot = key[1] if key[0] == "prefix" else cells[key]
                probs[gen[r, c], slot] += mass
    return probs


def test_generating_slots_follow_the_sequence():
    assert generating_slots(LAYOUT)[0, 0] == 1  # the last prefix slot generates (0, 0)
    assert generating_slots(LAYOUT)[2, 0] == cell_slots(LAYOUT)[1, 4]
    eor = Layout(3, 4, 2, end_of_row=True)  # with end-of-row tokens the EOL query generates column 0
    assert generating_slots(eor)[1, 0] == eor.cell_position(0, 4)


def test_all_mass_above_needs_window_one_and_lands_at_offset_minus_one_zero():
    probs = attention_from(lambda r, c: {(r - 1, c): 1.0} if r else {("prefix", 0): 1.0})
    need = window_needed(probs, LAYOUT)
    assert (need[1:] == 1).all() and (need[0] == 0).all()
    assert (window_needed(probs, LAYOUT, scope="earlier_rows")[1:] == 1).all()
    off = offset_mass(probs, LAYOUT)
    H, W = LAYOUT.rows, LAYOUT.cols
    assert off[H - 2, W - 1] == pytest.approx((H - 1) * W / (H * W))
    assert off.sum() == pytest.approx((H - 1) * W / (H * W))  # the rest is on the prefix
    share = prefix_share(probs, LAYOUT)
    assert (share[0] == 1).all() and (share[1:] == 0).all()


@pytest.mark.parametrize("coverage", [0.95, 1.0, 0.5])
def test_uniform_previous_row_needs_the_rest_of_the_row(coverage):
    W = LAYOUT.cols
    probs = attention_from(lambda r, c: {(r - 1, j): 1 / W for j in range(W)} if r else {})
    need = window_needed(probs, LAYOUT, coverage)
    for c in range(W):
        assert (need[1:, c] == max(1, math.ceil(coverage * W) - c)).all()
    assert need[1, 0] == math.ceil(coverage * W)  # full width (coverage 1: all W columns) at column 0


def test_mass_off_the_previous_row_only_counts_for_earlier_rows():
    # all mass two rows up and three columns right: no previous-row mass (window 1), but with
    # transitive visibility row r-2 holds columns < c + 2w, so w = 2 keeps it
    def target(r, c):
        return {(r - 2, c + 3): 1.0} if r >= 2 and c + 3 < LAYOUT.cols else {("prefix", 1): 1.0}
    probs = attention_from(target)
    assert (window_needed(probs, LAYOUT)[1:] == 1).all()
    deep = window_needed(probs, LAYOUT, scope="earlier_rows")
    assert deep[2, 0] == 2 and deep[3, 1] == 2 and deep[2, 4] == 1


def test_window_counts_columns_right_of_the_query_column():
    # 80% above-left, 20% three columns right of the generated column
    probs = attention_from(lambda r, c: {(r - 1, 0): 0.8, (r - 1, c + 3): 0.2} if r and c + 3 < 5 else {})
    assert window_needed(probs, LAYOUT, 0.95)[1, 0] == 4
    assert window_needed(probs, LAYOUT, 0.8)[1, 0] == 1
    assert window_needed(probs, LAYOUT, 0.95)[1, 1] == 4


def test_heatmap_and_covering_window():
    probs = attention_from(lambda r, c: {(r - 1, c): 0.25, (r, c - 1): 0.75} if r and c else {})
    heat = grid_heatmap(probs, LAYOUT, 2, 3)
    expected = np.zeros((4, 5))
    expected[1, 3], expected[2, 2] = 0.25, 0.75
    assert np.array_equal(heat, expected)
    windows = np.array([[0, 0, 0], [1, 1, 2], [3, 5, 1]])
    assert covering_window(windows, 0.5) == 1
    assert covering_window(windows, 0.8) == 3
    assert covering_window(windows, 1.0) == 5


def test_bad_arguments_are_rejected():
    probs = np.zeros((22, 22))
    with pytest.raises(ValueError, match="coverage"):
        window_needed(probs, LAYOUT, coverage=0)
    with pytest.raises(ValueError, match="scope"):
        window_needed(probs, LAYOUT, scope="column")
    with pytest.raises(ValueError, match="no attention recorded for layer 3"):
        attention_by_slot(AttentionRecorder(), 3, 22)


def test_recorded_probabilities_equal_transformers_eager_attentions():
    """An independent reference: transformers' eager Llama returns its attention probabilities."""
    from transformers import LlamaConfig as HFConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=48)
    ours = LlamaDecoder(config).eval()
    random_init_(ours, 1, std=0.2)
    ref = LlamaForCausalLM(HFConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, intermediate_size=48, tie_word_embeddings=False, rms_norm_eps=1e-5,
                                    attn_implementation="eager")).eval()
    ref.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    cache = ours.new_cache(2, 7, "cpu")
    cache.recorder = recorder = AttentionRecorder(per_head=True)
    with torch.no_grad():
        ours(ours.embed_tokens(ids), torch.arange(7)[None], torch.arange(7),
             torch.ones(7, 7, dtype=torch.bool).tril()[None], cache)
        expected = ref(ids, output_attentions=True).attentions
    for layer in range(2):
        assert (attention_by_slot(recorder, layer, 7) - expected[layer]).abs().max() <= 1e-5


@pytest.mark.parametrize("preset", ["GPT-tiny", "GPT-tiny-gqa"])
def test_recording_sums_to_one_over_visible_keys_and_changes_nothing(preset):
    gpt = tiny_gpt(4, preset=preset)
    config = DecodeConfig(window=None, cfg_scale=2.0)
    labels, seeds = torch.tensor([1, 3]), torch.tensor([7, 8])
    prefix = condition_prefix(gpt, labels, config)
    with torch.inference_mode():
        plain = decode(gpt, prefix, seeds, layout_for(gpt), config)
        state = start_decode(gpt, seeds, layout_for(gpt), config)
        recorder = AttentionRecorder(rows=range(2))
        records = record_attention(gpt, state, prefix, recorder)
    assert state.cache.recorder is None  # nothing left installed
    assert torch.equal(state.tokens[:, :16].reshape(2, 4, 4), plain.tokens)
    for layer in range(gpt.config.n_layer):
        kept = recorder.records[layer]
        assert len(kept) == len(records) == 16  # NTP: one pass per token
        for (slots, probs), rec in zip(kept, records):
            visible = rec.mask[:2].expand(2, -1, -1)
            assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)
            assert (probs[~visible] == 0).all()
    dense = attention_by_slot(recorder, 0, 17)
    assert dense.shape == (2, 17, 17)
    # every slot is queried once, except the last cell's, whose token is never fed
    assert torch.allclose(dense[:, :16].sum(-1), torch.ones(2, 16), atol=1e-5) and (dense[:, 16] == 0).all()
