"""Cluster-bootstrap machinery: replicate weights, percentile intervals, repeat spreads.

Intervals come from a percentile bootstrap that resamples *clusters*: the
projections of one cluster are not independent images, so a drawn cluster brings
all its images into the replicate, and a cluster drawn twice brings them twice.
Each replicate is a vector of cluster multiplicities, so a replicate's confusion
matrix is that vector times the per-cluster confusion counts, and all replicates
cost one small matrix product.

Resampling scheme (fixed, so that it can be reproduced by hand): the clusters
are indexed in sorted order of ``cluster_id``; replicate ``b`` draws
``rng.integers(0, n_clusters, size=(n_boot, n_clusters))[b]`` with
``rng = numpy.random.default_rng(seed)``; the interval is
``numpy.quantile(replicates, [(1 - ci) / 2, (1 + ci) / 2])``.

With repeats (training seeds) the bootstrap has two levels, so that an interval
covers both the clusters and the seeds: replicate ``b`` also draws the repeats
with replacement, ``numpy.random.default_rng([seed, 1]).integers(0, R, size=(n_boot,
R))[b]``, and averages the drawn repeats' scores on its resampled clusters
(:func:`repeat_multiplicities`). One repeat is always drawn once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coolcore.errors import UsageError

__all__ = [
    "check_boot_args",
    "cluster_multiplicities",
    "percentile_interval",
    "repeat_multiplicities",
    "sample_std",
    "summarise_repeats",
]


def check_boot_args(n_boot: int, ci: float) -> None:
    """Refuse a negative or non-integer ``n_boot`` and a ``ci`` outside (0, 1) (UsageError)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise UsageError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not 0.0 < float(ci) < 1.0:
        raise UsageError(f"ci must lie strictly between 0 and 1, got {ci!r}")


def cluster_multiplicities(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each cluster is drawn in each replicate, shape ``(n_boot, n_clusters)``."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    offsets = (np.arange(n_boot) * n_clusters)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_clusters)
    return counts.reshape(n_boot, n_clusters).astype(np.float64)


def repeat_multiplicities(n_repeats: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each repeat (seed) is drawn in each replicate, ``(n_boot, n_repeats)``.

    The second level of the bootstrap: repeats drawn with replacement from their own
    stream, ``default_rng([seed, 1])``, so the clusters' draws do not depend on R.
    """
    if n_repeats == 1:
        return np.ones((n_boot, 1))
    rng = np.random.default_rng([seed, 1])
    draws = rng.integers(0, n_repeats, size=(n_boot, n_repeats))
    offsets = (np.arange(n_boot) * n_repeats)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_repeats)
    return counts.reshape(n_boot, n_repeats).astype(np.float64)


def percentile_interval(replicates: np.ndarray, ci: float) -> list[float]:
    """Percentile interval of 1-D replicates with coverage ``ci``, as two plain floats."""
    low, high = np.quantile(replicates, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0], axis=0)
    return [float(low), float(high)]


def sample_std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof=1); 0 for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.std(values, ddof=1)) if values.size >= 2 else 0.0


def summarise_repeats(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of repeated measurements.

    A single value has standard deviation 0.

    Examples
    --------
    >>> mean, std = summarise_repeats([0.8, 0.9])
    >>> round(mean, 6), round(std, 6)
    (0.85, 0.070711)
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise UsageError("summarise_repeats: no values")
    return float(arr.mean()), sample_std(arr)
