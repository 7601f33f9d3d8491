"""Metrics of one predictions table, with cluster-bootstrap intervals.

Everything here works from a *predictions table*: a :class:`pandas.DataFrame`
with one row per image and the columns ``image_id``, ``cluster_id``, ``label``
and ``predicted`` (class names from :data:`coolcore.CLASS_NAMES`, or their
integer positions 0, 1, 2), optionally ``fold`` and the probabilities
``p_CC, p_WCC, p_NCC``.  This is the ``predictions.csv`` of a run folder, so every
number here can be rebuilt from run folders alone.

Intervals come from a percentile bootstrap that resamples *clusters*
(:mod:`coolcore.evaluate.intervals`, where the scheme is written out).  Paired
differences between methods are :mod:`coolcore.evaluate.paired`, the paper's
tables :mod:`coolcore.evaluate.tables`.

Scores follow scikit-learn's conventions with ``labels`` fixed to all three
classes and ``zero_division=0``: a class that is never predicted has precision 0,
a class absent from the truth has recall 0, and F1 is ``2 TP / (2 TP + FP + FN)``
(0 when that denominator is 0).  Macro-F1 always averages all three classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError
from coolcore.evaluate.intervals import (
    check_boot_args,
    cluster_multiplicities,
    percentile_interval,
    sample_std,
)

__all__ = [
    "N_CLASSES",
    "PROBABILITY_COLUMNS",
    "PredictionTable",
    "cluster_confusion_counts",
    "compute_metrics",
    "index_to_labels",
    "labels_to_index",
    "parse_predictions",
    "scores_from_confusion",
]

N_CLASSES = len(CLASS_NAMES)
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in CLASS_NAMES)
"""Probability columns of a predictions table, in class order."""


# --------------------------------------------------------------------------- labels
def labels_to_index(
    labels: Sequence[Any] | np.ndarray | pd.Series, *, what: str = "label"
) -> np.ndarray:
    """Convert class names (or integer class positions) to indices 0, 1, 2.

    Parameters
    ----------
    labels
        Class names from :data:`coolcore.CLASS_NAMES` (``"CC"``, ``"WCC"``,
        ``"NCC"``), or integers in ``0 .. 2``.
    what
        Name of the column or argument, used in error messages.

    Returns
    -------
    numpy.ndarray
        ``int64`` class indices in the order of :data:`coolcore.CLASS_NAMES`.

    Raises
    ------
    DataError
        For a missing value or a value that is not one of the classes.

    Examples
    --------
    >>> labels_to_index(["CC", "NCC", "WCC"]).tolist()
    [0, 2, 1]
    """
    values = pd.Series(np.asarray(labels, dtype=object))
    if values.isna().any():
        raise DataError(f"column '{what}': {int(values.isna().sum())} missing value(s)")
    if values.empty:
        return np.zeros(0, dtype=np.int64)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        idx = values.to_numpy(dtype=np.int64)
        bad = sorted({int(v) for v in idx if not 0 <= v < N_CLASSES})
        if bad:
            raise DataError(f"column '{what}': class index out of range 0..2: {bad[:5]}")
        return idx
    mapping = {name: i for i, name in enumerate(CLASS_NAMES)}
    idx = values.astype(str).str.strip().map(mapping)
    if idx.isna().any():
        bad = sorted(set(values[idx.isna()].astype(str)))
        raise DataError(
            f"column '{what}': unknown class name(s) {bad[:5]}; expected one of {list(CLASS_NAMES)}"
        )
    return idx.to_numpy(dtype=np.int64)


def index_to_labels(index: Sequence[int] | np.ndarray) -> np.ndarray:
    """Convert class indices 0, 1, 2 to class names (an object array of str).

    Examples
    --------
    >>> index_to_labels([2, 0]).tolist()
    ['NCC', 'CC']
    """
    idx = np.asarray(index, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= N_CLASSES):
        raise DataError(f"class index out of range 0..{N_CLASSES - 1}")
    return np.asarray(CLASS_NAMES, dtype=object)[idx]


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class PredictionTable:
    """A validated predictions table reduced to arrays (:func:`parse_predictions`).

    Attributes
    ----------
    image_id, cluster_id : numpy.ndarray
        Identifiers per image (image ids stand in for clusters when there are none).
    y_true, y_pred : numpy.ndarray
        int64 class indices.
    fold : numpy.ndarray or None
        The ``fold`` column, when there is one.
    probs : numpy.ndarray or None
        (N, 3) probabilities, when all three columns are there.
    """

    image_id: np.ndarray
    cluster_id: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    fold: np.ndarray | None
    probs: np.ndarray | None


def parse_predictions(predictions: pd.DataFrame, *, name: str = "predictions") -> PredictionTable:
    """Validate a predictions table (see the module docstring) and convert it to arrays.

    Raises
    ------
    DataError
        An empty table, a missing ``label`` (or ``predicted`` and probabilities),
        unknown classes, non-finite probabilities, missing cluster ids.
    """
    if not isinstance(predictions, pd.DataFrame):
        raise UsageError(f"{name}: expected a pandas DataFrame, got {type(predictions).__name__}")
    if len(predictions) == 0:
        raise DataError(f"{name}: the predictions table is empty")
    if "label" not in predictions.columns:
        raise DataError(f"{name}: missing column 'label'")
    y_true = labels_to_index(predictions["label"], what="label")
    probs = None
    if all(c in predictions.columns for c in PROBABILITY_COLUMNS):
        probs = predictions[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(probs)):
            raise DataError(f"{name}: non-finite values in the probability columns")
    if "predicted" in predictions.columns:
        y_pred = labels_to_index(predictions["predicted"], what="predicted")
    elif probs is not None:
        y_pred = np.argmax(probs, axis=1).astype(np.int64)
    else:
        raise DataError(f"{name}: missing column 'predicted' (and no {list(PROBABILITY_COLUMNS)})")
    n = len(predictions)
    image_id = (
        predictions["image_id"].to_numpy()
        if "image_id" in predictions.columns
        else np.arange(n, dtype=np.int64)
    )
    # Without cluster ids every image is its own cluster (an ordinary bootstrap).
    cluster_id = (
        predictions["cluster_id"].to_numpy() if "cluster_id" in predictions.columns else image_id
    )
    if pd.isna(cluster_id).any():
        raise DataError(f"{name}: missing values in column 'cluster_id'")
    fold = predictions["fold"].to_numpy() if "fold" in predictions.columns else None
    return PredictionTable(image_id, cluster_id, y_true, y_pred, fold, probs)


def cluster_confusion_counts(table: PredictionTable, cluster_index: pd.Index) -> np.ndarray:
    """Per-cluster confusion counts, shape ``(n_clusters, 9)`` (row-major 3 x 3).

    Clusters are the rows in the order of ``cluster_index``; a table with a
    cluster that the index lacks is a DataError.
    """
    codes = cluster_index.get_indexer(table.cluster_id)
    if np.any(codes < 0):
        raise DataError("a predictions table has a cluster_id that the others lack")
    flat = codes * N_CLASSES**2 + table.y_true * N_CLASSES + table.y_pred
    counts = np.bincount(flat, minlength=len(cluster_index) * N_CLASSES**2)
    return counts.reshape(len(cluster_index), N_CLASSES**2).astype(np.float64)


# --------------------------------------------------------------------------- scores
def scores_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1, macro-F1 and accuracy from confusion matrices.

    Parameters
    ----------
    cm
        Counts (possibly weighted), shape ``(..., C, C)``, rows = true class,
        columns = predicted class.  Leading axes are batch axes.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` of shape ``(..., C)``; ``macro_f1`` and
        ``accuracy`` of shape ``(...)``.  Zero denominators give 0, as
        scikit-learn's ``zero_division=0``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    n_pred = cm.sum(axis=-2)
    n_true = cm.sum(axis=-1)
    total = n_true.sum(axis=-1)

    def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast(num, den).shape)
        np.divide(num, den, out=out, where=den > 0)
        return out

    f1 = _ratio(2.0 * tp, n_pred + n_true)
    return {
        "precision": _ratio(tp, n_pred),
        "recall": _ratio(tp, n_true),
        "f1": f1,
        "macro_f1": f1.mean(axis=-1),
        "accuracy": _ratio(tp.sum(axis=-1), total),
    }


# --------------------------------------------------------------------------- metrics
def compute_metrics(
    predictions: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> dict[str, Any]:
    """All metrics of one predictions table, with cluster-bootstrap intervals.

    Parameters
    ----------
    predictions
        Predictions table (see the module docstring).  Without ``cluster_id``
        every image counts as its own cluster.
    n_boot
        Number of bootstrap replicates; 0 skips the intervals (they become None).
    seed
        Seed of :func:`numpy.random.default_rng` for the bootstrap.
    ci
        Coverage of the percentile intervals.

    Returns
    -------
    dict
        JSON-serialisable: ``macro_f1``, ``macro_f1_ci``, ``accuracy``,
        ``accuracy_ci``; ``precision``, ``recall``, ``f1``, ``support`` and
        ``precision_ci``, ``recall_ci``, ``f1_ci`` keyed by class name;
        ``confusion_matrix`` (counts, rows true, columns predicted) and
        ``confusion_matrix_normalised`` (rows sum to 1, an empty row is zeros);
        ``mean_abs_class_error`` (mean of ``|true - predicted|`` over the ordered
        classes) and, when probabilities are present, ``cramer_distance``
        (mean over images of ``sum_k (F_pred(k) - F_true(k))^2``, F cumulative);
        ``per_fold_macro_f1`` (fold as str -> value), ``per_fold_macro_f1_mean``
        and ``per_fold_macro_f1_std`` (ddof=1) when a ``fold`` column exists;
        ``n_images``, ``n_clusters``, ``class_names`` and ``bootstrap`` (settings).

    Examples
    --------
    >>> df = pd.DataFrame({"image_id": [1, 2, 3], "cluster_id": [1, 1, 2],
    ...                    "label": ["CC", "WCC", "NCC"], "predicted": ["CC", "WCC", "WCC"]})
    >>> round(compute_metrics(df, n_boot=0)["macro_f1"], 4)
    0.5556
    """
    check_boot_args(n_boot, ci)
    table = parse_predictions(predictions)
    labels = list(range(N_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        table.y_true, table.y_pred, labels=labels, average=None, zero_division=0
    )
    cm = _sk_confusion_matrix(table.y_true, table.y_pred, labels=labels)
    row_sums = cm.sum(axis=1, keepdims=True)
    cm_norm = np.divide(cm, row_sums, out=np.zeros(cm.shape), where=row_sums > 0)

    def _by_class(values: np.ndarray, cast: type = float) -> dict[str, Any]:
        return {name: cast(v) for name, v in zip(CLASS_NAMES, values, strict=True)}

    cluster_index = pd.Index(np.unique(table.cluster_id))
    out: dict[str, Any] = {
        "class_names": list(CLASS_NAMES),
        "n_images": int(len(table.y_true)),
        "n_clusters": int(len(cluster_index)),
        "macro_f1": float(np.mean(f1)),
        "accuracy": float(np.mean(table.y_true == table.y_pred)),
        "precision": _by_class(precision),
        "recall": _by_class(recall),
        "f1": _by_class(f1),
        "support": _by_class(support, int),
        "confusion_matrix": cm.astype(int).tolist(),
        "confusion_matrix_normalised": cm_norm.tolist(),
        "mean_abs_class_error": float(np.mean(np.abs(table.y_true - table.y_pred))),
    }
    if table.probs is not None:
        cdf_pred = np.cumsum(table.probs, axis=1)
        cdf_true = np.cumsum(np.eye(N_CLASSES)[table.y_true], axis=1)
        out["cramer_distance"] = float(np.mean(np.sum((cdf_pred - cdf_true) ** 2, axis=1)))

    if table.fold is not None:
        per_fold = {}
        for fold in pd.unique(table.fold):
            sel = table.fold == fold
            per_fold[str(fold)] = float(
                np.mean(
                    precision_recall_fscore_support(
                        table.y_true[sel],
                        table.y_pred[sel],
                        labels=labels,
                        average=None,
                        zero_division=0,
                    )[2]
                )
            )
        per_fold = dict(sorted(per_fold.items(), key=lambda kv: _sort_key(kv[0])))
        values = np.array(list(per_fold.values()))
        out["per_fold_macro_f1"] = per_fold
        out["per_fold_macro_f1_mean"] = float(values.mean())
        out["per_fold_macro_f1_std"] = sample_std(values)

    names = ("macro_f1", "accuracy", "precision", "recall", "f1")
    if n_boot > 0:
        weights = cluster_multiplicities(len(cluster_index), n_boot, seed)
        boot_cm = (weights @ cluster_confusion_counts(table, cluster_index)).reshape(
            n_boot, N_CLASSES, N_CLASSES
        )
        reps = scores_from_confusion(boot_cm)
        out["macro_f1_ci"] = percentile_interval(reps["macro_f1"], ci)
        out["accuracy_ci"] = percentile_interval(reps["accuracy"], ci)
        for key in ("precision", "recall", "f1"):
            out[f"{key}_ci"] = {
                name: percentile_interval(reps[key][:, k], ci) for k, name in enumerate(CLASS_NAMES)
            }
    else:
        for key in names:
            out[f"{key}_ci"] = None
    out["bootstrap"] = {
        "n_boot": int(n_boot),
        "seed": int(seed),
        "ci": float(ci),
        "unit": "cluster",
    }
    return out


def _sort_key(fold: str) -> tuple[int, Any]:
    """Sort folds numerically when they are numbers, else as text."""
    try:
        return (0, float(fold))
    except ValueError:
        return (1, fold)
