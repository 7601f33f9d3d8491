"""Methods compared over seeds and clusters: the README's tables.

:func:`compare_methods` scores every method (a list of predictions tables, one per
training seed; one table for a deterministic method such as the concentration) on
the same maps and compares each with a reference method. Every score comes with a
two-level bootstrap interval: each replicate draws the clusters
(:func:`coolcore.evaluate.intervals.cluster_multiplicities`) and the seeds
(:func:`coolcore.evaluate.intervals.repeat_multiplicities`, the same draws for every
method with as many seeds: paired by seed), and every method is scored on the same
drawn clusters, so differences are paired.

Scores: macro-F1, balanced accuracy (the mean of the recalls of the classes present,
as :func:`sklearn.metrics.balanced_accuracy_score`), and per
class the recall (the "accuracy per class" of Su et al. 2020) and the F1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.evaluate.intervals import (
    check_boot_args,
    cluster_multiplicities,
    percentile_interval,
    repeat_multiplicities,
    sample_std,
)
from coolcore.evaluate.metrics import (
    N_CLASSES,
    cluster_confusion_counts,
    parse_predictions,
    scores_from_confusion,
)
from coolcore.evaluate.paired import as_table_list, check_same_images

__all__ = ["SCORES", "compare_methods", "comparison_markdown"]

SCORES = (
    "macro_f1",
    "balanced_accuracy",
    *(f"{k}_{c}" for k in ("recall", "f1") for c in CLASS_NAMES),
)
"""The columns scored for each method (``{score}_mean`` etc. in :func:`compare_methods`)."""


def _scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Every score of :data:`SCORES` from confusion matrices ``(..., 3, 3)``."""
    s = scores_from_confusion(cm)
    present = np.asarray(cm).sum(axis=-1) > 0  # classes with maps, as scikit-learn counts
    balanced = (s["recall"] * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)
    out = {"macro_f1": s["macro_f1"], "balanced_accuracy": balanced}
    for key in ("recall", "f1"):
        for c, name in enumerate(CLASS_NAMES):
            out[f"{key}_{name}"] = s[key][..., c]
    return out


def compare_methods(
    results: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]],
    *,
    reference: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row per method: every score's mean and std over seeds and its interval, and
    the paired difference to ``reference`` with its interval.

    Parameters
    ----------
    results
        ``{method: [predictions per seed]}``; all tables must hold the same maps.
    reference
        The method the others are compared with (None: no differences).
    n_boot, seed, ci
        Bootstrap settings (``n_boot >= 1``).

    Returns
    -------
    pandas.DataFrame
        ``method``, ``n_seeds``; for each score of :data:`SCORES`: ``{s}_mean``,
        ``{s}_std`` (ddof=1 over seeds; 0 for one), ``{s}_low``, ``{s}_high``; and
        ``{s}_diff``, ``{s}_diff_low``, ``{s}_diff_high`` against ``reference`` (NaN
        for the reference itself), and ``macro_f1_diff_p`` (the fraction of replicates
        with a difference <= 0).
    """
    check_boot_args(n_boot, ci)
    if n_boot < 1:
        raise UsageError("compare_methods: n_boot must be at least 1")
    if not results:
        raise UsageError("compare_methods: no methods given")
    if reference is not None and reference not in results:
        raise UsageError(f"compare_methods: reference {reference!r} is not among the methods")
    tables, names = {}, []
    for method, preds in results.items():
        frames = as_table_list(preds, str(method))
        tables[method] = [
            parse_predictions(df, name=f"{method}[{i}]") for i, df in enumerate(frames)
        ]
        names += [f"{method}[{i}]" for i in range(len(frames))]
    flat = [t for ts in tables.values() for t in ts]
    check_same_images(flat, names)
    cluster_index = pd.Index(np.unique(flat[0].cluster_id))
    weights = cluster_multiplicities(len(cluster_index), n_boot, seed)
    point, boot = {}, {}
    for method, ts in tables.items():
        counts = np.stack([cluster_confusion_counts(t, cluster_index) for t in ts])  # (R, G, 9)
        cm = counts.sum(axis=1).reshape(-1, N_CLASSES, N_CLASSES)
        point[method] = _scores(cm)  # (R,) each
        boot_cm = np.einsum("bg,rgk->rbk", weights, counts).reshape(
            len(ts), n_boot, N_CLASSES, N_CLASSES
        )
        reps = repeat_multiplicities(len(ts), n_boot, seed)  # (B, R)
        boot[method] = {k: (reps * v.T).sum(axis=1) / len(ts) for k, v in _scores(boot_cm).items()}
    rows = []
    for method in tables:
        row: dict = {"method": str(method), "n_seeds": len(tables[method])}
        for s in SCORES:
            row[f"{s}_mean"] = float(point[method][s].mean())
            row[f"{s}_std"] = sample_std(point[method][s])
            row[f"{s}_low"], row[f"{s}_high"] = percentile_interval(boot[method][s], ci)
        for s in SCORES:
            row[f"{s}_diff"] = row[f"{s}_diff_low"] = row[f"{s}_diff_high"] = np.nan
        row["macro_f1_diff_p"] = np.nan
        if reference is not None and method != reference:
            for s in SCORES:
                diff = boot[method][s] - boot[reference][s]
                row[f"{s}_diff"] = float(point[method][s].mean() - point[reference][s].mean())
                row[f"{s}_diff_low"], row[f"{s}_diff_high"] = percentile_interval(diff, ci)
            d = boot[method]["macro_f1"] - boot[reference]["macro_f1"]
            row["macro_f1_diff_p"] = float(np.mean(d <= 0.0))
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(row, s: str, digits: int = 3) -> str:
    text = f"{row[f'{s}_mean']:.{digits}f}"
    return text + (f" ± {row[f'{s}_std']:.{digits}f}" if row["n_seeds"] > 1 else "")


def _diff(row, s: str) -> str:
    if np.isnan(row[f"{s}_diff"]):
        return "–"
    return f"{row[f'{s}_diff']:+.3f} [{row[f'{s}_diff_low']:+.3f}, {row[f'{s}_diff_high']:+.3f}]"


def comparison_markdown(table: pd.DataFrame, *, reference: str | None = None) -> str:
    """The README's table of :func:`compare_methods`: macro-F1 (mean ± std over seeds,
    interval over clusters and seeds), the difference to the reference, balanced
    accuracy, and the recall of each class (percent, as Su et al. 2020 report it)."""
    versus = f"Δ macro-F1 vs {reference} [95% CI]" if reference else "Δ macro-F1"
    header = [
        "method",
        "seeds",
        "macro-F1",
        "95% CI (clusters, seeds)",
        versus,
        "balanced accuracy",
        *(f"recall {c}" for c in CLASS_NAMES),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [
            str(row["method"]),
            str(row["n_seeds"]),
            _pm(row, "macro_f1"),
            f"[{row['macro_f1_low']:.3f}, {row['macro_f1_high']:.3f}]",
            _diff(row, "macro_f1"),
            _pm(row, "balanced_accuracy"),
            *(f"{100 * row[f'recall_{c}_mean']:.0f}%" for c in CLASS_NAMES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
