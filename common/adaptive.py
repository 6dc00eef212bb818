"""Adaptive window with rejection sampling (ZipAR paper, section 3.3), one schedule per image.

Semantics (no official code exists; this is the paper's description made exact):
- When row r holds w_min decoded tokens, the first token of row r+1 is drafted: t ~ p_w, the
  distribution of the query that predicts (r+1, 0) while it sees w = w_min tokens of row r.
- In each following pass row r holds one more token (rows never stall once open); the query for
  (r+1, 0) runs again and gives p_{w+1}. The current draft is accepted with probability
  min(1, p_{w+1}(t) / p_w(t)); if rejected, a new draft is drawn from norm(max(0, p_{w+1} - p_w)),
  an exact sample of p_{w+1} (common.sampling.verify_draft), and is verified against p_{w+2} next.
- When row r is complete the last verification is against the full-row distribution p_W and its
  outcome (accepted draft or residual sample) is final.
- An accepted row r+1 then follows row r as in the fixed schedule with the window it was accepted
  at: (r+1, c) needs min(c + w_acc, W) tokens of row r. So the accepted windows determine the pass
  count (common.schedule.decode_pass_table with them as row windows).
- The distributions are the ones sampling uses (after CFG, temperature, top-k, top-p). The draft,
  the acceptance uniform and the resample are counter-based draws keyed by (seed, cell, purpose,
  attempt); the first draft uses the same key as the plain draw of that cell, so w_min >= W is NTP.

Each opening query is a cache entry of its own ("opener" slots; at the position of (r, W-1) with a
placeholder token for layouts without end-of-row tokens, the end-of-row token's position otherwise).
A new opener supersedes the previous one; the accepted one is what row r+1's later queries read
(until the real (r, W-1) arrives, for LlamaGen). Images differ in their queries per pass; each pass
pads every image to the longest with inert queries that write a scratch slot nobody reads.
This scheduler is host-side bookkeeping; the engine runs the passes it emits.
"""
import numpy as np
import torch

from common.placeholder import placeholder_source
from common.plan import DRAFT, DRAW, NEVER, PAD, VERIFY, PassBatch, placeholder_column, token_buffer_width
from common.schedule import Layout


class AdaptiveSchedule:
    def __init__(self, layout: Layout, config, batch: int, device):
        H, W, T = layout.rows, layout.cols, layout.prefix_len
        self.layout, self.batch, self.device = layout, batch, device
        self.w_min = config.window_for(W)
        self.policy = config.placeholder
        self.openers_per_row = W - self.w_min + 1
        self.opener_base = T + H * layout.row_stride
        self.scratch = self.opener_base + max(H - 1, 0) * self.openers_per_row
        self.num_slots = self.scratch + 1
        self.trash = token_buffer_width(layout)  # token-buffer column that padding writes
        pos = np.zeros(self.num_slots, dtype=np.int64)
        pos[:T] = np.arange(T)
        for r in range(H):
            pos[layout.cell_position(r, 0):layout.cell_position(r, 0) + layout.row_stride] = (
                np.arange(layout.row_stride) + layout.cell_position(r, 0))
            if r < H - 1:
                start = self.opener_base + r * self.openers_per_row
                pos[start:start + self.openers_per_row] = self._opener_position(r)
        self._positions = pos
        self.slot_positions = torch.as_tensor(pos, device=device)
        self.live_from = np.full((batch, self.num_slots), NEVER, dtype=np.int64)
        self.live_until = np.full((batch, self.num_slots), NEVER, dtype=np.int64)
        self.count = np.zeros((batch, H), dtype=np.int64)  # decided tokens per row
        self.window = np.zeros((batch, H), dtype=np.int64)  # accepted window of row r (r >= 1)
        self.openers = np.zeros((batch, H), dtype=np.int64)  # opener entries written for row r+1
        self.last_fed = np.zeros((batch, H), dtype=bool)  # real (r, W-1) fed
        self.drafting = np.full(batch, -1)  # the row whose first token is a draft, or -1
        self.attempt = np.zeros(batch, dtype=np.int64)
        self.rejections = np.zeros(batch, dtype=np.int64)
        self.image_passes = np.zeros(batch, dtype=np.int64)
        self.first_busy = np.zeros(batch, dtype=np.int64)  # rows above it are complete and fed
        self.k = 0
        self._pending = []  # (image, sampled index, row opened, window, final) of this pass's verifications

    def _opener_position(self, r: int) -> int:
        W = self.layout.cols
        return self.layout.cell_position(r, W if self.layout.end_of_row else W - 1)

    def _write(self, b: int, slot: int) -> None:
        self.live_from[b, slot] = self.k

    def _queries_for(self, b: int):
        """(queries, decided) of image b in this pass, from the counts before the pass."""
        layout, W, H = self.layout, self.layout.cols, self.layout.rows
        N = layout.num_cells
        cnt = self.count[b].tolist()
        queries, decided = [], []  # queries: (slot, pos, source); decided: (query idx, cell, kind, attempt)

        def query(slot, source, cell=-1, kind=DRAW, attempt=0):
            if cell >= 0:
                decided.append((len(queries), cell, kind, attempt))
            queries.append((slot, int(self._positions[slot]), source))
            self._write(b, slot)

        while self.first_busy[b] < H - 1 and cnt[self.first_busy[b]] == W and self.last_fed[b, self.first_busy[b]]:
            self.first_busy[b] += 1
        for r in range(int(self.first_busy[b]), H):
            c = cnt[r]
            if c == 0:
                break  # this row and those below are not open yet (its opening was handled at r - 1)
            if 1 <= c < W and (r == 0 or cnt[r - 1] >= min(c + self.window[b, r], W)):
                query(layout.cell_position(r, c - 1), r * W + c - 1, r * W + c)
                self.count[b, r] += 1
            if r == H - 1:
                break
            complete_unfed = cnt[r] == W and not self.last_fed[b, r]
            opening = cnt[r] >= 1 and cnt[r + 1] == 0 and (self.drafting[b] == r + 1 or cnt[r] >= self.w_min)
            if opening:
                window, final = int(cnt[r]), cnt[r] == W
                kind = DRAFT if self.drafting[b] != r + 1 else VERIFY
                if kind == DRAFT and final:
                    kind = DRAW  # nothing left to verify against: w_min >= W behaves as NTP
                j = self.openers[b, r]
                if j > 0:  # the new opener supersedes the previous one
                    self.live_until[b, self.opener_base + r * self.openers_per_row + j - 1] = self.k
                if final and not layout.end_of_row:
                    slot, source = layout.cell_position(r, W - 1), r * W + W - 1  # the real token
                    self.last_fed[b, r] = True
                    complete_unfed = False
                else:
                    slot = self.opener_base + r * self.openers_per_row + j
                    # cnt: the counts before this pass, so the stand-in is a token decided earlier
                    source = N + r if layout.end_of_row else placeholder_source(
                        self.policy, r, cnt, W, placeholder_column(layout))
                    self.openers[b, r] += 1
                query(slot, source, (r + 1) * W, kind, int(self.attempt[b]))
                if kind == DRAW:
                    self._open(b, r + 1, window)
                elif kind == DRAFT:
                    self.drafting[b], self.attempt[b] = r + 1, 1
                else:
                    self._pending.append((b, len(decided) - 1, r + 1, window, final))
            if complete_unfed:
                query(layout.cell_position(r, W - 1), r * W + W - 1)  # keys/values only
                self.last_fed[b, r] = True
                if not layout.end_of_row and self.openers[b, r] > 0:  # the real token replaces the placeholder
                    self.live_until[b, self.opener_base + r * self.openers_per_row + self.openers[b, r] - 1] = self.k
        return queries, decided

    def _open(self, b: int, row: int, window: int) -> None:
        self.count[b, row] = 1
        self.window[b, row] = window
        self.drafting[b] = -1

    def next_pass(self) -> PassBatch | None:
        T, dev = self.layout.prefix_len, self.device
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=dev)  # noqa: E731
        if self.k == 0:
            self.live_from[:, :T] = 0
            self.count[:, 0] = 1
            slots = as_t(np.arange(T))[None]
            batch = PassBatch(True, slots, slots, torch.zeros_like(slots), self._mask(slots),
                              as_t([[T - 1]]), as_t([[0]]), as_t([[DRAW]]), as_t([[0]]))
            self.image_passes[:] = 1
            self.k = 1
            return batch
        if (self.count == self.layout.cols).all():
            return None
        per_image = []
        for b in range(self.batch):
            per_image.append(self._queries_for(b) if (self.count[b] < self.layout.cols).any() else ([], []))
            if per_image[-1][0]:
                self.image_passes[b] = self.k + 1
        Q = max(len(q) for q, _ in per_image)
        n = max(max(len(d) for _, d in per_image), 1)
        slots = np.full((self.batch, Q), self.scratch)
        positions, sources = np.zeros((self.batch, Q), dtype=np.int64), np.zeros((self.batch, Q), dtype=np.int64)
        rows, cells = np.zeros((self.batch, n), dtype=np.int64), np.full((self.batch, n), self.trash)
        kinds, attempts = np.full((self.batch, n), PAD), np.zeros((self.batch, n), dtype=np.int64)
        for b, (queries, decided) in enumerate(per_image):
            for i, (slot, pos, src) in enumerate(queries):
                slots[b, i], positions[b, i], sources[b, i] = slot, pos, src
            for i, (qi, cell, kind, attempt) in enumerate(decided):
                rows[b, i], cells[b, i], kinds[b, i], attempts[b, i] = qi, cell, kind, attempt
        positions_t = as_t(positions)
        batch = PassBatch(False, as_t(slots), positions_t, as_t(sources), self._mask(positions_t),
                          as_t(rows), as_t(cells), as_t(kinds), as_t(attempts))
        self.k += 1
        return batch

    def _mask(self, positions: torch.Tensor) -> torch.Tensor:
        """(B, Q, S): live slots (written, not superseded) at positions <= the query's."""
        k = self.k
        live = torch.as_tensor((self.live_from <= k) & (k < self.live_until), device=self.device)
        return live[:, None, :] & (self.slot_positions[None, None, :] <= positions[..., :, None])

    def observe(self, accepted: np.ndarray) -> None:
        """accepted (B, n): outcomes of this pass's verifications."""
        for b, i, row, window, final in self._pending:
            if accepted[b, i] or final:
                self._open(b, row, window)
            else:
                self.attempt[b] += 1
            if not accepted[b, i]:
                self.rejections[b] += 1
        self._pending = []

    def report(self) -> dict:
        return {"image_passes": self.image_passes.tolist(),
                "accepted_windows": self.window[:, 1:].tolist(), "rejections": self.rejections.tolist()}
