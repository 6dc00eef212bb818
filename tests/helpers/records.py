"""Reading a decode's PassRecords (common.zipar.engine) back: the records of a class-conditional decode,
the distribution each query sampled from, and the pass in which each cell was decided."""
import torch

from common.zipar.engine import cfg_active, decode_steps, start_decode
from common.zipar.sampling import filter_logits, guide
from llamagen.generate import condition_prefix


@torch.inference_mode()
def decode_records(gpt, layout, config, labels, seeds, fixed_tokens=None):
    """Run a decode to the end: (final DecodeState, list of PassRecords, prefix pass first)."""
    state = start_decode(gpt, condition_prefix(gpt, labels, config), seeds, layout, config, fixed_tokens)
    return state, list(decode_steps(gpt, state))


def pick(t: torch.Tensor, b: int) -> torch.Tensor:
    """Image b's row of a (B | 1, ...) record tensor (fixed windows share one schedule: leading dim 1)."""
    return t[min(b, t.shape[0] - 1)]


def query_probs(state, rec) -> torch.Tensor:
    """(B, n, V) the distribution each of a pass's decided cells (rec.batch.cells) was sampled from:
    guidance, filtering and softmax on the recorded logits, as common.zipar.engine does before every draw."""
    config, batch = state.config, state.seeds.shape[0]
    rows = rec.batch.sample_rows
    if config.uses_cfg and rows.shape[0] == batch > 1:  # per-image rows, repeated for the unconditional half
        rows = torch.cat([rows, rows])
    rows = rows.expand(rec.logits.shape[0], -1)
    logits = rec.logits.gather(1, rows[..., None].expand(-1, -1, rec.logits.shape[-1]))
    if config.uses_cfg:
        cells = rec.batch.cells.expand(batch, -1)
        logits = guide(logits[:batch], logits[batch:], config.cfg_scale, cfg_active(cells, config.cfg_interval))
    return torch.softmax(filter_logits(logits, config.temperature, config.top_k, config.top_p), dim=-1)


def decided_at(records, batch: int, num_cells: int) -> torch.Tensor:
    """(B, N) the pass in which each cell was decided: the last pass whose queries drew it (an
    opener's attempts, a row draft's redraws and its check all draw the cell; nothing draws it after
    it is decided)."""
    last = torch.full((batch, num_cells), -1, dtype=torch.int64)
    for rec in records:
        for b in range(batch):
            cells = pick(rec.batch.cells, b)
            cells = cells[cells < num_cells]
            last[b, cells] = rec.index
    return last
