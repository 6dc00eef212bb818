"""Invariants (b) and (e) for any model fitting common.zipar.engine.Decoder.

(b) record every query of a decode, then replay, per model-batch row, all of them in one uncached
forward with the recorded visibility; every logit the engine produced must equal the replay's.
(e) every query is fed a token decided in an earlier pass and never changed afterwards, or a fixed
end-of-row token, or a placeholder that the policy defines without a decided token. With row drafts
(common.zipar.row_drafts) a query may also be fed a draft: the token its cell held at the end of the
previous pass, written (drawn or started) by the decode; with a candidate tree (common.zipar.tree_drafts)
also a sibling, the token its column held then. The replay cannot see (e): it replays
whatever was fed. `record_passes` checks (e) on every decode it records.
"""
import torch

from common.zipar.condition import as_condition
from common.zipar.engine import decode_steps, start_decode
from common.zipar.placeholder import MEAN_INPUT, feeds_mean_embedding, fixed_token, needs_decided_token


def full_forward(model, x, positions, mask):
    """One uncached forward: every entry in its own slot of a fresh cache, with an explicit (E, E) mask."""
    slots = torch.arange(x.shape[1])
    return model(x, positions, slots, mask, model.new_cache(x.shape[0], x.shape[1], "cpu"))


def record_passes(model, layout, config, condition, seeds, fixed_tokens=None):
    """Run a decode and keep, per pass, each model-batch row's queries: (slots, positions the model saw,
    input ids, mask, logits) as plain per-row tensors; inert padding queries (scratch slot) are dropped."""
    state = start_decode(model, condition, seeds, layout, config, fixed_tokens)
    scratch = state.scheduler.slot_map.scratch
    position_shift = state.condition.position_shift
    rows, records = [], []
    for rec in decode_steps(model, state):
        records.append(rec)
        per_row = []
        for m in range(rec.logits.shape[0]):
            b = m % len(seeds)
            pick = lambda t, i: t[min(i, t.shape[0] - 1)]  # noqa: E731  shared tensors have leading dim 1
            slots = pick(rec.batch.slots, b)
            keep = slots != scratch
            positions = pick(rec.batch.positions, b)
            if position_shift is not None:
                positions = (positions - position_shift[m]).clamp(min=0)
            per_row.append((slots[keep].clone(), positions[keep].clone(), rec.input_ids[m][keep].clone(),
                            pick(rec.mask, m)[keep].clone(), rec.logits[m][keep].clone()))
        rows.append(per_row)
    bad = fed_token_violations(state, records)
    assert not bad, f"{len(bad)} queries fed tokens that were not decided earlier, e.g. {bad[:3]}"
    return state, rows


def fed_token_violations(state, records) -> list[str]:
    """Invariant (e) over the PassRecords of a finished decode (descriptions of each violation)."""
    layout, policy = state.layout, state.config.placeholder
    N, B = layout.num_cells, state.seeds.shape[0]
    eol = range(N, N + layout.rows) if layout.end_of_row else range(0)
    drafting = state.config.draft_len > 0
    tree = state.scheduler.slot_map.tree
    siblings = range(tree.sibling_base, state.tokens.shape[1]) if tree is not None else range(0)
    last_write = torch.full((B, N), -1, dtype=torch.int64)  # the pass that last set each cell
    for rec in records:
        for b, row in enumerate(rec.batch.cells.expand(B, -1).tolist()):
            for c in row:
                if c < N:
                    last_write[b, c] = rec.index
    bad = []
    for before, rec in zip(records, records[1:]):  # records[0] is the prefix pass
        slots = rec.batch.slots.expand(B, -1).tolist()
        for b, row in enumerate(rec.batch.sources.expand(B, -1).tolist()):
            for q, s in enumerate(row):
                if slots[b][q] == state.scheduler.slot_map.scratch:
                    continue  # inert padding
                fed, where = int(rec.input_ids[b, q]), f"pass {rec.index}, image {b}, query {q}, source {s}"
                if (s < N and drafting) or s in siblings:  # what the buffer held after the previous pass, written
                    # by the decode (a row draft, or a candidate tree's sibling)
                    if int(before.draws[b, s]) == 0:
                        bad.append(f"{where}: the cell was never written")
                    elif fed != int(before.tokens[b, s]):
                        bad.append(f"{where}: fed {fed}, the buffer held {int(before.tokens[b, s])}")
                elif s < N:
                    if not 0 <= last_write[b, s] < rec.index:
                        bad.append(f"{where}: cell last decided in pass {int(last_write[b, s])}")
                    elif fed != int(state.tokens[b, s]):
                        bad.append(f"{where}: fed {fed}, the cell's token is {int(state.tokens[b, s])}")
                elif s in eol:
                    if fed != int(state.tokens[b, s]):
                        bad.append(f"{where}: fed {fed} for the fixed end-of-row token")
                elif s == state.scheduler.slot_map.placeholder_column and (feeds_mean_embedding(policy)
                                                                  or not needs_decided_token(policy)):
                    expected = MEAN_INPUT if feeds_mean_embedding(policy) else fixed_token(policy)
                    if fed != expected:
                        bad.append(f"{where}: fed {fed} for placeholder {policy!r}")
                else:
                    bad.append(f"{where}: not a cell, a fixed token or a policy placeholder")
    return bad


def replay_embeddings(model, ids, num_codes):
    """Input embeddings of recorded ids; MEAN_INPUT (placeholder "mean") is the plain mean of the
    embedding table over the num_codes sampled codes, computed here independently of the engine."""
    mean = model.embed_tokens(torch.arange(num_codes)[None])[0].float().mean(0)
    x = model.embed_tokens(ids.clamp(min=0)[None])[0]
    return torch.where((ids == MEAN_INPUT)[:, None], mean.to(x.dtype), x)


def oracle_error(model, condition, passes) -> float:
    """Max abs difference between the recorded logits and their uncached replay (asserts that each
    query reads only slots written in its own or an earlier pass; a slot it reads stands for the
    latest entry written there)."""
    prefix = as_condition(condition).embeddings
    worst = 0.0
    for m in range(prefix.shape[0]):
        entry_of_slot = {}
        embeddings, positions, visible_entries, logits = [], [], [], []
        for k, per_row in enumerate(passes):
            slots, pos, ids, mask, lg = per_row[m]
            x = prefix[m, slots] if k == 0 else replay_embeddings(model, ids, lg.shape[-1])
            for i, s in enumerate(slots.tolist()):
                # a rewritten slot (an adaptive opener's next attempt) stands for its latest entry
                entry_of_slot[s] = len(positions) + i
            for i in range(len(slots)):
                # a query may only read slots written in its own or an earlier pass (KeyError otherwise)
                visible_entries.append([entry_of_slot[s] for s in mask[i].nonzero()[:, 0].tolist()])
                embeddings.append(x[i])
                positions.append(int(pos[i]))
                logits.append(lg[i])
        E = len(positions)
        oracle_mask = torch.zeros(E, E, dtype=torch.bool)
        for e, entries in enumerate(visible_entries):
            oracle_mask[e, entries] = True
            assert oracle_mask[e, e]
        replay = full_forward(model, torch.stack(embeddings)[None], torch.tensor(positions), oracle_mask)[0]
        worst = max(worst, (replay - torch.stack(logits)).abs().max().item())
    return worst
