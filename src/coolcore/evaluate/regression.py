"""How well the cooling-time head does: scatter, bias, interval coverage, and a baseline.

The head (``model.regression``, :mod:`coolcore.nn.model`) predicts a Gaussian
``N(mu, sigma^2)`` for ``y = log10(t_cool / Gyr)`` of each map.  Here:

* :func:`mixture_moments`: the fold models' Gaussians combined into one, the
  equal-weight mixture's mean and standard deviation (law of total variance);
* :func:`classes_from_log10_tcool`: the class that a predicted cooling time
  implies (CC at or below 1.0 Gyr, NCC at or above 7.7 Gyr);
* :func:`regression_metrics`: scatter, bias and robust scatter of the residuals
  ``y - mu`` in dex, and the coverage of the central 68 % and 95 % Gaussian
  intervals ``mu +- z sigma``, with cluster-bootstrap intervals;
* :func:`concentration_regression`: the baseline, a least-squares line of
  ``y`` on ``log10 c_SB`` (:func:`coolcore.evaluate.baselines.concentration`)
  fitted on each fold's training folds (all maps outside its test fold) and
  applied to its test maps, with
  ``sigma`` the training residuals' standard deviation;
* :func:`profile_regression`: the stronger baseline, a ridge regression of ``y``
  on the 12-annulus surface-brightness profile
  (:func:`coolcore.evaluate.profiles.radial_profile`), fitted the same way;
* the ``regression`` block of a run's metrics and the seeds' summary:
  :mod:`coolcore.evaluate.tcool_report`.

Residuals are ``y - mu`` (positive: the network predicts too short a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.evaluate.intervals import check_boot_args, cluster_multiplicities, percentile_interval

__all__ = [
    "COVERAGE_LEVELS",
    "classes_from_log10_tcool",
    "concentration_regression",
    "mixture_moments",
    "profile_regression",
    "regression_metrics",
    "z_of",
]

COVERAGE_LEVELS: tuple[float, float] = (0.68, 0.95)
"""Nominal probabilities of the central intervals whose coverage is reported."""

MAD_TO_SIGMA = 1.4826
"""Scale of the median absolute deviation that estimates a Gaussian's sigma."""


def z_of(level: float) -> float:
    """Half-width in sigmas of the central Gaussian interval of probability ``level``.

    Examples
    --------
    >>> round(z_of(0.68), 6), round(z_of(0.95), 6)
    (0.994458, 1.959964)
    """
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2.0))


def mixture_moments(
    mu: ArrayLike, sigma: ArrayLike, axis: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and standard deviation of an equal-weight mixture of Gaussians.

    ``mu = mean_k mu_k`` and ``sigma^2 = mean_k sigma_k^2 + mean_k (mu_k - mu)^2``:
    the fold models' spread adds to their own uncertainty.

    Parameters
    ----------
    mu, sigma : array_like
        The components' means and standard deviations, components along ``axis``.
    axis : int
        The axis of the components (the fold models).

    Returns
    -------
    (mu, sigma) : numpy.ndarray
        The mixture's, with ``axis`` removed.

    Examples
    --------
    >>> m, s = mixture_moments([0.0, 2.0], [1.0, 1.0])
    >>> float(m), round(float(s), 6)
    (1.0, 1.414214)
    """
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    mean = mu.mean(axis=axis)
    spread = ((mu - np.expand_dims(mean, axis)) ** 2).mean(axis=axis)
    return mean, np.sqrt((sigma**2).mean(axis=axis) + spread)


def classes_from_log10_tcool(log10_tcool: ArrayLike) -> NDArray[np.object_]:
    """The class of each predicted ``log10(t_cool / Gyr)``; ``""`` where it is NaN.

    The catalogue's rule (:func:`coolcore.data.catalog.labels_from_t_cool`): CC at
    or below ``T_COOL_CC_GYR`` (1.0 Gyr), NCC at or above ``T_COOL_NCC_GYR``
    (7.7 Gyr), WCC in between.

    Examples
    --------
    >>> classes_from_log10_tcool(np.log10([0.99, 1.01, 7.69, 7.71])).tolist()
    ['CC', 'WCC', 'WCC', 'NCC']
    """
    from coolcore.data.catalog import labels_from_t_cool

    mu = np.asarray(log10_tcool, dtype=np.float64)
    ok = np.isfinite(mu)
    index = labels_from_t_cool(np.power(10.0, np.where(ok, mu, 0.0)))
    return np.where(ok, np.asarray(CLASS_NAMES, dtype=object)[index], "").astype(object)


def _clean(
    y: ArrayLike, mu: ArrayLike, sigma: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    arrays = [np.asarray(a, dtype=np.float64).ravel() for a in (y, mu, sigma)]
    if len({a.size for a in arrays}) != 1:
        raise UsageError(
            f"y_true_log10, mu, sigma: need equal lengths, got {[a.size for a in arrays]}"
        )
    y, mu, sigma = arrays
    keep = np.isfinite(y) & np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0)
    return y[keep], mu[keep], sigma[keep], keep


def _bootstrap(
    residual: NDArray[np.float64],
    covered: dict[str, NDArray[np.bool_]],
    cluster_id: NDArray[Any],
    n_boot: int,
    ci: float,
    seed: int,
) -> dict[str, list[float]]:
    """Cluster-bootstrap intervals of bias, scatter and the coverages (weighted sums)."""
    codes, _ = pd.factorize(pd.Series(cluster_id).astype(str), sort=True)
    n_clusters = int(codes.max()) + 1
    columns = [np.ones_like(residual), residual, residual**2]
    columns += [c.astype(np.float64) for c in covered.values()]
    per_cluster = np.stack([np.bincount(codes, c, n_clusters) for c in columns], axis=1)
    sums = cluster_multiplicities(n_clusters, n_boot, seed) @ per_cluster  # (n_boot, k)
    n = sums[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        bias = sums[:, 1] / n
        scatter = np.sqrt(np.maximum(sums[:, 2] - n * bias**2, 0.0) / (n - 1))
        out = {"bias_dex_ci": bias, "scatter_dex_ci": scatter}
        for j, key in enumerate(covered):
            out[f"{key}_ci"] = sums[:, 3 + j] / n
    return {key: percentile_interval(v[np.isfinite(v)], ci) for key, v in out.items()}


def regression_metrics(
    y_true_log10: ArrayLike,
    mu: ArrayLike,
    sigma: ArrayLike,
    *,
    cluster_id: ArrayLike | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Scatter, bias and interval coverage of Gaussian predictions of log10 t_cool.

    Parameters
    ----------
    y_true_log10 : array_like
        (N,) true ``log10(t_cool / Gyr)``.
    mu, sigma : array_like
        (N,) predicted mean and standard deviation (dex).  Rows where any of the
        three is not finite, or ``sigma <= 0``, are left out (``n`` counts the rest).
    cluster_id : array_like, optional
        (N,) cluster of each map: adds cluster-bootstrap intervals
        (:mod:`coolcore.evaluate.intervals`) ``bias_dex_ci``, ``scatter_dex_ci``,
        ``coverage_68_ci``, ``coverage_95_ci``.
    n_boot, ci, seed
        Bootstrap replicates (0: no intervals), their coverage, the seed.

    Returns
    -------
    dict
        JSON-ready: ``n``; ``bias_dex`` (mean residual ``y - mu``),
        ``scatter_dex`` (their standard deviation, ddof=1), ``mad_dex``
        (1.4826 times the median absolute deviation from their median),
        ``rms_dex``; ``sigma_median_dex`` (the median predicted sigma);
        ``coverage_68``, ``coverage_95`` (fraction with ``|y - mu| <= z sigma``,
        ``z = Phi^-1(0.5 + p / 2)``: 0.994458 and 1.959964); None where undefined
        (no rows; ``scatter_dex`` for one).

    Examples
    --------
    >>> m = regression_metrics([0.0, 0.5, 1.0, 1.5], [0.1, 0.5, 0.8, 1.0], [0.2] * 4, n_boot=0)
    >>> m["n"], m["coverage_68"], m["coverage_95"]
    (4, 0.5, 0.75)
    """
    check_boot_args(n_boot, ci)
    y, mu_, sigma_, keep = _clean(y_true_log10, mu, sigma)
    residual = y - mu_
    n = int(residual.size)
    covered = {
        f"coverage_{round(100 * p)}": np.abs(residual) <= z_of(p) * sigma_ for p in COVERAGE_LEVELS
    }
    out: dict[str, Any] = {"n": n}
    if n:
        out["bias_dex"] = float(residual.mean())
        out["scatter_dex"] = float(residual.std(ddof=1)) if n > 1 else None
        out["mad_dex"] = float(MAD_TO_SIGMA * np.median(np.abs(residual - np.median(residual))))
        out["rms_dex"] = float(np.sqrt(np.mean(residual**2)))
        out["sigma_median_dex"] = float(np.median(sigma_))
        out.update({key: float(c.mean()) for key, c in covered.items()})
    else:
        keys = ("bias_dex", "scatter_dex", "mad_dex", "rms_dex", "sigma_median_dex", *covered)
        out.update(dict.fromkeys(keys))
    if cluster_id is not None and n_boot > 0 and n > 1:
        clusters = np.asarray(cluster_id).ravel()
        if clusters.size != keep.size:
            raise UsageError(f"cluster_id: expected {keep.size} values, got {clusters.size}")
        out.update(_bootstrap(residual, covered, clusters[keep], n_boot, ci, seed))
        out["bootstrap"] = {"n_boot": n_boot, "ci": ci, "seed": seed, "resampled": "clusters"}
    return out


def concentration_regression(
    y_true_log10: ArrayLike,
    concentration: ArrayLike,
    folds: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The baseline: ``y = a + b log10 c`` fitted per fold, a Gaussian for each test map.

    For each fold ``(train_idx, val_idx, test_idx)`` the line is the least-squares
    fit on the maps of its training folds (``train_idx`` and ``val_idx``: the
    network sees both, one to learn and one to choose its epoch; a line has
    nothing to choose) with a finite, positive concentration; each test map gets
    ``mu = a + b log10 c`` and ``sigma`` = the standard deviation of the training
    residuals (``n - 2`` degrees of freedom).

    Parameters
    ----------
    y_true_log10 : array_like
        (N,) true ``log10(t_cool / Gyr)``.
    concentration : array_like
        (N,) the indicator, e.g. ``c_SB = S(< 40 kpc) / S(< 400 kpc)``.
    folds : sequence of (train_idx, val_idx, test_idx)
        As :func:`coolcore.data.splits.cluster_folds` makes them.

    Returns
    -------
    (mu, sigma) : numpy.ndarray
        (N,) each; NaN for maps in no test fold or without a usable concentration.

    Raises
    ------
    coolcore.errors.UsageError
        A fold with fewer than three usable training maps.
    """
    y = np.asarray(y_true_log10, dtype=np.float64)
    c = np.asarray(concentration, dtype=np.float64)
    if y.shape != c.shape or y.ndim != 1:
        raise UsageError(
            f"y_true_log10, concentration: need equal 1-D shapes, {y.shape}, {c.shape}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(c > 0, np.log10(c), np.nan)
    usable = np.isfinite(x) & np.isfinite(y)
    mu, sigma = np.full(y.shape, np.nan), np.full(y.shape, np.nan)
    for k, (train_idx, val_idx, test_idx) in enumerate(folds):
        train = np.concatenate([np.asarray(train_idx), np.asarray(val_idx)]).astype(np.int64)
        train = train[usable[train]]
        if train.size < 3:
            raise UsageError(f"fold {k}: {train.size} training maps with a concentration; need 3")
        slope, intercept = np.polyfit(x[train], y[train], 1)
        residual = y[train] - (intercept + slope * x[train])
        test = np.asarray(test_idx, dtype=np.int64)
        mu[test] = intercept + slope * x[test]
        sigma[test] = np.sqrt(np.sum(residual**2) / (train.size - 2))
    return mu, sigma


def profile_regression(
    y_true_log10: ArrayLike,
    profiles: ArrayLike,
    folds: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
    *,
    alpha: float = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The stronger baseline: ``y`` from the surface-brightness profile, per fold.

    As :func:`concentration_regression`, with the line replaced by a ridge
    regression (scikit-learn ``Ridge(alpha)`` on the profile standardised with the
    training maps' mean and standard deviation) of ``y`` on the (N, K) profile;
    ``sigma`` = the training residuals' standard deviation with ``n - K - 1``
    degrees of freedom.  Maps with a non-finite profile or ``y`` are not fitted and
    get NaN.
    """
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y_true_log10, dtype=np.float64)
    x = np.asarray(profiles, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise UsageError(f"y_true_log10, profiles: need (N,) and (N, K), {y.shape}, {x.shape}")
    usable = np.isfinite(x).all(axis=1) & np.isfinite(y)
    mu, sigma = np.full(y.shape, np.nan), np.full(y.shape, np.nan)
    k_features = x.shape[1]
    for k, (train_idx, val_idx, test_idx) in enumerate(folds):
        train = np.concatenate([np.asarray(train_idx), np.asarray(val_idx)]).astype(np.int64)
        train = train[usable[train]]
        if train.size < k_features + 2:
            raise UsageError(f"fold {k}: {train.size} training maps with a profile; too few")
        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x[train], y[train])
        residual = y[train] - model.predict(x[train])
        test = np.asarray(test_idx, dtype=np.int64)
        test = test[usable[test]]
        mu[test] = model.predict(x[test])
        sigma[test] = np.sqrt(np.sum(residual**2) / (train.size - k_features - 1))
    return mu, sigma
