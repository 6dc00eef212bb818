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
import statistics
import sys

import torch

from benchmarks.demo_runs import add_run_args, check_outputs, check_run_args, part_arg, run_name, run_setting, score
from benchmarks.outputs import add_output_args, resolve_outputs
from benchmarks.tradeoff_table import draft_columns, mark_frontier, read_rows, write_csv, write_outputs
from common.cli import HelpFormatter, run_main
from common.zipar.config import DRAFT_COUPLINGS, DRAFT_INITS, DecodeConfig
from common.zipar.sampling import image_seeds
from common.zipar.window import FIRST_ROW_RULES, first_row_rule
from llamagen.checkpoint import load_gpt_weights
from llamagen.demo_classifier import DigitScorer
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.generate import layout_for
from llamagen.model import Transformer, gpt_config
from llamagen.presets import DEMO


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
