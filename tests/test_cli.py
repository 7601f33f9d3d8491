"""The command line: --help everywhere, one-line errors with the right exit status."""

import argparse
import subprocess
import sys

import pytest

from coolcore.cli import args as cli_args
from coolcore.cli.main import build_parser, main


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("simulate", "cv", "ablation", "demo"):
        assert name in out


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: coolcore " + command in capsys.readouterr().out


def test_installed_entry_point_runs():
    exe = [sys.executable, "-m", "coolcore.cli.main", "--version"]
    res = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "coolcore" in res.stdout


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["cv", "x", "--out", "r", "--variant", "nope"], "invalid choice: 'nope'"),
        (["simulate", "d", "--clusters", "0"], "must be at least 1"),
        (["simulate", "d", "--class-mix", "0.5,0.5"], "expected three numbers"),
        (["cv", "x"], "the following arguments are required: --out"),
        (["ablation", "x", "--out", "r", "--repeats", "two"], "is not an integer"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    code = main(
        ["cv", str(tmp_path / "nowhere"), "--config", "demo", "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err.strip()
    assert code in (1, 2)
    assert len(err.splitlines()) == 1 and "nowhere" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_bad_config_override_is_exit_2(tmp_path, capsys):
    code = main(
        [
            "cv",
            str(tmp_path),
            "--config",
            "demo",
            "--set",
            "train.epochz=1",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "train.epochz" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "parse, text, expected",
    [
        (cli_args.positive_int, "3", 3),
        (cli_args.nonneg_int, "0", 0),
        (cli_args.int_at_least(2), "2", 2),
        (cli_args.positive_float, "0.5", 0.5),
        (cli_args.class_mix, "0.2/0.5/0.3", (0.2, 0.5, 0.3)),
    ],
)
def test_argument_types_accept(parse, text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    "parse, text, needle",
    [
        (cli_args.positive_int, "0", "must be at least 1"),
        (cli_args.positive_int, "1.5", "is not an integer"),
        (cli_args.nonneg_int, "-1", "must not be negative"),
        (cli_args.int_at_least(2), "1", "must be at least 2"),
        (cli_args.positive_float, "0", "must be a positive number"),
        (cli_args.positive_float, "inf", "must be a positive number"),
        (cli_args.positive_float, "nan", "must be a positive number"),
        (cli_args.positive_float, "x", "is not a number"),
        (cli_args.class_mix, "0.1,0.9", "expected three numbers"),
    ],
)
def test_argument_types_reject(parse, text, needle):
    with pytest.raises(argparse.ArgumentTypeError, match=needle):
        parse(text)
