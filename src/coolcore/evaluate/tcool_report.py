"""The cooling-time results of a run and of several training seeds.

* :func:`baseline_regressions`: the astronomers' estimates
  (:func:`coolcore.evaluate.regression.concentration_regression` and
  :func:`~coolcore.evaluate.regression.profile_regression`) on a run's folds, row
  for row with its predictions (a cv run keeps them in ``regression_baselines.csv``);
* :func:`regression_report`: the ``regression`` block of a run's ``metrics.json``;
* :func:`seeded_regression`: several training seeds of one run on the same folds,
  scatter and coverage as mean +- std over the seeds with intervals that cover the
  clusters and the seeds (the two-level bootstrap of
  :mod:`coolcore.evaluate.intervals`), and the scatter's difference from each
  baseline, paired on the same drawn clusters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.evaluate.regression import (
    COVERAGE_LEVELS,
    concentration_regression,
    profile_regression,
    regression_metrics,
    z_of,
)

__all__ = [
    "REGRESSION_BASELINES",
    "baseline_regressions",
    "regression_report",
    "seeded_regression",
]


def _class_scores(predictions: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """Macro-F1 and accuracy of the class implied by the predicted cooling time."""
    from coolcore.evaluate.metrics import compute_metrics

    ok = predictions["predicted_from_tcool"].isin(CLASS_NAMES) & predictions["label"].isin(
        CLASS_NAMES
    )
    if not ok.any():
        return {}
    table = predictions.loc[ok, ["image_id", "cluster_id", "label"]].copy()
    table["predicted"] = predictions.loc[ok, "predicted_from_tcool"].to_numpy()
    m = compute_metrics(table, n_boot=n_boot, seed=seed)
    keys = ("macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci", "confusion_matrix")
    return {key: m[key] for key in keys}


REGRESSION_BASELINES: dict[str, str] = {
    "concentration": "log10 t_cool = a + b log10 c_SB, least squares on each fold's training folds",
    "profile": "log10 t_cool = ridge regression (alpha 1, standardised) on the 12-annulus "
    "log surface-brightness profile, on each fold's training folds",
}
"""The astronomers' cooling-time estimates: the key of each (its ``regression`` block,
its columns ``KEY_mu`` and ``KEY_sigma`` in ``regression_baselines.csv``) and its fit."""


def baseline_regressions(
    predictions: pd.DataFrame,
    dataset: Any,
    folds: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
    notice: Callable[[str], None] = print,
) -> pd.DataFrame | None:
    """:func:`concentration_regression` and :func:`profile_regression` on a run's folds,
    row for row with its ``predictions``: ``image_id``, ``concentration_mu``,
    ``concentration_sigma``, ``profile_mu``, ``profile_sigma``.  The indicators are
    the ablation's (:func:`coolcore.evaluate.indicators.dataset_features`: maps as
    stored, or an observation's prepared field).  None where the catalogue has no
    ``t_cool_gyr`` or they cannot be measured."""
    from coolcore.evaluate.indicators import dataset_features

    if "t_cool_gyr" not in dataset.catalog:
        return None
    found = dataset_features(dataset.catalog, dataset.cfg, notice)
    if found is None:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        y_all = np.log10(pd.to_numeric(dataset.catalog["t_cool_gyr"]).to_numpy(float))
    ids = pd.Series(np.arange(len(y_all)), index=np.asarray(dataset.image_ids).astype(str))
    rows = ids.loc[predictions["image_id"].astype(str)].to_numpy()
    out = pd.DataFrame({"image_id": predictions["image_id"].astype(str).to_numpy()})
    fits = {
        "concentration": concentration_regression(y_all, found["c_SB"], folds),
        "profile": profile_regression(y_all, found["profile"], folds),
    }
    for key, (mu, sigma) in fits.items():
        out[f"{key}_mu"], out[f"{key}_sigma"] = mu[rows], sigma[rows]
    return out


def regression_report(
    predictions: pd.DataFrame,
    *,
    baselines: pd.DataFrame | None = None,
    validations: Sequence[pd.DataFrame] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``regression`` block of a cv run's ``metrics.json``.

    Parameters
    ----------
    predictions : pandas.DataFrame
        The run's predictions (every map predicted by its fold's network), with
        ``log10_tcool``, ``log10_tcool_sigma``, ``t_cool_gyr``, ``cluster_id``,
        ``label`` and ``predicted_from_tcool`` (:func:`coolcore.train.fit.predictions_frame`).
    baselines : optional
        :func:`baseline_regressions` of the run (row for row): adds the
        astronomers' estimates on the same maps.
    validations : optional
        Each fold model's validation predictions, in fold order: adds
        ``network_scaled``, the network's sigmas times the fold's factor fitted on
        them (:func:`coolcore.evaluate.calibration.sigma_scales`), the factors in
        ``sigma_scale``.
    n_boot, seed
        Cluster-bootstrap replicates and seed.

    Returns
    -------
    dict
        ``target`` (what is regressed), ``network`` (:func:`regression_metrics`),
        ``network_scaled`` (with ``validations``), ``class_from_tcool``
        (macro-F1, accuracy and confusion matrix of ``predicted_from_tcool``) and,
        with ``baselines``, ``concentration`` and ``profile`` (their fit and
        :func:`regression_metrics`).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log10(pd.to_numeric(predictions["t_cool_gyr"], errors="coerce").to_numpy(float))
    clusters = predictions["cluster_id"].astype(str).to_numpy()
    opts = {"n_boot": n_boot, "seed": seed}
    mu = predictions["log10_tcool"].to_numpy(float)
    sigma = predictions["log10_tcool_sigma"].to_numpy(float)
    out: dict[str, Any] = {
        "target": "log10(t_cool / Gyr)",
        "network": regression_metrics(y, mu, sigma, cluster_id=clusters, **opts),
        "class_from_tcool": _class_scores(predictions, n_boot, seed),
    }
    if validations is not None:
        from coolcore.evaluate.calibration import fold_scaled_sigma, sigma_scales

        scales = sigma_scales(validations)
        scaled = fold_scaled_sigma(predictions, scales)
        out["network_scaled"] = {
            "sigma_scale": scales,
            **regression_metrics(y, mu, scaled, cluster_id=clusters, **opts),
        }
    if baselines is not None:
        if not np.array_equal(
            baselines["image_id"].astype(str), predictions["image_id"].astype(str)
        ):
            raise UsageError("regression baselines: not row for row with the predictions")
        for key, fit in REGRESSION_BASELINES.items():
            mu_b, sigma_b = baselines[f"{key}_mu"], baselines[f"{key}_sigma"]
            out[key] = {
                "fit": fit,
                **regression_metrics(y, mu_b, sigma_b, cluster_id=clusters, **opts),
            }
    return out


def _per_cluster_sums(
    residual: np.ndarray, sigma: np.ndarray, codes: np.ndarray, n_clusters: int
) -> np.ndarray:
    """(C, 5) per cluster: maps, sum of residuals, of their squares, and the maps inside
    the 68% and 95% intervals."""
    columns = [np.ones_like(residual), residual, residual**2]
    columns += [(np.abs(residual) <= z_of(p) * sigma).astype(float) for p in COVERAGE_LEVELS]
    return np.stack([np.bincount(codes, c, n_clusters) for c in columns], axis=1)


def _stats(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Scatter (ddof=1) and the two coverages from sums as :func:`_per_cluster_sums`."""
    n, total, squares = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"scatter_dex": np.sqrt(np.maximum(squares - total**2 / n, 0.0) / (n - 1))}
        for j, p in enumerate(COVERAGE_LEVELS):
            out[f"coverage_{round(100 * p)}"] = sums[..., 3 + j] / n
    return out


def _aligned(
    seeds: Sequence[pd.DataFrame], baselines: pd.DataFrame | None
) -> tuple[np.ndarray, dict[str, list[tuple[np.ndarray, np.ndarray]]], np.ndarray]:
    """``y``, ``{method: [(mu, sigma) per seed]}`` and the cluster ids, on the maps sorted
    by ``image_id`` where every estimate is finite."""
    if not seeds:
        raise UsageError("seeded_regression: no seeds")
    frames = [f.assign(image_id=f["image_id"].astype(str)).set_index("image_id") for f in seeds]
    ids = frames[0].index.sort_values()
    if any(not f.index.sort_values().equals(ids) for f in frames):
        raise UsageError("seeded_regression: the seeds' predictions are not of the same maps")
    frames = [f.loc[ids] for f in frames]
    columns = {"network": [(f["log10_tcool"], f["log10_tcool_sigma"]) for f in frames]}
    if baselines is not None:
        b = baselines.assign(image_id=baselines["image_id"].astype(str)).set_index("image_id")
        b = b.reindex(ids)
        columns.update({k: [(b[f"{k}_mu"], b[f"{k}_sigma"])] for k in REGRESSION_BASELINES})
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log10(pd.to_numeric(frames[0]["t_cool_gyr"], errors="coerce").to_numpy(float))
    keep = np.isfinite(y)
    estimates = {}
    for key, pairs in columns.items():
        estimates[key] = [(np.asarray(m, float), np.asarray(s, float)) for m, s in pairs]
        for mu, sigma in estimates[key]:
            keep &= np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0)
    clusters = frames[0]["cluster_id"].astype(str).to_numpy()
    estimates = {k: [(m[keep], s[keep]) for m, s in v] for k, v in estimates.items()}
    return y[keep], estimates, clusters[keep]


def seeded_regression(
    seeds: Sequence[pd.DataFrame],
    baselines: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Several training seeds' cooling-time estimates on the same maps, with intervals.

    Parameters
    ----------
    seeds : one frame per training seed
        ``image_id``, ``cluster_id``, ``t_cool_gyr``, ``log10_tcool`` and
        ``log10_tcool_sigma`` (the sigma to judge: as trained or scaled), the same
        maps in every seed.
    baselines : optional
        :func:`baseline_regressions` of one of the runs (they do not depend on the
        training seed), matched on ``image_id``.
    n_boot, seed, ci
        The two-level bootstrap (:func:`coolcore.evaluate.intervals.repeat_multiplicities`:
        clusters, then seeds, drawn with replacement; a replicate averages the drawn
        seeds' statistics on the drawn clusters).

    Returns
    -------
    dict
        ``{"network": ..., "profile": ..., "concentration": ...}`` (the baselines
        where given), each with ``seeds``, ``n`` (maps: those with every estimate
        finite), and for ``scatter_dex``, ``coverage_68`` and ``coverage_95`` the
        mean over the seeds, ``KEY_std`` (ddof=1) and ``KEY_ci``; the network's
        ``mad_dex`` (mean over seeds) and ``delta_scatter_vs_KEY`` with
        ``delta_scatter_vs_KEY_ci`` for each baseline (network minus baseline,
        paired on the drawn clusters: negative, the network is tighter).
    """
    from coolcore.evaluate.intervals import (
        check_boot_args,
        cluster_multiplicities,
        percentile_interval,
        repeat_multiplicities,
        summarise_repeats,
    )
    from coolcore.evaluate.regression import MAD_TO_SIGMA

    check_boot_args(n_boot, ci)
    y, estimates, clusters = _aligned(seeds, baselines)
    codes, _ = pd.factorize(clusters, sort=True)
    n_clusters = int(codes.max()) + 1
    weights = cluster_multiplicities(n_clusters, n_boot, seed)  # (B, C)
    out: dict[str, dict[str, Any]] = {}
    scatter_reps: dict[str, np.ndarray] = {}  # (B,) per method: seeds averaged
    for key, pairs in estimates.items():
        sums = [_per_cluster_sums(y - mu, sigma, codes, n_clusters) for mu, sigma in pairs]
        point = [_stats(s.sum(axis=0)) for s in sums]
        boot = [_stats(weights @ s) for s in sums]  # (B,) per statistic and seed
        v = repeat_multiplicities(len(pairs), n_boot, seed) / len(pairs)  # (B, S)
        block: dict[str, Any] = {"seeds": len(pairs), "n": int(y.size)}
        for stat in point[0]:
            mean, std = summarise_repeats([float(p[stat]) for p in point])
            reps = (v * np.stack([b[stat] for b in boot], axis=1)).sum(axis=1)
            block.update(
                {stat: mean, f"{stat}_std": std, f"{stat}_ci": percentile_interval(reps, ci)}
            )
            if stat == "scatter_dex":
                scatter_reps[key] = reps
        out[key] = block
    residuals = [y - mu for mu, _ in estimates["network"]]
    out["network"]["mad_dex"] = float(
        np.mean([MAD_TO_SIGMA * np.median(np.abs(r - np.median(r))) for r in residuals])
    )
    for key in [k for k in estimates if k != "network"]:
        # the same drawn clusters and seeds for both: the difference of the replicates
        out["network"][f"delta_scatter_vs_{key}"] = (
            out["network"]["scatter_dex"] - out[key]["scatter_dex"]
        )
        diff = scatter_reps["network"] - scatter_reps[key]
        out["network"][f"delta_scatter_vs_{key}_ci"] = percentile_interval(diff, ci)
    return out
