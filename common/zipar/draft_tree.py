"""Exact proactive drafting: a candidate tree at a row's first draft depths, verified in one pass.

Proactive drafting (SJD-PAC, Kang et al., CVPR 2026; github KangJialiang/SJD-PAC,
scheduler/sjd_pac_iteration_lumina_mgpt.py) gives each of a row's first T = D - 1 draft depths W
candidates and runs every path through them (W + W^2 + ... + W^T queries besides the chain): when a
depth's draft is rejected, a sibling can still pass and the row goes on along the sibling's path.
As released it is not an exact sampler; this module is the exact version, made so by four rules:

1. At a depth, the candidates are tested in order and the first that passes wins (recursive
   rejection sampling, `recursive_test`), whatever the depths below it would accept. Choosing the
   path whose run of accepted depths is longest (the release) selects on later tests' outcomes.
2. Candidate 0 is the cell's draft (the chain's draft, drawn from its q, possibly a coupled redraft);
   candidates 1..W-1 are draws without replacement from q given the earlier ones (`siblings`), and
   candidate k is tested against the current residual r_k with its true conditional proposal
   q_k = q without candidates 0..k-1, renormalised. If every candidate is rejected the cell takes a
   draw from the last residual. Exact by induction over k: given the earlier candidates (all
   rejected), candidate k ~ q_k and r_{k+1} = norm((r_k - q_k)^+) does not depend on it, so
       P(out = x) = min(r_k, q_k)(x) + (1 - sum min(r_k, q_k)) r_{k+1}(x) = r_k(x),
   and r_0 = p (common.zipar.sampling.verify_draft is the case W = 1).
3. The cells after the row's decided ones stay drafts (common.zipar.row_drafts): each is redrawn by
   candidate 0's own plain test against this pass's distribution along candidate 0's path, else its
   plain residual (p - q)^+, so the redraft follows that distribution, which is then stored as its q.
   Mixing in the siblings (a rejected draft redrawn from the residual left after its siblings, the
   release's rule) draws from another distribution than the q the next test assumes.
4. When every depth the pass runs accepted its draft, the token after them is drawn from the last
   query's distribution p (the release draws it from a uniform pad).

Candidates of a depth are shared by every path into it: their draws never depend on the tests above
them, so conditioned on the path the walk took they still have the proposals above. Past the tree
only candidate 0's path has queries (the chain of drafts T+1..L): a walk that left it through a
sibling decides one more cell there, by the plain test of that cell's draft against the sibling
path's last distribution (exact: any draft with its true q), and stops. W = 1 is the chain itself.

Shapes: B rows (an image's row per entry), L drafts, T tree depths (T <= L), W candidates, V codes.
Depth t (1-based) is the cell count + t - 1 after the row's `count` decided tokens.
"""
import torch

from common.zipar.sampling import acceptance_probability, residual_distribution, sample_probs

__all__ = ["recursive_test", "siblings", "verify_tree"]


def siblings(q: torch.Tensor, draft: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates 1..W-1 of each depth: q (..., V), draft (...,) candidate 0, u (..., W-1) uniforms ->
    (codes (..., W-1), valid (..., W-1)). Candidate k is drawn from q without candidates 0..k-1 (inverse CDF
    on the unnormalised rest); where q has no mass left (a point-mass q has none) it is invalid."""
    rest = q.scatter(-1, draft[..., None], 0.0)
    none = draft[..., None][..., :0]  # W = 1: no siblings
    codes, valid = [none], [none > 0]
    for k in range(u.shape[-1]):
        ok = rest.sum(-1) > 0
        code = torch.where(ok, sample_probs(rest, u[..., k]), draft)
        rest = rest.scatter(-1, code[..., None], 0.0)
        codes.append(code[..., None])
        valid.append(ok[..., None])
    return torch.cat(codes, -1), torch.cat(valid, -1)


def _without(proposal: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The proposal of the next candidate: `proposal` (..., V) without `code`, renormalised (zeros if nothing is left)."""
    rest = proposal.scatter(-1, code[..., None], 0.0)
    return rest / rest.sum(-1, keepdim=True).clamp(min=1e-30)


def recursive_test(p: torch.Tensor, q: torch.Tensor, cands: torch.Tensor, valid: torch.Tensor,
                   u_accept: torch.Tensor, u_residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rule 2: p, q (..., V), cands (..., W) (candidate 0 drawn from q, the rest by `siblings`), valid (..., W),
    u_accept (..., W), u_residual (...,) -> (token (...,), winner (...,): the first candidate that passed, -1
    if none; the token is then a draw from the last residual)."""
    target, proposal = p, q
    winner = torch.full_like(cands[..., 0], -1)
    for k in range(cands.shape[-1]):
        code = cands[..., k]
        tested = valid[..., k] & (winner < 0)
        passed = tested & (u_accept[..., k] < acceptance_probability(target, proposal, code))
        winner = torch.where(passed, k, winner)
        target = torch.where((tested & ~passed)[..., None], residual_distribution(target, proposal), target)
        proposal = torch.where(valid[..., k, None], _without(proposal, code), proposal)
    rest = sample_probs(target, u_residual)
    return torch.where(winner >= 0, cands.gather(-1, winner.clamp(min=0)[..., None])[..., 0], rest), winner


def _redraft(p: torch.Tensor, q: torch.Tensor, cands: torch.Tensor, valid: torch.Tensor, u_accept: torch.Tensor,
             u_residual: torch.Tensor) -> torch.Tensor:
    """Rule 3: a cell that stays a draft, redrawn by candidate 0's plain test against p (the maximal coupling
    of the old draft with p; common.zipar.row_drafts), else its plain residual: it follows p. The siblings
    (cands[..., 1:]) take no part."""
    token, _ = recursive_test(p, q, cands[..., :1], valid[..., :1], u_accept[..., None], u_residual)
    return token


def _after_drafts(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Rule 4: the token after the last draft a pass runs (all of them accepted, or none there): a draw from p."""
    return sample_probs(p, u)


def verify_tree(levels: list[torch.Tensor], chain: torch.Tensor, draft: torch.Tensor, q: torch.Tensor,
                cands: torch.Tensor, valid: torch.Tensor, drafts: torch.Tensor, depths: torch.Tensor,
                u_accept: torch.Tensor, u_sibling: torch.Tensor, u_residual: torch.Tensor,
                u_token: torch.Tensor) -> dict:
    """One row-pass of a drafted row with a candidate tree.

    levels[t] (B, W^t, V), t = 0..T: the distribution of depth t+1 after each path through the
    candidates of depths 1..t (path index in base W, depth 1 most significant; levels[0] is fed the
    last decided token). chain (B, L - T, V): the distributions of depths T+2..L+1 along candidate 0's
    path (fed drafts T+1..L). draft (B, L) and q (B, L, V): each depth's draft and the distribution it
    was drawn from; cands (B, T, W) and valid (B, T, W): each tree depth's candidates (candidate 0 the
    draft). drafts (B,): the drafts the row's lane runs (<= L); depths (B,): the depths it decides
    (drafts + 1, or drafts at the row's end). Uniforms: u_accept (B, L) candidate 0's test, u_sibling
    (B, T, W-1) the siblings' tests, u_residual (B, L) a rejection's resample, u_token (B, L+1) the
    draw after the last draft.

    Returns tokens (B, L+1): the decided tokens at depths 1..n, the redrafts after them (rule 3);
    n (B,) the depths decided; winner (B, T) the candidate each tree depth's walk took (-1 none or not
    reached); accepted (B, L) whether each depth's decided token was a draft that passed; redrafts
    (B, L+1) rule 3's redraft of every depth (the cells a caller cuts off after n, drafting ahead).
    """
    B, L = draft.shape
    T = cands.shape[1]
    zero_path = torch.cat([lv[:, :1] for lv in levels] + [chain], dim=1)  # (B, L+1, V) candidate 0's path
    # past the walk's last tree-dependent depth T its distributions are candidate 0's path's, whatever the
    # walk: the tests there (depths T+2..L) and rule 4's draws, each in one call over the depths
    past = slice(T + 1, L)
    if T + 1 < L:
        past_tok, past_win = recursive_test(zero_path[:, past], q[:, past], draft[:, past, None],
                                            torch.ones(B, L - T - 1, 1, dtype=torch.bool, device=draft.device),
                                            u_accept[:, past, None], u_residual[:, past])
    after = _after_drafts(zero_path, u_token)  # (B, L+1)
    rows = torch.arange(B, device=draft.device)
    u_tree = torch.cat([u_accept[:, :T, None], u_sibling], dim=-1)  # (B, T, W)
    tokens = torch.zeros(B, L + 1, dtype=draft.dtype, device=draft.device)
    winner = torch.full((B, T), -1, dtype=draft.dtype, device=draft.device)
    accepted = torch.zeros(B, L, dtype=torch.bool, device=draft.device)
    walking = depths >= 1  # still deciding
    path = torch.zeros_like(drafts)  # index of the walk's path among the current level's
    on_zero = torch.ones_like(walking)  # the walk is on candidate 0's path
    n = torch.zeros_like(drafts)
    for t in range(L + 1):
        here = walking & (t < depths)
        if 1 <= t <= T:  # the walk's own path through the tree
            p = levels[t][rows, path.clamp(max=levels[t].shape[1] - 1)]
            bonus = _after_drafts(p, u_token[:, t])
        else:
            p, bonus = zero_path[:, t], after[:, t]
        is_draft = t < drafts
        if t < T:  # a tree depth: the first candidate that passes wins (rules 1, 2)
            tok, win = recursive_test(p, q[:, t], cands[:, t], valid[:, t], u_tree[:, t], u_residual[:, t])
        elif t == T < L:  # the first depth past the tree, after the walk's path: candidate 0's plain test
            tok, win = recursive_test(p, q[:, t], draft[:, t, None], torch.ones_like(walking)[:, None],
                                      u_accept[:, t, None], u_residual[:, t])
        elif t < L:  # further on, candidate 0's path
            tok, win = past_tok[:, t - T - 1], past_win[:, t - T - 1]
        else:
            tok, win = draft[:, 0], torch.full_like(drafts, -1)
        tok = torch.where(is_draft, tok, bonus)
        passed = is_draft & (win >= 0)
        tokens[:, t] = torch.where(here, tok, tokens[:, t])
        if t < L:
            accepted[:, t] = here & passed
        if t < T:
            winner[:, t] = torch.where(here, win, winner[:, t])
        n = n + here.long()
        # go on along the winner's path; past the tree only candidate 0's path has queries
        path = torch.where(here & passed & (t < T), path * cands.shape[-1] + win.clamp(min=0), path)
        on_zero = on_zero & ~(here & (t < T) & (win > 0))
        walking = here & passed & ((t + 1 <= T) | on_zero)
    # rule 3: the cells after the decided ones stay drafts, redrawn along candidate 0's path (all depths at once)
    # (every depth's candidates, as a tree depth's: past the tree the draft alone)
    W = cands.shape[-1]
    all_cands = torch.cat([cands, draft[:, T:, None].expand(-1, -1, W)], dim=1)  # (B, L, W)
    alone = torch.arange(W, device=draft.device) == 0
    all_valid = torch.cat([valid, alone.expand(B, L - T, W)], dim=1)
    redraft = _redraft(zero_path[:, :L], q, all_cands, all_valid, u_accept, u_residual)  # (B, L)
    depth = torch.arange(L + 1, device=draft.device)
    redrafts = torch.where(depth < drafts[:, None], torch.cat([redraft, after[:, L:]], dim=1), after)
    tokens = torch.where(depth >= n[:, None], redrafts, tokens)
    return {"tokens": tokens, "n": n, "winner": winner, "accepted": accepted, "redrafts": redrafts}
