"""The exact sampler checked at scale on the demo model: NTP against NTP + row drafts (an exact sampler of
NTP's distribution, common/zipar/row_drafts.py), the same labels (i % 10) and independent seeds, so the two
sample sets are independent draws of what should be one distribution.

Per setting: digits-FID and class accuracy with bootstrap spreads (images resampled with replacement)
and split halves; between settings: a permutation test on the digits-FID difference, a chi-square test
on the classifier's predicted classes, KS tests on per-image token statistics (background share, mean
code, distinct codes, changes along rows and down columns) and a permutation test on the per-image code
histograms (distance between the two sets' mean histograms, scaled by the pooled per-code spread).

Generation is resumable and interleaved (a chunk of one setting, then of the other), so a run cut
short still holds the two settings at equal sizes; a second worker with --reverse fills the folder
from the other end; `--analyze` scores the chunks both settings hold.

python -m benchmarks.exactness_at_scale --run-dir samples/exactness --num-samples 2000
python -m benchmarks.exactness_at_scale --run-dir samples/exactness --analyze --out-md samples/exactness/report.md
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmarks.tradeoff import add_run_args, check_run_args
from common.cli import HelpFormatter, run_main
from common.path_checks import check_output_dir, check_output_file
from common.metrics import feature_stats, frechet_distance
from common.zipar.config import DecodeConfig
from common.zipar.sampling import image_seeds
from llamagen.checkpoint import load_gpt_weights
from llamagen.demo_classifier import DigitScorer
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.generate import generate
from llamagen.model import Transformer, gpt_config
from llamagen.presets import DEMO


def settings(args) -> dict[str, tuple[DecodeConfig, int]]:
    """name -> (config, global seed): NTP and NTP + coupled row drafts, on independent seeds."""
    common = dict(window=None, cfg_scale=args.cfg_scale, temperature=args.temperature)
    return {"ntp": (DecodeConfig(**common), args.seed),
            "drafts": (DecodeConfig(**common, draft_len=args.draft_len, draft_tree_width=args.draft_tree_width,
                                    draft_tree_depth=args.draft_tree_depth), args.draft_seed)}


def folder(args, name: str) -> str:
    """A setting's chunk folder: the drafted samples with a candidate tree apart from the chain's."""
    tree = name == "drafts" and args.draft_tree_width > 1
    return f"{name}-tree{args.draft_tree_width}x{args.draft_tree_depth}" if tree else name


def generate_chunks(args) -> None:
    """Write run_dir/<setting>/<first index>.pt chunks (tokens, labels, passes), skipping chunks already there."""
    gpt = Transformer(gpt_config("demo"), grid_size=DEMO.image_size).eval()
    load_gpt_weights(gpt, args.gpt_ckpt, "demo")
    run = Path(args.run_dir)
    starts = range(0, args.num_samples, args.batch_size)
    for lo in reversed(starts) if args.reverse else starts:
        for name, (config, seed) in settings(args).items():
            path = run / folder(args, name) / f"{lo:06d}.pt"
            if path.exists():
                continue
            idx = torch.arange(lo, min(lo + args.batch_size, args.num_samples))
            labels = idx % gpt.config.num_classes
            start = time.perf_counter()
            with torch.inference_mode():
                r = generate(gpt, labels, image_seeds(seed, idx), config)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # a chunk appears whole or not at all
            torch.save({"tokens": r.tokens, "labels": labels, "passes": torch.tensor(r.image_passes),
                        "tokens_per_row_pass": r.tokens_per_row_pass}, tmp)
            tmp.rename(path)
            print(f"{name} {lo}..{lo + len(idx) - 1}: {time.perf_counter() - start:.0f} s, "
                  f"{np.mean(r.image_passes):.1f} passes", file=sys.stderr, flush=True)


def load(run: Path, name: str, names: list[str]) -> dict:
    chunks = [torch.load(run / name / n) for n in names]
    out = {k: torch.cat([c[k] for c in chunks]) for k in ("tokens", "labels", "passes")}
    out["tokens_per_row_pass"] = [x for c in chunks for x in (c["tokens_per_row_pass"] or [])]
    return out


def token_statistics(tokens: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image scalars of (n, H, W) codes; code 0 is the demo's background."""
    t = tokens.long()
    return {"background share": (t == 0).flatten(1).float().mean(1).numpy(),
            "mean code": t.flatten(1).float().mean(1).numpy(),
            "distinct codes": torch.tensor([len(torch.unique(x)) for x in t]).float().numpy(),
            "changes along rows": (t[:, :, 1:] != t[:, :, :-1]).flatten(1).float().mean(1).numpy(),
            "changes down columns": (t[:, 1:] != t[:, :-1]).flatten(1).float().mean(1).numpy()}


def fid(scorer, feats: np.ndarray) -> float:
    mu, sigma = feature_stats(feats)
    return frechet_distance(mu, sigma, scorer.real_mu, scorer.real_sigma)


def histogram_distance(h: np.ndarray, in_a: np.ndarray) -> float:
    """Squared distance of the two groups' mean code histograms, each code scaled by its pooled variance."""
    diff = h[in_a].mean(0) - h[~in_a].mean(0)
    return float((diff ** 2 / (h.var(0) + 1e-12)).sum())


def analyze(args) -> str:
    run, rng = Path(args.run_dir), np.random.default_rng(0)
    scorer = DigitScorer.load(args.classifier)
    tokenizer = IntensityTokenizer.load(args.tokenizer)
    # the chunks every setting holds (workers going both ways may stop at different chunks)
    names = sorted(set.intersection(*({p.name for p in (run / folder(args, name)).glob("*.pt")}
                                      for name in settings(args))))
    sets = {name: load(run, folder(args, name), names) for name in settings(args)}
    n = min(len(s["labels"]) for s in sets.values())
    if n < 4:
        raise ValueError(f"the run folder {run} holds {n} samples of a setting; need at least 4")
    feats, preds, rows, right = {}, {}, [], {}
    for name, s in sets.items():
        assert torch.equal(s["labels"][:n], sets["ntp"]["labels"][:n])  # the same labels, image by image
        grey = tokenizer.codes_to_grey(s["tokens"][:n].flatten(1), tuple(s["tokens"].shape[1:]))
        with torch.no_grad():
            f = scorer.classifier.features(grey.float())
            preds[name] = scorer.classifier.head(f).argmax(-1).numpy()
        feats[name] = f.double().numpy()
        correct = preds[name] == s["labels"][:n].numpy()
        right[name] = int(correct.sum())
        boot = [rng.integers(0, n, n) for _ in range(args.bootstrap)]
        fids = [fid(scorer, feats[name][b]) for b in boot]
        halves = [fid(scorer, feats[name][h]) for h in np.array_split(np.arange(n), 2)]
        rows.append((name, n, float(s["passes"][:n].double().mean()), fid(scorer, feats[name]), np.std(fids),
                     halves, correct.mean(), np.std([correct[b].mean() for b in boot]),
                     np.mean(s["tokens_per_row_pass"][:n]) if s["tokens_per_row_pass"] else 1.0))
    a, b = feats["ntp"], feats["drafts"]
    observed = fid(scorer, b) - fid(scorer, a)
    pooled, perm = np.concatenate([a, b]), []
    for _ in range(args.permutations):
        order = rng.permutation(2 * n)
        perm.append(fid(scorer, pooled[order[n:]]) - fid(scorer, pooled[order[:n]]))
    p_fid = (1 + sum(abs(x) >= abs(observed) for x in perm)) / (1 + len(perm))
    # how far apart two digits-FIDs of --small-n samples each fall when both sets come from one distribution:
    # pairs of sets drawn (with replacement) from the pooled samples
    small = [abs(fid(scorer, pooled[rng.integers(0, 2 * n, args.small_n)])
                 - fid(scorer, pooled[rng.integers(0, 2 * n, args.small_n)])) for _ in range(args.bootstrap)]
    table = np.stack([np.bincount(preds[k], minlength=10) for k in ("ntp", "drafts")])
    p_pred = stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue
    acc_test = stats.chi2_contingency([[right[k], n - right[k]] for k in ("ntp", "drafts")])
    ta, tb = (token_statistics(sets[k]["tokens"][:n]) for k in ("ntp", "drafts"))
    V = int(max(s["tokens"].max() for s in sets.values())) + 1
    hist = np.concatenate([np.stack([np.bincount(x, minlength=V) for x in sets[k]["tokens"][:n].flatten(1).numpy()])
                           for k in ("ntp", "drafts")]) / sets["ntp"]["tokens"][0].numel()
    in_a = np.arange(2 * n) < n
    h_obs = histogram_distance(hist, in_a)
    h_perm = [histogram_distance(hist, rng.permutation(in_a)) for _ in range(args.permutations)]
    p_hist = (1 + sum(x >= h_obs for x in h_perm)) / (1 + len(h_perm))

    tree = f", tree K {args.draft_tree_width} D {args.draft_tree_depth}" if args.draft_tree_width > 1 else ""
    out = [f"Demo model, NTP (seeds ({args.seed}, i)) against NTP + coupled row drafts L = {args.draft_len}{tree} "
           f"(seeds ({args.draft_seed}, i)), {n} samples each, labels i % 10, cfg {args.cfg_scale}, temperature "
           f"{args.temperature}. Spread: std over {args.bootstrap} bootstrap resamples of the images; halves: "
           "digits-FID of the first and second half (by index).\n",
           "| setting | samples | passes | tokens/row-pass | digits-FID | halves | class accuracy |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| {name} | {k} | {passes:.1f} | {rate:.2f} | {f:.1f} ± {fs:.1f} | {h[0]:.1f} / {h[1]:.1f} | "
            f"{acc:.3f} ± {accs:.3f} |" for name, k, passes, f, fs, h, acc, accs, rate in rows]
    out += ["", "| test (NTP vs NTP + drafts) | statistic | p |", "|---|---|---|",
            f"| digits-FID difference, permutation ({args.permutations}) | {observed:+.1f} | {p_fid:.3f} |",
            f"| \\|digits-FID difference\\| of two {args.small_n}-sample sets of the pooled samples: median / 95th "
            f"percentile | {np.median(small):.1f} / {np.percentile(small, 95):.1f} | |",
            f"| class accuracy, chi-square (2 x 2) | {acc_test.statistic:.2f} | {acc_test.pvalue:.3f} |",
            f"| predicted classes, chi-square (2 x 10) | {stats.chi2_contingency(table[:, table.sum(0) > 0]).statistic:.1f}"
            f" | {p_pred:.3f} |",
            f"| code histograms per image, permutation ({args.permutations}) | {h_obs:.4f} | {p_hist:.3f} |"]
    for key in ta:
        ks = stats.ks_2samp(ta[key], tb[key])
        out.append(f"| {key}, KS (means {ta[key].mean():.4f} / {tb[key].mean():.4f}) | {ks.statistic:.4f} | "
                   f"{ks.pvalue:.3f} |")
    return "\n".join(out) + "\n"


def main(args):
    check_run_args(args)
    check_output_dir(args.run_dir, "--run-dir")
    if args.out_md:
        check_output_file(args.out_md, "--out-md", (".md",), "a Markdown report")
    if not args.analyze:
        generate_chunks(args)
    report = analyze(args)
    if args.out_md:
        Path(args.out_md).write_text(report)
    print(report)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_run_args(p)
    p.set_defaults(num_samples=2000, groups=2, seed=100)
    p.add_argument("--draft-seed", type=int, default=200, help="global seed of the drafted samples (independent of --seed)")
    p.add_argument("--draft-len", type=int, default=8, help="row-draft length L of NTP + drafts")
    p.add_argument("--draft-tree-width", type=int, default=1,
                   help="candidates per depth of the drafts' tree (1: the chain, as in the published run)")
    p.add_argument("--draft-tree-depth", type=int, default=3, help="the tree's depth D (with a width above 1)")
    p.add_argument("--cfg-scale", type=float, default=DEMO.cfg_scale, help="CFG scale (the demo CLI default)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--bootstrap", type=int, default=300, help="bootstrap resamples for the spreads")
    p.add_argument("--permutations", type=int, default=500, help="permutations of each two-sample permutation test")
    p.add_argument("--small-n", type=int, default=500, help="set size of the digits-FID noise check (the frontier's)")
    p.add_argument("--run-dir", required=True, help="folder of the generated chunks (resumed if it holds some)")
    p.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=False,
                   help="only score what --run-dir holds (the settings cut to the smaller one's size)")
    p.add_argument("--out-md", default=None, help="also write the report here (.md)")
    p.add_argument("--reverse", action=argparse.BooleanOptionalAction, default=False,
                   help="generate the chunks from the last one back (a second worker beside a forward one)")
    return p


def cli(argv=None) -> int:
    return run_main(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
