"""The row-opening placeholder: what a row's opening query is fed when the token it would normally
read, the last column of the row above, is not decoded yet (layouts without end-of-row tokens).

Cell (r+1, 0) is predicted by the query at the position of (r, W-1). When row r+1 opens before
(r, W-1) exists, that query is fed a stand-in, chosen by a policy:
  "above"       the latest decoded token of row r-1 (its last column once that row is complete;
                row 0 falls back to "left"). This is what the paper's released code feeds
                (ThisisBillhe/ZipAR, LlamaGen-ZipAR/autoregressive/models/generate_zipar.py: the
                appended `input_ids[:, last_token_in_above_row_idx]`), and compat="official"'s policy.
  "left"        the latest decoded token of row r.
  "token:<id>"  a fixed code, e.g. a model's background or most frequent code.
  "mean"        the mean of the token-embedding table over the codes the model samples, fed as the
                input embedding: a model-agnostic "unknown" input.
  "above-or-mean"  (r-1, W-1), the cell right above the missing one, once decided (row r-1
                complete), else "mean": the default. It equals "above" wherever row r-1 is complete
                at the opening (w >= W/2 for fixed windows) and replaces above's mid-row token, a
                stroke of the row before as often as not, by the unknown input elsewhere; on the demo
                model no other model-agnostic policy does better at any window (docs/results.md, trade-off).
"above" and "left" read decided tokens only: the counts passed in are those decided before the
opening pass. The mean embedding and fixed codes need no decided token; the engine feeds them from
the placeholder column of its token buffer. This module is the one place the rule lives; fixed and
adaptive schedules both call `placeholder_source`. A decode's `Placeholder` holds its policy and the
state the policy needs, so the engine and the scheduler never name a policy: the engine fills the buffer
(`fill`), prepares it once the code count is known (`prepare`) and feeds its queries (`feed`); the
scheduler asks which column an opener is fed (`source`).
"""
from typing import Callable

import torch

POLICIES = ("above-or-mean", "above", "left", "mean", "token:<id>")
DEFAULT_POLICY = "above-or-mean"
COMPAT_POLICY = "above"  # what the paper's released code feeds (compat="official")
MEAN_INPUT = -2  # recorded input id of a query fed the mean embedding


def check_policy(policy: str) -> str:
    """Validate a policy string; returns it unchanged."""
    if policy in ("above-or-mean", "above", "left", "mean"):
        return policy
    if policy.startswith("token:"):
        value = policy[len("token:"):]
        if value.isdigit():
            return policy
    raise ValueError(f"placeholder must be one of {', '.join(POLICIES)} (<id> a non-negative integer), got {policy!r}")


def fixed_token(policy: str) -> int | None:
    """The code a "token:<id>" policy feeds; None for the other policies."""
    return int(policy[len("token:"):]) if policy.startswith("token:") else None


def needs_decided_token(policy: str) -> bool:
    return policy in ("above", "left", "above-or-mean")


def feeds_mean_embedding(policy: str) -> bool:
    """Whether the policy ever feeds the mean embedding (the engine then computes it once)."""
    return policy in ("mean", "above-or-mean")


def placeholder_source(policy: str, row: torch.Tensor, decided: torch.Tensor, cols: int,
                       placeholder_column: int) -> torch.Tensor:
    """Token-buffer column fed to the opening query of row `row` + 1 (standing for (row, W-1)).

    row: (B, R) int64 row indices; decided: (B, H) tokens of each row decided before the opening
    pass (only rows `row` - 1 and `row` are read). placeholder_column: the buffer column holding a
    "token:<id>" code or marking "mean". Entries whose row has no decided token are meaningless
    (the scheduler opens a row only after the row above holds >= 1 token).
    """
    if not needs_decided_token(policy):
        return torch.full_like(row, placeholder_column)
    if policy == "above-or-mean":  # (row-1, W-1) once decided, else the mean (row 0 has no row above)
        above = (row - 1).clamp(min=0)
        complete = (row >= 1) & (decided.gather(1, above) == cols)
        return torch.where(complete, above * cols + cols - 1, placeholder_column)
    # "above" reads row-1; row 0 has no row above and falls back to "left"
    source_row = torch.where(row >= 1, row - 1, row) if policy == "above" else row
    count = decided.gather(1, source_row)
    return source_row * cols + count - 1


def mean_embedding(embed_tokens, num_codes: int, device, chunk: int = 4096) -> torch.Tensor:
    """(D,) mean of embed_tokens over codes [0, num_codes), accumulated in fp32 in chunks (a 32k x 4k
    table is never materialised at once), returned in the embedding dtype."""
    total, dtype = None, None
    for lo in range(0, num_codes, chunk):
        e = embed_tokens(torch.arange(lo, min(lo + chunk, num_codes), device=device)[None])[0]
        dtype = e.dtype
        part = e.float().sum(0)
        total = part if total is None else total + part
    return (total / num_codes).to(dtype)


class Placeholder:
    """One decode's placeholder: its policy, the token-buffer column it feeds from, and (policies that
    feed the mean embedding, on layouts without end-of-row tokens) the mean embedding, set by `prepare`."""

    def __init__(self, policy: str, column: int, end_of_row: bool):
        self.policy, self.column = policy, column
        self.uses_mean = feeds_mean_embedding(policy) and not end_of_row
        self.mean_input: torch.Tensor | None = None  # (D,) once prepared, if uses_mean

    def fill(self, tokens: torch.Tensor) -> None:
        """Write a "token:<id>" code into the placeholder column of the (B, width) token buffer."""
        if (code := fixed_token(self.policy)) is not None:
            tokens[:, self.column] = code

    def prepare(self, embed_tokens, num_codes: int, device, read: bool = True) -> None:
        """Once the code count is known (the prefix pass's logits): check a "token:<id>" code, and
        compute the mean embedding over the codes the model samples. read: whether the schedule may
        feed the placeholder column at all (common.zipar.scheduler.reads_placeholder); if not, no
        pass feeds the mean embedding (`feed` leaves every input as it is)."""
        code = fixed_token(self.policy)
        if code is not None and code >= num_codes:
            raise ValueError(f"placeholder {self.policy!r}: the model samples codes 0..{num_codes - 1}")
        if self.uses_mean and read:
            self.mean_input = mean_embedding(embed_tokens, num_codes, device)

    def source(self, row: torch.Tensor, decided: torch.Tensor, cols: int) -> torch.Tensor:
        """placeholder_source of this policy and column."""
        return placeholder_source(self.policy, row, decided, cols, self.column)

    def feed(self, x: torch.Tensor, input_ids: torch.Tensor,
             fed_from: Callable[[int], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The queries' input embeddings x (B_model, Q, D) and recorded ids (B_model, Q), with the mean
        embedding (recorded as MEAN_INPUT) where a query is fed the placeholder column: fed_from(column)
        -> (B | 1, Q) bool, per image (B_model = k B: each image's rows of every CFG branch, branch by
        branch). Unchanged for the other policies (their column holds a real code)."""
        if self.mean_input is None:
            return x, input_ids
        is_mean = fed_from(self.column)  # (B | 1, Q), broadcast over the branches by a view, not a copy
        branches = lambda t: t.view(-1, *is_mean.shape, *t.shape[2:])  # noqa: E731  (k, B | 1, Q, ...)
        x = torch.where(is_mean[..., None], self.mean_input.to(x.dtype), branches(x)).view_as(x)
        return x, branches(input_ids).masked_fill(is_mean, MEAN_INPUT).view_as(input_ids)
