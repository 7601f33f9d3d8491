"""Metrics with cluster-bootstrap intervals, and the paper's tables.

Everything here works from a *predictions table*: a :class:`pandas.DataFrame`
with one row per image and the columns ``image_id``, ``cluster_id``, ``label``
and ``predicted`` (class names from :data:`coolcore.CLASS_NAMES`, or their
integer positions 0, 1, 2), optionally ``fold`` and the probabilities
``p_CC, p_WCC, p_NCC``.  This is the ``predictions.csv`` of a run folder, so every
number here can be rebuilt from run folders alone.

Intervals come from a percentile bootstrap that resamples *clusters*: the
projections of one cluster are not independent images, so a drawn cluster brings
all its images into the replicate, and a cluster drawn twice brings them twice.
The bootstrap is vectorised: each replicate is a vector of cluster
multiplicities, and its confusion matrix is that vector times the per-cluster
confusion counts, so all replicates cost one small matrix product.

Resampling scheme (fixed, so that it can be reproduced by hand): the clusters
are indexed in sorted order of ``cluster_id``; replicate ``b`` draws
``rng.integers(0, n_clusters, size=(n_boot, n_clusters))[b]`` with
``rng = numpy.random.default_rng(seed)``; the interval is
``numpy.quantile(replicates, [(1 - ci) / 2, (1 + ci) / 2])``.

Scores follow scikit-learn's conventions with ``labels`` fixed to all three
classes and ``zero_division=0``: a class that is never predicted has precision 0,
a class absent from the truth has recall 0, and F1 is ``2 TP / (2 TP + FP + FN)``
(0 when that denominator is 0).  Macro-F1 always averages all three classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError

__all__ = [
    "PROBABILITY_COLUMNS",
    "ablation_summary",
    "ablation_table",
    "compute_metrics",
    "index_to_labels",
    "labels_to_index",
    "paired_difference",
    "scores_from_confusion",
    "summarise_repeats",
    "sweep_table",
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
class _Table:
    """A validated predictions table reduced to integer arrays."""

    image_id: np.ndarray
    cluster_id: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    fold: np.ndarray | None
    probs: np.ndarray | None


def _parse(predictions: pd.DataFrame, *, name: str = "predictions") -> _Table:
    """Validate a predictions table and convert it to arrays."""
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
    return _Table(image_id, cluster_id, y_true, y_pred, fold, probs)


def _cluster_counts(table: _Table, cluster_index: pd.Index) -> np.ndarray:
    """Per-cluster confusion counts, shape ``(n_clusters, 9)`` (row-major 3 x 3)."""
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


def _check_boot_args(n_boot: int, ci: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise UsageError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not 0.0 < float(ci) < 1.0:
        raise UsageError(f"ci must lie strictly between 0 and 1, got {ci!r}")


def _cluster_multiplicities(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each cluster is drawn in each replicate, shape ``(n_boot, n_clusters)``."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    offsets = (np.arange(n_boot) * n_clusters)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_clusters)
    return counts.reshape(n_boot, n_clusters).astype(np.float64)


def _interval(replicates: np.ndarray, ci: float) -> list[float]:
    """Percentile interval along the first axis, as plain floats."""
    low, high = np.quantile(replicates, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0], axis=0)
    return [float(low), float(high)]


def _std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof=1); 0 for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.std(values, ddof=1)) if values.size >= 2 else 0.0


def summarise_repeats(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of repeated measurements.

    A single value has standard deviation 0.

    Examples
    --------
    >>> mean, std = summarise_repeats([0.8, 0.9])
    >>> round(mean, 6), round(std, 6)
    (0.85, 0.070711)
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise UsageError("summarise_repeats: no values")
    return float(arr.mean()), _std(arr)


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
    _check_boot_args(n_boot, ci)
    table = _parse(predictions)
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
        out["per_fold_macro_f1_std"] = _std(values)

    names = ("macro_f1", "accuracy", "precision", "recall", "f1")
    if n_boot > 0:
        weights = _cluster_multiplicities(len(cluster_index), n_boot, seed)
        boot_cm = (weights @ _cluster_counts(table, cluster_index)).reshape(
            n_boot, N_CLASSES, N_CLASSES
        )
        reps = scores_from_confusion(boot_cm)
        out["macro_f1_ci"] = _interval(reps["macro_f1"], ci)
        out["accuracy_ci"] = _interval(reps["accuracy"], ci)
        for key in ("precision", "recall", "f1"):
            out[f"{key}_ci"] = {
                name: _interval(reps[key][:, k], ci) for k, name in enumerate(CLASS_NAMES)
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


# --------------------------------------------------------------------------- paired
def _as_list(preds: pd.DataFrame | Sequence[pd.DataFrame], name: str) -> list[pd.DataFrame]:
    if isinstance(preds, pd.DataFrame):
        return [preds]
    preds = list(preds)
    if not preds:
        raise UsageError(f"{name}: no predictions tables")
    return preds


def _image_key(table: _Table, name: str) -> pd.DataFrame:
    """The (image, cluster, label) identity of a table, sorted by image id."""
    key = pd.DataFrame(
        {"image_id": table.image_id, "cluster_id": table.cluster_id, "label": table.y_true}
    )
    if key["image_id"].duplicated().any():
        dup = key.loc[key["image_id"].duplicated(), "image_id"].iloc[0]
        raise DataError(f"{name}: image_id {dup!r} appears more than once")
    return key.sort_values("image_id", kind="stable").reset_index(drop=True)


def _check_same_images(tables: Sequence[_Table], names: Sequence[str]) -> None:
    """Require identical images, with the same cluster and label, in every table."""
    ref = _image_key(tables[0], names[0])
    for table, name in zip(tables[1:], names[1:], strict=True):
        key = _image_key(table, name)
        if len(key) != len(ref) or not np.array_equal(
            key["image_id"].to_numpy(), ref["image_id"].to_numpy()
        ):
            raise DataError(
                f"{name} and {names[0]} do not cover the same images "
                f"({len(key)} vs {len(ref)} images); paired comparisons need identical images"
            )
        for col in ("cluster_id", "label"):
            if not np.array_equal(key[col].to_numpy(), ref[col].to_numpy()):
                raise DataError(f"{name} and {names[0]} disagree on column '{col}'")


def _repeat_macro_f1(
    tables: Sequence[_Table], cluster_index: pd.Index, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Macro-F1 of each repeat, and its bootstrap replicates averaged over repeats."""
    counts = np.stack([_cluster_counts(t, cluster_index) for t in tables])  # (R, G, 9)
    point = scores_from_confusion(counts.sum(axis=1).reshape(-1, N_CLASSES, N_CLASSES))
    if weights is None:
        return point["macro_f1"], None
    boot_cm = np.einsum("bg,rgk->rbk", weights, counts).reshape(
        len(tables), weights.shape[0], N_CLASSES, N_CLASSES
    )
    return point["macro_f1"], scores_from_confusion(boot_cm)["macro_f1"].mean(axis=0)


def paired_difference(
    pred_a: pd.DataFrame | Sequence[pd.DataFrame],
    pred_b: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Macro-F1 of ``a`` minus that of ``b`` on the same images, with a paired interval.

    Both sides are evaluated on the same resampled clusters in every replicate,
    so the interval reflects only how the two methods differ on the same data.

    Parameters
    ----------
    pred_a, pred_b
        A predictions table each, or a list of tables (one per repeat, e.g. per
        seed).  With lists, each side's macro-F1 is the mean over its repeats,
        and every replicate averages the repeats on the same resampled clusters.
        All tables must hold the same images (``image_id``), each with the same
        ``cluster_id`` and ``label``.
    n_boot, seed, ci
        Bootstrap settings, as in :func:`compute_metrics`.

    Returns
    -------
    dict
        ``difference`` (point estimate), ``ci`` ([low, high]), ``p_value`` (the
        fraction of replicates with difference <= 0: a one-sided bootstrap
        p-value for "a is better than b"), ``macro_f1_a``, ``macro_f1_b``,
        ``n_images``, ``n_clusters``, ``n_repeats_a``, ``n_repeats_b`` and the
        bootstrap settings.  With ``n_boot=0``, ``ci`` and ``p_value`` are None.
    """
    _check_boot_args(n_boot, ci)
    frames_a, frames_b = _as_list(pred_a, "pred_a"), _as_list(pred_b, "pred_b")
    names = [f"pred_a[{i}]" for i in range(len(frames_a))]
    names += [f"pred_b[{i}]" for i in range(len(frames_b))]
    tables = [_parse(df, name=n) for df, n in zip(frames_a + frames_b, names, strict=True)]
    _check_same_images(tables, names)
    tables_a, tables_b = tables[: len(frames_a)], tables[len(frames_a) :]

    cluster_index = pd.Index(np.unique(tables[0].cluster_id))
    weights = _cluster_multiplicities(len(cluster_index), n_boot, seed) if n_boot > 0 else None
    point_a, boot_a = _repeat_macro_f1(tables_a, cluster_index, weights)
    point_b, boot_b = _repeat_macro_f1(tables_b, cluster_index, weights)
    out: dict[str, Any] = {
        "difference": float(point_a.mean() - point_b.mean()),
        "macro_f1_a": float(point_a.mean()),
        "macro_f1_b": float(point_b.mean()),
        "ci": None,
        "p_value": None,
        "n_images": int(len(tables[0].y_true)),
        "n_clusters": int(len(cluster_index)),
        "n_repeats_a": len(tables_a),
        "n_repeats_b": len(tables_b),
        "bootstrap": {"n_boot": int(n_boot), "seed": int(seed), "ci": float(ci), "unit": "cluster"},
    }
    if weights is not None:
        diff = boot_a - boot_b
        out["ci"] = _interval(diff, ci)
        out["p_value"] = float(np.mean(diff <= 0.0))
    return out


# --------------------------------------------------------------------------- tables
def _repeat_bootstrap(
    frames: Sequence[pd.DataFrame], *, n_boot: int, seed: int, ci: float, name: str
) -> tuple[np.ndarray, list[float] | None]:
    """Per-repeat macro-F1 and the bootstrap interval of their mean."""
    tables = [_parse(df, name=f"{name}[{i}]") for i, df in enumerate(frames)]
    cluster_index = pd.Index(np.unique(np.concatenate([t.cluster_id for t in tables])))
    weights = _cluster_multiplicities(len(cluster_index), n_boot, seed) if n_boot > 0 else None
    point, boot = _repeat_macro_f1(tables, cluster_index, weights)
    return point, (_interval(boot, ci) if boot is not None else None)


def ablation_summary(
    results: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]],
    *,
    baseline: str | None = "baseline",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row of numbers per method of an ablation, computed from predictions.

    Parameters
    ----------
    results
        ``{method: [predictions table of repeat 0, repeat 1, ...]}`` (a single
        table is one repeat).  Methods keep their order.
    baseline
        The method every other is compared with (paired cluster bootstrap, see
        :func:`paired_difference`); None, or a name not in ``results``, skips
        the comparison.
    n_boot, seed, ci
        Bootstrap settings.  Every method uses the same seed, hence the same
        resampled clusters.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``n_repeats``, ``macro_f1_mean``, ``macro_f1_std``
        (ddof=1 over repeats), ``macro_f1_ci_low``/``_high`` (cluster-bootstrap
        interval of the repeat mean), ``macro_f1_repeats`` (list), for each
        class ``{class}_{precision,recall,f1}_{mean,std}``, and ``diff_vs_baseline``,
        ``diff_ci_low``, ``diff_ci_high``, ``diff_p_value`` (NaN for the baseline
        itself or without a baseline).
    """
    _check_boot_args(n_boot, ci)
    if not results:
        raise UsageError("ablation: no methods given")
    have_baseline = baseline is not None and baseline in results
    rows = []
    for method, preds in results.items():
        frames = _as_list(preds, str(method))
        point, interval = _repeat_bootstrap(frames, n_boot=n_boot, seed=seed, ci=ci, name=method)
        mean, std = summarise_repeats(point)
        row: dict[str, Any] = {
            "method": str(method),
            "n_repeats": len(frames),
            "macro_f1_mean": mean,
            "macro_f1_std": std,
            "macro_f1_ci_low": interval[0] if interval else np.nan,
            "macro_f1_ci_high": interval[1] if interval else np.nan,
            "macro_f1_repeats": [float(v) for v in point],
        }
        per_class = [compute_metrics(df, n_boot=0) for df in frames]
        for name in CLASS_NAMES:
            for key in ("precision", "recall", "f1"):
                m, s = summarise_repeats([pc[key][name] for pc in per_class])
                row[f"{name}_{key}_mean"], row[f"{name}_{key}_std"] = m, s
        row.update(diff_vs_baseline=np.nan, diff_ci_low=np.nan, diff_ci_high=np.nan)
        row["diff_p_value"] = np.nan
        if have_baseline and method != baseline:
            diff = paired_difference(
                frames, _as_list(results[baseline], baseline), n_boot=n_boot, seed=seed, ci=ci
            )
            row["diff_vs_baseline"] = diff["difference"]
            if diff["ci"] is not None:
                row["diff_ci_low"], row["diff_ci_high"] = diff["ci"]
                row["diff_p_value"] = diff["p_value"]
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, std: float, n: int, digits: int = 3) -> str:
    """``mean ± std`` (the std only when there are repeats)."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def _interval_text(low: float, high: float, digits: int = 3) -> str:
    if np.isnan(low) or np.isnan(high):
        return "–"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def difference_text(row, *, p_value: bool = True) -> str:
    """A summary row's paired difference to the baseline as text: ``+0.012 [-0.010,
    +0.034], p = 0.140`` (``–`` for the baseline itself; no interval without one)."""
    if np.isnan(row["diff_vs_baseline"]):
        return "–"
    if np.isnan(row["diff_ci_low"]):
        return _signed(row["diff_vs_baseline"])
    text = (
        f"{_signed(row['diff_vs_baseline'])} "
        f"[{_signed(row['diff_ci_low'])}, {_signed(row['diff_ci_high'])}]"
    )
    return f"{text}, {_p_text(row['diff_p_value'])}" if p_value else text


def _signed(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}"


def ablation_table(
    results: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]] | pd.DataFrame,
    *,
    baseline: str | None = "baseline",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> str:
    """A Markdown table like the paper's Table I.

    Parameters
    ----------
    results
        ``{method: [predictions per repeat]}`` as for :func:`ablation_summary`,
        or the DataFrame that :func:`ablation_summary` returns.
    baseline, n_boot, seed, ci
        As for :func:`ablation_summary`.

    Returns
    -------
    str
        A Markdown table, one row per method and class: macro-F1 (mean ± std
        over repeats), its cluster-bootstrap interval, the paired difference to
        the baseline with its interval and one-sided p-value, the number of
        repeats, and per-class precision, recall and F1 (mean ± std).
    """
    summary = (
        results
        if isinstance(results, pd.DataFrame)
        else ablation_summary(results, baseline=baseline, n_boot=n_boot, seed=seed, ci=ci)
    )
    pct = f"{100 * ci:g}%"
    diff_head = f"Δ vs {baseline} [{pct} CI], p" if baseline else "Δ vs baseline"
    header = [
        "Method",
        "Repeats",
        "Macro-F1",
        f"{pct} CI (cluster bootstrap)",
        diff_head,
        "Class",
        "Precision",
        "Recall",
        "F1",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in summary.iterrows():
        n = int(row["n_repeats"])
        diff_text = difference_text(row)
        for k, name in enumerate(CLASS_NAMES):
            first = k == 0
            cells = [
                str(row["method"]) if first else "",
                str(n) if first else "",
                _pm(row["macro_f1_mean"], row["macro_f1_std"], n) if first else "",
                _interval_text(row["macro_f1_ci_low"], row["macro_f1_ci_high"]) if first else "",
                diff_text if first else "",
                name,
            ]
            cells += [
                _pm(row[f"{name}_{key}_mean"], row[f"{name}_{key}_std"], n, digits=2)
                for key in ("precision", "recall", "f1")
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_table(
    runs: Sequence[Mapping[str, Any]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> str:
    """A Markdown table like the paper's Table II (loss weights against macro-F1).

    Parameters
    ----------
    runs
        One mapping per row with keys ``method`` (str), ``alphas`` (the four
        loss weights ``(a_p, a_a, a_f, a_r)``; an entry may be None for a loss
        term the method lacks) and ``predictions`` (a table or a list of tables,
        one per repeat).
    n_boot, seed, ci
        Bootstrap settings, as for :func:`compute_metrics`.

    Returns
    -------
    str
        Markdown with columns Method, α_p, α_a, α_f, α_r, Repeats, Macro-F1
        (mean ± std over repeats) and its cluster-bootstrap interval.
    """
    _check_boot_args(n_boot, ci)
    pct = f"{100 * ci:g}%"
    header = ["Method", "α_p", "α_a", "α_f", "α_r", "Repeats", "Macro-F1", f"{pct} CI"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, run in enumerate(runs):
        try:
            method, alphas, preds = run["method"], run["alphas"], run["predictions"]
        except KeyError as exc:
            raise UsageError(f"sweep_table: run {i} lacks key {exc}") from None
        if len(alphas) != 4:
            raise UsageError(f"sweep_table: run {i} needs four alphas (a_p, a_a, a_f, a_r)")
        frames = _as_list(preds, str(method))
        point, interval = _repeat_bootstrap(
            frames, n_boot=n_boot, seed=seed, ci=ci, name=str(method)
        )
        mean, std = summarise_repeats(point)
        cells = [str(method)] + ["–" if a is None else f"{float(a):g}" for a in alphas]
        cells += [
            str(len(frames)),
            _pm(mean, std, len(frames)),
            _interval_text(*interval) if interval else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
