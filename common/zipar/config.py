"""Decoding settings: one frozen dataclass, validated once, shared by every script and notebook."""
import argparse
import math
from dataclasses import dataclass

import torch

from common.zipar.layout import Layout
from common.zipar.official import PROMPT_ATTENTIONS
from common.zipar.placeholder import COMPAT_POLICY, DEFAULT_POLICY, POLICIES, check_policy
from common.zipar.window import FIRST_ROW_RULES, check_first_row, schedule_window

# --precision choices of every script: the model dtype
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

DEFAULT_WINDOW = 16  # --window's default (the paper's main setting)

# --cfg-scale's upper bound: scales in use are 1 to 10 (LlamaGen 1.5-4, Lumina-mGPT 3-8, Emu3 3); far larger ones
# make guided = uncond + scale * (cond - uncond) overflow fp32 (3e38 does with any logit gap above 1) and sample a
# near-argmax of the logit gap anyway
MAX_CFG_SCALE = 1e4

# row drafts (common.zipar.row_drafts): how a new draft position starts, how a draft is redrawn after a rejection
DRAFT_INITS = ("above", "left", "random")
DRAFT_COUPLINGS = ("maximal", "independent")
# the candidate tree (common.zipar.draft_tree): --draft-tree-width and --draft-tree-depth defaults (SJD-PAC's
# release: 3 candidates, depth 3; 4 and 3 here: docs/drafting_exactness.md, the demo's passes per shape) and the
# widest tree a sibling key's index names
DEFAULT_TREE_WIDTH, DEFAULT_TREE_DEPTH, MAX_TREE_WIDTH = 4, 3, 64


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode. window=None is plain next-token prediction (the same engine with w = W)."""

    window: int | None = None
    adaptive: bool = False  # window is then w_min: row openings are drafted and verified (section 3.3)
    placeholder: str | None = None  # what a row's opening query is fed (common.zipar.placeholder); None: the
    # default, DEFAULT_POLICY, or the released code's "above" with compat="official"; set to it on construction
    compat: str | None = None  # "official": the family's released ZipAR code (common.zipar.official), window in its numbering
    prompt_attention: str | None = None  # compat only: the prompt reads itself "causal"ly or "bidirectional"ly in the
    # prefill; None: as the released code runs (common.zipar.official)
    first_row: str | None = None  # row 1 opens when row 0 is complete ("serial") or at the window ("early");
    # None: the layout's default, serial without end-of-row tokens (LlamaGen), early with (common.zipar.window)
    cfg_scale: float = 1.0  # > 1 runs an unconditional branch (LlamaGen semantics)
    cfg_interval: float = -1  # -1: guide every token; else tokens 0 .. cfg_interval + 1
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    draft_len: int = 0  # L > 0: each row drafts up to L tokens ahead, verified by speculative Jacobi tests
    draft_init: str = "above"  # how a new draft position starts (DRAFT_INITS)
    draft_coupling: str = "maximal"  # how a draft is redrawn after a rejection (DRAFT_COUPLINGS)
    draft_ahead: bool = False  # rows also draft and decide on the row above's drafts in the same pass (row_drafts)
    draft_tree_width: int = 1  # candidates per tree depth (common.zipar.draft_tree); 1: the chain, no tree
    draft_tree_depth: int = DEFAULT_TREE_DEPTH  # the tree's depth D: candidates at a row's first D - 1 drafts

    def __post_init__(self):
        """Every message names the command-line flag that sets the field (--cfg-scale for cfg_scale)."""
        if self.window is not None and self.window < 1:
            raise ValueError(f"--window must be >= 1 (or --ntp for next-token prediction), got {self.window}")
        if self.adaptive and self.window is None:
            raise ValueError("--adaptive needs a minimum window (--window w_min), not next-token prediction (--ntp)")
        if self.window is None and self.compat is not None:
            raise ValueError(f"--compat {self.compat} reproduces the released ZipAR code at a window, not next-token "
                             "prediction; drop --ntp or --compat")
        if self.adaptive and self.compat is not None:
            raise ValueError("--compat official has fixed windows only; drop --adaptive or --compat")
        if self.placeholder is None:
            object.__setattr__(self, "placeholder", COMPAT_POLICY if self.compat == "official" else DEFAULT_POLICY)
        check_policy(self.placeholder)
        if self.compat not in (None, "official"):
            raise ValueError(f"--compat must be 'official' or unset, got {self.compat!r}")
        check_first_row(self.first_row, self.compat)
        if self.prompt_attention not in (None, *PROMPT_ATTENTIONS):
            raise ValueError(f"--prompt-attention must be one of {', '.join(PROMPT_ATTENTIONS)} (or unset), "
                             f"got {self.prompt_attention!r}")
        if self.prompt_attention is not None and self.compat is None:
            raise ValueError("--prompt-attention picks how the released code --compat official reproduces was loaded; "
                             "use it with --compat official")
        if self.compat == "official" and self.placeholder != COMPAT_POLICY:
            raise ValueError("--compat official feeds the released code's placeholder, 'above'; drop --placeholder")
        # float flags: argparse's float() takes "nan" and "inf", and nan passes every comparison below
        # unchecked (nan <= 0 is False), so finiteness is checked first
        _check_number("--temperature", self.temperature, ">= 0", lambda x: x >= 0)
        _check_number("--top-p", self.top_p, "in (0, 1] (1 = off)", lambda x: 0.0 < x <= 1.0)
        _check_number("--cfg-scale", self.cfg_scale, f"> 0 and <= {MAX_CFG_SCALE:g} (> 1 enables guidance)",
                      lambda x: 0 < x <= MAX_CFG_SCALE)
        _check_number("--cfg-interval", self.cfg_interval, ">= -1 (-1 = every token)", lambda x: x >= -1)
        if self.top_k < 0:
            raise ValueError(f"--top-k must be >= 0 (0 = off), got {self.top_k}")
        if self.draft_len < 0:
            raise ValueError(f"--draft-len must be >= 0 (0 = no row drafts), got {self.draft_len}")
        if self.draft_init not in DRAFT_INITS:
            raise ValueError(f"--draft-init must be one of {', '.join(DRAFT_INITS)}, got {self.draft_init!r}")
        if self.draft_coupling not in DRAFT_COUPLINGS:
            raise ValueError(f"--draft-coupling must be one of {', '.join(DRAFT_COUPLINGS)}, "
                             f"got {self.draft_coupling!r}")
        if self.draft_ahead and not self.draft_len:
            raise ValueError("--draft-ahead lets row drafts run ahead of the window rule; it needs --draft-len N > 0")
        self._check_tree()
        if self.draft_len and self.compat is not None:
            raise ValueError("--compat official reproduces the released code, which has no drafts; drop --compat "
                             "or --draft-len")

    def _check_tree(self) -> None:
        if not 1 <= self.draft_tree_width <= MAX_TREE_WIDTH:
            raise ValueError(f"--draft-tree-width must be in 1..{MAX_TREE_WIDTH} (1 = no tree, the chain), "
                             f"got {self.draft_tree_width}")
        if self.draft_tree_width == 1:
            return
        if not self.draft_len:
            raise ValueError("--draft-tree gives a row's first drafts sibling candidates; it needs --draft-len L > 0")
        if not 2 <= self.draft_tree_depth <= self.draft_len + 1:
            raise ValueError(f"--draft-tree-depth D puts candidates at a row's first D - 1 drafts, so with "
                             f"--draft-len {self.draft_len} it must be in 2..{self.draft_len + 1}, "
                             f"got {self.draft_tree_depth}")

    @property
    def tree_shape(self) -> tuple[int, int]:
        """(candidates per depth K, tree depths T): (1, 0) without a tree."""
        if self.draft_tree_width == 1:
            return 1, 0
        return self.draft_tree_width, self.draft_tree_depth - 1

    def check_grid(self, cols: int) -> None:
        """The settings that need the grid: a row of W = cols tokens holds at most W - 1 drafts (its cells
        after the first decided one), so a longer --draft-len drafts nothing more and is refused. Called by
        the scheduler of every decode, and by the CLIs as soon as they know the grid."""
        if self.draft_len > cols - 1:
            raise ValueError(f"--draft-len {self.draft_len} on a grid {cols} tokens wide: a row has at most "
                             f"{cols - 1} cells to draft after its first decided token, so longer drafts add "
                             f"nothing; use --draft-len {cols - 1} or less")

    @property
    def per_image_schedule(self) -> bool:
        """Whether images follow their own, data-dependent schedules (adaptive windows, row drafts)."""
        return self.adaptive or self.draft_len > 0

    @property
    def uses_cfg(self) -> bool:
        return self.cfg_scale > 1.0

    def window_for(self, layout: Layout) -> int:
        """The window the schedule runs on `layout` (NTP is w = W; compat: common.zipar.window.schedule_window)."""
        return schedule_window(layout, self.window, self.compat)


def _check_number(flag: str, value: float, rule: str, ok) -> None:
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{flag} must be a finite number {rule}, got {value}")


def add_decode_args(parser: argparse.ArgumentParser, *, cfg_scale: float | None, top_k: int | None,
                    temperature: float | None = 1.0) -> None:
    """The decoding flags every sampling script shares; model-specific defaults are passed in
    (None: the script fills them from its model preset)."""
    g = parser.add_argument_group("decoding")
    g.add_argument("--window", type=int, default=None,  # None: DEFAULT_WINDOW, so that --ntp can refuse a given one
                   help=f"ZipAR window w: row r+1 starts when row r holds w tokens (default: {DEFAULT_WINDOW})")
    g.add_argument("--adaptive", action="store_true",
                   help="adaptive window (paper section 3.3): --window is w_min; row openings drafted and verified")
    g.add_argument("--ntp", action="store_true", help="plain next-token prediction (no --window)")
    g.add_argument("--placeholder", type=_placeholder_arg, default=None, metavar="|".join(POLICIES),
                   help="what row r+1's opening query is fed while (r, W-1) is not decoded yet: above-or-mean = "
                        "(r-1, W-1) once decided, else the mean token embedding (default), above = the latest token "
                        "of row r-1 (the paper code's choice; --compat official's), left = the latest token of row r, "
                        "mean = the mean token embedding, token:<id> = a fixed code (common/zipar/placeholder.py)")
    g.add_argument("--compat", choices=["official"], default=None,
                   help="reproduce the paper's released code of the model family (common/zipar/official.py). LlamaGen: "
                        "first row serial, placeholder 'above', a mask that reads unwritten (zero) cache slots; "
                        "--window 1 .. W-1. Lumina-mGPT: --window is the release's zipar_window_size (our w + 1: it "
                        "counts the row's lead token), 2 .. W+1; its CFG branch <s> + <pad>s; a bidirectional prompt "
                        "prefill (see --prompt-attention); its 3 header passes are reported")
    g.add_argument("--prompt-attention", choices=PROMPT_ATTENTIONS, default=None,
                   help="with --compat official: how the prompt attends itself in the prefill. Default: as the "
                        "release runs, bidirectional for Lumina-mGPT (loaded by from_pretrained with the sdpa config "
                        "while its eager attention gets no prefill mask), causal for LlamaGen. Lumina-mGPT causal: "
                        "the release loaded with attn_implementation='eager'")
    g.add_argument("--first-row", choices=FIRST_ROW_RULES, default=None,
                   help="when row 1 opens: serial = once row 0 is complete, 2W + (H-2)w passes (the paper's counts "
                        "and released code); early = after w tokens of row 0 like every row, (H-1)w + W passes; "
                        "default: serial for LlamaGen, early for Lumina-mGPT and Emu3 (end-of-row layouts)")
    g.add_argument("--cfg-scale", type=float, default=cfg_scale, help="classifier-free guidance scale (> 1 enables it); default per model")
    g.add_argument("--cfg-interval", type=float, default=-1, help="guide tokens 0..cfg_interval+1 only; -1 = all")
    g.add_argument("--temperature", type=float, default=temperature,
                   help="sampling temperature (applied after CFG); default per model")
    g.add_argument("--top-k", type=int, default=top_k, help="keep the k most likely tokens; 0 = off; default per model")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold; 1.0 = off")
    g.add_argument("--draft-len", type=int, default=0, metavar="L",
                   help="speculative Jacobi drafting along rows: each row drafts up to L tokens ahead and keeps "
                        "those the acceptance test passes (exact); 0 = off; works with --ntp, fixed and --adaptive")
    g.add_argument("--draft-init", choices=DRAFT_INITS, default=None,  # None: "above", so unset is not given
                   help="with --draft-len: how a new draft starts: above = the decided token above it (default; "
                        "row 0: its left token), left = the row's last token repeated (SJD's LlamaGen choice), "
                        "random = a uniform code (SJD's Lumina-mGPT/Emu3 choice); common/zipar/row_drafts.py")
    g.add_argument("--draft-ahead", action="store_true",
                   help="with --draft-len: a row's drafted queries also read the rows above's drafts of the same "
                        "pass (up to the window), so rows decide ahead of the row above's decided tokens; a "
                        "token is kept only if every draft it read is kept (common/zipar/row_drafts.py)")
    g.add_argument("--draft-coupling", choices=DRAFT_COUPLINGS, default=None,  # None: "maximal" (as --draft-init)
                   help="with --draft-len: how drafts after a rejection are redrawn: maximal = coupled to the old "
                        "draft (default; kept with probability min(1, p/q), else from the residual; as SCD), "
                        "independent = a fresh draw (SJD); both exact")
    g.add_argument("--draft-tree", action=argparse.BooleanOptionalAction, default=None,
                   help="a candidate tree at each row's first drafts (exact proactive drafting, "
                        "common/zipar/draft_tree.py): --draft-tree-width candidates at each of the first "
                        "--draft-tree-depth - 1 drafts, every path run in the same pass, the first candidate that "
                        "passes wins; more queries a pass, fewer passes. Default: on with --draft-len L > 0")
    g.add_argument("--draft-tree-width", type=int, default=None, metavar="K",
                   help=f"the tree's candidates per depth, the draft and K - 1 siblings drawn without replacement "
                        f"from its q (default: {DEFAULT_TREE_WIDTH})")
    g.add_argument("--draft-tree-depth", type=int, default=None, metavar="D",
                   help=f"the tree's depth D, candidates at a row's first D - 1 drafts, 2 .. L + 1 (default: "
                        f"{DEFAULT_TREE_DEPTH}, or L + 1 if less)")


def _placeholder_arg(value: str) -> str:
    try:
        return check_policy(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# flags that would change nothing, flag -> its argparse default (a flag counts as given when its value differs,
# so every one of them defaults to a value no user can type). NTP_IGNORES act only on rows a ZipAR window opens
# before the row above is complete: under --ntp no row does, so none changes a token or a pass. DRAFT_FLAGS
# shape row drafts, which --draft-len 0 turns off.
NTP_IGNORES = {"--placeholder": None, "--first-row": None, "--draft-ahead": False}
DRAFT_FLAGS = {"--draft-init": None, "--draft-coupling": None, "--draft-ahead": False}


def refuse_ignored_flags(args: argparse.Namespace) -> None:
    """The one rule for decoding flags given where they would be ignored: one line naming them."""
    def given(flags: dict) -> list[str]:
        return [flag for flag, unset in flags.items() if getattr(args, flag[2:].replace("-", "_")) != unset]

    if args.ntp and args.adaptive:
        raise ValueError("--ntp and --adaptive exclude each other: --ntp is plain next-token prediction, "
                         "--adaptive an adaptive ZipAR window (with --window as w_min)")
    if args.ntp and args.window is not None:
        raise ValueError(f"--ntp is plain next-token prediction, which has no window, so --window {args.window} "
                         "would be ignored; drop it or drop --ntp")
    if args.ntp and (flags := given(NTP_IGNORES)):
        one = len(flags) == 1
        raise ValueError(f"--ntp is plain next-token prediction, where each row opens once the row above is complete, "
                         f"so {' and '.join(flags)} would be ignored ({'it acts' if one else 'they act'} on rows a "
                         f"ZipAR --window opens earlier); drop {'it' if one else 'them'} or drop --ntp")
    if args.draft_len == 0 and (flags := given(DRAFT_FLAGS)):
        one = len(flags) == 1
        raise ValueError(f"{' and '.join(flags)} {'needs' if one else 'need'} --draft-len N > 0 (row drafts are off "
                         f"without it, so {'it' if one else 'they'} would be ignored); give --draft-len N or drop "
                         f"{'it' if one else 'them'}")
    if not _tree_on(args) and (args.draft_tree_width, args.draft_tree_depth) != (None, None):
        raise ValueError("--draft-tree-width and --draft-tree-depth shape the candidate tree of row drafts; they "
                         "need --draft-len N > 0 (and no --no-draft-tree)")


def _tree_on(args: argparse.Namespace) -> bool:
    """--draft-tree as given, else on with row drafts."""
    return args.draft_len > 0 if args.draft_tree is None else args.draft_tree


def decode_config_from_args(args: argparse.Namespace) -> DecodeConfig:
    """The one place scripts and notebooks turn parsed flags into a DecodeConfig (refuse_ignored_flags first)."""
    refuse_ignored_flags(args)
    tree = _tree_on(args)
    width = (DEFAULT_TREE_WIDTH if args.draft_tree_width is None else args.draft_tree_width) if tree else 1
    depth = min(DEFAULT_TREE_DEPTH, args.draft_len + 1) if args.draft_tree_depth is None else args.draft_tree_depth
    return DecodeConfig(
        window=None if args.ntp else DEFAULT_WINDOW if args.window is None else args.window,
        adaptive=args.adaptive and not args.ntp,
        placeholder=args.placeholder, compat=args.compat, prompt_attention=args.prompt_attention,
        first_row=args.first_row,
        cfg_scale=args.cfg_scale, cfg_interval=args.cfg_interval, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, draft_len=args.draft_len, draft_ahead=args.draft_ahead,
        draft_init=args.draft_init or DecodeConfig.draft_init,  # None: not given (DRAFT_FLAGS)
        draft_coupling=args.draft_coupling or DecodeConfig.draft_coupling,
        draft_tree_width=width, draft_tree_depth=depth,
    )
