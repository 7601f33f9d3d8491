"""A standing fuzz test of the command line (issue 14): generated bad inputs for every
command, each of which must end as a user's mistake does.

The cases are generated, not hand-picked: every command is crossed with bad values
for each of its options (numbers that are zero, negative, not finite, not numbers,
huge), with inputs that are missing, empty, a folder, a FIFO, binary junk, text
that is not UTF-8 or a symbolic-link loop, and with outputs that are, contain or
lie inside an input (with and without ``--force``). For each case:

* the exit status is 1 (data) or 2 (usage);
* stderr is one line starting with ``coolcore`` and holds no traceback;
* no output was left behind (the named output does not exist afterwards, or is
  byte-for-byte what it was);
* every input is byte-identical afterwards (SHA-256 of every file before and after).

The commands run in this interpreter (``helpers.run_cli_here``), which reports an
escaping exception as the process would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_cli_here, tiny_args

TINY = tiny_args(epochs=1, batch_size=16)

# --------------------------------------------------------------------------- generators
NOT_INTEGERS = ["abc", "", "1.5", "1e3", "nan"]
NOT_POSITIVE_INTEGERS = ["0", "-1", *NOT_INTEGERS]
NOT_POSITIVE_NUMBERS = ["0", "-1", "nan", "inf", "-inf", "abc", ""]
HUGE_INTEGER = "99999999999999999999"

# option -> bad values, for each command (the rest of the command line is valid)
NUMERIC_OPTIONS: dict[str, dict[str, list[str]]] = {
    "simulate": {
        "--clusters": [*NOT_POSITIVE_INTEGERS, HUGE_INTEGER],
        "--size": [*NOT_POSITIVE_INTEGERS, HUGE_INTEGER],
        "--fov-kpc": NOT_POSITIVE_NUMBERS,
        "--seed": ["-1", *NOT_INTEGERS, HUGE_INTEGER],
        "--workers": NOT_POSITIVE_INTEGERS,
        "--exposure-ks": NOT_POSITIVE_NUMBERS,
        "--class-mix": ["1,2", "a,b,c", "", "0.1,0.2,0.3,0.4"],
    },
    "cv": {
        "--epochs": [*NOT_POSITIVE_INTEGERS, HUGE_INTEGER],
        "--folds": ["1", "2", *NOT_POSITIVE_INTEGERS, HUGE_INTEGER],
        "--seed": ["-1", *NOT_INTEGERS, HUGE_INTEGER],
        "--fold": ["-1", "abc", "99"],
        "--num-nodes": NOT_POSITIVE_INTEGERS,
        "--devices": ["abc", "-1"],
        "--accelerator": ["nonsense"],
        "--precision": ["16", "bf16", "abc"],
        "--variant": ["nonsense", ""],
        "--set": ["train.lr=0", "model.tau1=2", "nonsense=1", "train.lr=abc", "noequals"],
    },
    "predict": {
        "--batch-size": NOT_POSITIVE_INTEGERS,
        "--crop-px": NOT_POSITIVE_INTEGERS,
        "--crop-kpc": NOT_POSITIVE_NUMBERS,
        "--pixel-kpc": NOT_POSITIVE_NUMBERS,
        "--device": ["nonsense", "cuda:99"],
    },
}
NUMERIC_OPTIONS["ablation"] = {
    "--repeats": NOT_POSITIVE_INTEGERS,
    "--sweep": ["nonsense"],
    **{k: v for k, v in NUMERIC_OPTIONS["cv"].items() if k not in ("--fold", "--variant")},
}
NUMERIC_OPTIONS["explain"] = {
    **NUMERIC_OPTIONS["predict"],
    "--per-class": NOT_POSITIVE_INTEGERS,
    "--fold": ["-1", "abc", "99"],
}


def _bad_files(work: Path) -> dict[str, Path]:
    """Paths that are not what a command expects, made in ``work``."""
    junk = work / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    latin = work / "latin1.csv"
    latin.write_bytes("file,label\ncaf\xe9.fits,CC\n".encode("latin-1"))
    empty = work / "empty.csv"
    empty.write_text("")
    folder = work / "folder"
    folder.mkdir()
    fifo = work / "fifo"
    os.mkfifo(fifo)
    loop = work / "loop"
    loop.symlink_to(work / "loop")
    return {
        "missing": work / "nowhere",
        "empty file": empty,
        "empty folder": folder,
        "FIFO": fifo,
        "binary junk": junk,
        "not UTF-8": latin,
        "symlink loop": loop,
    }


# positional inputs of each command, with a valid value for the others
def _positional_cases(data: Path, model: Path, run: Path, bad: Path, work: Path):
    out = work / "out"
    return {
        "cv DATA": ["cv", bad, *TINY, "--out", out],
        "ablation DATA": ["ablation", bad, *TINY, "--out", out],
        "cv --config": ["cv", data, "--config", bad, "--out", out],
        "export RUN": ["export", bad, "--out", out],
        "predict MODEL": ["predict", bad, data / "images", "--out", work / "p.csv"],
        "predict MAP": ["predict", model, bad, "--out", work / "p.csv"],
        "predict --catalog": ["predict", model, "--catalog", bad, "--out", work / "p.csv"],
        "explain SOURCE": ["explain", bad, data / "images", "--out", out],
        "report RUN": ["report", bad],
        "bench --json": ["bench", "--quick", "--json", bad / "sub" / "b.json"],
    }


def _make_obstacles(work: Path) -> list[Path]:
    """A FIFO and a folder of someone else's: what --force must never replace."""
    os.mkfifo(work / "out.fifo")
    (work / "stranger").mkdir()
    (work / "stranger" / "notes.txt").write_text("mine\n")
    return [work / "out.fifo", work / "stranger"]


def _output_cases(data: Path, model: Path, run: Path, work: Path, some_map: Path):
    """Outputs that are, contain or lie inside an input, or that --force must not replace."""
    fifo, stranger = work / "out.fifo", work / "stranger"
    cases = {}
    for force in ([], ["--force"]):
        tag = " --force" if force else ""
        cases |= {
            f"cv --out DATA{tag}": ["cv", data, *TINY, "--out", data, *force],
            f"cv --out inside DATA{tag}": ["cv", data, *TINY, "--out", data / "run", *force],
            f"cv --out the catalogue{tag}": [
                "cv",
                data / "catalog.csv",
                *TINY,
                "--out",
                data / "catalog.csv",
                *force,
            ],
            f"ablation --out DATA{tag}": ["ablation", data, *TINY, "--out", data, *force],
            f"export --out RUN{tag}": ["export", run, "--fold", "0", "--out", run, *force],
            f"export --out inside RUN{tag}": [
                "export",
                run,
                "--fold",
                "0",
                "--out",
                run / "m",
                *force,
            ],
            f"predict --out a map{tag}": ["predict", model, some_map, "--out", some_map, *force],
            f"predict --out the model{tag}": ["predict", model, some_map, "--out", model, *force],
            f"explain --out the model{tag}": ["explain", model, some_map, "--out", model, *force],
            f"explain --out inside its maps' folder{tag}": [
                "explain",
                model,
                some_map.parent,
                "--out",
                some_map.parent / "ex",
                *force,
            ],
        }
    cases |= {
        "cv --force over a folder it did not write": [
            "cv",
            data,
            *TINY,
            "--out",
            stranger,
            "--force",
        ],
        "cv --force over a FIFO": ["cv", data, *TINY, "--out", fifo, "--force"],
        "predict --force over a FIFO": ["predict", model, some_map, "--out", fifo, "--force"],
        "export --force over a folder it did not write": [
            "export",
            run,
            "--fold",
            "0",
            "--out",
            stranger,
            "--force",
        ],
        "simulate into a file": ["simulate", data / "catalog.csv"],
        "simulate --force into DATA's catalogue": ["simulate", data / "catalog.csv", "--force"],
    }
    return cases


def _valid_line(command: str, data: Path, model: Path, work: Path) -> list:
    """A valid command line for ``command`` (a bad option is appended to it)."""
    some_map = sorted((data / "images").iterdir())[0]
    return {
        "simulate": ["simulate", work / "sim", "--clusters", "3", "--size", "32"],
        "cv": ["cv", data, *TINY, "--out", work / "out"],
        "ablation": ["ablation", data, *TINY, "--out", work / "out"],
        "predict": ["predict", model, some_map, "--out", work / "p.csv"],
        "explain": ["explain", model, some_map, "--out", work / "ex"],
    }[command]


def _option_case_names() -> list[str]:
    return [
        f"{command} {option} {value!r}"
        for command, options in NUMERIC_OPTIONS.items()
        for option, values in options.items()
        for value in values
    ]


_HASHES: dict[tuple, str] = {}


def _file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, recomputed whenever its size, mtime or inode change."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHES:
        _HASHES[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _HASHES[key]


def _digest(path: Path) -> dict[str, str] | None:
    """relative path -> SHA-256 of every regular file under ``path`` (None: nothing there)."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not (path.is_dir() or path.is_file()):
        return {".": f"special {os.lstat(path).st_mode:o}"}
    if path.is_file():
        return {".": _file_hash(path)}
    return {
        str(p.relative_to(path)): _file_hash(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tiny_sample, tmp_path_factory) -> dict[str, Path]:
    """A sample, an unfinished cv run (fold 0 of 3 trained) and fold 0's exported model."""
    base = tmp_path_factory.mktemp("fuzz")
    data = base / "data"
    shutil.copytree(tiny_sample, data)
    run = base / "run"
    argv = ["cv", data, *TINY, "--variant", "baseline", "--fold", "0", "--out", run]
    assert run_cli_here(*argv, cwd=base).returncode == 0
    partial = base / "run.partial"
    model = base / "model"
    res = run_cli_here("export", partial, "--fold", "0", "--out", model, cwd=base)
    assert res.returncode == 0, res.stderr
    return {"base": base, "data": data, "run": partial, "model": model}


def _check(argv: list, world: dict[str, Path], work: Path, outputs: list[Path]) -> None:
    inputs = [world["data"], world["run"], world["model"]]
    before = {p: _digest(p) for p in [*inputs, *outputs]}
    res = run_cli_here(*argv, cwd=work)
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode in (1, 2), f"exit {res.returncode} for {argv}:\n{res.stderr}"
    assert len(err.splitlines()) == 1, f"stderr is not one line:\n{res.stderr}"
    assert err.startswith("coolcore"), err
    for path in [*inputs, *outputs]:
        assert _digest(path) == before[path], f"{path} changed"
    for leftover in ("out", "out.partial", "p.csv", "ex", "sim"):
        if (work / leftover) not in outputs:
            assert not os.path.lexists(work / leftover), f"{leftover} was left behind"


# --------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("case", _option_case_names())
def test_bad_option_value(case, world, tmp_path):
    command, option, value = case.split(" ", 2)
    value = eval(value)  # the repr written by _option_case_names
    argv = [*_valid_line(command, world["data"], world["model"], tmp_path), option, value]
    _check(argv, world, tmp_path, [])


BAD_FILE_KINDS = [
    "missing",
    "empty file",
    "empty folder",
    "FIFO",
    "binary junk",
    "not UTF-8",
    "symlink loop",
]
POSITIONAL = [
    "cv DATA",
    "ablation DATA",
    "cv --config",
    "export RUN",
    "predict MODEL",
    "predict MAP",
    "predict --catalog",
    "explain SOURCE",
    "report RUN",
    "bench --json",
]


@pytest.mark.parametrize("kind", BAD_FILE_KINDS)
@pytest.mark.parametrize("where", POSITIONAL)
def test_bad_input_path(where, kind, world, tmp_path):
    bad = _bad_files(tmp_path)[kind]
    argv = _positional_cases(world["data"], world["model"], world["run"], bad, tmp_path)[where]
    if where == "bench --json" and kind in ("missing", "empty folder"):
        pytest.skip("a JSON path under a new or empty folder is valid: the folder is made")
    if where == "predict MAP" and kind != "empty folder":
        _check_error_row(argv, world, tmp_path)
        return
    _check(argv, world, tmp_path, [])


def _check_error_row(argv: list, world: dict[str, Path], work: Path) -> None:
    """A map that cannot be read is an error row, not a refusal: predict still writes its
    table (one row, its ``error`` filled), says so on stderr and exits 1."""
    inputs = [world["data"], world["run"], world["model"]]
    before = {p: _digest(p) for p in inputs}
    res = run_cli_here(*argv, cwd=work)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines and all(line.startswith("coolcore predict: ") for line in lines), res.stderr
    table = pd.read_csv(work / "p.csv", keep_default_na=False)
    assert len(table) == 1 and table["error"].iloc[0] != ""
    assert {p: _digest(p) for p in inputs} == before


def _output_case_names() -> list[str]:
    return list(_output_cases(*(Path(x) for x in "DMRWS")))


@pytest.mark.parametrize("name", _output_case_names())
def test_output_never_touches_an_input(name, world, tmp_path):
    outputs = _make_obstacles(tmp_path)
    some_map = sorted((world["data"] / "images").iterdir())[0]
    argv = _output_cases(world["data"], world["model"], world["run"], tmp_path, some_map)[name]
    _check(argv, world, tmp_path, outputs)


def test_the_fuzz_covers_every_command():
    commands = {c.split(" ")[0] for c in _option_case_names()}
    commands |= {c.split(" ")[0] for c in POSITIONAL}
    assert {"simulate", "cv", "ablation", "export", "predict", "explain", "report"} <= commands
    n = len(_option_case_names()) + len(POSITIONAL) * len(BAD_FILE_KINDS)
    assert n >= 150
