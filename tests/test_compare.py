"""compare_methods against a loop over the same bootstrap draws with scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
from test_evaluation import LABELS, make_predictions

from coolcore.errors import UsageError
from coolcore.evaluate.compare import compare_methods, comparison_markdown


def _sk(y, p):
    rec = recall_score(y, p, labels=LABELS, average=None, zero_division=0)
    f1 = f1_score(y, p, labels=LABELS, average=None, zero_division=0)
    return {
        "macro_f1": f1_score(y, p, labels=LABELS, average="macro", zero_division=0),
        "balanced_accuracy": balanced_accuracy_score(y, p),
        **{f"recall_{c}": rec[k] for k, c in enumerate(LABELS)},
        **{f"f1_{c}": f1[k] for k, c in enumerate(LABELS)},
    }


def test_against_a_loop_with_sklearn():
    base = make_predictions(n_clusters=14, seed=5)
    net = [
        base.assign(predicted=make_predictions(14, seed=60 + s, accuracy=0.85)["predicted"])
        for s in range(3)
    ]
    conc = base.assign(predicted=make_predictions(14, seed=99, accuracy=0.6)["predicted"])
    n_boot = 60
    table = compare_methods(
        {"c_SB (fit)": conc, "net": net}, reference="c_SB (fit)", n_boot=n_boot, seed=4
    ).set_index("method")

    y = base["label"].to_numpy()
    # point values: per seed with scikit-learn, then mean and std
    per_seed = [_sk(y, t["predicted"].to_numpy()) for t in net]
    for key in per_seed[0]:
        values = [s[key] for s in per_seed]
        assert table.loc["net", f"{key}_mean"] == pytest.approx(np.mean(values))
        assert table.loc["net", f"{key}_std"] == pytest.approx(np.std(values, ddof=1))
    # replicates: the documented draws, each map of a drawn cluster repeated
    clusters = np.unique(base["cluster_id"])
    draws = np.random.default_rng(4).integers(0, len(clusters), size=(n_boot, len(clusters)))
    seeds = np.random.default_rng([4, 1]).integers(0, 3, size=(n_boot, 3))
    members = [np.flatnonzero(base["cluster_id"].to_numpy() == c) for c in clusters]
    reps_net, reps_diff = {}, {}
    for draw, drawn_seeds in zip(draws, seeds, strict=True):
        idx = np.concatenate([members[g] for g in draw])
        ref = _sk(y[idx], conc["predicted"].to_numpy()[idx])
        scores = [_sk(y[idx], net[r]["predicted"].to_numpy()[idx]) for r in drawn_seeds]
        for key in ref:
            mean = np.mean([s[key] for s in scores])
            reps_net.setdefault(key, []).append(mean)
            reps_diff.setdefault(key, []).append(mean - ref[key])
    for key in reps_net:
        low, high = np.quantile(reps_net[key], [0.025, 0.975])
        assert table.loc["net", f"{key}_low"] == pytest.approx(low)
        assert table.loc["net", f"{key}_high"] == pytest.approx(high)
        low, high = np.quantile(reps_diff[key], [0.025, 0.975])
        assert table.loc["net", f"{key}_diff_low"] == pytest.approx(low)
        assert table.loc["net", f"{key}_diff_high"] == pytest.approx(high)
    assert table.loc["net", "macro_f1_diff_p"] == pytest.approx(
        np.mean(np.array(reps_diff["macro_f1"]) <= 0)
    )
    assert np.isnan(table.loc["c_SB (fit)", "macro_f1_diff"])
    text = comparison_markdown(table.reset_index(), reference="c_SB (fit)")
    assert "| net | 3 |" in text and "| c_SB (fit) | 1 |" in text


def test_refuses_unknown_reference_and_other_maps():
    a = make_predictions(n_clusters=6, seed=1)
    with pytest.raises(UsageError, match="reference"):
        compare_methods({"a": a}, reference="b", n_boot=5)
    from coolcore.errors import DataError

    with pytest.raises(DataError, match="same images"):
        compare_methods({"a": a, "b": a.iloc[1:]}, n_boot=5)
