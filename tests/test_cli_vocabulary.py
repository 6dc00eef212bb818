"""One command-line vocabulary: every CLI declares the shared flags as common/cli.py does, the README's
table says exactly which CLI takes which flag, and the earlier spellings still work, with one warning line."""
import argparse
import re
from pathlib import Path

import pytest

import sample_ddp
from common.cli import SHARED_FLAGS, add_flag
from emu3.generate import build_parser as emu3_parser
from emu3.generate import cli as emu3_cli
from llamagen.presets import DEMO
from llamagen.sample import build_parser as sample_parser
from llamagen.sample import cli as sample_cli
from llamagen.sample_t2i import build_parser as sample_t2i_parser
from lumina_mgpt.generate import build_parser as lumina_parser

ROOT = Path(__file__).resolve().parents[1]
PARSERS = {  # the README table's column names
    "llamagen.sample": sample_parser, "llamagen.sample_t2i": sample_t2i_parser, "emu3.generate": emu3_parser,
    "lumina_mgpt.generate": lumina_parser, "sample_ddp.py": sample_ddp.build_parser,
}
RUNTIME = ["--device", "--precision", "--threads", "--quiet", "--seed", "--compile", "--no-compile"]
DEPRECATED = [  # (CLI, old spelling and its values, new spelling and its values)
    ("llamagen.sample", ["--vq-ckpt", "v.pt"], ["--vq-path", "v.pt"]),
    ("llamagen.sample_t2i", ["--vq-ckpt", "v.pt"], ["--vq-path", "v.pt"]),
    ("llamagen.sample_t2i", ["--prompts", "a cat", "a dog"], ["--prompt", "a cat", "--prompt", "a dog"]),
    ("emu3.generate", ["--out", "o"], ["--out-dir", "o"]),
    ("emu3.generate", ["--prompts", "p.txt"], ["--prompts-file", "p.txt"]),
    ("lumina_mgpt.generate", ["--out", "o"], ["--out-dir", "o"]),
    ("lumina_mgpt.generate", ["--prompts", "p.txt"], ["--prompts-file", "p.txt"]),
    ("lumina_mgpt.generate", ["--vqgan-dir", "vq"], ["--vq-path", "vq"]),
    ("sample_ddp.py", ["--prompts", "p.txt"], ["--prompts-file", "p.txt"]),
    ("sample_ddp.py", ["--vqgan-dir", "vq"], ["--vq-path", "vq"]),
    ("sample_ddp.py", ["--vq-ckpt", "vq"], ["--vq-path", "vq"]),
    ("sample_ddp.py", ["--sample-dir", "s"], ["--out-dir", "s"]),
    ("sample_ddp.py", ["--global-seed", "7"], ["--seed", "7"]),
    ("sample_ddp.py", ["--random-init-config", "tiny"], ["--config", "tiny"]),
]


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's current flags (deprecated spellings are hidden from --help, and left out here)."""
    return {flag: a for flag, a in parser._option_string_actions.items() if a.help != argparse.SUPPRESS}


def readme_table(header: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, rows of cells) of the README table whose header row starts with `header`."""
    lines = (ROOT / "README.md").read_text().splitlines()
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


def test_the_readme_table_lists_which_cli_takes_which_flag():
    header, rows = readme_table("| flag | meaning | `llamagen.sample` |")
    assert [c.strip("`") for c in header[2:]] == list(PARSERS)
    parsers = {name: options(build()) for name, build in PARSERS.items()}
    listed = set()
    for row in rows:
        takes = {name for name, mark in zip(PARSERS, row[2:]) if mark == "x"}
        for flag in flags_in(row[0]):
            listed.add(flag)
            assert {name for name, opts in parsers.items() if flag in opts} == takes, flag
    assert listed >= set(SHARED_FLAGS) | set(RUNTIME) | {"--window", "--cfg-scale", "--top-k", "--temperature"}


def test_the_readme_lists_every_deprecated_spelling():
    _, rows = readme_table("| old | new | where |")
    documented = {(cli.strip("` "), flags_in(old)[0], flags_in(new)[0])
                  for old, new, where in rows for cli in where.split(",")}
    assert documented == {(cli, old[0], new[0]) for cli, old, new in DEPRECATED}


@pytest.mark.parametrize("cli,old,new", DEPRECATED, ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_deprecated_spellings_still_work_with_one_warning(cli, old, new, capsys):
    parser = PARSERS[cli]()
    assert parser.parse_args(old) == parser.parse_args(new)
    err = capsys.readouterr().err
    assert err == f"warning: {old[0]} is deprecated; use {new[0]}\n"


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


def test_deprecated_spellings_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert sample_cli(["--class-labels", "3", "--window", "8", "--quiet", "--vq-ckpt", DEMO.vq_ckpt,
                       "--out", str(out)]) == 0
    assert capsys.readouterr().err.splitlines()[0] == "warning: --vq-ckpt is deprecated; use --vq-path"
    assert out.is_file()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n")
    assert emu3_cli(["--random-init", "--config", "tiny", "--ratio", "4:3", "--window", "2", "--quiet",
                     "--prompts", str(prompts), "--out", str(tmp_path / "emu3")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["warning: --prompts is deprecated; use --prompts-file",
                       "warning: --out is deprecated; use --out-dir"]
    assert sorted(p.name for p in (tmp_path / "emu3").iterdir()) == ["0000.png"]
