"""Calibration: ECE, reliability bins and temperature scaling against references
written here (loops, a grid search, a sampled model with a known temperature)."""

import numpy as np
import pandas as pd
import pytest

from coolcore import CLASS_NAMES
from coolcore.evaluate.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_sigma_scale,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    scale_temperature,
)
from coolcore.evaluate.intervals import cluster_multiplicities


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sampled(n, temperature, seed):
    """Labels drawn from softmax(z); probabilities reported as softmax(temperature * z):
    over-confident by exactly ``temperature``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, 3))
    true = _softmax(z)
    labels = np.array([rng.choice(3, p=p) for p in true])
    return _softmax(temperature * z), labels


def _ece_loop(probs, labels, n_bins):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [
            i
            for i in range(len(labels))
            if lo <= probs[i].max() < hi or (b == n_bins - 1 and probs[i].max() == 1.0)
        ]
        if members:
            acc = np.mean([probs[i].argmax() == labels[i] for i in members])
            conf = np.mean([probs[i].max() for i in members])
            total += len(members) / len(labels) * abs(acc - conf)
    return total


def test_ece_by_hand():
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.45, 0.35], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 1, 0])
    # bin 9: two maps, confidence 0.9, one right -> |0.5 - 0.9| = 0.4 (weight 1/2)
    # bin 4: two maps, confidences 0.45 and 0.4, one right -> |0.5 - 0.425| (weight 1/2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.2 + 0.0375)
    bins = reliability_bins(probs, labels)
    assert bins["n"].tolist() == [0, 0, 0, 0, 2, 0, 0, 0, 0, 2]
    assert np.isnan(bins["accuracy"][0])


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_ece_against_a_loop(n_bins):
    probs, labels = _sampled(400, 2.0, seed=n_bins)
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(
        _ece_loop(probs, labels, n_bins)
    )


def test_temperature_recovered_and_matches_a_grid():
    probs, labels = _sampled(6000, 2.5, seed=1)
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    grid = np.exp(np.linspace(np.log(0.5), np.log(8), 2001))
    nll = [negative_log_likelihood(scale_temperature(probs, g), labels) for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nll))], rel=2e-3)
    # scaling never changes the class; T = 1 changes nothing
    assert (scale_temperature(probs, t).argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(scale_temperature(probs, 1.0), probs, atol=1e-9)


def _table(probs, labels, clusters, fold):
    frame = pd.DataFrame(probs, columns=[f"p_{c}" for c in CLASS_NAMES])
    frame.insert(0, "label", np.asarray(CLASS_NAMES)[labels])
    frame.insert(0, "fold", fold)
    frame.insert(0, "cluster_id", [str(c) for c in clusters])
    frame.insert(0, "image_id", [f"{c}_{i}" for i, c in enumerate(clusters)])
    frame["predicted"] = np.asarray(CLASS_NAMES)[probs.argmax(1)]
    return frame


def test_report_fits_on_validation_and_helps_an_overconfident_model():
    tests, vals = [], []
    for k in range(3):
        p, y = _sampled(900, 3.0, seed=10 + k)
        clusters = np.arange(900) // 3 + 1000 * k
        tests.append(_table(p[:450], y[:450], clusters[:450], k))
        vals.append(_table(p[450:], y[450:], clusters[450:], k))
    report, scaled = calibration_report(tests, vals, n_boot=50, seed=3)
    for k in range(3):  # each fold's T from its own validation maps
        pv = vals[k][[f"p_{c}" for c in CLASS_NAMES]].to_numpy()
        yv = vals[k]["label"].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy()
        assert report["temperature"][k] == pytest.approx(fit_temperature(pv, yv))
        assert report["temperature"][k] == pytest.approx(3.0, rel=0.25)
    assert report["ece_scaled"] < report["ece"] / 2 and report["nll_scaled"] < report["nll"]
    assert (scaled["predicted"] == pd.concat(tests)["predicted"].to_numpy()).all()
    # the interval's replicates by brute force: every drawn cluster's maps, repeated
    raw = pd.concat(tests, ignore_index=True)
    p = raw[[f"p_{c}" for c in CLASS_NAMES]].to_numpy()
    y = raw["label"].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy()
    ids = np.unique(raw["cluster_id"])
    weights = cluster_multiplicities(len(ids), 50, 3)
    members = {c: np.flatnonzero(raw["cluster_id"].to_numpy() == c) for c in ids}
    reps = []
    for w in weights:
        idx = np.concatenate([np.repeat(members[c], int(m)) for c, m in zip(ids, w, strict=True)])
        reps.append(_ece_loop(p[idx], y[idx], 10))
    np.testing.assert_allclose(report["ece_ci"], np.quantile(reps, [0.025, 0.975]), atol=1e-12)


def test_sigma_scale_is_the_likelihood_maximum_and_recovers_a_known_factor():
    # predictions whose sigmas are 0.5 of the residuals' true spread: s -> 2; the closed
    # form against a grid of the Gaussian negative log-likelihood written here
    rng = np.random.default_rng(4)
    sigma = rng.uniform(0.1, 0.4, 4000)
    mu = rng.normal(0.5, 0.6, 4000)
    y = mu + rng.normal(0.0, 2.0 * sigma)
    s = fit_sigma_scale(y, mu, sigma)
    assert s == pytest.approx(2.0, rel=0.05)
    grid = np.linspace(1.0, 3.0, 20001)
    nll = [np.sum(np.log(g * sigma) + 0.5 * ((y - mu) / (g * sigma)) ** 2) for g in grid]
    assert s == pytest.approx(grid[int(np.argmin(nll))], abs=2e-4)
    # rows without a finite value or with sigma <= 0 are left out
    bad = fit_sigma_scale(np.r_[y, np.nan, 1.0], np.r_[mu, 0.0, 0.0], np.r_[sigma, 1.0, 0.0])
    assert bad == s
