"""The figures of ``coolcore explain``: the six-panel explanation of a map and the grid of a run.

Images are drawn with ``origin="lower"`` (row 0 at the bottom, as FITS viewers
show maps); box coordinates are (column, row) pixel indices of the model input,
both ends inclusive.  :mod:`coolcore.apps.explain` computes what is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from coolcore import CLASS_NAMES

__all__ = ["DPI", "box_patch", "draw_grid", "draw_observation_row", "plot_explanation"]

DPI = 110
"""Resolution of the PNGs written (dots per inch)."""


def box_patch(box: Sequence[float], colour: str = "cyan", lw: float = 1.5) -> Rectangle:
    """A rectangle covering the inclusive pixel box ``(x0, y0, x1, y1)`` (pixel centres at integers)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return Rectangle(
        (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=colour, lw=lw
    )


def _heat_panel(fig, ax, heat: np.ndarray, tau: float, title: str) -> None:
    """A heat map in [0, 1] with its threshold contour (where it is not flat) and a colour bar."""
    im = ax.imshow(heat, cmap="inferno", origin="lower", vmin=0, vmax=1)
    if np.ptp(heat) > 0:
        ax.contour(heat, levels=[tau], colors="cyan", linewidths=1, origin="lower")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def plot_explanation(
    image: np.ndarray,
    heat_cam: np.ndarray,
    heat_gauss: np.ndarray,
    mask: np.ndarray,
    box: Sequence[float],
    crop: np.ndarray | None,
    probs: np.ndarray,
    path: str | os.PathLike,
    *,
    fold_probs: np.ndarray | None = None,
    tau1: float = 0.7,
    tau2: float = 0.7,
    title: str = "",
    observation: Any = None,
) -> Path:
    """Draw the six-panel explanation of one map and write it as a PNG.

    For an observation, a first row of three more panels shows where the input came
    from (:func:`draw_observation_row`).

    Parameters
    ----------
    image : (S, S) preprocessed input in [0, 1].
    heat_cam, heat_gauss : (S, S) normalised CAM and Gaussian heat maps in [0, 1].
    mask : (S, S) bool, the mask the variant uses.
    box : (x0, y0, x1, y1) inclusive pixel box.
    crop : (s, s) auxiliary input, or None (``baseline``).
    probs : (3,) class probabilities shown as bars.
    path : where to write the PNG.
    fold_probs : (F, 3), optional, each fold model's probabilities (dots and error bars).
    tau1, tau2 : thresholds drawn as contours.
    title : figure title.
    observation : coolcore.data.observation.PreparedField, optional
        The observation the input was cut from.

    Returns
    -------
    Path
        The PNG written.
    """
    rows = 3 if observation is not None else 2
    fig = Figure(figsize=(11.0, 3.4 * rows + 0.4))
    grid = fig.subplots(rows, 3)
    if observation is not None:
        draw_observation_row(grid[0], observation)
    axes = grid[-2:]
    ax = axes[0, 0]
    ax.imshow(image, cmap="gray", origin="lower", vmin=0, vmax=1)
    ax.set_title("(a) preprocessed input")
    _heat_panel(fig, axes[0, 1], heat_cam, tau1, f"(b) CAM heat map (contour tau1={tau1:g})")
    _heat_panel(fig, axes[0, 2], heat_gauss, tau2, f"(c) Gaussian heat map (tau2={tau2:g})")
    ax = axes[1, 0]
    ax.imshow(image, cmap="gray", origin="lower", vmin=0, vmax=1)
    ax.imshow(
        np.ma.masked_where(~mask, mask.astype(float)), cmap="autumn", alpha=0.45, origin="lower"
    )
    ax.add_patch(box_patch(box))
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.set_title(f"(d) mask and box ({x0:.0f},{y0:.0f})-({x1:.0f},{y1:.0f})")
    ax = axes[1, 1]
    if crop is None:
        ax.text(0.5, 0.5, "baseline:\nno auxiliary crop", ha="center", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.imshow(crop, cmap="gray", origin="lower", vmin=0, vmax=1)
    ax.set_title("(e) crop (auxiliary input)")
    ax = axes[1, 2]
    k = np.arange(len(CLASS_NAMES))
    err = fold_probs.std(axis=0) if fold_probs is not None and len(fold_probs) > 1 else None
    colours = ["C3", "C1", "C0"]
    ax.bar(k, probs, yerr=err, color=colours, alpha=0.8, capsize=4)
    if fold_probs is not None and len(fold_probs) > 1:
        for row in fold_probs:
            ax.plot(k, row, "k.", ms=4)
    for i, p in enumerate(probs):
        ax.text(i, min(p + 0.03, 0.95), f"{p:.2f}", ha="center")
    ax.set_xticks(k, labels=list(CLASS_NAMES))
    ax.set_ylim(0, 1)
    ax.set_title("(f) class probabilities")
    for a in axes.flat[:5]:
        a.set_xlabel("x (pixel)")
    if title:
        fig.suptitle(title)
    top = 0.88 if rows == 2 else 0.92
    fig.subplots_adjust(left=0.05, right=0.97, bottom=0.07, top=top, wspace=0.35, hspace=0.4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _field_square(ax, field) -> None:
    """The field's square and its centre on a panel of the observation, zoomed to four
    fields around the centre (within the image)."""
    cx, cy = field.center_xy
    half = field.field_px / 2
    ax.add_patch(Rectangle((cx - half, cy - half), 2 * half, 2 * half, fill=False, ec="cyan"))
    ax.plot([cx], [cy], marker="+", color="cyan", ms=12, mew=1.5)
    h, w = field.valid.shape
    ax.set_xlim(max(-0.5, cx - 4 * half), min(w - 0.5, cx + 4 * half))
    ax.set_ylim(max(-0.5, cy - 4 * half), min(h - 0.5, cy + 4 * half))


def _log_image(ax, values: np.ndarray, cmap: str) -> None:
    """log10 of the positive values, stretched between their 1st and 99.9th percentiles."""
    good = values[np.isfinite(values) & (values > 0)]
    lo, hi = np.percentile(good, [1.0, 99.9]) if good.size else (1.0, 10.0)
    ax.imshow(np.log10(np.clip(values, lo, max(hi, lo * 1.01))), cmap=cmap, origin="lower")


def draw_observation_row(axes, field) -> None:
    """Three panels of an observation: (o1) the counts with the centre and the field,
    (o2) the exposure-corrected, background-subtracted rate with the masked pixels,
    (o3) the numbers (pixel scale, field, counts, masked fraction, warnings)."""
    ax = axes[0]
    if field.counts_map is not None:
        ax.imshow(np.log1p(np.clip(field.counts_map, 0, None)), cmap="magma", origin="lower")
    _field_square(ax, field)
    ax.set_title("(o1) observation: counts (log)")
    ax = axes[1]
    _log_image(ax, np.where(field.valid, field.rate_map, np.nan), "viridis")
    masked = ~field.valid
    ax.imshow(
        np.ma.masked_where(~masked, masked.astype(float)),
        cmap="Greys",
        vmin=0,
        vmax=1,
        alpha=0.8,
        origin="lower",
    )
    _field_square(ax, field)
    ax.set_title("(o2) rate, log10 (grey: masked)")
    for a in axes[:2]:
        a.set_xlabel("x (pixel)")
    ax = axes[2]
    ax.axis("off")
    lines = [
        f"centre ({field.center_source}): RA {field.center_ra:.5f}, Dec {field.center_dec:+.5f}",
        f"pixel {field.pixel_kpc:.3g} kpc; field {field.field_kpc:.0f} kpc = "
        f"{field.field_px:.1f} px",
        f"source counts in the field: {field.counts:.0f}",
        f"background: {field.background_method}",
        f"masked fraction of the field: {field.masked_fraction:.1%}",
    ]
    lines += [f"warning: {w.removeprefix(field.name + ': ')}" for w in field.warnings]
    ax.text(
        0.0,
        1.0,
        "\n".join(lines),
        va="top",
        ha="left",
        fontsize=8,
        wrap=True,
        transform=ax.transAxes,
    )
    ax.set_title("(o3) observation diagnostics")


def draw_grid(
    chosen: pd.DataFrame,
    inputs: np.ndarray,
    heat: np.ndarray,
    boxes: np.ndarray,
    per_class: int,
    path: Path,
    cv_run: Path,
    cfg: dict,
) -> Path:
    ncols = 2 * per_class
    fig = Figure(figsize=(1.9 * ncols + 0.8, 2.2 * len(CLASS_NAMES) + 0.8))
    axes = np.atleast_2d(fig.subplots(len(CLASS_NAMES), ncols, squeeze=False))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for r, c in enumerate(CLASS_NAMES):
        axes[r, 0].set_ylabel(f"true {c}", fontsize=11)
        for correct, offset in ((True, 0), (False, per_class)):
            sel = chosen[
                (chosen["label"] == c) & ((chosen["label"] == chosen["predicted"]) == correct)
            ]
            if len(sel) == 0:
                axes[r, offset].text(
                    0.5,
                    0.5,
                    "none correct" if correct else "none wrong",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="grey",
                )
            for i, row in zip(sel.index, sel.itertuples(index=False), strict=True):
                ax = axes[r, offset + int(row.slot)]
                ax.imshow(inputs[i], cmap="gray", origin="lower", vmin=0, vmax=1)
                ax.imshow(heat[i], cmap="inferno", origin="lower", alpha=0.4, vmin=0, vmax=1)
                ax.add_patch(box_patch(boxes[i], lw=1.2))
                p = float(getattr(row, f"p_{row.predicted}"))
                colour = "green" if correct else "red"
                ax.set_title(
                    f"{row.image_id} (fold {int(row.fold)})\n{row.label} -> {row.predicted}, p={p:.2f}",
                    fontsize=8,
                    color=colour,
                )
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color(colour)
    if per_class:
        axes[0, 0].annotate(
            "correct", xy=(0, 1.35), xycoords="axes fraction", fontsize=11, color="green"
        )
        axes[0, per_class].annotate(
            "wrong", xy=(0, 1.35), xycoords="axes fraction", fontsize=11, color="red"
        )
    fig.suptitle(
        f"{cv_run.name}: {cfg['model']['variant']} test images with the CAM heat map and crop box "
        "(model of the fold that tested each)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
