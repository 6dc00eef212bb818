"""Passes per image of NTP + row drafts with and without a candidate tree (common/zipar/draft_tree.py)
on the demo model, by a reference decoder of one image at a time, written before the engine ran trees
(the engine's tree: common/zipar/tree_drafts.py, measured in docs/drafting_exactness.md): what the tree
saves, and where acceptance limits it.

The decoder follows NTP + drafts (common/zipar/row_drafts.py, window = the row): the condition pass
decides (0, 0); a row's first cell is decided alone by the query fed the last token of the row above;
after it the row runs drafts along the row (up to L, new ones start "above", point-mass q, row 0
from its left token), tested each pass, the cells after the decided ones redrawn by maximal coupling
(q = this pass's distribution). With a tree (width W, T = depth - 1 tree depths), each pass also
feeds every path through the first T depths' candidates (draft_tree.verify_tree decides). Every
pass is one forward: the decided tokens not yet in the cache, then every draft node, each node
reading the decided tokens and its ancestors (a tree mask); draft-fed entries are never kept (a
decided token is fed again in the next pass, in the same forward as that pass's nodes), so the pass
count is the tree's and the engine's bookkeeping of kept entries does not enter it. Randomness comes
from a generator per image (not the engine's counter-based keys), so images differ from the engine's.

python -m benchmarks.draft_tree_passes --draft-len 16 --widths 1 3 --tree-depth 3
"""
import argparse
import statistics
import sys

import torch

from common.cli import HelpFormatter, check_positive, run_main
from common.path_checks import check_input_file
from common.zipar.config import DecodeConfig
from common.zipar.draft_tree import siblings, verify_tree
from common.zipar.engine import cfg_active
from common.zipar.sampling import filter_logits, guide, sample_probs
from llamagen.checkpoint import load_gpt_weights
from llamagen.generate import condition_prefix
from llamagen.model import Transformer, gpt_config
from llamagen.presets import DEMO


def probs_of(logits, cells, config):
    """(2 | 1, Q, V) logits -> (Q, V) float64 distributions, as the engine samples them."""
    if config.uses_cfg:
        logits = guide(logits[:1], logits[1:], config.cfg_scale, cfg_active(cells[None], config.cfg_interval))
    return torch.softmax(filter_logits(logits, config.temperature, config.top_k, config.top_p), dim=-1)[0].double()


@torch.inference_mode()
def decode_image(gpt, label: int, seed: int, config: DecodeConfig, L: int, T: int, W: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    H = Wd = gpt.grid_size
    N, T0, V = H * Wd, gpt.config.cls_token_num, gpt.config.vocab_size
    T = min(T, L)
    nodes = sum(W ** t for t in range(1, T + 1)) + L - T  # draft-fed queries a pass at most
    S = T0 + N + nodes  # slots: prefix, cells (decided tokens only), then this pass's draft nodes
    cfg = config.uses_cfg
    cache = gpt.new_cache(2 if cfg else 1, S, "cpu")  # zeros: a slot is read only once written
    prefix = condition_prefix(gpt, torch.tensor([label]), config).embeddings
    mask = torch.arange(T0)[:, None] >= torch.arange(S)[None]
    B = 2 if cfg else 1
    logits = gpt(prefix, torch.arange(T0).expand(B, -1), torch.arange(T0), mask[None], cache)
    x = torch.zeros(N + L + 1, dtype=torch.int64)  # decided tokens, then the row's drafts
    q = torch.zeros(N + L + 1, V, dtype=torch.float64)
    x[0] = sample_probs(probs_of(logits[:, -1:], torch.tensor([0]), config), rand(1))[0]
    n, cached, held = 1, 0, 0  # decided tokens, of them in the cache, drafts after them
    out = {"passes": 1, "row_passes": 0, "row_gain": 0, "reached": torch.zeros(L + 1), "kept": torch.zeros(L + 1),
           "sibling_wins": 0}

    def start():  # new drafts "above" (row 0: its left token), up to L, inside the row
        nonlocal held
        col = n % Wd
        target = 0 if col == 0 else min(L, Wd - col)
        for o in range(held, target):
            c = n + o
            x[c] = x[c - Wd] if c >= Wd else x[n + held - 1]
            q[c] = torch.nn.functional.one_hot(x[c], V).double()
        held = target

    start()
    while n < N:
        col = n % Wd
        drafts = held if col else 0
        depths = min(drafts + 1, Wd - col) if col else 1
        Tn = min(T, drafts)
        draft, dq = x[n:n + L].clone(), q[n:n + L].clone()
        sib, ok = siblings(dq[:T], draft[:T], rand(T, W - 1))
        cands = torch.cat([draft[:T, None], sib], -1)
        valid = torch.cat([torch.ones(T, 1, dtype=torch.bool), ok], -1) & (torch.arange(T) < Tn)[:, None]
        # queries: decided tokens cached..n-1 (the last is the root), then the draft nodes: tree paths (depth
        # 1..Tn, every candidate), then the chain after candidate 0's path (depths Tn+1..drafts)
        ids, pos, slots, parent = [], [], [], []
        for i in range(cached, n):
            ids.append(int(x[i])), pos.append(T0 + i), slots.append(T0 + i), parent.append(None)
        root = len(ids) - 1
        level_nodes = [[root]]  # query index of each path, per level
        for t in range(Tn):
            level = []
            for p_i in level_nodes[-1]:
                for k in range(W):
                    if not bool(valid[t, k]):
                        continue
                    ids.append(int(cands[t, k])), pos.append(T0 + n + t), parent.append(p_i)
                    slots.append(T0 + N + len(ids) - 1 - (n - cached))
                    level.append(len(ids) - 1)
            level_nodes.append(level)
        chain_nodes, last = [], level_nodes[Tn][0]  # candidate 0's path goes on
        for t in range(Tn, drafts):
            ids.append(int(draft[t])), pos.append(T0 + n + t), parent.append(last)
            slots.append(T0 + N + len(ids) - 1 - (n - cached))
            last = len(ids) - 1
            chain_nodes.append(last)
        Q = len(ids)
        m = torch.zeros(Q, S, dtype=torch.bool)
        m[:, :T0 + n] = torch.arange(T0 + n)[None] <= torch.tensor(pos)[:, None]
        for i in range(root + 1, Q):  # a draft node reads its ancestors (and itself)
            j = i
            while j is not None and j > root:
                m[i, slots[j]] = True
                j = parent[j]
        slot_t, pos_t = torch.tensor(slots), torch.tensor(pos)
        xin = gpt.embed_tokens(torch.tensor(ids)[None].expand(B, -1))
        logits = gpt(xin, pos_t.expand(B, -1), slot_t, m[None], cache)
        cells = (pos_t - T0 + 1).clamp(max=N - 1)  # the cell each query predicts
        p = probs_of(logits, cells, config)  # (Q, V)
        # node distributions in verify_tree's layout; invalid siblings' paths get a placeholder never read
        levels = []
        for t in range(T + 1):
            lv = torch.full((W ** t, V), 1.0 / V, dtype=torch.float64)
            if t <= Tn:
                paths = [()]
                for d in range(t):
                    paths = [pp + (k,) for pp in paths for k in range(W) if bool(valid[d, k])]
                for path, qi in zip(paths, level_nodes[t]):
                    idx = 0
                    for k in path:
                        idx = idx * W + k
                    lv[idx] = p[qi]
            levels.append(lv[None])
        # verify_tree's chain: depths T+2..L+1 along candidate 0's path (it runs only when Tn = T)
        chain_p = [p[qi] for qi in chain_nodes]
        chain_p += [torch.full((V,), 1.0 / V, dtype=torch.float64)] * (L - T - len(chain_p))
        chain = torch.stack(chain_p)[None] if L > T else torch.zeros(1, 0, V, dtype=torch.float64)
        res = verify_tree(levels, chain, draft[None], dq[None], cands[None], valid[None], torch.tensor([drafts]),
                          torch.tensor([depths]), rand(1, L), rand(1, T, W - 1), rand(1, L), rand(1, L + 1))
        k = int(res["n"][0])
        # the 0-path distributions of the redrafted cells (rule 3): level nodes then the chain
        zero_path = torch.cat([lv[:, :1] for lv in levels] + [chain], 1)[0]
        for t in range(depths):
            x[n + t] = res["tokens"][0, t]
            if t >= k:
                q[n + t] = zero_path[t]
        out["passes"] += 1
        if col:
            out["row_passes"] += 1
            out["row_gain"] += k
            out["reached"][:min(k, drafts)] += 1  # depths decided that held a draft
            out["kept"][:L] += res["accepted"][0].float()
            out["sibling_wins"] += int((res["winner"][0] > 0).sum())
        cached = n  # every decided token before this pass's is now in the cache
        n += k
        held = depths - k if col else 0
        start()
    return out


def main(args):
    check_positive(num_images=args.num_images, draft_len=args.draft_len, widths=args.widths, tree_depth=args.tree_depth)
    check_input_file(args.gpt_ckpt, "--gpt-ckpt", "checkpoint file")
    config = DecodeConfig(cfg_scale=args.cfg_scale, temperature=args.temperature)
    gpt = Transformer(gpt_config("demo"), grid_size=DEMO.image_size).eval()
    load_gpt_weights(gpt, args.gpt_ckpt, "demo")
    torch.set_num_threads(1)
    for W in args.widths:
        runs = [decode_image(gpt, i % 10, args.seed * 1000 + i, config, args.draft_len, args.tree_depth - 1, W)
                for i in range(args.num_images)]
        passes = [r["passes"] for r in runs]
        reached, kept = sum(r["reached"] for r in runs), sum(r["kept"] for r in runs)
        rate = sum(r["row_gain"] for r in runs) / sum(r["row_passes"] for r in runs)
        accept = " ".join(f"{a:.2f}" for a in (kept / reached.clamp(min=1))[:6].tolist())
        print(f"W {W} depth {args.tree_depth if W > 1 else 1} L {args.draft_len}: passes per image "
              f"{statistics.mean(passes):.1f} (min {min(passes)}, max {max(passes)}), tokens per row-pass {rate:.2f}, "
              f"accepted draft per depth 1..6 {accept}, sibling wins per image "
              f"{statistics.mean(r['sibling_wins'] for r in runs):.1f}", flush=True)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--num-images", type=int, default=10, help="images (labels i %% 10)")
    p.add_argument("--seed", type=int, default=13, help="image i uses generator seed 1000 * seed + i")
    p.add_argument("--draft-len", type=int, default=16, help="row-draft length L")
    p.add_argument("--widths", type=int, nargs="+", default=[1, 3], help="tree widths W (1: the chain)")
    p.add_argument("--tree-depth", type=int, default=3, help="tree depth D: W candidates at the first D - 1 drafts")
    p.add_argument("--cfg-scale", type=float, default=DEMO.cfg_scale, help="CFG scale")
    p.add_argument("--temperature", type=float, default=DEMO.temperature, help="sampling temperature")
    p.add_argument("--gpt-ckpt", default=DEMO.gpt_ckpt, help="demo GPT checkpoint")
    return p


if __name__ == "__main__":
    sys.exit(run_main(main, build_parser().parse_args()))
