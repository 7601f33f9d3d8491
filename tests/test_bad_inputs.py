"""Bad inputs (issue 6): every one ends with one line naming the input, the right
exit status, no traceback and nothing half-written.

Each case runs the real command line (``coolcore.cli.main.main``) in this
interpreter, which reports an escaping exception as the process would (a
traceback, exit status 1); one case runs in a fresh process to check the process
boundary too. Each case checks

* the exit status: 2 for usage errors (arguments, configs, output paths), 1 for
  data errors (maps, catalogues, model files);
* stderr is exactly one line, holds the offending path or argument and the
  problem, and no ``Traceback``;
* nothing was written: the output named on the command line does not exist (no
  ``RUN`` and no ``RUN.partial``), or an existing one is byte-for-byte unchanged.

docs/errors.md lists the same cases in a table.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from helpers import run_cli, run_cli_here, tiny_args

TINY = tiny_args(epochs=1, batch_size=16)
MAP = "images/c0000_x.fits"  # the map the map cases break (row 1 of the catalogue)


# --------------------------------------------------------------------------- helpers
def tree_digest(path: Path) -> dict[str, str] | None:
    """relative path -> SHA-256 of every file under ``path`` (None if it does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def check_one_line_error(res: subprocess.CompletedProcess, code: int, needles: list[str]) -> str:
    err = res.stderr.strip()
    assert "Traceback" not in res.stderr, res.stderr
    assert len(err.splitlines()) == 1, f"stderr is not one line:\n{res.stderr}"
    assert res.returncode == code, f"exit {res.returncode}, expected {code}: {err}"
    assert err.startswith("coolcore")
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def write_fits(path: Path, data: np.ndarray) -> None:
    path.unlink(missing_ok=True)
    fits.PrimaryHDU(data).writeto(path)


def edit_catalog(data: Path, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = data / "catalog.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sample(tiny_sample) -> Path:
    return tiny_sample


@pytest.fixture(scope="module")
def model_run(sample, tmp_path_factory) -> tuple[Path, Path]:
    """An unfinished cv run (fold 0 trained for one epoch) and fold 0's exported model."""
    from coolcore.apps.export import export_model
    from coolcore.cli.main import main

    base = tmp_path_factory.mktemp("model")
    data = base / "data"
    shutil.copytree(sample, data)
    run = base / "run"
    argv = ["cv", str(data), *TINY, "--variant", "baseline", "--fold", "0", "--out", str(run)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core CPU two threads are many times slower
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    partial = base / "run.partial"
    model = export_model(partial, base / "model", fold=0)
    return partial, model


@pytest.fixture
def data(sample, tmp_path) -> Path:
    """A private copy of the tiny sample for one case to break."""
    out = tmp_path / "data"
    shutil.copytree(sample, out, ignore=shutil.ignore_patterns(".coolcore_cache"))
    return out


# --------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """One bad input: how to make it, the command, the exit status, what stderr names."""

    make: Callable[[Path, Path], None]  # (data copy, working folder)
    argv: list[str]  # {data}, {work}, {run}, {model} are filled in
    code: int
    needles: list[str]
    watch: list[str] = field(default_factory=lambda: ["{run}", "{run}.partial"])


def _noop(data: Path, work: Path) -> None:
    pass


def _empty_map(data, work):
    (data / MAP).write_bytes(b"")


def _truncated_map(data, work):
    raw = (data / MAP).read_bytes()
    (data / MAP).write_bytes(raw[: len(raw) // 2 + 7])


def _nan_map(data, work):
    write_fits(data / MAP, np.full((64, 64), np.nan, dtype=np.float32))


def _negative_map(data, work):
    write_fits(data / MAP, -np.abs(np.random.default_rng(0).normal(size=(64, 64))) - 1e-3)


def _cube_map(data, work):
    write_fits(data / MAP, np.ones((3, 64, 64), dtype=np.float32))


def _small_map(data, work):
    write_fits(data / MAP, np.ones((32, 32), dtype=np.float32))


def _text_as_map(data, work):
    (data / MAP).write_text("this is not a FITS file\n" * 20)


def _one_d_npy(data, work):
    np.save(data / "images" / "flat.npy", np.ones(4096))
    edit_catalog(
        data, lambda df: df.assign(file=df["file"].where(df.index != 0, "images/flat.npy"))
    )


def _empty_catalog(data, work):
    (data / "catalog.csv").write_bytes(b"")


def _header_only_catalog(data, work):
    lines = (data / "catalog.csv").read_text().splitlines()
    (data / "catalog.csv").write_text(lines[0] + "\n")


def _truncated_catalog(data, work):
    raw = (data / "catalog.csv").read_text()
    (data / "catalog.csv").write_text(raw[: raw.index("\n", len(raw) // 2) + 12])


def _no_file_column(data, work):
    edit_catalog(data, lambda df: df.drop(columns=["file"]))


def _unknown_label(data, work):
    edit_catalog(data, lambda df: df.assign(label=df["label"].where(df.index != 4, "XCC")))


def _missing_listed_map(data, work):
    (data / "images" / "c0001_y.fits").unlink()


def _duplicate_id(data, work):
    edit_catalog(
        data, lambda df: df.assign(image_id=df["image_id"].where(df.index != 5, "c0000_x"))
    )


def _negative_t_cool(data, work):
    edit_catalog(data, lambda df: df.assign(t_cool_gyr=df["t_cool_gyr"].where(df.index != 2, "-3")))


def _two_labels_in_a_cluster(data, work):
    def relabel(df):
        other = next(c for c in ("CC", "WCC", "NCC") if c != df.loc[0, "label"])
        return df.assign(label=df["label"].where(df.index != 1, other))

    edit_catalog(data, relabel)


def _pixel_kpc(value: str):
    def make(data, work):
        edit_catalog(
            data, lambda df: df.assign(pixel_kpc=df["pixel_kpc"].where(df.index != 3, value))
        )

    return make


def _listed_map_is_a_folder(data, work):
    (data / "images" / "c0001_y.fits").unlink()
    (data / "images" / "c0001_y.fits").mkdir()


def _listed_map_is_a_symlink_loop(data, work):
    target = data / "images" / "c0001_y.fits"
    target.unlink()
    target.symlink_to(data / "images" / "loop.fits")
    (data / "images" / "loop.fits").symlink_to(target)


def _config_not_utf8(data, work):
    (work / "bad.yaml").write_bytes(b"train:\n  epochs: 3 # \xff\xfe\n")


def _a_file(data, work):
    (work / "sim").write_text("a file, not a folder\n")


def _no_catalog(data, work):
    (data / "catalog.csv").unlink()


def _not_a_csv(data, work):
    (work / "data.txt").write_text("x")


def _yaml(text: str):
    def make(data, work):
        (work / "bad.yaml").write_text(text)

    return make


def _existing_run(data, work):
    (work / "run").mkdir()
    (work / "run" / "predictions.csv").write_text("keep me\n")


def _existing_partial(data, work):
    (work / "run.partial" / "fold_00").mkdir(parents=True)
    (work / "run.partial" / "fold_00" / "predictions.csv").write_text("finished fold\n")


def _parent_is_file(data, work):
    (work / "occupied").write_text("a file, not a folder\n")


def _existing_csv(data, work):
    (work / "preds.csv").write_text("keep me\n")


def _nonempty_folder(data, work):
    (work / "sim").mkdir()
    (work / "sim" / "notes.txt").write_text("mine\n")


CV = ["cv", "{data}", *TINY, "--out", "{run}"]

CASES: dict[str, Case] = {
    # ---- maps (data errors, exit 1): the message names the map file
    "map: empty file": Case(_empty_map, CV, 1, [MAP.split("/")[1], "FITS"]),
    "map: truncated FITS": Case(_truncated_map, CV, 1, ["c0000_x.fits", "truncated"]),
    "map: NaN only": Case(_nan_map, CV, 1, ["c0000_x.fits", "no finite positive pixel"]),
    "map: negative only": Case(_negative_map, CV, 1, ["c0000_x.fits", "no finite positive pixel"]),
    "map: 3-D cube": Case(_cube_map, CV, 1, ["c0000_x.fits", "3-D cube", "not a 2-D map"]),
    "map: smaller than the crop": Case(
        _small_map, CV, 1, ["c0000_x.fits", "smaller than the crop"]
    ),
    "map: not a FITS file": Case(_text_as_map, CV, 1, ["c0000_x.fits", "FITS"]),
    "map: 1-D array": Case(_one_d_npy, CV, 1, ["flat.npy", "not a 2-D image"]),
    # ---- catalogues (data errors, exit 1): the message names the catalogue and the row/column
    "catalogue: empty file": Case(_empty_catalog, CV, 1, ["catalog.csv", "empty catalogue"]),
    "catalogue: header only": Case(_header_only_catalog, CV, 1, ["catalog.csv", "no rows"]),
    "catalogue: truncated": Case(_truncated_catalog, CV, 1, ["catalog.csv", "row"]),
    "catalogue: no file column": Case(_no_file_column, CV, 1, ["catalog.csv", "'file'"]),
    "catalogue: label outside the classes": Case(
        _unknown_label, CV, 1, ["catalog.csv", "unknown label 'XCC'", "row 5"]
    ),
    "catalogue: listed map missing": Case(
        _missing_listed_map, CV, 1, ["catalog.csv", "c0001_y.fits", "do not exist"]
    ),
    "catalogue: duplicate image_id": Case(_duplicate_id, CV, 1, ["catalog.csv", "duplicate"]),
    "catalogue: negative t_cool_gyr": Case(
        _negative_t_cool, CV, 1, ["catalog.csv", "t_cool_gyr", "row 3"]
    ),
    "catalogue: class with fewer clusters than folds": Case(
        _noop,
        [*CV, "--folds", "7"],
        1,
        ["catalog.csv", "clusters, fewer than the 7 folds"],
    ),
    "catalogue: a cluster with two labels": Case(
        _two_labels_in_a_cluster,
        CV,
        1,
        ["catalog.csv", "cluster '0' is labelled", "row 1", "row 2"],
    ),
    **{
        f"catalogue: pixel_kpc {bad}": Case(
            _pixel_kpc(bad), CV, 1, ["catalog.csv", f"pixel_kpc '{bad}' in row 4", "kpc"]
        )
        for bad in ("-5", "0", "inf", "abc")
    },
    "catalogue: a listed map is a folder": Case(
        _listed_map_is_a_folder, CV, 1, ["catalog.csv", "c0001_y.fits", "is a folder"]
    ),
    "catalogue: a listed map is a symlink loop": Case(
        _listed_map_is_a_symlink_loop, CV, 1, ["catalog.csv", "c0001_y.fits", "symlink loop"]
    ),
    "data: folder without catalog.csv": Case(_no_catalog, CV, 1, ["data", "catalog.csv"]),
    # ---- configs and DATA arguments (usage errors, exit 2)
    "data: not a folder or CSV": Case(
        _not_a_csv, ["cv", "{work}/data.txt", *TINY, "--out", "{run}"], 2, ["data.txt", ".csv"]
    ),
    "config: unknown key": Case(
        _yaml("train:\n  epochz: 3\n"),
        ["cv", "{data}", "--config", "{work}/bad.yaml", "--out", "{run}"],
        2,
        ["bad.yaml", "unknown key 'train.epochz'"],
    ),
    "config: unknown section": Case(
        _yaml("trainer:\n  epochs: 3\n"),
        ["cv", "{data}", "--config", "{work}/bad.yaml", "--out", "{run}"],
        2,
        ["bad.yaml", "unknown config section 'trainer'"],
    ),
    "config: out-of-range value": Case(
        _yaml("train:\n  epochs: 0\n"),
        ["cv", "{data}", "--config", "{work}/bad.yaml", "--out", "{run}"],
        2,
        ["train.epochs=0", "must lie in"],
    ),
    "config: not YAML": Case(
        _yaml("train: [epochs: 3\n"),
        ["cv", "{data}", "--config", "{work}/bad.yaml", "--out", "{run}"],
        2,
        ["bad.yaml", "not valid YAML"],
    ),
    "config: not a mapping": Case(
        _yaml("- 1\n- 2\n"),
        ["cv", "{data}", "--config", "{work}/bad.yaml", "--out", "{run}"],
        2,
        ["bad.yaml", "mapping"],
    ),
    "config: file missing": Case(
        _noop,
        ["cv", "{data}", "--config", "{work}/nowhere.yaml", "--out", "{run}"],
        2,
        ["nowhere.yaml", "neither a preset"],
    ),
    "config: not UTF-8": Case(
        _config_not_utf8,
        ["cv", "{data}", "--config", "{work}/bad.yaml", "--out", "{run}"],
        2,
        ["bad.yaml", "not a UTF-8 text file"],
    ),
    "config: --set without =": Case(
        _noop, [*CV, "--set", "train.epochs"], 2, ["--set train.epochs", "KEY=VALUE"]
    ),
    "config: wrong type": Case(
        _noop, [*CV, "--set", "train.lr=fast"], 2, ["train.lr='fast'", "must be a number"]
    ),
    "config: resize larger than the crop": Case(
        _noop, [*CV, "--set", "preprocess.size=128"], 2, ["preprocess.size=128", "exceeds"]
    ),
    "config: batch of one with 1x1 features": Case(
        _noop, [*CV, "--set", "train.batch_size=1"], 2, ["train.batch_size=1", "BatchNorm"]
    ),
    # ---- command-line arguments and output paths (usage errors, exit 2)
    "args: --epochs 0": Case(_noop, [*CV, "--epochs", "0"], 2, ["--epochs", "at least 1"]),
    "args: unknown command": Case(_noop, ["train", "{data}"], 2, ["invalid choice: 'train'"], []),
    "args: --fold out of range": Case(_noop, [*CV, "--fold", "5"], 2, ["--fold 5", "[0, 2]"]),
    "args: --resume with --force": Case(
        _noop, [*CV, "--resume", "--force"], 2, ["--resume and --force"]
    ),
    "args: --weights file missing": Case(
        _noop, [*CV, "--weights", "{work}/resnet.pt"], 2, ["resnet.pt", "does not exist"]
    ),
    "args: --accelerator gpu without a GPU": Case(
        _noop, [*CV, "--accelerator", "gpu"], 2, ["--accelerator gpu", "not usable here"]
    ),
    "args: --devices not a number": Case(
        _noop, [*CV, "--accelerator", "cpu", "--devices", "abc"], 2, ["--devices abc"]
    ),
    "output: run folder exists": Case(
        _existing_run, CV, 2, ["run", "already exists", "--force"], ["{run}"]
    ),
    "output: unfinished run without --resume": Case(
        _existing_partial, CV, 2, ["run.partial", "--resume"], ["{run}.partial", "{run}"]
    ),
    "output: parent is a file": Case(
        _parent_is_file,
        ["cv", "{data}", *TINY, "--out", "{work}/occupied/run"],
        2,
        ["occupied/run", "cannot create the run folder"],
        ["{work}/occupied"],
    ),
    "output: simulate into a non-empty folder": Case(
        _nonempty_folder,
        ["simulate", "{work}/sim", "--clusters", "3", "--size", "32"],
        2,
        ["sim", "not empty", "--force"],
        ["{work}/sim"],
    ),
    "output: simulate into a file": Case(
        _a_file,
        ["simulate", "{work}/sim", "--clusters", "3", "--size", "32"],
        2,
        ["sim", "exists and is not a folder"],
        ["{work}/sim"],
    ),
    "args: simulate seed out of range": Case(
        _noop,
        ["simulate", "{work}/sim", "--clusters", "3", "--seed", "5000000000"],
        2,
        ["seed", "0..4294967295"],
        ["{work}/sim"],
    ),
    "args: simulate size beyond memory": Case(
        _noop,
        ["simulate", "{work}/sim", "--clusters", "3", "--size", "1000000"],
        2,
        ["size=1000000", "GiB per worker", "use a smaller size"],
        ["{work}/sim"],
    ),
    "args: simulate observation without counts": Case(
        _noop,
        ["simulate", "{work}/sim", "--clusters", "3", "--size", "32", "--observed"]
        + ["--exposure-ks", "1e-9"],
        2,
        ["exposure_ks=1e-09", "no counts"],
        ["{work}/sim"],
    ),
    "output: predictions CSV exists": Case(
        _existing_csv,
        ["predict", "{model}", "{data}/images", "--out", "{work}/preds.csv"],
        2,
        ["preds.csv", "already exists"],
        ["{work}/preds.csv"],
    ),
    "output: predictions CSV is a folder": Case(
        _nonempty_folder,
        ["predict", "{model}", "{data}/images", "--out", "{work}/sim", "--force"],
        2,
        ["sim", "is a folder"],
        ["{work}/sim"],
    ),
    "output: predictions CSV under a file": Case(
        _parent_is_file,
        ["predict", "{model}", "{data}/images", "--out", "{work}/occupied/p.csv"],
        2,
        ["occupied/p.csv", "cannot"],
        ["{work}/occupied"],
    ),
}


def _model_copy(model: Path, work: Path) -> Path:
    out = work / "model"
    shutil.copytree(model, out)
    return out


def _fold0(work: Path) -> Path:
    return work / "model" / "fold_00.safetensors"


MODEL_CASES: dict[str, Case] = {
    "model: folder missing": Case(_noop, [], 2, ["nowhere", "no such model folder"]),
    "model: no model.json": Case(_noop, [], 2, ["model", "no model.json"]),
    "model: model.json truncated": Case(_noop, [], 1, ["model.json", "not a readable JSON"]),
    "model: model.json of another format version": Case(
        _noop, [], 1, ["model.json", "format version 99"]
    ),
    "model: weight file missing": Case(_noop, [], 1, ["fold_00.safetensors", "missing"]),
    "model: weight file truncated": Case(_noop, [], 1, ["fold_00.safetensors", "SHA-256"]),
    "export: fold checkpoint missing": Case(_noop, [], 1, ["best.ckpt", "checkpoint missing"]),
    "export: model folder exists": Case(_noop, [], 2, ["model", "already exists"]),
}


def _break_model(name: str, model: Path, run: Path, work: Path) -> tuple[list[str], list[str]]:
    """Make the broken model (or run) of MODEL_CASES[name]; return argv and watched paths."""
    maps = [str(p) for p in sorted((run.parent / "data" / "images").glob("c000*_x.fits"))]
    out = str(work / "preds.csv")
    predict = ["predict", "{model}", *maps, "--out", out]
    if name == "model: folder missing":
        return ["predict", str(work / "nowhere"), *maps, "--out", out], [out]
    m = _model_copy(model, work)
    if name == "model: no model.json":
        (m / "model.json").unlink()
    elif name == "model: model.json truncated":
        text = (m / "model.json").read_text()
        (m / "model.json").write_text(text[: len(text) // 2])
    elif name == "model: model.json of another format version":
        meta = json.loads((m / "model.json").read_text())
        meta["format_version"] = 99
        (m / "model.json").write_text(json.dumps(meta))
    elif name == "model: weight file missing":
        _fold0(work).unlink()
    elif name == "model: weight file truncated":
        raw = _fold0(work).read_bytes()
        _fold0(work).write_bytes(raw[: len(raw) // 3])
    elif name == "export: fold checkpoint missing":
        r = work / "run"
        shutil.copytree(run, r)
        (r / "fold_00" / "checkpoints" / "best.ckpt").unlink()
        argv = ["export", str(r), "--fold", "0", "--out", str(work / "exported")]
        return argv, [str(work / "exported")]
    elif name == "export: model folder exists":
        return ["export", str(run), "--fold", "0", "--out", str(m)], [str(m)]
    return [a.replace("{model}", str(m)) for a in predict], [out, str(m)]


# --------------------------------------------------------------------------- tests
def _fill(text: str, data: Path, work: Path, model: Path | None) -> str:
    text = text.replace("{data}", str(data)).replace("{work}", str(work))
    text = text.replace("{run}", str(work / "run"))
    return text.replace("{model}", str(model)) if model is not None else text


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, data, tmp_path, request):
    case = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    case.make(data, work)
    model = None
    if any("{model}" in a for a in case.argv):
        model = request.getfixturevalue("model_run")[1]
    argv = [_fill(a, data, work, model) for a in case.argv]
    watched = [Path(_fill(w, data, work, model)) for w in case.watch]
    before = {w: tree_digest(w) for w in watched}
    res = run_cli_here(*argv, cwd=work)
    check_one_line_error(res, case.code, [_fill(n, data, work, model) for n in case.needles])
    for w in watched:
        assert tree_digest(w) == before[w], f"{w} changed"
    # no temporary files left next to the outputs
    assert not [p for p in work.rglob(".*tmp*")], list(work.rglob(".*tmp*"))


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_bad_model(name, model_run, tmp_path):
    case = MODEL_CASES[name]
    run, model = model_run
    work = tmp_path / "work"
    work.mkdir()
    argv, watched = _break_model(name, model, run, work)
    before = {w: tree_digest(Path(w)) for w in watched}
    res = run_cli_here(*argv, cwd=work)
    check_one_line_error(res, case.code, case.needles)
    for w in watched:
        assert tree_digest(Path(w)) == before[w], f"{w} changed"


def test_resume_with_another_config_is_refused(model_run, tmp_path):
    """An unfinished run is only continued with the config it started with."""
    work = tmp_path / "work"
    work.mkdir()
    partial = work / "run.partial"
    shutil.copytree(model_run[0], partial)
    data = model_run[0].parent / "data"
    before = tree_digest(partial)
    argv = ["cv", str(data), *TINY, "--variant", "baseline", "--resume", "--out", str(work / "run")]
    res = run_cli_here(*argv, "--epochs", "2", cwd=work)
    check_one_line_error(res, 2, ["run.partial", "another config", "--force"])
    assert tree_digest(partial) == before and not (work / "run").exists()


def test_a_bad_input_in_a_fresh_process(data, tmp_path):
    """The process boundary: exit status and stderr of ``python -m coolcore.cli.main``."""
    _nan_map(data, tmp_path)
    res = run_cli("cv", str(data), *TINY, "--out", str(tmp_path / "run"), cwd=tmp_path)
    check_one_line_error(res, 1, ["c0000_x.fits", "no finite positive pixel"])
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_the_suite_covers_the_issue():
    """Issue 6 asks for at least 25 bad inputs across these kinds."""
    names = list(CASES) + list(MODEL_CASES) + ["resume with another config"]
    assert len(names) >= 25
    kinds = {n.split(":")[0] for n in names}
    assert {"map", "catalogue", "config", "model", "args", "output"} <= kinds
