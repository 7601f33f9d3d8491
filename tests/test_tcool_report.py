"""Several training seeds of the cooling-time estimate (coolcore.evaluate.tcool_report):
against a two-level bootstrap written here by resampling rows, and by-hand statistics."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from coolcore.errors import UsageError
from coolcore.evaluate.tcool_report import seeded_regression


def _seeds_and_baselines(n_clusters=30, n_seeds=3, seed=0):
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(n_clusters), 3)
    y = rng.normal(0.4, 0.5, cluster.size) + np.repeat(rng.normal(0, 0.2, n_clusters), 3)
    ids = [f"m{i:03d}" for i in range(cluster.size)]
    seeds = []
    for s in range(n_seeds):
        mu = y + rng.normal(0, 0.15, y.size)
        frame = pd.DataFrame({
            "image_id": ids, "cluster_id": cluster, "t_cool_gyr": 10**y,
            "log10_tcool": mu, "log10_tcool_sigma": np.full(y.size, 0.12 + 0.02 * s),
        })  # fmt: skip
        seeds.append(frame.sample(frac=1.0, random_state=s))  # any row order
    baselines = pd.DataFrame({
        "image_id": ids,
        "concentration_mu": y + rng.normal(0, 0.3, y.size), "concentration_sigma": 0.3,
        "profile_mu": y + rng.normal(0, 0.2, y.size), "profile_sigma": 0.2,
    })  # fmt: skip
    return seeds, baselines, y, cluster


def _brute(seeds, baselines, y, cluster, n_boot, seed):
    """Replicate b: draw clusters (default_rng(seed)) and seeds (default_rng([seed, 1])),
    concatenate the drawn clusters' rows, average the drawn seeds' statistics."""
    n_clusters, n_seeds = cluster.max() + 1, len(seeds)
    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))
    seed_draws = np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(n_boot, n_seeds))
    ids = [f"m{i:03d}" for i in range(y.size)]
    mus = [f.set_index("image_id").loc[ids] for f in seeds]
    net = [(m["log10_tcool"].to_numpy(), m["log10_tcool_sigma"].to_numpy()) for m in mus]
    prof = (baselines["profile_mu"].to_numpy(), baselines["profile_sigma"].to_numpy())
    # the clusters in sorted order of their ids as text (coolcore.evaluate.intervals)
    rows_of = [np.flatnonzero(cluster.astype(str) == c) for c in sorted(set(cluster.astype(str)))]

    def stats(mu, sigma, rows):
        r = y[rows] - mu[rows]
        return np.std(r, ddof=1), np.mean(np.abs(r) <= norm.ppf(0.84) * sigma[rows])

    scat, cov, diff = [], [], []
    for b in range(n_boot):
        rows = np.concatenate([rows_of[k] for k in draws[b]])
        drawn = [stats(*net[s], rows) for s in (seed_draws[b] if n_seeds > 1 else [0])]
        p = stats(*prof, rows)
        scat.append(np.mean([d[0] for d in drawn]))
        cov.append(np.mean([d[1] for d in drawn]))
        diff.append(scat[-1] - p[0])
    q = [0.025, 0.975]
    return np.quantile(scat, q), np.quantile(cov, q), np.quantile(diff, q)


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_seeded_regression_against_a_row_resampling_bootstrap(n_seeds):
    seeds, baselines, y, cluster = _seeds_and_baselines(n_seeds=n_seeds)
    out = seeded_regression(seeds, baselines, n_boot=300, seed=5)
    net = out["network"]
    # the point: mean and std over the seeds of each seed's statistics, by hand
    per_seed = []
    for f in seeds:
        r = np.log10(f["t_cool_gyr"]) - f["log10_tcool"]
        per_seed.append(
            (np.std(r, ddof=1), np.mean(np.abs(r) <= 0.994458 * f["log10_tcool_sigma"]))
        )
    assert net["seeds"] == n_seeds and net["n"] == y.size
    assert net["scatter_dex"] == pytest.approx(np.mean([p[0] for p in per_seed]), rel=1e-12)
    assert net["coverage_68"] == pytest.approx(np.mean([p[1] for p in per_seed]), rel=1e-12)
    if n_seeds > 1:
        assert net["scatter_dex_std"] == pytest.approx(np.std([p[0] for p in per_seed], ddof=1))
    prof_r = y - baselines["profile_mu"]
    assert out["profile"]["scatter_dex"] == pytest.approx(np.std(prof_r, ddof=1), rel=1e-12)
    assert net["delta_scatter_vs_profile"] == pytest.approx(
        net["scatter_dex"] - out["profile"]["scatter_dex"]
    )
    scat, cov, diff = _brute(seeds, baselines, y, cluster, 300, 5)
    np.testing.assert_allclose(net["scatter_dex_ci"], scat, atol=1e-12)
    np.testing.assert_allclose(net["coverage_68_ci"], cov, atol=1e-12)
    np.testing.assert_allclose(net["delta_scatter_vs_profile_ci"], diff, atol=1e-12)


def test_seeded_regression_leaves_out_missing_estimates_and_refuses_other_maps():
    seeds, baselines, y, _ = _seeds_and_baselines(n_seeds=2)
    baselines.loc[3, "profile_mu"] = np.nan
    out = seeded_regression(seeds, baselines, n_boot=20)
    assert out["network"]["n"] == out["profile"]["n"] == y.size - 1
    assert out["concentration"]["seeds"] == 1
    with pytest.raises(UsageError, match="not of the same maps"):
        seeded_regression([seeds[0], seeds[1].iloc[1:]], n_boot=20)
    assert set(seeded_regression(seeds, n_boot=20)) == {"network"}
