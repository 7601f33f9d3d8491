"""Cluster-grouped, label-stratified cross-validation folds (METHOD.md, protocol).

All projections of a cluster go to the same fold; the folds are stratified by
the image labels with scikit-learn's ``StratifiedGroupKFold`` (so a cluster whose
projections carry different labels is still kept together).  Fold ``k`` tests
on part ``k``, validates on part ``(k + 1) mod K`` and trains on the others.
No I/O here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError

__all__ = ["cluster_folds", "fold_table", "fold_of_image"]

Fold = tuple[np.ndarray, np.ndarray, np.ndarray]


def _class_name(value: object) -> str:
    if isinstance(value, int | np.integer) and 0 <= int(value) < len(CLASS_NAMES):
        return CLASS_NAMES[int(value)]
    return str(value)


def cluster_folds(
    cluster_ids: Sequence[str] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    n_folds: int = 10,
    seed: int = 0,
) -> list[Fold]:
    """Cross-validation folds grouped by cluster and stratified by label.

    Parameters
    ----------
    cluster_ids : sequence (N,)
        Cluster of each image; images of one cluster never straddle folds.
    labels : sequence (N,)
        Class of each image (indices into ``CLASS_NAMES`` or names); -1 (unknown)
        is not allowed.
    n_folds : int
        Number of folds K (at least 3: test, validation and training parts).
    seed : int
        Seed of the group shuffle; the same seed gives the same folds.

    Returns
    -------
    list of (train_idx, val_idx, test_idx)
        K tuples of sorted int64 index arrays.  In fold k, ``test_idx`` is part k
        and ``val_idx`` is part (k + 1) mod K; the three are disjoint and cover
        all N images, and each image is in exactly one test part.

    Raises
    ------
    coolcore.errors.UsageError
        ``n_folds`` < 3 or not an integer.
    coolcore.errors.DataError
        Inputs of different lengths, unknown labels, or a class present in fewer
        clusters than folds (or fewer clusters than folds overall).

    Examples
    --------
    >>> clusters = [f"c{i // 3}" for i in range(60)]
    >>> labels = [(i // 3) % 3 for i in range(60)]
    >>> folds = cluster_folds(clusters, labels, n_folds=5, seed=0)
    >>> len(folds), sorted(np.concatenate([f[2] for f in folds]).tolist()) == list(range(60))
    (5, True)
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer):
        raise UsageError(f"n_folds={n_folds!r}: must be an integer >= 3")
    if n_folds < 3:
        raise UsageError(
            f"n_folds={n_folds}: need at least 3 folds (one to test, one to validate, "
            "the rest to train)"
        )
    groups = np.asarray(cluster_ids).astype(str)
    y = np.asarray(labels)
    if groups.ndim != 1 or y.ndim != 1 or len(groups) != len(y):
        raise DataError(
            f"cluster_ids ({groups.shape}) and labels ({y.shape}) must be 1-D of equal length"
        )
    if len(y) == 0:
        raise DataError("no images to split")
    if y.dtype.kind in "iu" and (y < 0).any():
        raise DataError(f"{int((y < 0).sum())} images have no label; folds need labelled images")

    classes = np.unique(y)
    for c in classes:
        n_clusters = len(np.unique(groups[y == c]))
        if n_clusters < n_folds:
            raise DataError(
                f"class {_class_name(c)} has {n_clusters} clusters, fewer than the "
                f"{n_folds} folds; use fewer folds"
            )
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise DataError(f"{n_groups} clusters, fewer than the {n_folds} folds; use fewer folds")

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=int(seed))
    with warnings.catch_warnings():
        # the per-class check above is the stricter, cluster-level version of this one
        warnings.filterwarnings("ignore", message="The least populated class")
        parts = [np.sort(test).astype(np.int64) for _, test in splitter.split(y, y, groups)]
    for k, part in enumerate(parts):
        if part.size == 0:
            raise DataError(f"fold {k} is empty; use fewer folds")

    folds: list[Fold] = []
    for k in range(n_folds):
        test = parts[k]
        val = parts[(k + 1) % n_folds]
        train = np.sort(
            np.concatenate([parts[j] for j in range(n_folds) if j not in (k, (k + 1) % n_folds)])
        )
        folds.append((train, val, test))
    return folds


def fold_of_image(folds: Sequence[Fold], n: int) -> np.ndarray:
    """Index of the fold whose test part holds each of the ``n`` images (-1 if none)."""
    out = np.full(n, -1, dtype=np.int64)
    for k, (_, _, test) in enumerate(folds):
        out[test] = k
    return out


def fold_table(
    folds: Sequence[Fold],
    labels: Sequence[int] | np.ndarray,
    cluster_ids: Sequence[str] | np.ndarray | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> pd.DataFrame:
    """Counts per fold: images in each part, test images per class, test clusters.

    Parameters
    ----------
    folds : list of (train_idx, val_idx, test_idx)
    labels : sequence (N,) of class indices
    cluster_ids : sequence (N,), optional
        Adds a ``test_clusters`` column.
    class_names : sequence of str

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``fold, n_train, n_val, n_test, test_<class>...``
        (and ``test_clusters``).
    """
    y = np.asarray(labels)
    groups = None if cluster_ids is None else np.asarray(cluster_ids).astype(str)
    rows = []
    for k, (train, val, test) in enumerate(folds):
        row: dict[str, int] = {
            "fold": k,
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
        }
        counts = np.bincount(y[test], minlength=len(class_names))
        for i, name in enumerate(class_names):
            row[f"test_{name}"] = int(counts[i])
        if groups is not None:
            row["test_clusters"] = len(np.unique(groups[test]))
        rows.append(row)
    return pd.DataFrame(rows)
