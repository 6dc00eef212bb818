"""What the input-error tests share: the one `error:` line of a CLI run refused with exit status 2, and short
argument lists of each CLI that run in a moment."""

ONE_DIGIT = ["--class-labels", "3", "--window", "8", "--quiet"]
EMU3 = ["--random-init", "--config", "tiny", "--prompt", "a cat", "--ratio", "4:3", "--window", "2", "--quiet"]
T2I = ["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init", "--image-size", "8",
       "--caption-dim", "8", "--quiet"]


def one_line(cli, argv, capsys) -> str:
    """The error line of a CLI run that must fail with exit status 2 (and print nothing else)."""
    code = cli([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("warning: ", "--random-init: "))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
