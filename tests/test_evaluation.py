"""Tests of coolcore.evaluate (metrics, intervals, paired, tables) against scikit-learn, hand
calculations and brute force."""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError
from coolcore.evaluate.intervals import summarise_repeats
from coolcore.evaluate.metrics import (
    compute_metrics,
    index_to_labels,
    labels_to_index,
    scores_from_confusion,
)
from coolcore.evaluate.paired import paired_difference
from coolcore.evaluate.tables import ablation_summary, ablation_table, sweep_table

LABELS = list(CLASS_NAMES)


def make_predictions(
    n_clusters: int = 40,
    per_cluster: int = 3,
    accuracy: float = 0.75,
    seed: int = 0,
    shared_correctness: bool = False,
) -> pd.DataFrame:
    """A synthetic predictions table; clusters carry one label for all projections."""
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    y_cluster = rng.choice(3, size=n_clusters, p=[0.2, 0.45, 0.35])
    y = y_cluster[cluster]
    if shared_correctness:
        correct = (rng.random(n_clusters) < accuracy)[cluster]
        wrong = ((y_cluster + rng.integers(1, 3, n_clusters)) % 3)[cluster]
    else:
        correct = rng.random(y.size) < accuracy
        wrong = (y + rng.integers(1, 3, y.size)) % 3
    pred = np.where(correct, y, wrong)
    probs = rng.dirichlet(np.ones(3), size=y.size)
    return pd.DataFrame(
        {
            "image_id": [f"img{i:04d}" for i in range(y.size)],
            "cluster_id": [f"c{c:03d}" for c in cluster],
            "fold": cluster % 5,
            "label": [LABELS[k] for k in y],
            "p_CC": probs[:, 0],
            "p_WCC": probs[:, 1],
            "p_NCC": probs[:, 2],
            "predicted": [LABELS[k] for k in pred],
        }
    )


# ----------------------------------------------------------------------------- labels
def test_labels_round_trip_and_errors():
    assert labels_to_index(["CC", "WCC", "NCC", "CC"]).tolist() == [0, 1, 2, 0]
    assert labels_to_index(np.array([2, 1, 0])).tolist() == [2, 1, 0]
    assert index_to_labels([0, 2, 1]).tolist() == ["CC", "NCC", "WCC"]
    with pytest.raises(DataError, match="label"):
        labels_to_index(["CC", "XCC"])
    with pytest.raises(DataError, match="missing"):
        labels_to_index(["CC", None])
    with pytest.raises(DataError, match="range"):
        labels_to_index([0, 3])


# ----------------------------------------------------------------------------- point metrics
def test_compute_metrics_matches_sklearn():
    df = make_predictions(n_clusters=60, seed=3)
    m = compute_metrics(df, n_boot=0)
    y, p = df["label"].to_numpy(), df["predicted"].to_numpy()
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, labels=LABELS, average="macro"))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    prec, rec, f1, sup = precision_recall_fscore_support(
        y, p, labels=LABELS, average=None, zero_division=0
    )
    for k, name in enumerate(LABELS):
        assert m["precision"][name] == pytest.approx(prec[k])
        assert m["recall"][name] == pytest.approx(rec[k])
        assert m["f1"][name] == pytest.approx(f1[k])
        assert m["support"][name] == sup[k]
    cm = confusion_matrix(y, p, labels=LABELS)
    assert m["confusion_matrix"] == cm.tolist()
    np.testing.assert_allclose(m["confusion_matrix_normalised"], cm / cm.sum(axis=1, keepdims=True))
    assert m["n_images"] == 180 and m["n_clusters"] == 60
    for fold, group in df.groupby("fold"):
        expected = f1_score(group["label"], group["predicted"], labels=LABELS, average="macro")
        assert m["per_fold_macro_f1"][str(fold)] == pytest.approx(expected)
    values = list(m["per_fold_macro_f1"].values())
    assert m["per_fold_macro_f1_mean"] == pytest.approx(statistics.fmean(values))
    assert m["per_fold_macro_f1_std"] == pytest.approx(statistics.stdev(values))
    # The dict survives JSON unchanged (plain floats, lists, str keys).
    full = compute_metrics(df, n_boot=50)
    assert json.loads(json.dumps(full)) == full


def test_compute_metrics_by_hand():
    """Six images, every number worked out on paper."""
    df = pd.DataFrame(
        {
            "image_id": range(6),
            "cluster_id": [0, 0, 1, 1, 2, 2],
            "label": ["CC", "CC", "WCC", "WCC", "NCC", "NCC"],
            "predicted": ["CC", "WCC", "WCC", "WCC", "NCC", "CC"],
        }
    )
    m = compute_metrics(df, n_boot=0)
    # CC: TP 1, FP 1, FN 1 -> P = R = F1 = 1/2.
    # WCC: TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 = 4/5.
    # NCC: TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 = 2/3.
    assert m["precision"] == pytest.approx({"CC": 0.5, "WCC": 2 / 3, "NCC": 1.0})
    assert m["recall"] == pytest.approx({"CC": 0.5, "WCC": 1.0, "NCC": 0.5})
    assert m["f1"] == pytest.approx({"CC": 0.5, "WCC": 0.8, "NCC": 2 / 3})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # |0-0| + |0-1| + 0 + 0 + 0 + |2-0| = 3 over 6 images.
    assert m["mean_abs_class_error"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["n_clusters"] == 3 and "per_fold_macro_f1" not in m
    assert m["macro_f1_ci"] is None


def test_zero_division_empty_row_and_cramer_distance():
    # No NCC in the truth and NCC never predicted: its P, R, F1 are 0 and its row zeros.
    df = pd.DataFrame(
        {
            "image_id": [1, 2],
            "cluster_id": [1, 2],
            "label": ["CC", "WCC"],
            "predicted": ["CC", "CC"],
            "p_CC": [0.5, 0.6],
            "p_WCC": [0.3, 0.3],
            "p_NCC": [0.2, 0.1],
        }
    )
    m = compute_metrics(df, n_boot=0)
    assert m["f1"]["NCC"] == 0.0 and m["precision"]["WCC"] == 0.0
    assert m["confusion_matrix_normalised"][2] == [0.0, 0.0, 0.0]
    assert m["macro_f1"] == pytest.approx(
        f1_score([0, 1], [0, 0], labels=[0, 1, 2], average="macro", zero_division=0)
    )
    # Image 1 (CC): F_pred = (.5, .8, 1), F_true = (1, 1, 1) -> .25 + .04 = .29.
    # Image 2 (WCC): F_pred = (.6, .9, 1), F_true = (0, 1, 1) -> .36 + .01 = .37.
    assert m["cramer_distance"] == pytest.approx((0.29 + 0.37) / 2)


def test_predicted_derived_from_probabilities():
    df = make_predictions(n_clusters=20).drop(columns="predicted")
    m = compute_metrics(df, n_boot=0)
    p = np.asarray(LABELS)[df[["p_CC", "p_WCC", "p_NCC"]].to_numpy().argmax(axis=1)]
    assert m["macro_f1"] == pytest.approx(f1_score(df["label"], p, labels=LABELS, average="macro"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=40))
def test_scores_from_confusion_property(pairs):
    y, p = np.array(pairs).T
    cm = confusion_matrix(y, p, labels=[0, 1, 2])
    s = scores_from_confusion(cm)
    prec, rec, f1, _ = precision_recall_fscore_support(
        y, p, labels=[0, 1, 2], average=None, zero_division=0
    )
    np.testing.assert_allclose(s["precision"], prec)
    np.testing.assert_allclose(s["recall"], rec)
    np.testing.assert_allclose(s["f1"], f1)
    assert s["macro_f1"] == pytest.approx(
        f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)
    )


def test_bad_arguments():
    df = make_predictions(n_clusters=5)
    with pytest.raises(UsageError, match="n_boot"):
        compute_metrics(df, n_boot=-1)
    with pytest.raises(UsageError, match="ci"):
        compute_metrics(df, ci=95)
    with pytest.raises(DataError, match="label"):
        compute_metrics(df.drop(columns="label"))
    with pytest.raises(DataError, match="empty"):
        compute_metrics(df.iloc[:0])


# ----------------------------------------------------------------------------- bootstrap
def brute_force_replicates(df: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Loop over replicates: draw clusters (sorted order), gather their images, score with sklearn."""
    clusters = np.unique(df["cluster_id"].to_numpy())
    members = {c: df.index[df["cluster_id"] == c].to_numpy() for c in clusters}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(clusters), size=(n_boot, len(clusters)))
    rows = []
    for draw in draws:
        idx = np.concatenate([members[clusters[g]] for g in draw])
        y, p = df["label"].to_numpy()[idx], df["predicted"].to_numpy()[idx]
        prec, rec, f1, _ = precision_recall_fscore_support(
            y, p, labels=LABELS, average=None, zero_division=0
        )
        rows.append(
            {"macro_f1": f1.mean(), **{f"f1_{n}": v for n, v in zip(LABELS, f1, strict=True)}}
        )
    return pd.DataFrame(rows)


def test_bootstrap_matches_brute_force_loop():
    # Unequal cluster sizes and shuffled rows: the vectorised weights must still agree.
    df = make_predictions(n_clusters=25, per_cluster=3, seed=7)
    df = df.iloc[np.random.default_rng(1).permutation(len(df))[:60]].reset_index(drop=True)
    m = compute_metrics(df, n_boot=300, seed=11, ci=0.9)
    reps = brute_force_replicates(df, n_boot=300, seed=11)
    np.testing.assert_allclose(m["macro_f1_ci"], np.quantile(reps["macro_f1"], [0.05, 0.95]))
    for name in LABELS:
        np.testing.assert_allclose(m["f1_ci"][name], np.quantile(reps[f"f1_{name}"], [0.05, 0.95]))


def test_bootstrap_statistical_properties():
    df = make_predictions(n_clusters=60, per_cluster=3, shared_correctness=True, seed=2)
    m = compute_metrics(df, n_boot=1000, seed=0)
    low, high = m["macro_f1_ci"]
    assert low <= m["macro_f1"] <= high
    for name in LABELS:
        assert m["f1_ci"][name][0] <= m["f1"][name] <= m["f1_ci"][name][1]

    # All images of a cluster share label and correctness: the cluster bootstrap of the
    # three-projection table equals the bootstrap of one image per cluster (F1 is
    # invariant to scaling all counts by 3).
    one_per_cluster = df.groupby("cluster_id", sort=False).head(1)
    m1 = compute_metrics(one_per_cluster, n_boot=1000, seed=0)
    np.testing.assert_allclose(m["macro_f1_ci"], m1["macro_f1_ci"])
    assert m["macro_f1"] == pytest.approx(m1["macro_f1"])

    # Treating each projection as its own cluster pretends to have 3x the data: narrower.
    as_images = df.assign(cluster_id=df["image_id"])
    m_img = compute_metrics(as_images, n_boot=1000, seed=0)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(m_img["macro_f1_ci"]) < 0.8 * width(m["macro_f1_ci"])


def test_perfect_predictions_give_degenerate_interval():
    df = make_predictions(n_clusters=30, accuracy=1.0)
    m = compute_metrics(df, n_boot=200)
    assert m["macro_f1"] == 1.0 and m["macro_f1_ci"] == [1.0, 1.0]


def test_bootstrap_is_fast():
    df = make_predictions(n_clusters=330, per_cluster=3)
    compute_metrics(df, n_boot=10)  # warm-up
    start = time.perf_counter()
    compute_metrics(df, n_boot=1000)
    assert time.perf_counter() - start < 1.0


# ----------------------------------------------------------------------------- paired difference
def test_paired_difference_with_itself_is_zero():
    df = make_predictions(n_clusters=30)
    d = paired_difference(df, df.sample(frac=1.0, random_state=0), n_boot=200)
    assert d["difference"] == 0.0 and d["ci"] == [0.0, 0.0] and d["p_value"] == 1.0


def test_paired_difference_matches_brute_force():
    a = make_predictions(n_clusters=20, accuracy=0.85, seed=4)
    b = a.assign(predicted=make_predictions(n_clusters=20, accuracy=0.6, seed=4)["predicted"])
    d = paired_difference(a, b.iloc[::-1], n_boot=250, seed=5)

    clusters = np.unique(a["cluster_id"])
    rng = np.random.default_rng(5)
    draws = rng.integers(0, len(clusters), size=(250, len(clusters)))
    members = [np.flatnonzero(a["cluster_id"].to_numpy() == c) for c in clusters]
    y, pa, pb = (a["label"].to_numpy(), a["predicted"].to_numpy(), b["predicted"].to_numpy())
    diffs = []
    for draw in draws:
        idx = np.concatenate([members[g] for g in draw])
        fa = f1_score(y[idx], pa[idx], labels=LABELS, average="macro")
        fb = f1_score(y[idx], pb[idx], labels=LABELS, average="macro")
        diffs.append(fa - fb)
    diffs = np.array(diffs)
    expected = f1_score(a["label"], a["predicted"], labels=LABELS, average="macro") - f1_score(
        b["label"], b["predicted"], labels=LABELS, average="macro"
    )
    assert d["difference"] == pytest.approx(expected)
    np.testing.assert_allclose(d["ci"], np.quantile(diffs, [0.025, 0.975]))
    assert d["p_value"] == pytest.approx(np.mean(diffs <= 0))

    # Swapping the methods flips the sign and the interval.
    r = paired_difference(b, a, n_boot=250, seed=5)
    assert r["difference"] == pytest.approx(-d["difference"])
    np.testing.assert_allclose(r["ci"], [-d["ci"][1], -d["ci"][0]])


def _loop_diffs(reps_a, reps_b, n_boot, seed):
    """The documented two-level bootstrap by a loop with scikit-learn: each replicate draws
    the clusters (``default_rng(seed)``) and the seeds (``default_rng([seed, 1])``, the same
    draw for both methods: paired); a method with one repeat keeps it."""
    base = reps_a[0]
    clusters = np.unique(base["cluster_id"])
    draws = np.random.default_rng(seed).integers(0, len(clusters), size=(n_boot, len(clusters)))
    n_seeds = max(len(reps_a), len(reps_b))
    seed_draws = np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(n_boot, n_seeds))
    members = [np.flatnonzero(base["cluster_id"].to_numpy() == c) for c in clusters]
    y = base["label"].to_numpy()

    def mean_f1(reps, idx, seeds):
        picks = seeds if len(reps) > 1 else [0]
        preds = [reps[r]["predicted"].to_numpy()[idx] for r in picks]
        return np.mean([f1_score(y[idx], p, labels=LABELS, average="macro") for p in preds])

    diffs = []
    for draw, seeds in zip(draws, seed_draws, strict=True):
        idx = np.concatenate([members[g] for g in draw])
        diffs.append(mean_f1(reps_a, idx, seeds) - mean_f1(reps_b, idx, seeds))
    return np.array(diffs)


def test_paired_difference_over_repeats_brute_force():
    base = make_predictions(n_clusters=15, seed=9)
    reps_a = [
        base.assign(predicted=make_predictions(15, seed=9 + s, accuracy=0.8)["predicted"])
        for s in range(3)
    ]
    reps_b = [base]
    d = paired_difference(reps_a, reps_b, n_boot=100, seed=1)
    np.testing.assert_allclose(
        d["ci"], np.quantile(_loop_diffs(reps_a, reps_b, 100, 1), [0.025, 0.975])
    )
    assert d["n_repeats_a"] == 3 and d["n_repeats_b"] == 1


def test_paired_difference_needs_same_images():
    a = make_predictions(n_clusters=10)
    with pytest.raises(DataError, match="same images"):
        paired_difference(a, a.iloc[1:])
    with pytest.raises(DataError, match="label"):
        paired_difference(a, a.assign(label=a["label"].iloc[::-1].to_numpy()))
    with pytest.raises(DataError, match="more than once"):
        paired_difference(pd.concat([a, a]), pd.concat([a, a]))


# ----------------------------------------------------------------------------- tables
def test_summarise_repeats():
    assert summarise_repeats([0.8, 0.82, 0.79]) == pytest.approx(
        (statistics.fmean([0.8, 0.82, 0.79]), statistics.stdev([0.8, 0.82, 0.79]))
    )
    assert summarise_repeats([0.7]) == (0.7, 0.0)
    with pytest.raises(UsageError):
        summarise_repeats([])


def test_ablation_summary_and_table():
    base = make_predictions(n_clusters=30, accuracy=0.7, seed=0)
    results = {
        "baseline": [
            base,
            base.assign(predicted=make_predictions(30, accuracy=0.7, seed=1)["predicted"]),
        ],
        "all": [
            base.assign(predicted=make_predictions(30, accuracy=0.9, seed=s)["predicted"])
            for s in (2, 3, 4)
        ],
        "concentration": base.assign(
            predicted=make_predictions(30, accuracy=0.5, seed=5)["predicted"]
        ),
    }
    summary = ablation_summary(results, n_boot=200, seed=0)
    assert summary["method"].tolist() == ["baseline", "all", "concentration"]
    assert summary["n_repeats"].tolist() == [2, 3, 1]

    def f1s(frames):
        return [
            f1_score(f["label"], f["predicted"], labels=LABELS, average="macro") for f in frames
        ]

    row = summary.set_index("method").loc["all"]
    assert row["macro_f1_mean"] == pytest.approx(statistics.fmean(f1s(results["all"])))
    assert row["macro_f1_std"] == pytest.approx(statistics.stdev(f1s(results["all"])))
    assert row["macro_f1_ci_low"] <= row["macro_f1_mean"] <= row["macro_f1_ci_high"]
    cc_recall = [
        precision_recall_fscore_support(f["label"], f["predicted"], labels=LABELS, zero_division=0)[
            1
        ][0]
        for f in results["all"]
    ]
    assert row["CC_recall_mean"] == pytest.approx(statistics.fmean(cc_recall))
    expected_diff = statistics.fmean(f1s(results["all"])) - statistics.fmean(
        f1s(results["baseline"])
    )
    assert row["diff_vs_baseline"] == pytest.approx(expected_diff)
    assert row["diff_ci_low"] < row["diff_vs_baseline"] < row["diff_ci_high"]
    assert np.isnan(summary.set_index("method").loc["baseline", "diff_vs_baseline"])

    text = ablation_table(summary)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3 * len(results)
    assert lines[0].startswith("| Method") and "95% CI" in lines[0]
    assert f"{row['macro_f1_mean']:.3f} ± {row['macro_f1_std']:.3f}" in text
    assert f"{row['diff_vs_baseline']:+.3f}" in text
    assert ablation_table(results, n_boot=200) == text  # from predictions directly


def test_sweep_table():
    base = make_predictions(n_clusters=20, seed=0)
    runs = [
        {"method": "baseline", "alphas": (0.8, 0.1, 0.1, None), "predictions": base},
        {"method": "all", "alphas": (0.8, 0.1, 0.1, 0.1), "predictions": [base, base]},
    ]
    lines = sweep_table(runs, n_boot=100).strip().splitlines()
    assert len(lines) == 4
    macro = f1_score(base["label"], base["predicted"], labels=LABELS, average="macro")
    assert lines[2].startswith("| baseline | 0.8 | 0.1 | 0.1 | – | 1 |")
    assert f"{macro:.3f}" in lines[2]
    assert "| 2 |" in lines[3] and f"{macro:.3f} ± 0.000" in lines[3]
    with pytest.raises(UsageError, match="alphas"):
        sweep_table([{"method": "x", "alphas": (1, 2), "predictions": base}])


def test_repeats_paired_by_seed_brute_force():
    """Two methods with three seeds each: every replicate draws clusters and seeds, the
    same seeds for both (paired); recomputed with a loop and scikit-learn."""
    base = make_predictions(n_clusters=12, seed=3)
    reps_a = [
        base.assign(predicted=make_predictions(12, seed=20 + s, accuracy=0.9)["predicted"])
        for s in range(3)
    ]
    reps_b = [
        base.assign(predicted=make_predictions(12, seed=40 + s, accuracy=0.6)["predicted"])
        for s in range(3)
    ]
    d = paired_difference(reps_a, reps_b, n_boot=80, seed=2)
    np.testing.assert_allclose(
        d["ci"], np.quantile(_loop_diffs(reps_a, reps_b, 80, 2), [0.025, 0.975])
    )
    # the seeds' spread widens a method's own interval: identical repeats do not
    from coolcore.evaluate.paired import repeat_bootstrap

    _, same = repeat_bootstrap([reps_a[0]] * 3, n_boot=200, seed=0, ci=0.95, name="a")
    _, one = repeat_bootstrap([reps_a[0]], n_boot=200, seed=0, ci=0.95, name="a")
    np.testing.assert_allclose(same, one)
