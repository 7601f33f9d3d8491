"""Figures of what the network looked at.

Two figures:

* :func:`explain_maps`: one PNG per map with six panels (nine for an observation:
  first the counts with the centre and the field, the exposure-corrected map with
  the masked pixels, and the observation's numbers): (a) the preprocessed
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

Both come from the same batch loop as ``coolcore predict``
(:meth:`coolcore.apps.trained.TrainedModel.predict_batches`, for the maps) or
the networks the run trained (for the grid); :mod:`coolcore.apps.explain_figures`
draws them.  Images are drawn with ``origin="lower"`` (row 0 at the bottom, as
FITS viewers show maps); box coordinates are (column, row) pixel indices of the
model input, both ends inclusive.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.apps.explain_figures import draw_grid, plot_explanation
from coolcore.errors import DataError, UsageError

__all__ = [
    "explain_map",
    "explain_maps",
    "explain_run",
]


def _safe_name(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return keep.strip("._") or "image"


def _unique_name(image_id: str, used: set[str]) -> str:
    """A file-name stem for ``image_id`` not in ``used`` (``_2``, ``_3`` ... appended), added to it."""
    name = stem = _safe_name(image_id)
    k = 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name


def _draw_batch(model, batch, fold: int, out_dir: Path, used: set[str]) -> list[str]:
    """One PNG per predicted map of ``batch`` (row ``j`` of its explanation); their paths."""
    net = model.fold_network(fold)
    ex = batch.explanation
    mean, pred = batch.probs, batch.predicted
    paths = []
    for j, i in enumerate(batch.ok):
        item = batch.items[i]
        title = (
            f"{item.image_id}: {CLASS_NAMES[pred[j]]} (p = {mean[j, pred[j]]:.2f}), ordinal "
            f"score {mean[j] @ np.arange(3):.2f}; maps of fold {fold}'s {model.variant} model"
        )
        path = plot_explanation(
            batch.images[j],
            ex.heat_cam[j].cpu().numpy(),
            ex.heat_gauss[j].cpu().numpy(),
            ex.mask[j].cpu().numpy(),
            ex.boxes[j].cpu().numpy(),
            None if ex.crop is None else ex.crop[j, 0].cpu().numpy(),
            mean[j],
            out_dir / f"{_unique_name(item.image_id, used)}.png",
            fold_probs=batch.fold_probs[:, j],
            tau1=net.tau1,
            tau2=net.tau2,
            title=title,
            observation=batch.fields.get(i),
        )
        paths.append(str(path))
    return paths


def explain_maps(
    model,
    images_or_paths: Any,
    out_dir: str | os.PathLike,
    *,
    fold: int | None = None,
    crop_px: int | None = None,
    crop_kpc: float | None = None,
    pixel_kpc: float | None = None,
    cosmology: str | None = None,
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
    crop_px, crop_kpc, pixel_kpc, cosmology, batch_size, progress, on_warning, on_error
        As for :meth:`TrainedModel.predict`.

    Returns
    -------
    pandas.DataFrame
        The prediction table (the ensemble's numbers, as ``coolcore predict``),
        then ``fold`` (the fold model whose maps are drawn), ``fold_p_CC``,
        ``fold_p_WCC``, ``fold_p_NCC`` and ``fold_box_x0`` ... ``fold_box_y1``
        (that model's probabilities and the crop box of panel (d)), and ``png``
        (the file written; empty, like the numbers, for a map that failed).
        Also written as ``explanations.csv``.
    """
    from coolcore.apps.predictions import BOX_COLUMNS, PredictionTable
    from coolcore.data.inputs import as_inputs

    fold = model.folds[0] if fold is None else fold
    model.fold_network(fold)  # a fold the model does not hold: UsageError before any work
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: is a file; --out names the folder for the PNGs")
    items = as_inputs(images_or_paths, pixel_kpc)
    batches = model.predict_batches(
        items,
        batch_size=batch_size,
        crop_px=crop_px,
        crop_kpc=crop_kpc,
        pixel_kpc=pixel_kpc,
        cosmology=cosmology,
        explain_fold=fold,
        progress=progress,
        desc="explaining",
        on_warning=on_warning,
        on_error=on_error,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    table = PredictionTable(items)
    fold_probs = np.full((len(items), len(CLASS_NAMES)), np.nan)
    fold_boxes = np.full((len(items), 4), np.nan)
    pngs = [""] * len(items)
    used: set[str] = set()
    for batch in batches:
        table.add(batch)
        if not batch.ok:
            continue
        ex = batch.explanation
        fold_probs[batch.rows] = ex.output.logits.float().softmax(dim=1).cpu().double().numpy()
        fold_boxes[batch.rows] = ex.boxes.cpu().double().numpy()
        for row, path in zip(
            batch.rows, _draw_batch(model, batch, fold, out_dir, used), strict=True
        ):
            pngs[row] = path
    frame = table.frame()
    frame["fold"] = fold
    for c, name in enumerate(CLASS_NAMES):
        frame[f"fold_p_{name}"] = fold_probs[:, c]
    for j, key in enumerate(BOX_COLUMNS):
        frame[f"fold_{key}"] = fold_boxes[:, j]
    frame["png"] = pngs
    frame.to_csv(out_dir / "explanations.csv", index=False, float_format="%.9g")
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
    from coolcore.runs.folder import RunFolder

    folder = RunFolder(run)
    if not folder.has_record():
        raise UsageError(f"{run}: not a run folder (no run.json)")
    kind = folder.kind()
    if kind == "cv":
        folder.finished_cv_record()  # an unfinished run is refused
        return run
    if kind == "ablation":
        candidates = [folder.method_run("all", 0).path] + sorted(run.glob("*/rep_00"))
        for c in candidates:
            if RunFolder(c).has_record() and RunFolder(c).predictions_path.is_file():
                return c
        raise DataError(f"{run}: the ablation holds no finished cv run to explain")
    raise UsageError(f"{run}: unknown run kind {kind!r}")


def _checked_predictions(preds: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A run's predictions table, refused on one line if a column or a value is missing or wrong.

    A ``predictions.csv`` cut short (or edited) loses columns, or leaves its
    last rows with empty or partial values: each row needs its ``image_id``, a
    ``label`` and ``predicted`` among the classes, an integer ``fold`` >= 0 and
    finite probabilities in [0, 1].
    """
    pcols = [f"p_{c}" for c in CLASS_NAMES]
    need = ["image_id", "label", "predicted", "fold", *pcols]
    missing = [c for c in need if c not in preds.columns]
    if missing:
        raise DataError(
            f"{path}: no column '{missing[0]}' (the file is truncated or not a predictions table)"
        )
    if preds.empty:
        raise DataError(f"{path}: no rows (the file is truncated)")
    fold = pd.to_numeric(preds["fold"], errors="coerce")
    probs = preds[pcols].apply(pd.to_numeric, errors="coerce")
    bad = (
        preds["image_id"].isna()
        | ~preds["label"].isin(CLASS_NAMES)
        | ~preds["predicted"].isin(CLASS_NAMES)
        | ~(fold.notna() & (fold >= 0) & (fold == fold.round()))
        | ~((probs >= 0) & (probs <= 1)).all(axis=1)
    ).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: row {i + 2} (image_id {preds['image_id'].iloc[i]}) has a missing or invalid "
            "value (the file is truncated or was edited); run the cv again"
        )
    return preds.assign(fold=fold.astype(int), **{c: probs[c] for c in pcols})


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

    from coolcore.apps.export import state_from_checkpoint
    from coolcore.apps.inference import rebuild_network
    from coolcore.runs.folder import RunFolder, read_predictions
    from coolcore.train.protocol import load_data

    if per_class < 1:
        raise UsageError(f"--per-class {per_class}: must be at least 1")
    run = Path(run)
    if not run.is_dir():
        raise UsageError(f"{run}: no such run folder")
    cv_run = _cv_run_for_grid(run)
    out_dir = Path(out_dir) if out_dir is not None else run / "explain"
    record = RunFolder(cv_run).read_record()
    cfg = record["config"]
    pred_path = cv_run / "predictions.csv"
    if not pred_path.is_file():
        raise DataError(f"{cv_run}: no predictions.csv (the run is not finished)")
    preds = read_predictions(pred_path)
    chosen = _choose(_checked_predictions(preds, pred_path), per_class)
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
        ckpt = RunFolder(cv_run).checkpoint(int(fold))
        state, ckpt_cfg = state_from_checkpoint(ckpt)
        net = rebuild_network(ckpt_cfg, state, ckpt)
        idx = [index[i] for i in chosen.loc[rows, "image_id"]]
        x = torch.from_numpy(dataset.images[idx])[:, None]
        full = getattr(dataset, "full_images", None)
        xf = None if full is None else torch.from_numpy(full[idx])[:, None]
        with torch.inference_mode():
            ex = net.explain(x, xf)
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
    return draw_grid(chosen, inputs, heat, boxes, per_class, out_dir / "grid.png", cv_run, cfg)
