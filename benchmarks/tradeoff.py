"""Quality vs forward passes on the demo model: NTP, fixed and adaptive windows with every row-opening
placeholder policy (common/zipar/placeholder.py), the paper code's schedule (compat="official"), and
speculative Jacobi drafting along rows (common/zipar/row_drafts.py) alone ("SJD": NTP + drafts) and with
fixed and adaptive windows, all with the same labels and seeds (the CPU analogue of the ZipAR
paper's Figure 6).

Per setting: mean passes per image, reduction vs NTP, seconds, class accuracy and digits-FID under
the demo's digit classifier, and paired agreement (fraction of tokens equal to the NTP sample of the
same seed). Spread: the std of each metric over --groups (5) equal groups of the samples (by index).

python -m benchmarks.tradeoff --num-samples 500                     # into a new runs/tradeoff-<time>/
python -m benchmarks.tradeoff --num-samples 500 --update-results    # the committed benchmarks/results/
"""
import argparse
import csv
import math
import statistics
import sys
import time

import torch

from benchmarks.outputs import add_output_args, resolve_outputs
from common.atomic import atomic_path, write_csv_atomic, write_text_atomic
from common.cli import (HelpFormatter, add_flag, check_input_file, check_output_file, check_positive,
                        run_main, set_threads)
from common.zipar.config import DRAFT_COUPLINGS, DRAFT_INITS, DecodeConfig
from common.metrics import paired_agreement
from common.zipar.sampling import image_seeds
from common.zipar.window import FIRST_ROW_RULES, first_row_rule
from llamagen.checkpoint import load_gpt_weights
from llamagen.demo_classifier import DigitScorer
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.generate import generate, layout_for
from llamagen.model import Transformer, gpt_config
from llamagen.presets import DEMO, DEMO_DIR

COLUMNS = ["setting", "kind", "placeholder", "first_row", "window", "passes_mean", "pass_reduction", "seconds",
           "accuracy", "accuracy_std", "digits_fid", "digits_fid_std", "agreement", "agreement_std", "accepted_window",
           "rejections", "draft_len", "draft_init", "tokens_per_row_pass", "row_tokens_per_pass", "draft_rejections",
           "frontier_fid", "frontier_accuracy", "beaten_by"]
KINDS = ("ntp", "fixed", "adaptive", "official", "sjd", "fixed+sjd", "adaptive+sjd")


def settings(args) -> list[tuple[str, str, DecodeConfig]]:
    """Every setting, NTP first (the agreement reference); names say kind, window, placeholder, first-row rule."""
    common = dict(cfg_scale=args.cfg_scale, temperature=args.temperature)
    out = [("NTP", "ntp", DecodeConfig(window=None, **common))]

    def zipar(kind, w, p, rule, **extra):
        return (f"{kind} {w} {p} {rule}", kind,
                DecodeConfig(window=w, adaptive=kind == "adaptive", placeholder=p, first_row=rule, **common, **extra))
    for rule, policies in (("serial", args.placeholders), ("early", args.early_placeholders)):
        if rule in args.first_rows:
            for kind, windows in (("fixed", args.windows), ("adaptive", args.adaptive_windows)):
                out += [zipar(kind, w, p, rule) for p in policies for w in windows]
    # other placeholders, under the layout's default first-row rule (serial for the demo)
    out += [zipar("fixed", w, p, "serial") for p in args.extra_placeholders for w in args.placeholder_windows
            if p not in args.placeholders or "serial" not in args.first_rows or w not in args.windows]
    out += [(f"official {w}", "official", DecodeConfig(window=w, compat="official", **common)) for w in args.compat_windows]
    # speculative Jacobi drafting along rows (common/zipar/row_drafts.py): alone (NTP + drafts) and with ZipAR
    p = args.draft_placeholder
    for init, coupling in [(i, c) for c in args.draft_couplings for i in args.draft_inits]:
        tag = ("" if init == "above" else f" {init}") + ("" if coupling == "maximal" else f" {coupling}")
        for L in args.draft_lens:
            drafts = dict(draft_len=L, draft_init=init, draft_coupling=coupling)
            if "off" in args.draft_ahead:
                out.append((f"SJD L={L}{tag}", "sjd", DecodeConfig(window=None, **drafts, **common)))
            for ahead in args.draft_ahead:  # drafting ahead needs a window < W: ZipAR + drafts only
                more = dict(drafts, draft_ahead=ahead == "on")
                out += [(f"{name} + SJD L={L}{tag}{' ahead' if ahead == 'on' else ''}", f"{kind}+sjd", config)
                        for kind in args.draft_kinds for w in args.draft_windows
                        for name, _, config in [zipar(kind, w, p, "serial", **more)]]
    if args.part:
        k, n = args.part
        out = out[:1] + out[1:][k - 1::n]  # round robin; every part runs NTP, the agreement reference
    return out


def run_setting(gpt, config, labels, seeds, batch_size):
    tokens, passes, windows, rejections, drafts = [], [], [], [], {"rate": [], "rows": [], "rejections": []}
    start = time.perf_counter()
    for lo in range(0, len(labels), batch_size):
        r = generate(gpt, labels[lo:lo + batch_size], seeds[lo:lo + batch_size], config)
        tokens.append(r.tokens)
        passes += r.image_passes
        if r.accepted_windows is not None:
            windows += [w for image in r.accepted_windows for w in image]
            rejections += r.rejections
        if r.tokens_per_row_pass is not None:
            drafts["rate"] += r.tokens_per_row_pass
            drafts["rows"] += r.row_tokens_per_pass
            drafts["rejections"] += r.draft_rejections
    return torch.cat(tokens), passes, time.perf_counter() - start, windows, rejections, drafts


def draft_columns(config, drafts) -> dict:
    """Row-draft telemetry: mean tokens per row-pass (all rows, and per row) and rejections per image."""
    if not drafts["rate"]:
        return {"draft_len": config.draft_len, "draft_init": "", "tokens_per_row_pass": "", "row_tokens_per_pass": "",
                "draft_rejections": ""}
    per_row = torch.tensor(drafts["rows"]).mean(0)
    return {"draft_len": config.draft_len, "draft_init": config.draft_init,
            "tokens_per_row_pass": statistics.mean(drafts["rate"]),
            "row_tokens_per_pass": " ".join(f"{x:.2f}" for x in per_row.tolist()),
            "draft_rejections": statistics.mean(drafts["rejections"])}


def score(scorer, tokenizer, tokens, labels, reference, num_groups):
    grey = tokenizer.codes_to_grey(tokens.flatten(1), tuple(tokens.shape[1:]))
    whole = scorer.score(grey, labels)
    agree = paired_agreement(tokens, reference)
    groups = torch.arange(len(labels)).chunk(num_groups)
    per_group = [scorer.score(grey[g], labels[g]) for g in groups]
    std = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    return {"accuracy": whole["accuracy"], "accuracy_std": std([g["accuracy"] for g in per_group]),
            "digits_fid": whole["digits_fid"], "digits_fid_std": std([g["digits_fid"] for g in per_group]),
            "agreement": agree.mean().item(), "agreement_std": std([agree[g].mean().item() for g in groups])}


OUTPUTS = {"--out-md": "tradeoff.md", "--out-csv": "tradeoff.csv", "--out-png": "tradeoff.png"}


@torch.inference_mode()
def main(args) -> list[dict]:
    check_run_args(args)
    resolve_outputs(args, run_name("tradeoff", args), OUTPUTS)
    check_outputs(args, md=args.out_md, csv=args.out_csv, png=args.out_png)
    configs = settings(args)  # every DecodeConfig validated before the model loads
    gpt = Transformer(gpt_config("demo"), grid_size=DEMO.image_size).eval()
    for _, _, config in configs:
        config.check_grid(layout_for(gpt).cols)  # e.g. a --draft-lens longer than a row, before any sampling
    load_gpt_weights(gpt, args.gpt_ckpt, "demo")
    tokenizer = IntensityTokenizer.load(args.tokenizer)
    scorer = DigitScorer.load(args.classifier)
    n = args.num_samples
    labels = torch.arange(n) % gpt.config.num_classes
    seeds = image_seeds(args.seed, torch.arange(n))
    ntp_passes = layout_for(gpt).num_cells
    rows, reference = [], None
    for name, kind, config in configs:
        tokens, passes, seconds, windows, rejections, drafts = run_setting(gpt, config, labels, seeds, args.batch_size)
        reference = tokens if reference is None else reference  # NTP runs first
        passes_mean = statistics.mean(passes)
        rule = "" if kind in ("ntp", "sjd") else first_row_rule(layout_for(gpt), config.first_row, config.compat)
        rows.append({"setting": name, "kind": kind, "placeholder": "" if kind == "ntp" else config.placeholder,
                     "first_row": rule,
                     "window": config.window or gpt.grid_size,
                     "passes_mean": passes_mean, "pass_reduction": 1 - passes_mean / ntp_passes, "seconds": seconds,
                     **score(scorer, tokenizer, tokens, labels, reference, args.groups),
                     "accepted_window": statistics.mean(windows) if windows else "",
                     "rejections": statistics.mean(rejections) if rejections else "",
                     **draft_columns(config, drafts)})
        print(f"{name}: {passes_mean:.1f} passes, {seconds:.1f}s", file=sys.stderr)
        write_csv(mark_frontier(rows), args.out_csv)  # so far: an interrupted run keeps its finished settings
    write_outputs(rows, args)
    return rows


# columns that --from-csv reads as numbers (mark_frontier and the table compare and format them)
NUMBERS = ("window", "passes_mean", "pass_reduction", "seconds", "accuracy", "accuracy_std", "digits_fid",
           "digits_fid_std", "agreement", "agreement_std")


def read_rows(paths) -> list[dict]:
    """The rows of earlier runs' CSVs (e.g. runs made side by side, one per core, or --part runs), the first
    of each setting kept, in the table's order. A file that is not such a table (other columns, not text,
    a kind or number it cannot hold) is refused with its name."""
    def value(text):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text
    rows, seen = [], set()
    for path in paths:
        check_input_file(path, "--from-csv", "CSV table")
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise ValueError(f"--from-csv {path} is not a table of this benchmark: it lacks the columns "
                                     f"{', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}")
                for row in reader:
                    check_row(row, path, reader.line_num)
                    if row["setting"] not in seen:
                        seen.add(row["setting"])
                        rows.append({k: v if k in ("setting", "row_tokens_per_pass") else value(v)
                                     for k, v in row.items()})
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"--from-csv {path} is not a CSV text table: {type(e).__name__}: {e}") from None
    return rows


def check_row(row: dict, path, line: int) -> None:
    """A row --from-csv can merge: a known kind and first-row rule, numbers where the table needs them."""
    if row["kind"] not in KINDS or row["first_row"] not in ("serial", "early", ""):
        raise ValueError(f"--from-csv {path} line {line}: kind {row['kind']!r} / first_row {row['first_row']!r} "
                         f"is none of {', '.join(KINDS)} / serial, early")
    for column in NUMBERS:
        try:
            float(row[column])
        except (TypeError, ValueError):
            raise ValueError(f"--from-csv {path} line {line}: {column} {row[column]!r} is not a number") from None


def table_order(row) -> tuple:
    """Kind, then placeholder, first-row rule, draft length, window: the order of every table and merge."""
    rule = ("serial", "early", "").index(str(row["first_row"]))
    return (KINDS.index(row["kind"]), str(row["placeholder"]), rule, row["draft_len"], row["window"])


def mark_frontier(rows) -> list[dict]:
    """Sorted rows, each marked with whether it is on the Pareto frontier of passes vs digits-FID (lower
    is better) and of passes vs accuracy (higher is better): no other setting is at least as good on both
    axes and better on one. Point estimates; the table's spreads say which differences are noise."""
    rows = sorted(rows, key=table_order)

    def on_frontier(r, better):
        return not any(o is not r and o["passes_mean"] <= r["passes_mean"] and better(o, r, True)
                       and (o["passes_mean"] < r["passes_mean"] or better(o, r, False)) for o in rows)
    for r in rows:
        r["beaten_by"] = beaten_beyond_spread(r, rows)
        r["frontier_fid"] = "yes" if on_frontier(
            r, lambda o, r, eq: o["digits_fid"] <= r["digits_fid"] if eq else o["digits_fid"] < r["digits_fid"]) else ""
        r["frontier_accuracy"] = "yes" if on_frontier(
            r, lambda o, r, eq: o["accuracy"] >= r["accuracy"] if eq else o["accuracy"] > r["accuracy"]) else ""
    return rows


def beaten_beyond_spread(row, rows) -> str:
    """The cheapest setting with at most `row`'s passes whose digits-FID is lower by more than the two
    spreads combined (sqrt(s1^2 + s2^2)); "" if none."""
    beaten = [o for o in rows if o is not row and o["passes_mean"] <= row["passes_mean"]
              and row["digits_fid"] - o["digits_fid"] > math.hypot(row["digits_fid_std"], o["digits_fid_std"])]
    return min(beaten, key=lambda o: (o["passes_mean"], o["digits_fid"]))["setting"] if beaten else ""


def markdown(rows, args) -> str:
    merged = (f" Merged from {len(args.from_csv)} runs made side by side, one per core (seconds compare within a "
              "run best).") if args.from_csv else ""
    head = (f"Demo model, {args.num_samples} samples per setting (labels i % 10, seeds (seed {args.seed}, i)), "
            f"cfg {args.cfg_scale}, temperature {args.temperature}; spread = std over {args.groups} groups of "
            f"{args.num_samples // args.groups}. Setting names: kind, window, placeholder, first-row rule (serial: "
            "row 1 opens when row 0 is complete; early: after w tokens of row 0). official = compat='official' "
            "(serial, placeholder above). F: on the Pareto frontier of passes vs digits-FID; A: of passes vs "
            "accuracy. Beaten by: the cheapest setting with at most as many passes whose digits-FID is lower by more "
            f"than the two spreads combined.{merged}\n\n"
            "| setting | passes | reduction | seconds | class accuracy | digits-FID | agreement with NTP "
            "| accepted window | rejections/image | tokens/row-pass | draft rejections/image | frontier | beaten by |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    fmt = lambda x: f"{x:.2f}" if isinstance(x, float) else str(x)  # noqa: E731
    marks = lambda r: "".join(m for m, key in (("F", "frontier_fid"), ("A", "frontier_accuracy")) if r[key])  # noqa: E731
    return head + "".join(
        f"| {r['setting']} | {r['passes_mean']:.1f} | {100 * r['pass_reduction']:.1f}% | {r['seconds']:.1f} | "
        f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | {r['digits_fid']:.1f} ± {r['digits_fid_std']:.1f} | "
        f"{r['agreement']:.3f} ± {r['agreement_std']:.3f} | {fmt(r['accepted_window'])} | {fmt(r['rejections'])} | "
        f"{fmt(r['tokens_per_row_pass'])} | {fmt(r['draft_rejections'])} | {marks(r)} | {r['beaten_by']} |\n"
        for r in rows)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    colors = {("fixed", "above"): "tab:blue", ("adaptive", "above"): "tab:orange", ("fixed", "mean"): "tab:green",
              ("fixed", "token:0"): "tab:purple", ("fixed", "left"): "tab:gray", ("adaptive", "mean"): "tab:gray",
              ("fixed", "above-or-mean"): "tab:red", ("adaptive", "above-or-mean"): "tab:olive"}
    family = lambda r: (r["kind"], r["placeholder"], r["first_row"], r["draft_init"])  # noqa: E731
    for metric, ax, label, frontier in (("digits_fid", axes[0], "digits-FID (lower is better)", "frontier_fid"),
                                        ("accuracy", axes[1], "class accuracy (higher is better)", "frontier_accuracy")):
        for kind, policy, rule, init in sorted({family(r) for r in rows if r["kind"] != "ntp"}):
            pts = sorted((r["passes_mean"], r[metric], r[f"{metric}_std"]) for r in rows
                         if family(r) == (kind, policy, rule, init))
            xs, ys, es = zip(*pts)
            marker = {"fixed": "o", "adaptive": "s", "official": "^", "sjd": "D", "fixed+sjd": "P",
                      "adaptive+sjd": "X"}[kind]
            line = "--" if rule == "early" else "-"
            color = {"official": "black", "sjd": "tab:brown", "fixed+sjd": "tab:cyan",
                     "adaptive+sjd": "tab:pink"}.get(kind, colors.get((kind, policy), "tab:gray"))
            name = {"official": "official (serial, above)", "sjd": "NTP + row drafts"}.get(
                kind, f"{kind} {policy} {rule}".strip())
            ax.errorbar(xs, ys, yerr=es, fmt=marker + line, color=color, label=name, capsize=2, markersize=4,
                        alpha=0.55 if rule == "early" else 1.0)
        for r in rows:
            if r["kind"] == "ntp":
                ax.errorbar([r["passes_mean"]], [r[metric]], yerr=[r[f"{metric}_std"]], fmt="k*", markersize=12,
                            label="NTP")
        best = sorted((r["passes_mean"], r[metric]) for r in rows if r[frontier])
        if best:
            ax.step(*zip(*best), where="post", color="black", linewidth=2.5, alpha=0.25, label="Pareto frontier")
        ax.set_xlabel("forward passes per image")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("Demo model (24x24 tokens): quality vs forward passes; solid: serial first row, dashed: early")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def write_csv(rows, path):
    write_csv_atomic(path, rows, COLUMNS)


def write_outputs(rows, args):
    rows = mark_frontier(rows)
    write_text_atomic(args.out_md, markdown(rows, args))
    write_csv(rows, args.out_csv)
    with atomic_path(args.out_png) as tmp:
        plot(rows, tmp)
    print(markdown(rows, args))


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags every demo-model quality benchmark shares: samples, seeds, threads and the demo's files."""
    p.add_argument("--num-samples", type=int, default=500, help="images per setting (a multiple of --groups)")
    p.add_argument("--groups", type=int, default=5, help="equal groups of samples whose metric std is the spread")
    add_flag(p, "--batch-size", default=100)
    p.add_argument("--seed", type=int, default=0, help="global seed; image i uses seed (seed, i)")
    add_flag(p, "--threads", default=1, help="torch CPU threads (1: timings that hold up when the machine is shared)")
    p.add_argument("--gpt-ckpt", default=DEMO.gpt_ckpt, help="demo GPT checkpoint")
    p.add_argument("--tokenizer", default=DEMO.vq_ckpt, help="demo tokenizer spec")
    p.add_argument("--classifier", default=str(DEMO_DIR / "digit_classifier.pt"), help="digit classifier")


def check_run_args(args) -> None:
    """The demo-model benchmarks' shared flags (add_run_args), before any work; sets the thread count."""
    check_positive(num_samples=args.num_samples, groups=args.groups, batch_size=args.batch_size)
    if args.num_samples % args.groups or args.num_samples < 2 * args.groups:
        raise ValueError(f"--num-samples {args.num_samples} must be a multiple of --groups {args.groups} with at "
                         "least 2 samples a group (a digits-FID needs 2)")
    for flag, path, what in (("--gpt-ckpt", args.gpt_ckpt, "checkpoint file"), ("--tokenizer", args.tokenizer,
                             "tokenizer spec"), ("--classifier", args.classifier, "classifier checkpoint")):
        check_input_file(path, flag, what)
    for name in ("windows", "adaptive_windows", "placeholder_windows", "compat_windows", "draft_lens",
                 "draft_windows", "window"):
        if hasattr(args, name):
            check_positive(**{name: getattr(args, name)})
    set_threads(args)


def check_outputs(args, **paths) -> None:
    """--out-md, --out-csv, --out-png: writable files with their suffixes, before the run."""
    for kind, path in paths.items():
        check_output_file(path, f"--out-{kind}", (f".{kind}",), {"md": "a Markdown table", "csv": "a CSV table",
                                                                 "png": "the plot"}[kind])


def run_name(benchmark: str, args) -> str:
    """The default run folder's prefix: one per --part, so parts started together never share a folder."""
    return benchmark if args.part is None else f"{benchmark}-part{args.part[0]}of{args.part[1]}"


def part_arg(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 1/2), got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_run_args(p)
    p.add_argument("--cfg-scale", type=float, default=DEMO.cfg_scale, help="CFG scale (the demo CLI default)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--first-rows", nargs="*", default=list(FIRST_ROW_RULES), choices=FIRST_ROW_RULES,
                   help="first-row rules the fixed and adaptive windows run under (common/zipar/window.py)")
    p.add_argument("--placeholders", nargs="*", default=["above-or-mean", "above"],
                   help="row-opening placeholder policies of the fixed and adaptive curves with the serial first row "
                        "(common/zipar/placeholder.py)")
    p.add_argument("--early-placeholders", nargs="*", default=["above"],
                   help="placeholder policies of the fixed and adaptive curves with the early first row")
    p.add_argument("--windows", type=int, nargs="*", default=[2, 4, 6, 8, 10, 12, 14, 16, 20], help="fixed windows")
    p.add_argument("--adaptive-windows", type=int, nargs="*", default=[4, 8, 12, 16], help="adaptive w_min")
    # token:0 is the demo's background: 38% of the training digits' tokens, 97.6% of their last column
    p.add_argument("--extra-placeholders", nargs="*", default=["mean", "token:0"],
                   help="more placeholders, at --placeholder-windows, fixed windows, serial first row")
    p.add_argument("--placeholder-windows", type=int, nargs="*", default=[4, 8, 12, 16],
                   help="fixed windows of the --extra-placeholders")
    p.add_argument("--compat-windows", type=int, nargs="*", default=[4, 8, 12, 16],
                   help="windows for the paper code's schedule and mask (compat='official')")
    p.add_argument("--draft-lens", type=int, nargs="*", default=[8],
                   help="row-draft lengths L for NTP + drafts and ZipAR + drafts (common/zipar/row_drafts.py)")
    p.add_argument("--draft-windows", type=int, nargs="*", default=[16], help="windows combined with drafts")
    p.add_argument("--draft-kinds", nargs="*", default=["fixed", "adaptive"], choices=["fixed", "adaptive"],
                   help="window kinds combined with drafts (serial first row)")
    p.add_argument("--draft-inits", nargs="*", default=["above"], choices=DRAFT_INITS,
                   help="how new drafts start (common/zipar/row_drafts.py); each adds its own drafted settings")
    p.add_argument("--draft-couplings", nargs="*", default=["maximal"], choices=DRAFT_COUPLINGS,
                   help="how drafts are redrawn after a rejection (common/zipar/row_drafts.py); each adds its own settings")
    p.add_argument("--draft-ahead", nargs="*", default=["off"], choices=["off", "on"],
                   help="ZipAR + drafts without (off) and with (on) drafting ahead of the window (common/zipar/row_drafts.py)")
    p.add_argument("--draft-placeholder", default="above", help="placeholder policy of the ZipAR + drafts settings")
    p.add_argument("--part", type=part_arg, default=None, metavar="K/N",
                   help="run the K-th of N round-robin parts of the settings (each with NTP); merge with --from-csv")
    p.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                   help="run nothing: merge these tables (same --num-samples and settings flags) into the outputs")
    add_output_args(p, OUTPUTS)
    return p


def cli(argv=None) -> int:
    def run(args):
        if args.from_csv:
            resolve_outputs(args, run_name("tradeoff", args), OUTPUTS)
            check_outputs(args, md=args.out_md, csv=args.out_csv, png=args.out_png)
            return write_outputs(read_rows(args.from_csv), args)
        return main(args)
    return run_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
