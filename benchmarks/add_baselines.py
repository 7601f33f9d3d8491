"""Add to finished ablation folders the astronomers' baselines they were made without.

Usage::

    python benchmarks/add_baselines.py DATA RUN [RUN ...]

An ablation made before a baseline existed (``profile (fit)``, the logistic
regression on the surface-brightness profile, :mod:`coolcore.evaluate.profiles`)
gets its predictions on the run's own folds, exactly as ``coolcore ablation`` makes
them now: the same data (its maps' checksum must equal the run's
``data_checksum``), the folds rebuilt from the recorded config and checked
against ``folds.csv``.  ``results.csv``, ``table.md`` and ``ablation.png`` are
rewritten with the new rows; nothing else is touched (the networks' runs stay).

A cv run with the cooling-time head gets the ``regression`` block of its
``metrics.json`` recomputed with every baseline (``profile``: a ridge regression on
the same profile); the blocks it had must recompute to the same numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coolcore.errors import UsageError
from coolcore.evaluate.plots import plot_ablation
from coolcore.evaluate.tables import ablation_summary
from coolcore.evaluate.tcool_report import baseline_regressions, regression_report
from coolcore.runs.folder import RunFolder
from coolcore.train.ablation import concentration_predictions
from coolcore.train.protocol import folds_frame, load_data, make_folds


def same_data_and_folds(data: Path, folder: RunFolder, record: dict):
    """The run's data set and folds, rebuilt and checked against what it recorded."""
    cfg = record["config"]
    dataset = load_data(data, cfg, progress=False)
    if dataset.cache_key != record.get("data_checksum"):
        raise UsageError(f"{data}: not the maps of {folder.path} (another data checksum)")
    folds = make_folds(dataset, cfg, data)
    recorded = folder.read_folds()
    rebuilt = folds_frame(dataset, folds).astype(str)
    if not rebuilt[["image_id", "fold"]].equals(recorded[["image_id", "fold"]]):
        raise UsageError(f"{folder.path}: the folds rebuilt from its config differ from folds.csv")
    return dataset, folds


def add_regression_baselines(data: Path, run: Path) -> list[str]:
    """A cv run with the cooling-time head: the ``regression`` block of ``metrics.json``
    recomputed with every baseline; the blocks it lacked."""
    folder = RunFolder(run)
    record = folder.read_record()
    metrics = folder.read_metrics()
    old = metrics.get("regression")
    if old is None:
        raise UsageError(f"{run}: a cv run without the cooling-time head has no baselines to add")
    dataset, folds = same_data_and_folds(data, folder, record)
    validations = [folder.read_fold_validation(k) for k in range(len(folds))]
    kept = all(v is not None for v in validations)
    predictions = folder.read_predictions()
    baselines = baseline_regressions(predictions, dataset, folds)
    new = regression_report(
        predictions, baselines=baselines, validations=validations if kept else None
    )
    for key in old:
        if new.get(key) != old[key]:
            raise UsageError(f"{run}: its {key!r} block recomputes differently; not touched")
    added = [key for key in new if key not in old]
    if baselines is not None and folder.read_regression_baselines() is None:
        added.append("regression_baselines.csv")
    if added:
        with folder.lock():
            folder.write_metrics({**metrics, "regression": new})
            if baselines is not None:
                folder.write_regression_baselines(baselines)
    return added


def add_baselines(data: Path, run: Path) -> list[str]:
    """Write the missing baseline predictions of ``run``; the names added."""
    folder = RunFolder(run)
    if folder.has_record() and folder.read_record().get("kind") == "cv":
        return add_regression_baselines(data, run)
    record = folder.ablation_record()
    if record.get("sweep") is not None:
        raise UsageError(f"{run}: a loss-weight sweep has no baselines")
    dataset, folds = same_data_and_folds(data, folder, record)
    added = []
    with folder.lock():
        for name, frame in concentration_predictions(dataset, folds).items():
            if not folder.baseline_predictions_path(name).is_file():
                folder.write_baseline_predictions(name, frame)
                added.append(name)
        if added:
            results = folder.ablation_results()
            folder.write_ablation_summary(ablation_summary(results))
            plot_ablation(results, folder.path / "ablation.png")
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the data the runs were made on")
    parser.add_argument(
        "runs", type=Path, nargs="+", help="finished ablation folders or cv runs with the head"
    )
    args = parser.parse_args(argv)
    try:
        for run in args.runs:
            added = add_baselines(args.data, run)
            print(f"{run}: added {', '.join(added) if added else 'nothing (all present)'}")
    except UsageError as exc:
        print(f"add_baselines: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
