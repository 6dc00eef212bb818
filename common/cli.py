"""What every command-line script shares: the flag vocabulary (SHARED_FLAGS, runtime flags, the text-to-image
parser tail, renamed spellings), the checks of device, precision and model files made before any model is
built, the default model precision and the one-line error exit. The checks of input and output paths are
common.path_checks; which decoding flags conflict, common.zipar.config. The tail every CLI ends with (decode,
time, save, report) is common.report."""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from common.atomic import WriteError
from common.weights.checkpoint import CheckpointError
from common.determinism import use_deterministic_kernels
from common.path_checks import check_input_file
from common.zipar.config import PRECISIONS, add_decode_args
from common.zipar.engine import CUDA_GRAPHS

# bad input a user can fix, and a write that failed (a full disk): reported as one line, exit status 2 (no traceback)
USER_ERRORS = (ValueError, FileNotFoundError, CheckpointError, WriteError)


# The flags several scripts share, declared once: name -> argparse settings. A script adds one with
# add_flag(parser, name, ...) and may specialise its help and default, never its name or kind; docs/cli.md's
# command-line table lists them with the scripts that take each.
SHARED_FLAGS: dict[str, dict] = {
    "--out": dict(metavar="FILE", help="output image file; the suffix (.png, .jpg, .jpeg) is the format written"),
    "--out-dir": dict(metavar="DIR", help="output folder (made when the images are saved)"),
    "--prompt": dict(action="append", metavar="TEXT", help="a text prompt; repeat for several images"),
    "--prompts-file": dict(metavar="FILE", help="text file, one prompt per line (added after any --prompt)"),
    "--gpt-ckpt": dict(metavar="FILE", help="the LlamaGen GPT checkpoint (.pt, .pth or .safetensors)"),
    "--model-path": dict(metavar="DIR", help="the model's Hugging Face folder (config.json, safetensors shards)"),
    "--vq-path": dict(metavar="PATH", help="the image tokenizer's weights (file or folder)"),
    "--tokenizer-path": dict(metavar="PATH", help="the text tokenizer's files (default --model-path)"),
    "--config": dict(metavar="NAME", default=None,
                     help="with --random-init: the architecture built (default: the model's own; tiny for tests)"),
    "--random-init": dict(action="store_true", help="random weights, no checkpoint files (speed and engine tests)"),
    "--json": dict(action="store_true", help="print one JSON object (passes, timing, outputs) on stdout"),
    # the benchmarks' (benchmarks/*.py) and the text-to-image CLIs'
    "--batch-size": dict(type=int, metavar="N", default=1, help="images per decode call"),
    "--threads": dict(type=int, metavar="N", default=None,
                      help="torch CPU threads (>= 1); default: this host's cores shared by its ranks (all of them "
                           "for one process, cores / LOCAL_WORLD_SIZE under torchrun)"),
    "--out-csv": dict(metavar="FILE", help="write the results as a CSV table here (.csv)"),
    "--out-md": dict(metavar="FILE", help="write the results as a Markdown table here (.md)"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every CLI's --help: the module docstring as written, and each flag's default after its help
    ("(default: 16)"); flags whose default is unset (None: filled per model), off (False) or that say
    their default themselves get nothing added."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or not action.option_strings or action.default is None
                or action.default is False or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def add_flag(p, name: str, **overrides) -> None:
    """Declare the shared flag `name` (SHARED_FLAGS) on a parser or argument group; overrides: help, default."""
    bad = set(overrides) - {"help", "default"}
    if name not in SHARED_FLAGS or bad:
        raise ValueError(f"add_flag({name!r}): shared flags are {', '.join(SHARED_FLAGS)}; only help and "
                         f"default may be specialised, got {sorted(bad)}")
    p.add_argument(name, **{**SHARED_FLAGS[name], **overrides})


def fill_random_init_config(args: argparse.Namespace, configs, default: str) -> str:
    """--config: a name from `configs`, only with --random-init (the files decide the architecture otherwise);
    unset, the model's own (`default`). Fills args.config and returns it."""
    if args.config is not None and not args.random_init:
        raise ValueError(f"--config {args.config} chooses the architecture of --random-init weights; without "
                         "--random-init the checkpoint decides it")
    if args.config is not None and args.config not in configs:
        raise ValueError(f"--config {args.config!r}: valid for this model: {', '.join(configs)}")
    args.config = args.config or default
    return args.config


class _Renamed(argparse.Action):
    """A spelling removed after its release of deprecation: refused, naming the flag that replaced it."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, nargs="*", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(2, f"error: {option_string} was renamed; use {self.new}\n")


def add_renamed(p: argparse.ArgumentParser, old: str, new: str) -> None:
    """`old`, an earlier spelling of `new`, now refused with one line naming `new` (exit status 2). Declared
    rather than left out so that argparse's prefix matching cannot read it as another flag (--out as
    --out-dir, --batch as --batch-size)."""
    p.add_argument(old, action=_Renamed, new=new)


def add_text_to_image_tail(p: argparse.ArgumentParser, defaults, model: str, *, out_dir: str | None = None,
                           out: str | None = None, configs=(), default_config: str | None = None) -> None:
    """The flags every text-to-image CLI ends with: its output (an --out-dir folder of {i:04d}.png, decoded
    --batch-size prompts at a time, or an --out grid file of one batch), --random-init (with --config NAME
    when `configs` names the architectures it may build), --json, the runtime flags and the decoding flags
    with the model's defaults (`defaults`: a preset with cfg_scale, top_k, temperature)."""
    if out_dir is not None:
        add_flag(p, "--out-dir", default=out_dir, help="output folder; image i is written as {i:04d}.png")
        add_flag(p, "--batch-size", default=8, help="prompts decoded together (with CFG the model runs twice as "
                                                   "many rows); the images do not depend on it")
    if out is not None:
        add_flag(p, "--out", default=out, help="output image file (a grid, 4 per row); .png, .jpg or .jpeg")
    add_flag(p, "--random-init", help=f"random weights for {'--config' if configs else model}, no files")
    if configs:
        add_flag(p, "--config", help=f"with --random-init: the architecture built ({', '.join(configs)}; default "
                                     f"{default_config})")
    add_flag(p, "--json")
    add_runtime_args(p, model)
    add_decode_args(p, cfg_scale=defaults.cfg_scale, top_k=defaults.top_k, temperature=defaults.temperature)


class _DashValues:
    """Parser behaviour for values that start with '-'. argparse takes only -1 and -1.5 for numbers, so
    `--cfg-scale -inf` or `--cfg-interval -1e3` read as a flag and a missing value: here every number float()
    reads is a value (the flag's own check then judges it), and a value argparse still reads as a flag gets
    the way to write it in the error (`--prompt=-text`). Repeated flags keep argparse's rule: the last wins."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)  # for error(): what follows a flag
        return super().parse_known_args(args, namespace)

    def _parse_optional(self, arg_string):
        try:
            float(arg_string)
            return None  # a number (-inf, -nan, -1e3): a value, never a flag
        except ValueError:
            return super()._parse_optional(arg_string)

    def error(self, message):
        flags = message.split(":")[0].removeprefix("argument ").split("/")
        if "expected" in message and "argument" in message:
            argv = [str(a) for a in getattr(self, "_argv", [])]
            for flag, value in zip(argv, argv[1:]):
                if flag in flags and value.startswith("-"):
                    message += f"; to give it a value that starts with '-', join them: {flag}={value}"
                    break
        if "WORLD_SIZE" in os.environ:  # under torchrun: run_main's one line per rank, not a usage block from each
            line = f"error: {message} ({self.prog} --help lists the flags)"
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            tell_torchrun(line)
            sys.exit(2)
        super().error(message)


def read_dash_values(p: argparse.ArgumentParser) -> None:
    """Give parser p _DashValues' behaviour (its class becomes a subclass of its own)."""
    if not isinstance(p, _DashValues):
        p.__class__ = type(type(p).__name__, (_DashValues, type(p)), {})


def add_runtime_args(p: argparse.ArgumentParser, model: str = "the model") -> None:
    """--device, --precision, --seed, --compile, --cuda-graphs, --deterministic, --quiet and --threads:
    declared here once for every script (whose parser then also reads values such as -inf: read_dash_values)."""
    read_dash_values(p)
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (cpu, cuda, cuda:N); under torchrun 'cuda' means cuda:LOCAL_RANK")
    g.add_argument("--precision", choices=list(PRECISIONS), default=None,
                   help=f"dtype of {model}; default bf16 on CUDA, fp32 on CPU (image decoders run in fp32)")
    g.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed (seed, i)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="the engine torch.compiles its per-pass step, every pass padded to one shape "
                        "(same tokens; worth it on CUDA; off by default)")
    g.add_argument("--cuda-graphs", dest="compile", action="store_const", const=CUDA_GRAPHS,
                   help="--compile with CUDA graphs (torch.compile mode reduce-overhead): each pass replays one "
                        "captured graph on a GPU; on a CPU the same as --compile")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels (common/determinism.py): run-to-run equal tokens on a GPU, slower")
    g.add_argument("--quiet", action="store_true", help="no progress bar on stderr (--json implies it)")
    add_flag(g, "--threads")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; os.cpu_count() where that is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    """The host's usable cores, split between the processes torchrun starts on it (LOCAL_WORLD_SIZE):
    ranks that each spin all cores' worth of threads fight over them."""
    return max(1, usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def check_runtime(args: argparse.Namespace) -> torch.device:
    """Check --device and --precision (filling its default), fill --threads and set torch's thread
    count (called from each script's main, not at import). Returns the device."""
    device = check_device(args.device)
    if args.precision is None:
        args.precision = default_precision(args.device)
    check_precision(args.precision, device)
    set_threads(args)
    if args.deterministic:
        use_deterministic_kernels()
    return device


def set_threads(args: argparse.Namespace) -> int:
    """--threads: 1 .. usable_cores() (None: default_threads()); fills args.threads and sets torch's thread
    count. More threads than cores only make them wait for each other (thousands hang or crash OpenMP)."""
    if args.threads is None:
        args.threads = default_threads()
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.threads > (cores := usable_cores()):
        raise ValueError(f"--threads {args.threads}: this process may use {cores} core(s); more threads than cores "
                         f"only make them wait for each other: use 1..{cores}")
    torch.set_num_threads(args.threads)
    return args.threads


def default_precision(device: str) -> str:
    """bf16 on CUDA, fp32 elsewhere (CPU bf16 matmuls are slow and fp16 is unsupported there)."""
    return "bf16" if device.startswith("cuda") else "fp32"


def check_device(name: str) -> torch.device:
    """--device as a torch.device that this torch build can use; ValueError otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cpu" and device.index not in (None, 0):  # torch takes cpu:1 and runs on the one CPU device
        raise ValueError(f"--device {name}: the CPU is one device (its cores are --threads); use --device cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA device"
        raise ValueError(f"--device {name}, but CUDA is not available here ({build}, torch {torch.__version__}); "
                         "use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}, but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if device.type in OTHER_BACKENDS and not OTHER_BACKENDS[device.type]():
        raise ValueError(f"--device {name}, but this torch build (torch {torch.__version__}) has no usable "
                         f"{device.type} backend here; use --device cpu" +
                         (" or cuda" if torch.cuda.is_available() else ""))
    if device.type not in ("cpu", "cuda", *OTHER_BACKENDS):
        raise ValueError(f"--device {name}: the {device.type!r} backend is not supported; use cpu or cuda")
    return device


# backends torch names that a build may lack: device type -> whether this build can use it here
OTHER_BACKENDS = {
    "mps": lambda: torch.backends.mps.is_available(),  # Apple GPUs
    "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),  # Intel GPUs
}


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("--precision fp16 is not supported on CPU; use fp32 or bf16")


def check_random_init(args: argparse.Namespace, flags: list[str]) -> None:
    """--random-init builds random weights and reads no files: refuse file flags given with it (they
    would be ignored). `flags`: the script's file flags, e.g. ["--gpt-ckpt", "--vq-path"]."""
    given = [f for f in flags if _flag_value(args, f) is not None]
    if args.random_init and given:
        raise ValueError(f"--random-init builds random weights and reads no files, so {' and '.join(given)} "
                         "would be ignored; drop " + ("it" if len(given) == 1 else "them") +
                         " or drop --random-init")


def check_model_files(args: argparse.Namespace, required: list[str], check: Callable, optional: list[str] = (),
                      unchecked: list[str] = (), hint: str = "", prefix: str = "") -> None:
    """The model's files, the one check every script makes: with --random-init none may be given
    (check_random_init); without it every flag in `required` must be (else "pass ... or --random-init"; `hint`
    follows the flags, `prefix` leads the line), and each given path of `required` and `optional` is checked by check(path, flag)
    (check_input_dir, or check_input_file with its description). `unchecked`: file flags the loader checks."""
    check_random_init(args, [*required, *optional, *unchecked])
    if args.random_init:
        return
    if any(_flag_value(args, flag) is None for flag in required):
        raise ValueError(f"{prefix}pass {' and '.join(required)}{hint}, or --random-init to run without files")
    for flag in (*required, *optional):
        if (path := _flag_value(args, flag)) is not None:
            check(path, flag)


def checkpoint_file(path: str, flag: str) -> Path:
    """check_model_files' check for single-file checkpoints."""
    return check_input_file(path, flag, "checkpoint file")


def note_random_init(args: argparse.Namespace, what: str) -> None:
    """With --random-init, say on stderr that `what` (the models built) has random weights."""
    if args.random_init:
        print(f"--random-init: random weights for {what} (seed {args.seed}); images are noise", file=sys.stderr)


def _flag_value(args: argparse.Namespace, flag: str):
    return getattr(args, flag[2:].replace("-", "_"), None)


def check_positive(**counts) -> None:
    """Counts a user gives (a flag's value, or each value of a list flag) must be >= 1: keyword
    names are flags with '_' for '-' (windows=[8, 0] -> "--windows 0 must be >= 1")."""
    for name, values in counts.items():
        for value in values if isinstance(values, (list, tuple)) else [values]:
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value} must be >= 1")


def tell_torchrun(line: str) -> None:
    """Under torchrun, leave `line` in the error file its agent reads (TORCHELASTIC_ERROR_FILE, set for each
    process), so the failure summary it prints last shows `traceback : LINE` instead of a pointer to its docs."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        try:
            # the layout torch's own ErrorHandler.record_exception writes (torch.distributed.elastic)
            record = {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}
            Path(path).write_text(json.dumps({"message": record}))
        except OSError:
            pass  # the line is on stderr already


def run_main(main: Callable, args, interrupted: str | None = None) -> int:
    """main(args); a USER_ERRORS exception becomes `error: ...` on stderr and exit status 2. interrupted:
    the line Ctrl-C (KeyboardInterrupt) prints instead of a traceback (under torchrun, rank 0's only),
    exit status 130; None lets the interrupt through."""
    try:
        main(args)
    except USER_ERRORS as e:
        sys.stderr.write(f"error: {e}\n")  # one write: lines of concurrent ranks never interleave
        sys.stderr.flush()
        tell_torchrun(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        if os.environ.get("RANK", "0") == "0":
            sys.stderr.write(f"interrupted: {interrupted}\n")
            sys.stderr.flush()
        return 130
    return 0

