"""One command-line vocabulary: every CLI declares the shared flags as common/cli.py does, docs/cli.md's table
says exactly which CLI takes which flag, and each earlier spelling is refused with one line naming its flag."""
import argparse
import importlib
import re
from pathlib import Path

import pytest

import sample_ddp
from common.cli import SHARED_FLAGS, add_flag
from families import CLIS

ROOT = Path(__file__).resolve().parents[1]
# docs/cli.md's table columns: every family's CLIs (families.py), then sample_ddp.py
PARSERS = {**{cli: importlib.import_module(cli).build_parser for cli in CLIS}, "sample_ddp.py": sample_ddp.build_parser}
BENCHMARK_PARSERS = {f"benchmarks.{name}": importlib.import_module(f"benchmarks.{name}").build_parser
                     for name in ("latency", "t2i_latency", "engine_overhead")}
RUNTIME = ["--device", "--precision", "--threads", "--quiet", "--seed", "--compile", "--no-compile"]
RENAMED = [  # (CLI, old spelling and a value, new spelling)
    ("llamagen.sample", ["--vq-ckpt", "v.pt"], "--vq-path"),
    ("llamagen.sample_t2i", ["--vq-ckpt", "v.pt"], "--vq-path"),
    ("llamagen.sample_t2i", ["--prompts", "a cat", "a dog"], "--prompt"),
    ("emu3.generate", ["--out", "o"], "--out-dir"),
    ("emu3.generate", ["--prompts", "p.txt"], "--prompts-file"),
    ("lumina_mgpt.generate", ["--out", "o"], "--out-dir"),
    ("lumina_mgpt.generate", ["--prompts", "p.txt"], "--prompts-file"),
    ("lumina_mgpt.generate", ["--vqgan-dir", "vq"], "--vq-path"),
    ("sample_ddp.py", ["--prompts", "p.txt"], "--prompts-file"),
    ("sample_ddp.py", ["--vqgan-dir", "vq"], "--vq-path"),
    ("sample_ddp.py", ["--vq-ckpt", "vq"], "--vq-path"),
    ("sample_ddp.py", ["--sample-dir", "s"], "--out-dir"),
    ("sample_ddp.py", ["--global-seed", "7"], "--seed"),
    ("sample_ddp.py", ["--random-init-config", "tiny"], "--config"),
    ("benchmarks.latency", ["--batch", "2"], "--batch-size"),
    ("benchmarks.latency", ["--csv", "x.csv"], "--out-csv"),
    ("benchmarks.t2i_latency", ["--batch", "2"], "--batch-size"),
    ("benchmarks.t2i_latency", ["--out", "x.md"], "--out-md"),
    ("benchmarks.engine_overhead", ["--batches", "2"], "--batch-sizes"),
]


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's current flags (renamed spellings are hidden from --help, and left out here)."""
    return {flag: a for flag, a in parser._option_string_actions.items() if a.help != argparse.SUPPRESS}


def readme_table(header: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, rows of cells) of docs/cli.md's table whose header row starts with `header`."""
    lines = (ROOT / "docs" / "cli.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return cells(lines[start]), rows


def flags_in(cell: str) -> list[str]:
    """`--out FILE`, `--device`, ... -> ["--out", "--device"]."""
    return [m.split()[0] for m in re.findall(r"`(--[^`]+)`", cell)]


def test_shared_flags_are_declared_as_common_cli_says():
    for name, build in PARSERS.items():
        opts = options(build())
        for flag, spec in SHARED_FLAGS.items():
            if flag not in opts:
                continue
            action = opts[flag]
            assert action.metavar == spec.get("metavar"), (name, flag)
            kind = {"append": argparse._AppendAction, "store_true": argparse._StoreTrueAction}
            assert isinstance(action, kind.get(spec.get("action"), argparse._StoreAction)), (name, flag)
        for flag in RUNTIME:
            assert flag in opts, (name, flag)
    with pytest.raises(ValueError, match="shared flags are"):
        add_flag(argparse.ArgumentParser(), "--vq-ckpt")


def test_the_docs_table_lists_which_cli_takes_which_flag():
    header, rows = readme_table("| flag | meaning | `llamagen.sample` |")
    columns = [c.strip("`") for c in header[2:]]
    assert sorted(columns) == sorted(PARSERS)  # a column for every CLI of every family
    parsers = {name: options(build()) for name, build in PARSERS.items()}
    listed = set()
    for row in rows:
        takes = {name for name, mark in zip(columns, row[2:]) if mark == "x"}
        for flag in flags_in(row[0]):
            listed.add(flag)
            assert {name for name, opts in parsers.items() if flag in opts} == takes, flag
    assert listed >= set(SHARED_FLAGS) | set(RUNTIME) | {"--window", "--cfg-scale", "--top-k", "--temperature"}


def test_the_docs_list_every_renamed_spelling():
    _, rows = readme_table("| old | new | where |")
    documented = {(cli.strip("` "), flags_in(old)[0], flags_in(new)[0])
                  for old, new, where in rows for cli in where.split(",")}
    assert documented == {(cli, old[0], new) for cli, old, new in RENAMED}


@pytest.mark.parametrize("cli,old,new", RENAMED, ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_renamed_spellings_are_refused_with_one_line_naming_the_new_flag(cli, old, new, capsys):
    """Refused, not read as another flag by argparse's prefix matching (--out as --out-dir) nor ignored."""
    parser = {**PARSERS, **BENCHMARK_PARSERS}[cli]()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--seed", "1"] * (cli in PARSERS) + old)
    assert e.value.code == 2
    assert capsys.readouterr().err == f"error: {old[0]} was renamed; use {new}\n"
    assert not re.search(rf"{old[0]}(?![\w-])", parser.format_help())  # hidden from --help


def test_every_cli_accepts_the_shared_names():
    values = {"--out": "x.png", "--out-dir": "d", "--prompts-file": "p.txt", "--gpt-ckpt": "g.pt", "--model-path": "m",
              "--vq-path": "v", "--tokenizer-path": "t", "--config": "tiny", "--batch-size": 2}
    for name, build in PARSERS.items():
        parser = build()
        opts = options(parser)
        argv = ["--device", "cpu", "--precision", "bf16", "--seed", "5", "--compile", "--threads", "1", "--quiet"]
        for flag in SHARED_FLAGS:
            if flag in opts and flag not in RUNTIME:
                argv += [flag] if flag in ("--random-init", "--json") else [flag, "a", flag, "b"] \
                    if flag == "--prompt" else [flag, str(values[flag])]
        args = parser.parse_args(argv)
        assert (args.device, args.precision, args.seed, args.compile, args.threads, args.quiet) == \
               ("cpu", "bf16", 5, True, 1, True), name
        assert parser.parse_args(["--no-compile"]).compile is False
        for flag, value in values.items():
            if flag in opts:
                assert getattr(args, opts[flag].dest) == value, (name, flag)
        if "--prompt" in opts:
            assert args.prompt == ["a", "b"]
        assert all(getattr(args, opts[f].dest) is True for f in ("--random-init", "--json") if f in opts)
