"""benchmarks/tradeoff.py's tables: the columns, merging earlier runs' CSVs (--from-csv), the order of rows,
the Pareto frontiers and "beaten by" marks, the Markdown table, the plot, and writing all three files."""
import csv
import math
import statistics

import torch

from common.atomic import atomic_path, write_csv_atomic, write_text_atomic
from common.path_checks import check_input_file

COLUMNS = ["setting", "kind", "placeholder", "first_row", "window", "passes_mean", "pass_reduction", "seconds",
           "accuracy", "accuracy_std", "digits_fid", "digits_fid_std", "agreement", "agreement_std", "accepted_window",
           "rejections", "draft_len", "draft_init", "tokens_per_row_pass", "row_tokens_per_pass", "draft_rejections",
           "frontier_fid", "frontier_accuracy", "beaten_by"]
KINDS = ("ntp", "fixed", "adaptive", "official", "sjd", "fixed+sjd", "adaptive+sjd")


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
