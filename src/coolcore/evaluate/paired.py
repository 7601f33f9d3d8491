"""Paired comparison of two methods on the same images: macro-F1 difference and interval.

Both sides are scored on the same resampled clusters in every bootstrap replicate
(:mod:`coolcore.evaluate.intervals`), so the interval reflects only how the two
methods differ on the same data.  Repeats (seeds) of one method are averaged
replicate by replicate, after drawing them with replacement (the bootstrap's second
level, :func:`coolcore.evaluate.intervals.repeat_multiplicities`), so that intervals
cover the seeds as well as the clusters. Two methods with the same number of
repeats are paired by repeat (seed k of one with seed k of the other).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from coolcore.errors import DataError, UsageError
from coolcore.evaluate.intervals import (
    check_boot_args,
    cluster_multiplicities,
    percentile_interval,
    repeat_multiplicities,
)
from coolcore.evaluate.metrics import (
    N_CLASSES,
    PredictionTable,
    cluster_confusion_counts,
    parse_predictions,
    scores_from_confusion,
)

__all__ = [
    "as_table_list",
    "check_same_images",
    "paired_difference",
    "repeat_bootstrap",
    "repeat_macro_f1",
]


def as_table_list(preds: pd.DataFrame | Sequence[pd.DataFrame], name: str) -> list[pd.DataFrame]:
    """One predictions table as a list of one; a list of them as it is (empty: UsageError)."""
    if isinstance(preds, pd.DataFrame):
        return [preds]
    preds = list(preds)
    if not preds:
        raise UsageError(f"{name}: no predictions tables")
    return preds


def _image_key(table: PredictionTable, name: str) -> pd.DataFrame:
    """The (image, cluster, label) identity of a table, sorted by image id."""
    key = pd.DataFrame(
        {"image_id": table.image_id, "cluster_id": table.cluster_id, "label": table.y_true}
    )
    if key["image_id"].duplicated().any():
        dup = key.loc[key["image_id"].duplicated(), "image_id"].iloc[0]
        raise DataError(f"{name}: image_id {dup!r} appears more than once")
    return key.sort_values("image_id", kind="stable").reset_index(drop=True)


def check_same_images(tables: Sequence[PredictionTable], names: Sequence[str]) -> None:
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


def repeat_macro_f1(
    tables: Sequence[PredictionTable],
    cluster_index: pd.Index,
    weights: np.ndarray | None,
    repeat_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Macro-F1 of each repeat, and its bootstrap replicates averaged over drawn repeats.

    Parameters
    ----------
    tables : sequence of PredictionTable
        One per repeat.
    cluster_index : pandas.Index
        The clusters, in the order of the columns of ``weights``.
    weights : numpy.ndarray or None
        (n_boot, n_clusters) multiplicities (:func:`cluster_multiplicities`); None
        computes no replicates.
    repeat_weights : numpy.ndarray, optional
        (n_boot, R) multiplicities of the repeats (:func:`repeat_multiplicities`);
        None: every repeat once in every replicate.

    Returns
    -------
    point, replicates : numpy.ndarray
        (R,) macro-F1 per repeat; (n_boot,) replicates of their mean, or None.
    """
    counts = np.stack([cluster_confusion_counts(t, cluster_index) for t in tables])  # (R, G, 9)
    point = scores_from_confusion(counts.sum(axis=1).reshape(-1, N_CLASSES, N_CLASSES))
    if weights is None:
        return point["macro_f1"], None
    boot_cm = np.einsum("bg,rgk->rbk", weights, counts).reshape(
        len(tables), weights.shape[0], N_CLASSES, N_CLASSES
    )
    per_repeat = scores_from_confusion(boot_cm)["macro_f1"]  # (R, n_boot)
    if repeat_weights is None:
        return point["macro_f1"], per_repeat.mean(axis=0)
    return point["macro_f1"], (repeat_weights * per_repeat.T).sum(axis=1) / len(tables)


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
        With repeats, each replicate also draws the repeats with replacement (the
        same draws for both sides when they have as many repeats: paired by seed;
        ``a``'s from ``[seed, 1]``, ``b``'s from ``[seed + 1, 1]`` otherwise).
    """
    check_boot_args(n_boot, ci)
    frames_a, frames_b = as_table_list(pred_a, "pred_a"), as_table_list(pred_b, "pred_b")
    names = [f"pred_a[{i}]" for i in range(len(frames_a))]
    names += [f"pred_b[{i}]" for i in range(len(frames_b))]
    tables = [
        parse_predictions(df, name=n) for df, n in zip(frames_a + frames_b, names, strict=True)
    ]
    check_same_images(tables, names)
    tables_a, tables_b = tables[: len(frames_a)], tables[len(frames_a) :]

    cluster_index = pd.Index(np.unique(tables[0].cluster_id))
    weights = cluster_multiplicities(len(cluster_index), n_boot, seed) if n_boot > 0 else None
    reps_a = repeat_multiplicities(len(tables_a), n_boot, seed) if n_boot > 0 else None
    reps_b = reps_a  # paired by repeat when both have R repeats
    if len(tables_b) != len(tables_a) and n_boot > 0:
        reps_b = repeat_multiplicities(len(tables_b), n_boot, seed + 1)
    point_a, boot_a = repeat_macro_f1(tables_a, cluster_index, weights, reps_a)
    point_b, boot_b = repeat_macro_f1(tables_b, cluster_index, weights, reps_b)
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
        out["ci"] = percentile_interval(diff, ci)
        out["p_value"] = float(np.mean(diff <= 0.0))
    return out


def repeat_bootstrap(
    frames: Sequence[pd.DataFrame], *, n_boot: int, seed: int, ci: float, name: str
) -> tuple[np.ndarray, list[float] | None]:
    """Per-repeat macro-F1 and the interval of their mean (clusters and repeats resampled).

    Returns
    -------
    point, interval
        (R,) macro-F1 per repeat, and ``[low, high]`` (None when ``n_boot`` is 0).
    """
    tables = [parse_predictions(df, name=f"{name}[{i}]") for i, df in enumerate(frames)]
    cluster_index = pd.Index(np.unique(np.concatenate([t.cluster_id for t in tables])))
    weights = cluster_multiplicities(len(cluster_index), n_boot, seed) if n_boot > 0 else None
    reps = repeat_multiplicities(len(tables), n_boot, seed) if n_boot > 0 else None
    point, boot = repeat_macro_f1(tables, cluster_index, weights, reps)
    return point, (percentile_interval(boot, ci) if boot is not None else None)
