"""Figures of what the network looked at.

Two figures:

* :func:`explain_maps`: one PNG per map with six panels: (a) the preprocessed
  input, (b) the CAM heat map ``H1`` of the predicted class with the ``tau1``
  contour, (c) the Gaussian heat map ``H2`` with the ``tau2`` contour, (d) the
  mask the variant uses with its crop box, (e) the crop fed to the auxiliary
  branch, (f) the class probabilities (ensemble mean; error bars: standard
  deviation over the fold models; dots: each fold model).  The maps (a)-(e) are
  those of one fold model (the first, or ``fold``); the probabilities are the
  ensemble's, as ``coolcore predict`` reports them.
* :func:`explain_run`: for a cv run, a grid with one row per true class and
  columns of correctly and wrongly classified test images (the most confident
  ones first), each explained by the model of the fold that tested it: the input
  with the CAM heat map over it and the crop box.

Images are drawn with ``origin="lower"`` (row 0 at the bottom, as FITS viewers
show maps); box coordinates are (column, row) pixel indices of the model input,
both ends inclusive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError

__all__ = ["explain_map", "explain_maps", "explain_run", "plot_explanation"]

_DPI = 110


def _box_patch(box: Sequence[float], colour: str = "cyan", lw: float = 1.5) -> Rectangle:
    x0, y0, x1, y1 = (float(v) for v in box)
    return Rectangle(
        (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=colour, lw=lw
    )


def _safe_name(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return keep.strip("._") or "image"


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
) -> Path:
    """Draw the six-panel explanation of one map and write it as a PNG.

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

    Returns
    -------
    Path
        The PNG written.
    """
    fig = Figure(figsize=(11.0, 6.8))
    axes = fig.subplots(2, 3)
    ax = axes[0, 0]
    ax.imshow(image, cmap="gray", origin="lower", vmin=0, vmax=1)
    ax.set_title("(a) preprocessed input")
    ax = axes[0, 1]
    im = ax.imshow(heat_cam, cmap="inferno", origin="lower", vmin=0, vmax=1)
    if np.ptp(heat_cam) > 0:
        ax.contour(heat_cam, levels=[tau1], colors="cyan", linewidths=1, origin="lower")
    ax.set_title(f"(b) CAM heat map (contour tau1={tau1:g})")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax = axes[0, 2]
    im = ax.imshow(heat_gauss, cmap="inferno", origin="lower", vmin=0, vmax=1)
    if np.ptp(heat_gauss) > 0:
        ax.contour(heat_gauss, levels=[tau2], colors="cyan", linewidths=1, origin="lower")
    ax.set_title(f"(c) Gaussian heat map (tau2={tau2:g})")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax = axes[1, 0]
    ax.imshow(image, cmap="gray", origin="lower", vmin=0, vmax=1)
    ax.imshow(
        np.ma.masked_where(~mask, mask.astype(float)), cmap="autumn", alpha=0.45, origin="lower"
    )
    ax.add_patch(_box_patch(box))
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
    fig.subplots_adjust(left=0.05, right=0.97, bottom=0.07, top=0.88, wspace=0.35, hspace=0.35)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path


def explain_maps(
    model,
    images_or_paths: Any,
    out_dir: str | os.PathLike,
    *,
    fold: int | None = None,
    crop_px: int | None = None,
    crop_kpc: float | None = None,
    pixel_kpc: float | None = None,
    batch_size: int = 16,
    progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Predict maps and draw one six-panel PNG per map into ``out_dir``.

    Parameters
    ----------
    model : TrainedModel
        From :func:`coolcore.load_model`.
    images_or_paths
        As for :meth:`TrainedModel.predict`.
    out_dir : path
        Folder for ``<image_id>.png`` and ``explanations.csv``.
    fold : int, optional
        Which fold model draws the maps (a fold number of the model; default its
        first).
    crop_px, crop_kpc, pixel_kpc, batch_size, progress, on_warning, on_error
        As for :meth:`TrainedModel.predict`.

    Returns
    -------
    pandas.DataFrame
        The prediction table plus ``png`` (the file written, empty for failures).
    """
    import torch

    from coolcore.apps.inference import _PredictionTable
    from coolcore.data.inputs import _as_inputs

    if fold is None:
        index = 0
    elif fold in model.folds:
        index = model.folds.index(fold)
    else:
        raise UsageError(f"--fold {fold}: the model holds folds {', '.join(map(str, model.folds))}")
    net = model.nets[index]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: is a file; --out names the folder for the PNGs")
    out_dir.mkdir(parents=True, exist_ok=True)
    items = _as_inputs(images_or_paths, pixel_kpc)
    table = _PredictionTable(items)
    pngs = [""] * len(items)
    used: set[str] = set()
    for start, prep, p, b in model._iter_batches(
        items,
        batch_size=batch_size,
        crop_px=crop_px,
        crop_kpc=crop_kpc,
        pixel_kpc=pixel_kpc,
        progress=progress,
        on_warning=on_warning,
        on_error=on_error,
        desc="explaining",
        stacklevel=4,
    ):
        added = table.add(start, prep, p, b)
        if added is None:
            continue
        mean, pred = added
        x = torch.from_numpy(prep.images)[:, None].to(model.device)
        with torch.inference_mode():
            ex = net.explain(x)
        for j, i in enumerate(prep.ok):
            item = items[start + i]
            name = _safe_name(item.image_id)
            stem, k = name, 1
            while name in used:
                k += 1
                name = f"{stem}_{k}"
            used.add(name)
            crop = None if ex.crop is None else ex.crop[j, 0].cpu().numpy()
            title = (
                f"{item.image_id}: {CLASS_NAMES[pred[j]]} (p = {mean[j, pred[j]]:.2f}), ordinal "
                f"score {mean[j] @ np.arange(3):.2f}; maps of fold {model.folds[index]}'s "
                f"{model.variant} model"
            )
            path = plot_explanation(
                prep.images[j],
                ex.heat_cam[j].cpu().numpy(),
                ex.heat_gauss[j].cpu().numpy(),
                ex.mask[j].cpu().numpy(),
                ex.boxes[j].cpu().numpy(),
                crop,
                mean[j],
                out_dir / f"{name}.png",
                fold_probs=p[:, j],
                tau1=net.tau1,
                tau2=net.tau2,
                title=title,
            )
            pngs[start + i] = str(path)
    frame = table.frame()
    frame["png"] = pngs
    frame.to_csv(out_dir / "explanations.csv", index=False, float_format="%.6g")
    return frame


def explain_map(model, image_or_path: Any, out_dir: str | os.PathLike, **kwargs: Any) -> Path:
    """Explain one map (a path or a 2-D array); returns its PNG.

    Keyword arguments are those of :func:`explain_maps`.

    Raises
    ------
    coolcore.errors.ImageError
        The map cannot be read or used.
    """
    from coolcore.errors import ImageError

    if isinstance(image_or_path, np.ndarray) and image_or_path.ndim != 2:
        raise UsageError(f"explain_map: expected one 2-D map, got shape {image_or_path.shape}")
    frame = explain_maps(model, [image_or_path], out_dir, **kwargs)
    if frame.loc[0, "error"]:
        raise ImageError(frame.loc[0, "error"])
    return Path(frame.loc[0, "png"])


# --------------------------------------------------------------------------- run grid
def _cv_run_for_grid(run: Path) -> Path:
    """The cv run to draw: ``run`` itself, or for an ablation the ``all`` method's first repeat."""
    from coolcore.apps.export import _read_json

    record = run / "run.json"
    if not record.is_file():
        raise UsageError(f"{run}: not a run folder (no run.json)")
    kind = _read_json(record).get("kind")
    if kind == "cv":
        return run
    if kind == "ablation":
        candidates = [run / "all" / "rep_00"] + sorted(run.glob("*/rep_00"))
        for c in candidates:
            if (c / "run.json").is_file() and (c / "predictions.csv").is_file():
                return c
        raise DataError(f"{run}: the ablation holds no finished cv run to explain")
    raise UsageError(f"{run}: unknown run kind {kind!r}")


def _choose(preds: pd.DataFrame, per_class: int) -> pd.DataFrame:
    """Up to ``per_class`` correct and wrong test images per true class, most confident first."""
    pcols = [f"p_{c}" for c in CLASS_NAMES]
    probs = preds[pcols].to_numpy(dtype=float)
    preds = preds.assign(confidence=probs.max(axis=1), correct=preds["label"] == preds["predicted"])
    chosen = []
    for c in CLASS_NAMES:
        for correct in (True, False):
            sel = preds[(preds["label"] == c) & (preds["correct"] == correct)]
            sel = sel.sort_values(
                ["confidence", "image_id"], ascending=[False, True], kind="stable"
            )
            chosen.append(sel.head(per_class).assign(slot=np.arange(min(per_class, len(sel)))))
    return pd.concat(chosen, ignore_index=True)


def explain_run(
    run: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    per_class: int = 3,
    progress: bool = False,
) -> Path:
    """Grid of a cv run's test images, correct and wrong, per true class.

    Each image is explained by the model of the fold that tested it (its
    ``fold`` in ``predictions.csv``).  The maps are read again from the run's
    training data (``run.json``'s ``data``), so those must still be there.

    Parameters
    ----------
    run : path
        A cv run folder, or an ablation folder (its ``all`` method's first repeat
        is drawn).
    out_dir : path, optional
        Where to write ``grid.png`` and ``grid.csv`` (default ``RUN/explain``).
    per_class : int
        Correct and wrong images shown per class (up to this many of each).
    progress : bool
        Progress bar while the maps are preprocessed.

    Returns
    -------
    Path
        ``grid.png``.  ``grid.csv`` lists the images shown with the probabilities
        of ``predictions.csv`` (``p_*``) and those recomputed now (``p_*_now``).
    """
    import torch

    from coolcore.apps.export import (
        _checkpoint_of,
        _network_config,
        _read_json,
        _state_from_checkpoint,
    )
    from coolcore.apps.inference import _build_net
    from coolcore.train.experiments import load_data

    if per_class < 1:
        raise UsageError(f"--per-class {per_class}: must be at least 1")
    run = Path(run)
    if not run.is_dir():
        raise UsageError(f"{run}: no such run folder")
    cv_run = _cv_run_for_grid(run)
    out_dir = Path(out_dir) if out_dir is not None else run / "explain"
    record = _read_json(cv_run / "run.json")
    cfg = record["config"]
    pred_path = cv_run / "predictions.csv"
    if not pred_path.is_file():
        raise DataError(f"{cv_run}: no predictions.csv (the run is not finished)")
    preds = pd.read_csv(pred_path, dtype={"image_id": str, "cluster_id": str})
    chosen = _choose(preds, per_class)
    data = record.get("data")
    if not data or not Path(data).exists():
        raise DataError(
            f"{cv_run}: its training data {data} are not there; the grid needs the maps"
        )
    dataset = load_data(data, cfg, progress=progress)
    if record.get("data_checksum") and dataset.cache_key != record["data_checksum"]:
        raise DataError(f"{data}: the maps changed since {cv_run} was trained (checksum differs)")
    index = {iid: i for i, iid in enumerate(dataset.image_ids)}
    missing = [iid for iid in chosen["image_id"] if iid not in index]
    if missing:
        raise DataError(f"{data}: image {missing[0]} of {pred_path} is not in the data any more")

    n = len(chosen)
    s = dataset.images.shape[-1]
    inputs = np.zeros((n, s, s), np.float32)
    heat = np.zeros((n, s, s), np.float32)
    boxes = np.zeros((n, 4))
    now = np.zeros((n, len(CLASS_NAMES)))
    for fold, rows in chosen.groupby("fold").groups.items():
        rows = np.asarray(list(rows))
        ckpt = _checkpoint_of(cv_run / f"fold_{int(fold):02d}")
        state, ckpt_cfg = _state_from_checkpoint(ckpt)
        net = _build_net(_network_config(ckpt_cfg), state, ckpt)
        idx = [index[i] for i in chosen.loc[rows, "image_id"]]
        x = torch.from_numpy(dataset.images[idx])[:, None]
        with torch.inference_mode():
            ex = net.explain(x)
        inputs[rows] = dataset.images[idx]
        heat[rows] = ex.heat_cam.numpy()
        boxes[rows] = ex.boxes.numpy()
        now[rows] = ex.output.logits.float().softmax(dim=1).double().numpy()

    table = chosen.drop(columns=["slot", "confidence"]).copy()
    for c, name in enumerate(CLASS_NAMES):
        table[f"p_{name}_now"] = now[:, c]
    for j, key in enumerate(("box_x0", "box_y0", "box_x1", "box_y1")):
        table[key] = boxes[:, j]
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "grid.csv", index=False, float_format="%.6g")
    return _draw_grid(chosen, inputs, heat, boxes, per_class, out_dir / "grid.png", cv_run, cfg)


def _draw_grid(
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
                ax.add_patch(_box_patch(boxes[i], lw=1.2))
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
    fig.savefig(path, dpi=_DPI)
    return path
