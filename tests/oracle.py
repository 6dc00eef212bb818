"""Invariant (b) for any model fitting common.engine.Decoder: record every query of a decode, then
replay, per model-batch row, all of them in one uncached forward with the recorded visibility; every
logit the engine produced must equal the replay's."""
import torch

from common.engine import decode_steps, start_decode


def full_forward(model, x, positions, mask):
    """One uncached forward: every entry in its own slot of a fresh cache, with an explicit (E, E) mask."""
    slots = torch.arange(x.shape[1])
    return model(x, positions, slots, mask, model.new_cache(x.shape[0], x.shape[1], "cpu"))


def record_passes(model, layout, config, prefix, seeds, fixed_tokens=None, prefix_valid=None, position_shift=None):
    """Run a decode and keep, per pass, each model-batch row's queries: (slots, positions the model saw,
    input ids, mask, logits) as plain per-row tensors; inert padding queries (scratch slot) are dropped."""
    state = start_decode(model, seeds, layout, config, fixed_tokens, prefix.device, prefix_valid,
                         position_shift=position_shift)
    scratch = getattr(state.schedule, "scratch", None)
    rows = []
    for rec in decode_steps(model, state, prefix):
        per_row = []
        for m in range(rec.logits.shape[0]):
            b = m % len(seeds)
            pick = lambda t, i: t[min(i, t.shape[0] - 1)]  # noqa: E731  shared tensors have leading dim 1
            slots = pick(rec.batch.slots, b)
            keep = slots != scratch if scratch is not None else torch.ones_like(slots, dtype=torch.bool)
            positions = pick(rec.batch.positions, b)
            if position_shift is not None:
                positions = (positions - position_shift[m]).clamp(min=0)
            per_row.append((slots[keep].clone(), positions[keep].clone(), rec.input_ids[m][keep].clone(),
                            pick(rec.mask, m)[keep].clone(), rec.logits[m][keep].clone()))
        rows.append(per_row)
    return state, rows


def oracle_error(model, prefix, passes) -> float:
    """Max abs difference between the recorded logits and their uncached replay (asserts that no slot
    is written twice and that each query reads only slots written in its own or an earlier pass)."""
    worst = 0.0
    for m in range(prefix.shape[0]):
        entry_of_slot = {}
        embeddings, positions, visible_slots, logits = [], [], [], []
        for k, per_row in enumerate(passes):
            slots, pos, ids, mask, lg = per_row[m]
            x = prefix[m, slots] if k == 0 else model.embed_tokens(ids)
            for i, s in enumerate(slots.tolist()):
                assert s not in entry_of_slot, f"slot {s} written twice"
                entry_of_slot[s] = len(positions)
                embeddings.append(x[i])
                positions.append(int(pos[i]))
                visible_slots.append(mask[i].nonzero()[:, 0].tolist())
                logits.append(lg[i])
        E = len(positions)
        oracle_mask = torch.zeros(E, E, dtype=torch.bool)
        for e, slots in enumerate(visible_slots):
            # a query may only read slots that some earlier-or-same-pass query wrote (KeyError otherwise)
            oracle_mask[e, [entry_of_slot[s] for s in slots]] = True
            assert oracle_mask[e, e]
        replay = full_forward(model, torch.stack(embeddings)[None], torch.tensor(positions), oracle_mask)[0]
        worst = max(worst, (replay - torch.stack(logits)).abs().max().item())
    return worst
