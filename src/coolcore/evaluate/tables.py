"""The paper's tables, computed from predictions: Table I (ablation) and Table II (sweep).

:func:`ablation_summary` gives one row of numbers per method (a DataFrame: the
``results.csv`` of an ablation run); :func:`ablation_table` and
:func:`sweep_table` write Markdown.  Intervals are cluster-bootstrap intervals
(:mod:`coolcore.evaluate.intervals`), differences paired
(:mod:`coolcore.evaluate.paired`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.evaluate.intervals import check_boot_args, summarise_repeats
from coolcore.evaluate.metrics import compute_metrics
from coolcore.evaluate.paired import as_table_list, paired_difference, repeat_bootstrap

__all__ = ["ablation_summary", "ablation_table", "difference_text", "sweep_table"]


def ablation_summary(
    results: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]],
    *,
    baseline: str | None = "baseline",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """One row of numbers per method of an ablation, computed from predictions.

    Parameters
    ----------
    results
        ``{method: [predictions table of repeat 0, repeat 1, ...]}`` (a single
        table is one repeat).  Methods keep their order.
    baseline
        The method every other is compared with (paired cluster bootstrap, see
        :func:`paired_difference`); None, or a name not in ``results``, skips
        the comparison.
    n_boot, seed, ci
        Bootstrap settings.  Every method uses the same seed, hence the same
        resampled clusters.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``n_repeats``, ``macro_f1_mean``, ``macro_f1_std``
        (ddof=1 over repeats), ``macro_f1_ci_low``/``_high`` (cluster-bootstrap
        interval of the repeat mean), ``macro_f1_repeats`` (list), for each
        class ``{class}_{precision,recall,f1}_{mean,std}``, and ``diff_vs_baseline``,
        ``diff_ci_low``, ``diff_ci_high``, ``diff_p_value`` (NaN for the baseline
        itself or without a baseline).
    """
    check_boot_args(n_boot, ci)
    if not results:
        raise UsageError("ablation: no methods given")
    have_baseline = baseline is not None and baseline in results
    rows = []
    for method, preds in results.items():
        frames = as_table_list(preds, str(method))
        point, interval = repeat_bootstrap(frames, n_boot=n_boot, seed=seed, ci=ci, name=method)
        mean, std = summarise_repeats(point)
        row: dict[str, Any] = {
            "method": str(method),
            "n_repeats": len(frames),
            "macro_f1_mean": mean,
            "macro_f1_std": std,
            "macro_f1_ci_low": interval[0] if interval else np.nan,
            "macro_f1_ci_high": interval[1] if interval else np.nan,
            "macro_f1_repeats": [float(v) for v in point],
        }
        per_class = [compute_metrics(df, n_boot=0) for df in frames]
        for name in CLASS_NAMES:
            for key in ("precision", "recall", "f1"):
                m, s = summarise_repeats([pc[key][name] for pc in per_class])
                row[f"{name}_{key}_mean"], row[f"{name}_{key}_std"] = m, s
        row.update(diff_vs_baseline=np.nan, diff_ci_low=np.nan, diff_ci_high=np.nan)
        row["diff_p_value"] = np.nan
        if have_baseline and method != baseline:
            diff = paired_difference(
                frames, as_table_list(results[baseline], baseline), n_boot=n_boot, seed=seed, ci=ci
            )
            row["diff_vs_baseline"] = diff["difference"]
            if diff["ci"] is not None:
                row["diff_ci_low"], row["diff_ci_high"] = diff["ci"]
                row["diff_p_value"] = diff["p_value"]
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean: float, std: float, n: int, digits: int = 3) -> str:
    """``mean ± std`` (the std only when there are repeats)."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def _interval_text(low: float, high: float, digits: int = 3) -> str:
    if np.isnan(low) or np.isnan(high):
        return "–"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def difference_text(row, *, p_value: bool = True) -> str:
    """A summary row's paired difference to the baseline as text: ``+0.012 [-0.010,
    +0.034], p = 0.140`` (``–`` for the baseline itself; no interval without one)."""
    if np.isnan(row["diff_vs_baseline"]):
        return "–"
    if np.isnan(row["diff_ci_low"]):
        return _signed(row["diff_vs_baseline"])
    text = (
        f"{_signed(row['diff_vs_baseline'])} "
        f"[{_signed(row['diff_ci_low'])}, {_signed(row['diff_ci_high'])}]"
    )
    return f"{text}, {_p_text(row['diff_p_value'])}" if p_value else text


def _signed(value: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f}"


def ablation_table(
    results: Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]] | pd.DataFrame,
    *,
    baseline: str | None = "baseline",
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> str:
    """A Markdown table like the paper's Table I.

    Parameters
    ----------
    results
        ``{method: [predictions per repeat]}`` as for :func:`ablation_summary`,
        or the DataFrame that :func:`ablation_summary` returns.
    baseline, n_boot, seed, ci
        As for :func:`ablation_summary`.

    Returns
    -------
    str
        A Markdown table, one row per method and class: macro-F1 (mean ± std
        over repeats), its cluster-bootstrap interval, the paired difference to
        the baseline with its interval and one-sided p-value, the number of
        repeats, and per-class precision, recall and F1 (mean ± std).
    """
    summary = (
        results
        if isinstance(results, pd.DataFrame)
        else ablation_summary(results, baseline=baseline, n_boot=n_boot, seed=seed, ci=ci)
    )
    pct = f"{100 * ci:g}%"
    diff_head = f"Δ vs {baseline} [{pct} CI], p" if baseline else "Δ vs baseline"
    header = [
        "Method",
        "Repeats",
        "Macro-F1",
        f"{pct} CI (cluster bootstrap)",
        diff_head,
        "Class",
        "Precision",
        "Recall",
        "F1",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in summary.iterrows():
        n = int(row["n_repeats"])
        diff_text = difference_text(row)
        for k, name in enumerate(CLASS_NAMES):
            first = k == 0
            cells = [
                str(row["method"]) if first else "",
                str(n) if first else "",
                _pm(row["macro_f1_mean"], row["macro_f1_std"], n) if first else "",
                _interval_text(row["macro_f1_ci_low"], row["macro_f1_ci_high"]) if first else "",
                diff_text if first else "",
                name,
            ]
            cells += [
                _pm(row[f"{name}_{key}_mean"], row[f"{name}_{key}_std"], n, digits=2)
                for key in ("precision", "recall", "f1")
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_table(
    runs: Sequence[Mapping[str, Any]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> str:
    """A Markdown table like the paper's Table II (loss weights against macro-F1).

    Parameters
    ----------
    runs
        One mapping per row with keys ``method`` (str), ``alphas`` (the four
        loss weights ``(a_p, a_a, a_f, a_r)``; an entry may be None for a loss
        term the method lacks) and ``predictions`` (a table or a list of tables,
        one per repeat).
    n_boot, seed, ci
        Bootstrap settings, as for :func:`compute_metrics`.

    Returns
    -------
    str
        Markdown with columns Method, α_p, α_a, α_f, α_r, Repeats, Macro-F1
        (mean ± std over repeats) and its cluster-bootstrap interval.
    """
    check_boot_args(n_boot, ci)
    pct = f"{100 * ci:g}%"
    header = ["Method", "α_p", "α_a", "α_f", "α_r", "Repeats", "Macro-F1", f"{pct} CI"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, run in enumerate(runs):
        try:
            method, alphas, preds = run["method"], run["alphas"], run["predictions"]
        except KeyError as exc:
            raise UsageError(f"sweep_table: run {i} lacks key {exc}") from None
        if len(alphas) != 4:
            raise UsageError(f"sweep_table: run {i} needs four alphas (a_p, a_a, a_f, a_r)")
        frames = as_table_list(preds, str(method))
        point, interval = repeat_bootstrap(
            frames, n_boot=n_boot, seed=seed, ci=ci, name=str(method)
        )
        mean, std = summarise_repeats(point)
        cells = [str(method)] + ["–" if a is None else f"{float(a):g}" for a in alphas]
        cells += [
            str(len(frames)),
            _pm(mean, std, len(frames)),
            _interval_text(*interval) if interval else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
