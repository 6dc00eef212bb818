"""Bad command-line input is a one-line error with exit status 2, raised before the expensive work:
device, precision, output paths, conflicting flags, image sizes a checkpoint was not trained at; and
a window wide enough to be NTP is said on stderr; --threads, and the progress bar over passes."""
import json

import pytest
import torch
from PIL import Image

from emu3.generate import cli as emu3_cli
from llamagen.sample import cli as sample_cli
from lumina_mgpt.generate import cli as lumina_cli
from lumina_mgpt.prompt import PATCH, check_size, crop_sizes

ONE_DIGIT = ["--class-labels", "3"]


def error_of(cli, argv, capsys) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("size", [100, 16, 48])
def test_demo_refuses_image_sizes_it_was_not_trained_at(size, tmp_path, capsys):
    err = error_of(sample_cli, ["--image-size", str(size), "--out", str(tmp_path / "x.png")], capsys)
    assert f"--image-size {size}" in err and "trained at 24" in err
    assert not (tmp_path / "x.png").exists()


def test_official_presets_refuse_untrained_sizes(tmp_path, capsys):
    ckpt = tmp_path / "c2i_B_256.pt"
    ckpt.write_bytes(b"")  # the size check comes before any file is read
    err = error_of(sample_cli, ["--gpt-model", "GPT-B", "--gpt-ckpt", str(ckpt), "--vq-path", str(ckpt),
                                "--image-size", "320", "--out", str(tmp_path / "x.png")], capsys)
    assert "256 or 384 or 512" in err


@pytest.mark.parametrize("out,needle", [
    ("folder", "is a folder"),
    ("x.gif", "must end in .png, .jpg, .jpeg"),
    ("/proc/zipar-test/x.png", "cannot write to /proc"),
])
def test_sample_output_path_checked_before_sampling(out, needle, tmp_path, capsys):
    path = tmp_path / out if not out.startswith("/") else out
    if out == "folder":
        (tmp_path / "folder").mkdir()
    err = error_of(sample_cli, [*ONE_DIGIT, "--out", str(path)], capsys)
    assert needle in err
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*tmp*"))


def test_sample_writes_the_format_its_suffix_names(tmp_path, capsys):
    out = tmp_path / "digit.jpg"
    assert sample_cli([*ONE_DIGIT, "--window", "8", "--out", str(out)]) == 0
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG magic, not PNG bytes under a .jpg name
    with Image.open(out) as im:
        assert im.format == "JPEG"


@pytest.mark.parametrize("device,needle", [("foo", "is not a torch device"), ("cuda", "CUDA is not available")])
def test_bad_device_is_one_line(device, needle, tmp_path, capsys):
    if device == "cuda" and torch.cuda.is_available():
        device = "cuda:999"
        needle = "CUDA device(s) are visible"
    for cli, out in ((sample_cli, ["--out", str(tmp_path / "x.png")]), (emu3_cli, ["--out-dir", str(tmp_path / "e")])):
        argv = [*ONE_DIGIT] if cli is sample_cli else ["--random-init", "--config", "tiny", "--prompt", "a cat"]
        assert needle in error_of(cli, [*argv, "--device", device, *out], capsys)


def test_cpu_has_no_device_index(tmp_path, capsys):
    from common.cli import check_device
    assert check_device("cpu:0") == torch.device("cpu:0")
    err = error_of(sample_cli, [*ONE_DIGIT, "--device", "cpu:1", "--out", str(tmp_path / "x.png")], capsys)
    assert "--device cpu:1: the CPU is one device (its cores are --threads); use --device cpu" in err


@pytest.mark.parametrize("value,needle", [("-inf", "--cfg-scale must be a finite number > 0"),
                                          ("-1e3", "--cfg-scale must be a finite number > 0 and <= 10000"),
                                          ("-nan", "--cfg-scale must be a finite number")])
def test_negative_numbers_are_values_not_flags(value, needle, tmp_path, capsys):
    """argparse alone reads `--cfg-scale -inf` as a flag missing its value; here the value reaches the check."""
    err = error_of(sample_cli, [*ONE_DIGIT, "--cfg-scale", value, "--out", str(tmp_path / "x.png")], capsys)
    assert needle in err and f"got {float(value)}" in err


def test_a_value_that_reads_as_a_flag_is_told_how_to_join_it(tmp_path, capsys):
    import sample_ddp
    with pytest.raises(SystemExit) as e:
        sample_ddp.build_parser().parse_args(["--model", "emu3-gen", "--prompt", "-cat-", "--window", "4"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and err.endswith("argument --prompt: expected one argument; to give it a value that "
                                              "starts with '-', join them: --prompt=-cat-")
    assert sample_ddp.build_parser().parse_args(["--prompt=-cat-", "--cfg-interval", "-1"]).prompt == ["-cat-"]


@pytest.mark.parametrize("cli", ["sample_ddp", "emu3", "lumina"])
def test_a_repeated_flag_takes_its_last_value(cli):
    """The documented rule (docs/cli.md): the last of a repeated flag wins, so a wrapper may append an
    override to a base command; two spellings of one setting with different values are refused instead."""
    import sample_ddp
    from emu3.generate import build_parser as emu3_parser
    from lumina_mgpt.generate import build_parser as lumina_parser
    parser = {"sample_ddp": sample_ddp.build_parser, "emu3": emu3_parser, "lumina": lumina_parser}[cli]()
    args = parser.parse_args(["--window", "4", "--seed", "1", "--window", "8", "--seed", "2", "--cfg-scale", "3",
                              "--cfg-scale", "2"])
    assert (args.window, args.seed, args.cfg_scale) == (8, 2, 2.0)


def test_ntp_and_adaptive_exclude_each_other(tmp_path, capsys):
    err = error_of(sample_cli, [*ONE_DIGIT, "--ntp", "--adaptive", "--out", str(tmp_path / "x.png")], capsys)
    assert "--ntp and --adaptive" in err


def test_a_window_given_with_ntp_is_refused_not_ignored(tmp_path, capsys):
    import sample_ddp
    from common.zipar.config import DEFAULT_WINDOW, decode_config_from_args
    err = error_of(sample_cli, [*ONE_DIGIT, "--ntp", "--window", "8", "--out", str(tmp_path / "x.png")], capsys)
    assert "--ntp is plain next-token prediction, which has no window, so --window 8 would be ignored" in err
    assert not (tmp_path / "x.png").exists()
    parser = sample_ddp.build_parser()
    def window(*argv):
        return decode_config_from_args(sample_ddp.fill_defaults(parser.parse_args(argv))).window
    assert window("--ntp") is None and window() == DEFAULT_WINDOW == 16 and window("--window", "8") == 8
    assert f"(default: {DEFAULT_WINDOW})" in " ".join(parser.format_help().split())


def test_flags_ntp_would_ignore_change_nothing_under_ntp():
    """Why --ntp refuses them: each row opens once the row above is complete, so no row opener is ever fed
    a placeholder, row 1 opens at the same pass under either first-row rule, and no row runs beside the
    row above's drafts; same tokens, same passes (NTP alone and with row drafts)."""
    from common.zipar.config import NTP_IGNORES
    from common.zipar.config import DecodeConfig
    from llamagen.generate import generate
    from tests.helpers.llamagen import tiny_gpt
    gpt, labels, seeds = tiny_gpt(6), torch.tensor([1, 2]), torch.tensor([3, 4])
    assert set(NTP_IGNORES) == {"--placeholder", "--first-row", "--draft-ahead"}
    for drafts in ({}, dict(draft_len=3)):
        ref = generate(gpt, labels, seeds, DecodeConfig(window=None, cfg_scale=2.0, **drafts))
        for extra in (dict(placeholder="token:0"), dict(placeholder="left"), dict(first_row="early"),
                      dict(draft_ahead=True) if drafts else dict(first_row="serial")):
            out = generate(gpt, labels, seeds, DecodeConfig(window=None, cfg_scale=2.0, **drafts, **extra))
            assert torch.equal(out.tokens, ref.tokens) and out.image_passes == ref.image_passes, extra


NTP_IGNORED = "--ntp is plain next-token prediction, where each row opens once the row above is complete, so "


@pytest.mark.parametrize("flags,named", [
    (["--placeholder", "mean"], "--placeholder would be ignored (it acts on rows a ZipAR --window opens earlier); "
                                "drop it or drop --ntp"),
    (["--placeholder", "above-or-mean"], "--placeholder would be ignored"),  # the default policy, given
    (["--first-row", "serial"], "--first-row would be ignored"),
    (["--draft-len", "3", "--draft-ahead"], "--draft-ahead would be ignored"),
    (["--first-row", "early", "--draft-len", "2", "--draft-ahead", "--placeholder", "left"],
     "--placeholder and --first-row and --draft-ahead would be ignored (they act on rows a ZipAR --window opens "
     "earlier); drop them or drop --ntp"),
])
def test_flags_ntp_would_ignore_are_refused(flags, named, tmp_path, capsys):
    err = error_of(sample_cli, [*ONE_DIGIT, "--ntp", *flags, "--out", str(tmp_path / "x.png")], capsys)
    assert err.startswith(f"error: {NTP_IGNORED}") and named in err, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("flags,named", [
    (["--draft-init", "above"], "error: --draft-init needs --draft-len N > 0 (row drafts are off without it, so it "
                                "would be ignored); give --draft-len N or drop it"),  # the default start, given
    (["--draft-coupling", "independent", "--draft-len", "0"], "error: --draft-coupling needs --draft-len N > 0"),
    (["--draft-ahead"], "error: --draft-ahead needs --draft-len N > 0"),
    (["--draft-init", "left", "--draft-coupling", "maximal", "--draft-ahead"],
     "error: --draft-init and --draft-coupling and --draft-ahead need --draft-len N > 0 (row drafts are off without "
     "it, so they would be ignored); give --draft-len N or drop them"),
])
def test_draft_flags_without_drafts_are_refused(flags, named, tmp_path, capsys):
    err = error_of(sample_cli, [*ONE_DIGIT, *flags, "--out", str(tmp_path / "x.png")], capsys)
    assert err.startswith(named), err
    assert list(tmp_path.iterdir()) == []


def test_draft_flags_left_unset_are_the_documented_defaults():
    """--draft-init and --draft-coupling default to None so that a given one is told from an unset one;
    unset, the decode uses DecodeConfig's defaults, above and maximal (as --help says)."""
    import sample_ddp
    from common.zipar.config import decode_config_from_args
    parser = sample_ddp.build_parser()
    def config(*argv):
        return decode_config_from_args(sample_ddp.fill_defaults(parser.parse_args(argv)))
    assert (config("--draft-len", "2").draft_init, config("--draft-len", "2").draft_coupling) == ("above", "maximal")
    given = config("--draft-len", "2", "--draft-init", "random", "--draft-coupling", "independent")
    assert (given.draft_init, given.draft_coupling) == ("random", "independent")
    help_text = " ".join(parser.format_help().split())
    assert "how a new draft starts: above = the decided token above it (default;" in help_text
    assert "maximal = coupled to the old draft (default;" in help_text


def test_compat_with_ntp_names_both_flags(tmp_path, capsys):
    err = error_of(sample_cli, [*ONE_DIGIT, "--ntp", "--compat", "official", "--out", str(tmp_path / "x.png")], capsys)
    assert err == ("error: --compat official reproduces the released ZipAR code at a window, not next-token "
                   "prediction; drop --ntp or --compat\n"), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags,named", [
    (["--ntp", "--placeholder", "mean"], f"error: {NTP_IGNORED}--placeholder would be ignored"),
    (["--draft-init", "left"], "error: --draft-init needs --draft-len N > 0"),
])
@pytest.mark.parametrize("cli", ["sample_t2i", "emu3", "lumina", "janus", "sample_ddp"])
def test_every_cli_refuses_ignored_decoding_flags_before_any_work(cli, flags, named, tmp_path, capsys, monkeypatch):
    import importlib
    module, argv = {
        "sample_t2i": ("llamagen.sample_t2i", ["--gpt-model", "GPT-tiny", "--vq-model", "VQ-tiny", "--random-init",
                                               "--image-size", "8", "--caption-dim", "8", "--out", tmp_path / "x.png"]),
        "emu3": ("emu3.generate", ["--random-init", "--config", "tiny", "--prompt", "a", "--out-dir", tmp_path / "o"]),
        "lumina": ("lumina_mgpt.generate", ["--random-init", "--config", "tiny", "--prompt", "a", "--out-dir",
                                            tmp_path / "o"]),
        "janus": ("janus.generate", ["--random-init", "--config", "tiny", "--prompt", "a", "--out-dir",
                                     tmp_path / "o"]),
        "sample_ddp": ("sample_ddp", ["--random-init", "--num-fid-samples", "1", "--out-dir", tmp_path / "o"]),
    }[cli]
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    err = error_of(importlib.import_module(module).cli, [*map(str, argv), *flags], capsys)
    assert err.startswith(named), err
    assert list(tmp_path.iterdir()) == []


def test_window_past_the_row_width_is_said_to_be_ntp(tmp_path, capsys):
    assert sample_cli([*ONE_DIGIT, "--window", "1000", "--json", "--out", str(tmp_path / "x.png")]) == 0
    captured = capsys.readouterr()
    assert "--window 1000 >= the row width 24: this is plain next-token prediction" in captured.err
    assert json.loads(captured.out)["forward_passes"] == 576


@pytest.mark.parametrize("cli,argv", [
    (emu3_cli, ["--random-init", "--config", "tiny", "--prompt", "a cat", "--ratio", "5:3"]),
    (lumina_cli, ["--random-init", "--config", "tiny", "--prompt", "a cat", "--width", "512", "--height", "512"]),
])
def test_text_to_image_out_must_be_a_folder(cli, argv, tmp_path, capsys):
    existing = tmp_path / "taken"
    existing.write_text("not a folder")
    assert "is an existing file" in error_of(cli, [*argv, "--out-dir", str(existing)], capsys)
    assert existing.read_text() == "not a folder"


def test_lumina_size_error_states_the_rule_it_applies(capsys):
    # 1024x512 has sides that are multiples of 32, area <= 768^2 and ratio 2, yet is not a trained size
    with pytest.raises(ValueError) as e:
        check_size(1024, 512, 768)
    assert "wp*hp <= 576 < (wp+1)*(hp+1)" in str(e.value) and "multiples" not in str(e.value)


@pytest.mark.parametrize("target", [512, 768, 1024])
def test_the_stated_size_rule_is_the_crop_list(target):
    """The rule in the error message describes exactly the sizes crop_sizes enumerates."""
    p = (target // PATCH) ** 2
    by_rule = {(wp * PATCH, hp * PATCH) for wp in range(1, p + 1) for hp in range(1, p + 1)
               if wp * hp <= p < (wp + 1) * (hp + 1) and max(wp, hp) <= 4 * min(wp, hp)}
    assert by_rule == set(crop_sizes(target))


def test_threads_flag_and_default(tmp_path, capsys, monkeypatch):
    from common import cli as common_cli

    assert "--threads must be >= 1" in error_of(sample_cli, [*ONE_DIGIT, "--threads", "0",
                                                             "--out", str(tmp_path / "x.png")], capsys)
    for many in ("100000", "5000", str(common_cli.usable_cores() + 1)):  # bounded by the cores, before any work
        err = error_of(sample_cli, [*ONE_DIGIT, "--threads", many, "--out", str(tmp_path / "x.png")], capsys)
        assert f"--threads {many}: this process may use {common_cli.usable_cores()} core(s)" in err
    assert not (tmp_path / "x.png").exists()
    monkeypatch.undo()  # the real default: the host's cores split between torchrun's local ranks
    monkeypatch.setattr(common_cli.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert common_cli.default_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert common_cli.default_threads() == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert common_cli.default_threads() == 8


@pytest.mark.parametrize("flags,shown", [([], True), (["--quiet"], False), (["--json"], False)])
def test_progress_bar_over_passes_on_stderr(flags, shown, tmp_path, capsys):
    assert sample_cli([*ONE_DIGIT, "--window", "8", *flags, "--out", str(tmp_path / "x.png")]) == 0
    err = capsys.readouterr().err
    assert ("/224" in err and "pass" in err) == shown  # fixed window 8 on 24x24: 2*24 + 22*8 = 224 passes


@pytest.mark.parametrize("cli,argv,needle", [
    (emu3_cli, ["--config", "tiny", "--prompt", "a cat", "--model-path", "."], "without --random-init"),
    (lumina_cli, ["--random-init", "--config", "8B", "--prompt", "a cat"], "valid for this model: 7B, tiny"),
    ("sample_ddp", ["--model", "lumina-mgpt-512", "--random-init", "--config", "8B", "--prompt", "a"],
     "valid for this model: 7B, tiny"),
    ("sample_ddp", ["--random-init", "--config", "tiny"], "--model demo is one architecture"),
])
def test_config_names_an_architecture_of_the_model_built_with_random_weights(cli, argv, needle, tmp_path, capsys):
    import sample_ddp
    cli = sample_ddp.cli if cli == "sample_ddp" else cli
    out = ["--out-dir", str(tmp_path / "o")]
    assert needle in error_of(cli, [*argv, *out], capsys)
    assert not (tmp_path / "o").exists()
