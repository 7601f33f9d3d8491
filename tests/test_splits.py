"""Tests of coolcore.data.splits: grouping, coverage, determinism, errors, summaries."""

from __future__ import annotations

import numpy as np
import pytest

from coolcore.data.splits import cluster_folds, fold_of_image, fold_table
from coolcore.errors import DataError, UsageError


def _sample(n_cc=12, n_wcc=20, n_ncc=28, n_mixed=6, projections=3, seed=0):
    """Clusters with 3 projections; ``n_mixed`` clusters have projections of two classes."""
    rng = np.random.default_rng(seed)
    clusters, labels = [], []
    k = 0
    for label, n in ((0, n_cc), (1, n_wcc), (2, n_ncc)):
        for _ in range(n):
            clusters += [f"cl{k:04d}"] * projections
            labels += [label] * projections
            k += 1
    for _ in range(n_mixed):
        first = int(rng.integers(0, 2))
        clusters += [f"cl{k:04d}"] * projections
        labels += [first] + [first + 1] * (projections - 1)
        k += 1
    order = rng.permutation(len(labels))  # catalogue order need not follow clusters
    return np.array(clusters)[order], np.array(labels)[order]


@pytest.mark.parametrize(("n_folds", "seed"), [(10, 0), (5, 3), (3, 11)])
def test_fold_structure(n_folds, seed):
    clusters, labels = _sample()
    n = len(labels)
    folds = cluster_folds(clusters, labels, n_folds=n_folds, seed=seed)
    assert len(folds) == n_folds
    tests = [f[2] for f in folds]
    # every image in exactly one test fold
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(n))
    # no cluster in two folds (brute force over clusters)
    for c in np.unique(clusters):
        members = np.flatnonzero(clusters == c)
        homes = {k for k, t in enumerate(tests) if np.isin(members, t).any()}
        assert len(homes) == 1, c
        assert all(np.isin(members, tests[homes.pop()]))
    for k, (train, val, test) in enumerate(folds):
        assert train.dtype == val.dtype == test.dtype == np.int64
        np.testing.assert_array_equal(val, tests[(k + 1) % n_folds])
        np.testing.assert_array_equal(test, tests[k])
        assert not set(train) & set(val) and not set(train) & set(test)
        assert not set(val) & set(test)
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val, test])), np.arange(n))
        # clusters do not leak between parts either
        assert not set(clusters[train]) & set(clusters[test])
        assert not set(clusters[train]) & set(clusters[val])
        assert all(np.all(np.diff(a) > 0) for a in (train, val, test))


def test_stratified():
    clusters, labels = _sample()
    folds = cluster_folds(clusters, labels, n_folds=10, seed=0)
    overall = np.bincount(labels, minlength=3) / len(labels)
    for _, _, test in folds:
        share = np.bincount(labels[test], minlength=3) / len(test)
        assert (np.bincount(labels[test], minlength=3) > 0).all()  # every class in every fold
        assert np.abs(share - overall).max() < 0.2


def test_deterministic_and_seeded():
    clusters, labels = _sample()
    a = cluster_folds(clusters, labels, n_folds=10, seed=4)
    b = cluster_folds(list(clusters), list(labels), n_folds=10, seed=4)
    for fa, fb in zip(a, b, strict=True):
        for x, y in zip(fa, fb, strict=True):
            np.testing.assert_array_equal(x, y)
    c = cluster_folds(clusters, labels, n_folds=10, seed=5)
    assert any(not np.array_equal(fa[2], fc[2]) for fa, fc in zip(a, c, strict=True))


def test_too_few_clusters_in_a_class():
    clusters, labels = _sample(n_cc=7, n_mixed=0)
    with pytest.raises(DataError) as info:
        cluster_folds(clusters, labels, n_folds=10)
    assert str(info.value) == "class CC has 7 clusters, fewer than the 10 folds; use fewer folds"
    assert len(cluster_folds(clusters, labels, n_folds=7)) == 7


def test_mixed_clusters_count_for_each_of_their_classes():
    # 7 pure CC clusters + 1 cluster with a CC and two WCC projections = 8 clusters with CC
    clusters, labels = _sample(n_cc=7, n_mixed=0)
    clusters = np.concatenate([clusters, ["mixed"] * 3])
    labels = np.concatenate([labels, [0, 1, 1]])
    with pytest.raises(DataError, match="^class CC has 8 clusters, fewer than the 10 folds"):
        cluster_folds(clusters, labels, n_folds=10)
    folds = cluster_folds(clusters, labels, n_folds=8)
    where = fold_of_image(folds, len(labels))
    assert len(set(where[clusters == "mixed"])) == 1


def test_string_labels_and_names_in_messages():
    clusters, labels = _sample(n_ncc=4, n_mixed=0)
    names = np.array(["CC", "WCC", "NCC"])[labels]
    with pytest.raises(DataError, match="^class NCC has 4 clusters"):
        cluster_folds(clusters, names, n_folds=5)
    assert len(cluster_folds(clusters, names, n_folds=4)) == 4


@pytest.mark.parametrize("n_folds", [2, 1, 0, 2.5, True])
def test_bad_fold_numbers(n_folds):
    clusters, labels = _sample()
    with pytest.raises(UsageError, match="n_folds"):
        cluster_folds(clusters, labels, n_folds=n_folds)


def test_bad_inputs():
    with pytest.raises(DataError, match="equal length"):
        cluster_folds(["a", "b"], [0], n_folds=3)
    with pytest.raises(DataError, match="no images"):
        cluster_folds([], [], n_folds=3)
    with pytest.raises(DataError, match="no label"):
        cluster_folds(["a", "b", "c"], [0, -1, 1], n_folds=3)


def test_fold_table_and_fold_of_image():
    clusters, labels = _sample()
    folds = cluster_folds(clusters, labels, n_folds=5, seed=1)
    table = fold_table(folds, labels, clusters)
    n = len(labels)
    assert table["fold"].tolist() == [0, 1, 2, 3, 4]
    assert (table["n_train"] + table["n_val"] + table["n_test"] == n).all()
    assert table["n_test"].sum() == n
    for i, name in enumerate(["CC", "WCC", "NCC"]):
        assert table[f"test_{name}"].sum() == (labels == i).sum()
    assert table["test_clusters"].sum() == len(np.unique(clusters))
    where = fold_of_image(folds, n)
    for k, (_, _, test) in enumerate(folds):
        assert (where[test] == k).all()
    assert (where >= 0).all()
