"""``coolcore compare``: methods from several runs scored on the same clusters.

A source is

* a predictions CSV (``predictions.csv`` of a cv run, a baseline's
  ``*_predictions.csv``): one method, named after the file's stem without
  ``_predictions`` (after its folder for ``predictions.csv``);
* a cv run folder: its ``predictions.csv``, named after the folder;
* an ablation run folder: every method it holds (networks and baselines);
* any of these as ``NAME=SOURCE``: a cv run or a CSV under that name.

A name given more than once is a method with several training seeds (an ablation
per seed gives each network once per seed); an astronomers' baseline
(:data:`coolcore.train.methods.CONCENTRATION_METHODS`) does not depend on the
training seed and is kept once.  :func:`coolcore.evaluate.compare.compare_methods`
scores them (bootstrap over clusters and seeds; differences paired on the same
clusters).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coolcore.errors import UsageError
from coolcore.runs.folder import RunFolder, read_predictions
from coolcore.train.methods import CONCENTRATION_METHODS

__all__ = ["collect_methods"]


def _one_source(path: Path, name: str | None) -> dict[str, list[pd.DataFrame]]:
    if path.is_file():
        stem = path.parent.name if path.name == "predictions.csv" else path.stem
        stem = stem.removesuffix("_predictions")
        return {name or stem: [read_predictions(path)]}
    if not path.is_dir():
        raise UsageError(f"{path}: no such file or run folder")
    folder = RunFolder(path)
    if not folder.has_record():
        raise UsageError(f"{path}: not a run folder (no run.json) nor a predictions CSV")
    kind = folder.read_record().get("kind")
    if kind == "ablation":
        if name is not None:
            raise UsageError(f"{name}={path}: an ablation holds several methods; give it no name")
        return {m: frames for m, frames in folder.ablation_results().items() if frames}
    if not folder.predictions_path.is_file():
        raise UsageError(f"{path}: an unfinished {kind} run (no predictions.csv)")
    return {name or path.name: [folder.read_predictions()]}


def collect_methods(sources: list[str]) -> dict[str, list[pd.DataFrame]]:
    """``{method: [predictions per seed]}`` from the sources (module docstring)."""
    if not sources:
        raise UsageError("no sources given: pass run folders or predictions CSVs")
    out: dict[str, list[pd.DataFrame]] = {}
    for source in sources:
        name, sep, rest = source.partition("=")
        name, path = (name, Path(rest)) if sep and name else (None, Path(source))
        for method, frames in _one_source(path, name).items():
            if method in CONCENTRATION_METHODS and method in out:
                continue  # the same fit on the same folds: once
            out.setdefault(method, []).extend(frames)
    return out
