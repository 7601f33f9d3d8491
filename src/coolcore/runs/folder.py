"""The run folder: its layout and records, known here and nowhere else.

A cv run folder holds::

    run.json          what made the run (:func:`coolcore.runs.record.make_run_record`)
    config.yaml       the full config
    folds.csv         image_id -> test fold
    fold_XX/          fold.json, predictions.csv, val_predictions.csv, checkpoints/,
                      metrics.csv (the log)
    predictions.csv   every test image once (the folds' merged)
    regression_baselines.csv   with the cooling-time head: the astronomers' estimates
                      of log10 t_cool on the same maps (row for row)
    metrics.json      metrics of the union of the test folds
    history.csv, confusion_matrix.png, learning_curves.png

An ablation run folder holds ``run.json``, ``config.yaml``, ``folds.csv``, one cv
run per method and repeat (``METHOD/rep_XX/``, :meth:`RunFolder.method_run`),
the concentration baselines' predictions (``METHOD_predictions.csv``), and its
results as data: ``results.csv`` (:func:`coolcore.evaluate.tables.ablation_summary`,
exact floats) from which ``table.md`` is made. Runs written before
``results.csv`` existed are summarised again from their predictions.

A run is built in ``RUN.partial/`` (:mod:`coolcore.runs.lifecycle`) and renamed
to ``RUN/`` when complete, so a folder named ``RUN`` is always a finished run.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd

from coolcore.errors import DataError, UsageError
from coolcore.runs.atomic import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
)
from coolcore.runs.lock import RunLock

__all__ = [
    "PARTIAL_SUFFIX",
    "RECORD_FILE",
    "RunFolder",
    "read_json",
    "read_predictions",
]

PARTIAL_SUFFIX = ".partial"
RECORD_FILE = "run.json"
PREDICTIONS_FILE = "predictions.csv"
VAL_PREDICTIONS_FILE = "val_predictions.csv"
REGRESSION_BASELINES_FILE = "regression_baselines.csv"
_IDS = {"image_id": str, "cluster_id": str}


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def read_json(path: str | Path) -> dict:
    """A JSON object from a file; a one-line :class:`DataError` if it cannot be read."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({_one_line(exc)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object")
    return obj


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions CSV (ids kept as text); a one-line :class:`DataError` if unreadable."""
    try:
        return pd.read_csv(path, dtype=_IDS)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable predictions table ({_one_line(exc)})") from None


class RunFolder:
    """A cv or ablation run folder, finished (``RUN``) or not (``RUN.partial``).

    Parameters
    ----------
    path : path
        The folder (it need not exist yet).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ names
    @property
    def is_partial(self) -> bool:
        """True for an unfinished run (``RUN.partial``)."""
        return self.path.name.endswith(PARTIAL_SUFFIX)

    @property
    def final_path(self) -> Path:
        """Where the finished run lies (``RUN`` for ``RUN.partial``)."""
        if self.is_partial:
            return self.path.with_name(self.path.name[: -len(PARTIAL_SUFFIX)])
        return self.path

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_FILE

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def folds_path(self) -> Path:
        return self.path / "folds.csv"

    @property
    def table_path(self) -> Path:
        return self.path / "table.md"

    @property
    def results_path(self) -> Path:
        return self.path / "results.csv"

    def lock(self) -> RunLock:
        """The folder's :class:`~coolcore.runs.lock.RunLock`."""
        return RunLock(self.path)

    # ------------------------------------------------------------------ record
    def has_record(self) -> bool:
        return self.record_path.is_file()

    def read_record(self) -> dict:
        """``run.json`` (a :class:`DataError` when unreadable)."""
        return read_json(self.record_path)

    def write_record(self, record: dict) -> None:
        """Write ``run.json`` and ``config.yaml``; a resumed run keeps its first start time."""
        from coolcore.train.config import dump_config

        record = dict(record)
        if self.has_record():
            try:
                record["started"] = self.read_record().get("started") or record.get("started")
            except DataError:
                pass
        atomic_write_json(self.record_path, record)
        atomic_write_text(self.config_path, dump_config(record["config"]))

    def kind(self) -> str | None:
        """The run's kind from its record (``"cv"``, ``"ablation"``), or None."""
        return self.read_record().get("kind") if self.has_record() else None

    # ------------------------------------------------------------------ folds
    def fold_dir(self, k: int) -> Path:
        return self.path / f"fold_{int(k):02d}"

    def fold_dirs(self) -> dict[int, Path]:
        """Fold index -> folder, for every ``fold_XX`` folder present."""
        out = {}
        for d in sorted(self.path.glob("fold_*")):
            try:
                k = int(d.name.split("_", 1)[1])
            except ValueError:
                continue
            if d.is_dir():
                out[k] = d
        return out

    def fold_done(self, k: int) -> bool:
        """True once fold ``k`` has written its predictions."""
        return (self.fold_dir(k) / PREDICTIONS_FILE).is_file()

    def folds_done(self, n_folds: int) -> list[int]:
        return [k for k in range(n_folds) if self.fold_done(k)]

    def last_checkpoint(self, k: int) -> Path:
        """Fold ``k``'s Lightning ``last.ckpt`` (for resuming mid-fold; may not exist)."""
        return self.fold_dir(k) / "checkpoints" / "last.ckpt"

    def checkpoint(self, k: int) -> Path:
        """The best weights of fold ``k`` (``fold.json``'s ``best_checkpoint``).

        Raises
        ------
        DataError
            The checkpoint is gone (the fold did not finish training).
        """
        folder = self.fold_dir(k)
        name = "checkpoints/best.ckpt"
        if (folder / "fold.json").is_file():
            name = read_json(folder / "fold.json").get("best_checkpoint") or name
        path = folder / name
        if not path.is_file():
            if self.last_checkpoint(k).is_file():
                return self.last_checkpoint(k)
            raise DataError(f"{path}: checkpoint missing (the fold did not finish training)")
        return path

    def read_fold_info(self, k: int) -> dict | None:
        """Fold ``k``'s ``fold.json`` (best epoch, validation score, seconds), or None."""
        path = self.fold_dir(k) / "fold.json"
        return read_json(path) if path.is_file() else None

    def write_fold_result(
        self, k: int, info: dict, predictions: pd.DataFrame, validation: pd.DataFrame | None = None
    ) -> None:
        """Write ``fold.json`` (and ``val_predictions.csv``: the same model on the fold's
        validation maps), then ``predictions.csv``, which marks the fold done."""
        atomic_write_json(self.fold_dir(k) / "fold.json", info)
        if validation is not None:
            atomic_write_csv(self.fold_dir(k) / VAL_PREDICTIONS_FILE, validation)
        atomic_write_csv(self.fold_dir(k) / PREDICTIONS_FILE, predictions)

    def read_fold_predictions(self, k: int) -> pd.DataFrame:
        return read_predictions(self.fold_dir(k) / PREDICTIONS_FILE)

    def read_fold_validation(self, k: int) -> pd.DataFrame | None:
        """Fold ``k``'s model on its validation maps, or None (a run before they were kept)."""
        path = self.fold_dir(k) / VAL_PREDICTIONS_FILE
        return read_predictions(path) if path.is_file() else None

    def fold_log(self, k: int) -> Path:
        """Fold ``k``'s Lightning CSV log."""
        return self.fold_dir(k) / "metrics.csv"

    # ------------------------------------------------------------------ tables
    def write_folds(self, frame: pd.DataFrame) -> None:
        atomic_write_csv(self.folds_path, frame)

    def read_folds(self) -> pd.DataFrame:
        return pd.read_csv(self.folds_path, dtype=str)

    def write_predictions(self, frame: pd.DataFrame) -> None:
        atomic_write_csv(self.predictions_path, frame)

    def read_predictions(self) -> pd.DataFrame:
        return read_predictions(self.predictions_path)

    def write_regression_baselines(self, frame: pd.DataFrame) -> None:
        atomic_write_csv(self.path / REGRESSION_BASELINES_FILE, frame)

    def read_regression_baselines(self) -> pd.DataFrame | None:
        """The run's ``regression_baselines.csv``; None where it has none."""
        path = self.path / REGRESSION_BASELINES_FILE
        return pd.read_csv(path, dtype={"image_id": str}) if path.is_file() else None

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.metrics_path, metrics)

    def read_metrics(self) -> dict:
        return read_json(self.metrics_path)

    def write_history(self, frame: pd.DataFrame) -> Path:
        return atomic_write_csv(self.path / "history.csv", frame)

    def figure(self, name: str) -> Path:
        """Path of a figure of the run (``confusion_matrix.png``, ``learning_curves.png``, ...)."""
        return self.path / name

    # ------------------------------------------------------------------ checks
    def cv_record(self) -> dict:
        """``run.json`` of a cv run (finished or not), with a clear error for anything else.

        Raises
        ------
        UsageError
            No such folder, not a folder, no ``run.json``, an ablation, another kind.
        """
        run = self.path
        if not run.exists():
            raise UsageError(f"{run}: no such run folder")
        if not run.is_dir():
            raise UsageError(f"{run}: not a folder (RUN is a cv run folder)")
        if not self.has_record():
            raise UsageError(f"{run}: not a run folder (no run.json); make one with `coolcore cv`")
        record = self.read_record()
        kind = record.get("kind")
        if kind == "ablation":
            raise UsageError(
                f"{run}: an ablation run holds one cv run per method; export one of them, "
                f"e.g. {self.method_run('all', 0).path}"
            )
        if kind != "cv" or not isinstance(record.get("config"), dict):
            raise UsageError(f"{run}: run.json does not describe a cv run (kind {kind!r})")
        return record

    def resume_command(self, record: dict) -> str:
        """The command that finishes this run: the one that started it, with ``--resume``."""
        try:
            argv = shlex.split(record.get("command") or "")
        except ValueError:
            argv = []
        start = next((i for i, a in enumerate(argv) if a in ("cv", "ablation")), None)
        if start is None:
            argv = ["cv", str(record.get("data") or "DATA"), "--out", str(self.final_path)]
        else:
            argv = argv[start:]
        kept, skip = [], False
        for a in argv:
            if skip:
                skip = False
            elif a == "--fold":
                skip = True
            elif a not in ("--resume", "--force") and not a.startswith("--fold="):
                kept.append(a)
        return "coolcore " + " ".join(shlex.quote(a) for a in kept) + " --resume"

    def finished_cv_record(self, *, fold: int | None = None) -> dict:
        """``run.json`` of a finished cv run, for predict, explain and export.

        Parameters
        ----------
        fold : int, optional
            Only this fold is used: it must be finished (the rest of the run may not be).

        Raises
        ------
        UsageError
            Not a cv run; an unfinished run (``RUN.partial``) or one missing folds,
            with how many folds are done and the command that finishes it.
        """
        record = self.cv_record()
        n_folds = int(record["config"]["cv"]["folds"])
        if fold is not None and self.fold_done(fold) and 0 <= fold < n_folds:
            return record
        done = self.folds_done(n_folds)
        if self.is_partial or len(done) < n_folds:
            state = "an unfinished run" if self.is_partial else "a run missing folds"
            raise UsageError(
                f"{self.path}: {state} ({len(done)} of {n_folds} folds done); "
                f"finish it with `{self.resume_command(record)}`"
            )
        return record

    # ------------------------------------------------------------------ ablation
    @staticmethod
    def method_slug(name: str) -> str:
        """The folder (and file) name of an ablation method, e.g. ``all (intersection)``
        -> ``all_intersection``."""
        return name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")

    def method_run(self, name: str, repeat: int) -> RunFolder:
        """The cv run of method ``name``, repeat ``repeat``, inside an ablation."""
        return RunFolder(self.path / self.method_slug(name) / f"rep_{int(repeat):02d}")

    def baseline_predictions_path(self, name: str) -> Path:
        """Predictions of a concentration baseline of an ablation."""
        return self.path / f"{self.method_slug(name)}_predictions.csv"

    def write_baseline_predictions(self, name: str, frame: pd.DataFrame) -> None:
        atomic_write_csv(self.baseline_predictions_path(name), frame)

    def baseline_predictions(self) -> dict[str, Path]:
        """Slug -> file of every baseline predictions file present."""
        suffix = "_predictions.csv"
        return {p.name[: -len(suffix)]: p for p in sorted(self.path.glob(f"*{suffix}"))}

    def ablation_results(self) -> dict[str, list[pd.DataFrame]]:
        """``{method: [predictions per repeat]}`` of an ablation (finished or ``.partial``).

        The concentration baselines first, then the networks in run order, every
        repeat whose cross-validation has finished.

        Raises
        ------
        UsageError
            Not an ablation run folder.
        """
        record = self.ablation_record()
        results: dict[str, list[pd.DataFrame]] = {}
        if record.get("sweep") is None:
            from coolcore.train.methods import CONCENTRATION_METHODS

            for name in CONCENTRATION_METHODS:
                path = self.baseline_predictions_path(name)
                if path.is_file():
                    results[name] = [read_predictions(path)]
        for name in record.get("methods", []):
            for r in range(int(record.get("repeats", 1))):
                sub = self.method_run(name, r)
                if sub.predictions_path.is_file():
                    results.setdefault(name, []).append(sub.read_predictions())
        return results

    def ablation_record(self) -> dict:
        """``run.json`` of an ablation run (a :class:`UsageError` for anything else)."""
        if not self.has_record():
            raise UsageError(f"{self.path}: not an ablation run folder (no run.json)")
        record = self.read_record()
        if record.get("kind") != "ablation":
            raise UsageError(
                f"{self.path}: not an ablation run folder (kind {record.get('kind')!r})"
            )
        return record

    def write_ablation_summary(self, summary: pd.DataFrame) -> str:
        """Store the ablation's results (``results.csv``, exact) and make ``table.md`` from them.

        Returns
        -------
        str
            The Markdown table (as written to ``table.md``, less the final newline).
        """
        from coolcore.evaluate.tables import ablation_table

        atomic_write_csv(self.results_path, summary, float_format=None)
        table = ablation_table(self.ablation_summary())
        atomic_write_text(self.table_path, table + "\n")
        return table

    def ablation_summary(self) -> pd.DataFrame:
        """The ablation's results (:func:`coolcore.evaluate.tables.ablation_summary`).

        Read from ``results.csv``; a run made before that file existed is
        summarised again from its predictions (the same numbers as its ``table.md``).
        """
        if self.results_path.is_file():
            try:
                return pd.read_csv(self.results_path, dtype={"method": str})
            except (OSError, ValueError, pd.errors.ParserError) as exc:
                raise DataError(
                    f"{self.results_path}: not a readable table ({_one_line(exc)})"
                ) from None
        from coolcore.evaluate.tables import ablation_summary

        results = self.ablation_results()
        if not results:
            raise DataError(f"{self.path}: the ablation holds no finished predictions")
        return ablation_summary(results)
