"""Whether the class probabilities mean what they say: reliability, ECE, temperature scaling.

Top-label calibration (Guo et al. 2017, "On calibration of modern neural
networks"): the maps are binned by their confidence, the highest class
probability, in ``n_bins`` equal-width bins of [0, 1] (a confidence on an inner
edge goes to the upper bin, 1.0 to the last); the expected calibration error is
``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|``.

Temperature scaling divides the logits by one number ``T`` per fold model:
``p_T = softmax(log p / T)`` (the same thing, since ``log p`` differs from the
logits by a constant per map). ``T`` is fitted on the fold model's own
validation maps (``fold_XX/val_predictions.csv``) by minimising their mean
negative log-likelihood, and applied to that model's test maps, so no test label
is used. It changes no arg-max: classes and macro-F1 stay the same.

The cooling-time head's uncertainties get the same treatment: one factor ``s``
per fold model multiplies its ``sigma`` of log10 t_cool, fitted on its validation
maps by the Gaussian likelihood, which has the closed-form maximum
``s^2 = mean(((y - mu) / sigma)^2)`` (:func:`fit_sigma_scale`).  It changes no
``mu``: the scatter stays the same, the interval coverage moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.errors import DataError
from coolcore.evaluate.intervals import cluster_multiplicities, percentile_interval

__all__ = [
    "PROB_COLUMNS",
    "calibration_report",
    "expected_calibration_error",
    "fit_sigma_scale",
    "fit_temperature",
    "fold_scaled_sigma",
    "fold_sigma_scales",
    "fold_temperatures",
    "negative_log_likelihood",
    "probs_labels",
    "reliability_bins",
    "scale_temperature",
    "sigma_scales",
]

PROB_COLUMNS = [f"p_{name}" for name in CLASS_NAMES]
TEMPERATURE_BOUNDS = (0.05, 20.0)
_EPS = 1e-12


def probs_labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) probabilities and (N,) class indices of a predictions table."""
    missing = [c for c in (*PROB_COLUMNS, "label") if c not in frame]
    if missing:
        raise DataError(f"predictions lack column(s) {', '.join(missing)}")
    index = {name: k for k, name in enumerate(CLASS_NAMES)}
    labels = frame["label"].map(index)
    if labels.isna().any():
        raise DataError(f"predictions: label {frame['label'][labels.isna()].iloc[0]!r} unknown")
    return frame[PROB_COLUMNS].to_numpy(np.float64), labels.to_numpy(int)


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((confidence * n_bins).astype(int), n_bins - 1)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """The reliability diagram's numbers: per confidence bin ``low``, ``high``, ``n``,
    ``confidence`` (mean top probability) and ``accuracy`` (NaN for an empty bin)."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    b = _bin_index(confidence, n_bins)
    n = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(b, weights=confidence, minlength=n_bins) / n
        acc = np.bincount(b, weights=correct.astype(float), minlength=n_bins) / n
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {"low": edges[:-1], "high": edges[1:], "n": n, "confidence": conf, "accuracy": acc}
    )


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE with ``n_bins`` equal-width bins (0 = perfectly calibrated)."""
    bins = reliability_bins(probs, labels, n_bins)
    full = bins[bins["n"] > 0]
    gap = (full["accuracy"] - full["confidence"]).abs()
    return float((full["n"] * gap).sum() / full["n"].sum())


def scale_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the probabilities of logits divided by ``T``."""
    z = np.log(np.clip(np.asarray(probs, np.float64), _EPS, None)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p(true class)`` (natural log)."""
    p = np.asarray(probs, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(p, _EPS, None)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in :data:`TEMPERATURE_BOUNDS` that minimises the NLL of ``softmax(log p / T)``
    (a bounded scalar search on ``log T``)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        raise DataError("fit_temperature: no maps")
    lo, hi = np.log(TEMPERATURE_BOUNDS)
    res = minimize_scalar(
        lambda log_t: negative_log_likelihood(scale_temperature(probs, np.exp(log_t)), labels),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(res.x))


def _ece_interval(
    probs: np.ndarray,
    labels: np.ndarray,
    clusters: np.ndarray,
    n_bins: int,
    n_boot: int,
    seed: int,
    ci: float,
) -> list[float]:
    """Cluster-bootstrap interval of the ECE (the resampling of
    :mod:`coolcore.evaluate.intervals`: a drawn cluster brings all its maps)."""
    index, inverse = np.unique(clusters, return_inverse=True)
    weights = cluster_multiplicities(len(index), n_boot, seed)[:, inverse]  # (B, N)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    onehot = np.eye(n_bins)[_bin_index(confidence, n_bins)]  # (N, bins)
    n = weights @ onehot
    gap = np.abs(weights @ (onehot * correct[:, None]) - weights @ (onehot * confidence[:, None]))
    return percentile_interval(gap.sum(axis=1) / n.sum(axis=1), ci)


def calibration_report(
    tests: Sequence[pd.DataFrame],
    validations: Sequence[pd.DataFrame],
    *,
    n_bins: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[dict, pd.DataFrame]:
    """Calibration of a cross-validation's test predictions, before and after
    temperature scaling fitted per fold on that fold's validation predictions.

    Parameters
    ----------
    tests, validations : one predictions table per fold (the fold model on its test
        maps, and on its validation maps), in the same fold order.

    Returns
    -------
    report : dict
        ``n_bins``, ``temperature`` (one per fold), ``ece``/``ece_scaled`` with
        cluster-bootstrap intervals (``ece_ci``, ``ece_scaled_ci``), ``nll`` and
        ``nll_scaled``, and the reliability bins (``bins``, ``bins_scaled``: lists
        of dicts as :func:`reliability_bins` gives them).
    scaled : pandas.DataFrame
        The test predictions with the scaled probabilities (``predicted`` unchanged).
    """
    if len(tests) != len(validations) or not tests:
        raise DataError("calibration: need the test and validation predictions of every fold")
    temps, scaled = [], []
    for test, val in zip(tests, validations, strict=True):
        t = fit_temperature(*probs_labels(val))
        temps.append(t)
        p, _ = probs_labels(test)
        scaled.append(
            test.assign(**dict(zip(PROB_COLUMNS, scale_temperature(p, t).T, strict=True)))
        )
    raw = pd.concat(list(tests), ignore_index=True)
    cal = pd.concat(scaled, ignore_index=True)
    clusters = raw["cluster_id"].astype(str).to_numpy()
    report: dict = {"n_bins": n_bins, "temperature": temps}
    for key, frame in (("", raw), ("_scaled", cal)):
        p, y = probs_labels(frame)
        report[f"ece{key}"] = expected_calibration_error(p, y, n_bins)
        report[f"nll{key}"] = negative_log_likelihood(p, y)
        if n_boot > 0:
            report[f"ece{key}_ci"] = _ece_interval(p, y, clusters, n_bins, n_boot, seed, ci)
        bins = reliability_bins(p, y, n_bins).astype(object)
        report[f"bins{key}"] = bins.where(bins.notna(), None).to_dict("records")  # JSON: null
    report["bootstrap"] = {"n_boot": n_boot, "seed": seed, "ci": ci, "unit": "cluster"}
    return report, cal


def fit_sigma_scale(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """The ``s`` that maximises the likelihood of ``y ~ N(mu, (s sigma)^2)``:
    ``sqrt(mean(((y - mu) / sigma)^2))`` over the rows where all three are finite and
    ``sigma > 0``.

    Examples
    --------
    >>> fit_sigma_scale(np.array([1.0, -1.0]), np.zeros(2), np.array([0.5, 0.5]))
    2.0
    """
    y, mu, sigma = (np.asarray(a, np.float64) for a in (y, mu, sigma))
    ok = np.isfinite(y) & np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        raise DataError("fit_sigma_scale: no map with a true and a predicted cooling time")
    return float(np.sqrt(np.mean(((y[ok] - mu[ok]) / sigma[ok]) ** 2)))


def sigma_scales(validations: Sequence[pd.DataFrame]) -> list[float]:
    """:func:`fit_sigma_scale` of each fold model's validation predictions
    (``t_cool_gyr``, ``log10_tcool``, ``log10_tcool_sigma``), in fold order."""
    scales = []
    for val in validations:
        missing = [c for c in ("t_cool_gyr", "log10_tcool", "log10_tcool_sigma") if c not in val]
        if missing:
            raise DataError(f"validation predictions lack column(s) {', '.join(missing)}")
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log10(pd.to_numeric(val["t_cool_gyr"], errors="coerce").to_numpy(float))
        scales.append(fit_sigma_scale(y, val["log10_tcool"], val["log10_tcool_sigma"]))
    return scales


def fold_scaled_sigma(predictions: pd.DataFrame, scales: Sequence[float]) -> np.ndarray:
    """``log10_tcool_sigma`` of a run's test predictions, each map's times the factor of
    the fold model that predicted it (``scales`` in fold order, :func:`sigma_scales`)."""
    factor = np.asarray(scales, dtype=np.float64)[predictions["fold"].to_numpy(int)]
    return predictions["log10_tcool_sigma"].to_numpy(float) * factor


def _fold_values(meta: dict, n_nets: int, key: str) -> list[float]:
    info = meta.get("fold_info") or {}
    values = [float((info.get(str(k)) or {}).get(key) or 1.0) for k in meta["folds"]]
    return values if len(values) == n_nets else [1.0] * n_nets


def fold_temperatures(meta: dict, n_nets: int) -> list[float]:
    """The temperatures of a model's fold networks from its ``model.json`` metadata
    (``fold_info``, in the order of ``folds``): 1 for a fold exported without one, and
    for every network when ``folds`` does not match the ``n_nets`` networks given."""
    return _fold_values(meta, n_nets, "temperature")


def fold_sigma_scales(meta: dict, n_nets: int) -> list[float]:
    """The cooling-time sigma factors of a model's fold networks (``tcool_sigma_scale``
    in ``fold_info``), with the defaults of :func:`fold_temperatures`."""
    return _fold_values(meta, n_nets, "tcool_sigma_scale")
