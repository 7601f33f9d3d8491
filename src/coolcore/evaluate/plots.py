"""Figures of a run: confusion matrix, learning curves, ablation intervals.

Every function draws on its own :class:`matplotlib.figure.Figure` (no pyplot
state, no GUI backend: the Agg canvas renders the PNG), writes one PNG, creating
the parent folder if needed, and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError
from coolcore.evaluate.tables import ablation_summary

__all__ = ["plot_ablation", "plot_confusion_matrix", "plot_learning_curves", "plot_reliability"]

_DPI = 150


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def plot_confusion_matrix(
    metrics_or_cm: Mapping[str, Any] | np.ndarray | Sequence[Sequence[float]],
    path: str | Path,
    *,
    normalised: bool = True,
    title: str | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> Path:
    """Draw a confusion matrix (rows true, columns predicted), like the paper's Fig. 3.

    Parameters
    ----------
    metrics_or_cm
        The dict of :func:`coolcore.evaluate.metrics.compute_metrics` (its raw
        ``confusion_matrix`` is used) or a square array of counts.
    path
        Where to write the PNG.
    normalised
        Colour and label each cell by its row fraction, with the count below it;
        otherwise by the count.  A row without samples shows zeros.
    title
        Figure title; a default names the kind of matrix.
    class_names
        Axis tick labels, in the matrix's order.

    Returns
    -------
    pathlib.Path
        The written PNG.
    """
    if isinstance(metrics_or_cm, Mapping):
        if "confusion_matrix" not in metrics_or_cm:
            raise DataError("plot_confusion_matrix: the metrics have no 'confusion_matrix'")
        counts = np.asarray(metrics_or_cm["confusion_matrix"], dtype=np.float64)
    else:
        counts = np.asarray(metrics_or_cm, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise DataError(
            f"plot_confusion_matrix: expected a square matrix, got shape {counts.shape}"
        )
    if len(class_names) != counts.shape[0]:
        raise UsageError(
            f"plot_confusion_matrix: {len(class_names)} class names for a "
            f"{counts.shape[0]} x {counts.shape[0]} matrix"
        )
    rows = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    shown = fractions if normalised else counts
    vmax = 1.0 if normalised else max(float(counts.max()), 1.0)

    n = counts.shape[0]
    fig = Figure(figsize=(1.3 * n + 1.6, 1.3 * n + 1.0))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for i in range(n):
        for j in range(n):
            value = shown[i, j]
            text = f"{value:.2f}\n({int(round(counts[i, j]))})" if normalised else f"{int(value)}"
            colour = "white" if value > 0.5 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=10)
    ax.set_xticks(range(n), labels=list(class_names))
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    default = "Confusion matrix (row normalised)" if normalised else "Confusion matrix (counts)"
    ax.set_title(title if title is not None else default)
    return _save(fig, path)


def _first_column(df: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    for name in candidates:
        if name in df.columns and df[name].notna().any():
            return name
    return None


def plot_learning_curves(
    history: pd.DataFrame, path: str | Path, *, title: str | None = None
) -> Path:
    """Loss and validation macro-F1 against epoch, one line per fold.

    Parameters
    ----------
    history
        A Lightning ``CSVLogger``-style table, possibly of several folds stacked:
        ``epoch``, optional ``fold``, and any of ``train_loss`` (or
        ``train_loss_epoch``), ``val_loss`` and ``val_macro_f1``.  Train and
        validation values may sit on separate rows with NaN elsewhere; rows of one
        (fold, epoch) are merged by averaging the values present.
    path
        Where to write the PNG.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        The written PNG.
    """
    if not isinstance(history, pd.DataFrame) or "epoch" not in history.columns:
        raise DataError("plot_learning_curves: the history needs an 'epoch' column")
    train_col = _first_column(history, ("train_loss", "train_loss_epoch"))
    val_col = _first_column(history, ("val_loss", "val_loss_epoch"))
    f1_col = _first_column(history, ("val_macro_f1", "val_f1_macro", "val_macro_f1_epoch"))
    if train_col is None and val_col is None and f1_col is None:
        raise DataError(
            "plot_learning_curves: the history has no train_loss, val_loss or val_macro_f1 values"
        )
    columns = [c for c in (train_col, val_col, f1_col) if c is not None]
    data = history.assign(fold=history["fold"] if "fold" in history.columns else 0)
    data = data.dropna(subset=["epoch"])
    merged = data.groupby(["fold", "epoch"], sort=True)[columns].mean().reset_index()

    fig = Figure(figsize=(10.0, 4.0))
    ax_loss, ax_f1 = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(merged["fold"].nunique())]
    for colour, (fold, group) in zip(colours, merged.groupby("fold", sort=True), strict=True):
        for col, style, kind in ((train_col, "-", "train"), (val_col, "--", "val")):
            if col is None:
                continue
            series = group[["epoch", col]].dropna()
            if len(series):
                ax_loss.plot(
                    series["epoch"], series[col], style, color=colour, label=f"fold {fold} {kind}"
                )
        if f1_col is not None:
            series = group[["epoch", f1_col]].dropna()
            if len(series):
                ax_f1.plot(
                    series["epoch"], series[f1_col], "-o", ms=3, color=colour, label=f"fold {fold}"
                )
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss (solid: train, dashed: validation)")
    ax_f1.set_xlabel("epoch")
    ax_f1.set_ylabel("validation macro-F1")
    ax_f1.set_title("Validation macro-F1")
    ax_f1.set_ylim(0.0, 1.0)
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0] and merged["fold"].nunique() <= 10:
            ax.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_ablation(
    table_or_results: pd.DataFrame | Mapping[str, pd.DataFrame | Sequence[pd.DataFrame]],
    path: str | Path,
    *,
    reference: Mapping[str, float] | None = None,
    title: str | None = None,
    **summary_kwargs: Any,
) -> Path:
    """Dot-and-whisker plot of macro-F1 per method.

    The dot is the mean over repeats, the thick whisker the cluster-bootstrap
    interval, the thin bar mean ± std over repeats, and small crosses the single
    repeats.

    Parameters
    ----------
    table_or_results
        The DataFrame of :func:`coolcore.evaluate.tables.ablation_summary`, or the
        ``{method: [predictions per repeat]}`` mapping it takes.
    path
        Where to write the PNG.
    reference
        Optional ``{method: macro-F1}`` drawn as open diamonds (for example the
        paper's Table I numbers).
    title
        Figure title.
    **summary_kwargs
        Passed to :func:`~coolcore.evaluate.tables.ablation_summary` when given results
        (``baseline``, ``n_boot``, ``seed``, ``ci``).

    Returns
    -------
    pathlib.Path
        The written PNG.
    """
    if isinstance(table_or_results, pd.DataFrame):
        table = table_or_results
    else:
        table = ablation_summary(table_or_results, **summary_kwargs)
    needed = {"method", "macro_f1_mean"}
    if not needed <= set(table.columns):
        raise DataError(
            f"plot_ablation: the table lacks columns {sorted(needed - set(table.columns))}"
        )
    n = len(table)
    fig = Figure(figsize=(6.5, 0.55 * n + 1.4))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    mean = table["macro_f1_mean"].to_numpy(dtype=np.float64)
    if {"macro_f1_ci_low", "macro_f1_ci_high"} <= set(table.columns):
        low = table["macro_f1_ci_low"].to_numpy(dtype=np.float64)
        high = table["macro_f1_ci_high"].to_numpy(dtype=np.float64)
        ok = np.isfinite(low) & np.isfinite(high)
        ax.hlines(y[ok], low[ok], high[ok], color="C0", lw=3, alpha=0.6, label="bootstrap interval")
    if "macro_f1_std" in table.columns:
        std = table["macro_f1_std"].to_numpy(dtype=np.float64)
        ok = np.isfinite(std) & (std > 0)
        ax.errorbar(
            mean[ok],
            y[ok],
            xerr=std[ok],
            fmt="none",
            ecolor="black",
            capsize=3,
            lw=1,
            label="± std over repeats",
        )
    if "macro_f1_repeats" in table.columns:
        label = "single repeats"
        for yi, values in zip(y, table["macro_f1_repeats"], strict=True):
            values = np.atleast_1d(np.asarray(values, dtype=np.float64))
            if values.size > 1:
                ax.plot(
                    values, np.full(values.size, yi + 0.18), "x", color="grey", ms=4, label=label
                )
                label = None
    ax.plot(mean, y, "o", color="C0", ms=7, label="mean")
    if reference:
        ref = [
            (yi, reference[m]) for yi, m in zip(y, table["method"], strict=True) if m in reference
        ]
        if ref:
            ry, rx = zip(*ref, strict=True)
            ax.plot(rx, ry, "D", mfc="none", color="C3", ms=7, label="reference")
    ax.set_yticks(y, labels=[str(m) for m in table["method"]])
    ax.set_xlabel("macro-F1")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title if title is not None else "Macro-F1 per method")
    return _save(fig, path)


def plot_reliability(report: Mapping[str, Any], path: str | Path, *, title: str = "") -> Path:
    """The reliability diagram of :func:`coolcore.evaluate.calibration.calibration_report`:
    accuracy against confidence per bin, before and after temperature scaling, the
    diagonal of perfect calibration, and the number of maps per bin below."""
    fig = Figure(figsize=(5.0, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
    n_bins = int(report["n_bins"])
    width = 1.0 / n_bins
    for key, name, colour, shift in (
        ("", "as trained", "tab:blue", -0.2),
        ("_scaled", "temperature-scaled", "tab:orange", 0.2),
    ):
        bins = pd.DataFrame(report[f"bins{key}"]).astype(float)
        full = bins[bins["n"] > 0]
        ci = report.get(f"ece{key}_ci")
        ece = f"ECE {report[f'ece{key}']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        top.plot(full["confidence"], full["accuracy"], "o-", color=colour, label=f"{name}: {ece}")
        centre = (bins["low"] + bins["high"]) / 2 + shift * width
        bottom.bar(centre, bins["n"], width=0.4 * width, color=colour)
    top.set_ylabel("accuracy (fraction correct)")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="lower right", fontsize=8)
    temps = ", ".join(f"{t:.2f}" for t in report["temperature"])
    top.set_title(title or f"Reliability (top class); fold temperatures {temps}", fontsize=9)
    bottom.set_xlabel("confidence (highest class probability)")
    bottom.set_ylabel("maps")
    return _save(fig, path)
