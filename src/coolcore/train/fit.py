"""Training one fold with Lightning: fit, keep the best epoch, predict the test part.

:func:`fit_fold` takes the preprocessed images (already in memory; with
``model.crop_source=full`` also the maps before the resize), the indices of a
fold's train / validation / test parts and the run config; it trains with the
config's optimiser and schedule (Adam and StepLR by default,
:func:`coolcore.train.module.make_scheduler`), keeps the epoch with the best
validation macro-F1, and returns the test part's class probabilities (and, with
the cooling-time head, the Gaussian of log10 t_cool of each test map).  In the
fold's folder it leaves ``metrics.csv`` (Lightning's CSV log, kept whole across
resumes) and ``checkpoints/best.ckpt``; ``checkpoints/last.ckpt`` lives only
while the fold runs, for ``--resume``.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from coolcore import CLASS_NAMES
from coolcore.data.catalog import labels_from_t_cool
from coolcore.errors import UsageError
from coolcore.nn.losses import class_weights
from coolcore.runs.atomic import atomic_torch_save, atomic_write_text
from coolcore.runs.interrupts import raise_if_interrupted
from coolcore.train.hardware import (
    Hardware,
    launched_rank,
    quiet_lightning,
    resolve_precision,
    tune_allocator,
)
from coolcore.train.loaders import drop_single_last_batch, make_loader
from coolcore.train.module import ClusterClassifier, load_module, predict_outputs

__all__ = [
    "KEPT_LOG_FILE",
    "LOG_FILE",
    "TCOOL_COLUMNS",
    "checkpoint_epoch",
    "fit_fold",
    "keep_log_before_resume",
    "merge_kept_log",
    "predictions_frame",
]

TCOOL_COLUMNS: tuple[str, ...] = (
    "log10_tcool",
    "log10_tcool_sigma",
    "t_cool_gyr",
    "predicted_from_tcool",
)
"""The columns the cooling-time head adds to a run's predictions.csv, after ``predicted``."""

LOG_FILE = "metrics.csv"
"""Lightning's CSV log of a fold (one row per epoch and stage)."""

KEPT_LOG_FILE = "metrics.before_resume.csv"
"""The finished epochs' log rows, kept aside while a resumed fold runs."""


class _StopWhenInterrupted(pl.Callback):
    """Stop at the next batch if SIGINT/SIGTERM was received (see ``raise_if_interrupted``)."""

    def on_train_batch_end(self, *args, **kwargs) -> None:
        raise_if_interrupted()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        raise_if_interrupted()

    def on_train_epoch_end(self, *args, **kwargs) -> None:
        raise_if_interrupted()


class _ProgressBar(TQDMProgressBar):
    """Lightning's bar (not left on screen), with the precision trained in."""

    def __init__(self, precision: str) -> None:
        super().__init__(leave=False)
        self.precision = precision

    def get_metrics(self, trainer, pl_module):
        return {**super().get_metrics(trainer, pl_module), "precision": self.precision}


class _DirectCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, saving straight to disk through a temporary file
    (:func:`coolcore.runs.atomic.atomic_torch_save`) instead of through a copy in memory:
    about half the time per checkpoint on a 2-core machine."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
        return None


def _checkpoint_callbacks(ckpt_dir: Path) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """``best.ckpt`` (weights only, a third of a full checkpoint with Adam's state)
    and ``last.ckpt`` (the full state for --resume, deleted when the fold is done)."""
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val_macro_f1",
        mode="max",
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    return best, last


def _trainer(
    cfg: dict, hw: Hardware, precision: str, fold_dir: Path, callbacks: list, progress: bool
) -> pl.Trainer:
    t = cfg["train"]
    bar = [_ProgressBar(precision)] if progress else []
    return pl.Trainer(
        max_epochs=t["epochs"],
        accelerator=hw.accelerator,
        devices=hw.devices,
        strategy=hw.strategy,
        num_nodes=hw.num_nodes,
        precision=precision,
        deterministic=bool(t["deterministic"]),
        logger=CSVLogger(save_dir=str(fold_dir), name="", version=""),
        callbacks=[*callbacks, _StopWhenInterrupted(), *bar],
        plugins=[_DirectCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(fold_dir),
    )


def _run_fit(trainer: pl.Trainer, module, train_loader, val_loader, ckpt_path) -> None:
    """``trainer.fit``; a run stopped by Ctrl-C / SIGTERM raises KeyboardInterrupt."""
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    except SystemExit:
        # Lightning ends a run stopped by Ctrl-C / SIGTERM with sys.exit(1), after
        # its graceful shutdown; let the caller report it as an interruption
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    raise_if_interrupted()


def fit_fold(
    images: torch.Tensor,
    labels: np.ndarray,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: dict,
    fold_dir: Path,
    *,
    seed: int,
    hardware: Hardware | None = None,
    resume: bool = True,
    progress: bool = True,
    keep_checkpoint: bool = True,
    tcool: np.ndarray | None = None,
    full_images: torch.Tensor | None = None,
) -> tuple[np.ndarray, dict, np.ndarray] | None:
    """Train on one fold, pick the best validation epoch, predict its test and validation sets.

    Parameters
    ----------
    images : (N, 1, S, S) float32 tensor of preprocessed maps.
    labels : (N,) int class indices.
    split : (train_idx, val_idx, test_idx) index arrays.
    cfg : the run config (:func:`coolcore.train.config.load_config`).
    fold_dir : the fold's folder: checkpoints and the CSV log go there.
    seed : seeds the initialisation and the shuffle.
    hardware : where to train (default: Lightning's automatic choice, one device).
    resume : continue from ``fold_dir/checkpoints/last.ckpt`` when it exists.
    progress : show Lightning's progress bar (with the precision trained in).
    keep_checkpoint : keep ``checkpoints/best.ckpt`` (the weights of the best epoch,
        what ``coolcore export`` packs); the full ``last.ckpt`` is always removed
        once the fold is done.
    tcool : (N,) log10 of each map's central cooling time in Gyr
        (:func:`coolcore.train.loaders.log10_tcool_targets`); required with
        ``model.regression``, ignored without.
    full_images : (N, 1, F, F) float32 tensor, optional
        The maps before the resize to the input size (``model.crop_source=full``: the
        auxiliary crop is cut from them); may be omitted when the input is not
        resized (then they are ``images``); ignored with ``crop_source=input``.

    Returns
    -------
    (probs, info, val_probs) on the global-zero process: the test set's (n_test, 3)
    probabilities (with ``model.regression`` (n_test, 5): then ``mu`` and
    ``sigma`` of log10 t_cool, as :func:`predictions_frame` takes them), a
    dict (what ``fold.json`` records) with the best checkpoint, epoch and
    validation macro-F1, the epochs, the class weights and ``precision``,
    Lightning's precision trained in
    (:func:`coolcore.train.hardware.resolve_precision` of ``train.precision``),
    and the same outputs of the best epoch's model for the validation set (what
    temperature scaling is fitted on, :mod:`coolcore.evaluate.calibration`);
    None on other ranks.
    """
    hw = hardware or Hardware()
    quiet_lightning()
    fold_dir = Path(fold_dir)
    train_idx, val_idx, test_idx = (np.asarray(s) for s in split)
    t = cfg["train"]
    targets = _tcool_targets(cfg, tcool, np.concatenate([train_idx, val_idx]))
    full = _full_maps(cfg, images, full_images)
    pl.seed_everything(seed, workers=True, verbose=False)
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    weight = class_weights(y[train_idx], num_classes=len(CLASS_NAMES)).tolist()
    module = ClusterClassifier(cfg, weight, seed=seed)
    eval_batch = max(t["batch_size"], 64)
    val_loader = make_loader(
        images, y, eval_batch, shuffle_seed=None, rows=val_idx, targets=targets, full=full
    )
    precision = resolve_precision(t["precision"], hw.accelerator)
    allocator = tune_allocator()["how"]
    best_cb, last_cb = _checkpoint_callbacks(fold_dir / "checkpoints")
    trainer = _trainer(cfg, hw, precision, fold_dir, [best_cb, last_cb], progress)
    train_loader = make_loader(
        images,
        y,
        t["batch_size"],
        shuffle_seed=seed,
        drop_last=drop_single_last_batch(len(train_idx), t["batch_size"], trainer.world_size),
        rows=train_idx,
        targets=targets,
        full=full,
    )
    last = fold_dir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if (resume and last.is_file()) else None
    writes_log = launched_rank() == 0
    if ckpt_path is not None and writes_log:
        keep_log_before_resume(fold_dir, last)
    _run_fit(trainer, module, train_loader, val_loader, ckpt_path)
    if not trainer.is_global_zero:
        return None
    best_path = best_cb.best_model_path or last_cb.last_model_path or str(last)
    rows = np.concatenate([test_idx, val_idx])  # one pass for the test and validation maps
    outputs = predict_outputs(
        load_module(best_path).net,
        images[rows],
        batch_size=eval_batch,
        full=None if full is None else full[rows],
    )
    probs, val_probs = outputs[: len(test_idx)], outputs[len(test_idx) :]
    score = best_cb.best_model_score
    info = {
        "best_checkpoint": os.path.relpath(best_path, fold_dir),
        "best_val_macro_f1": None if score is None else float(score),
        "best_epoch": checkpoint_epoch(best_path),
        "epochs": t["epochs"],
        "class_weight": weight,
        "precision": precision,
        "allocator": allocator,
    }
    if not keep_checkpoint:
        Path(best_path).unlink(missing_ok=True)
    last.unlink(missing_ok=True)
    if writes_log:
        merge_kept_log(fold_dir)
    return probs, info, val_probs


def _full_maps(cfg: dict, images: torch.Tensor, full: torch.Tensor | None) -> torch.Tensor | None:
    """The full-resolution maps a ``model.crop_source=full`` run crops from, else None."""
    if cfg["model"].get("crop_source", "input") != "full":
        return None
    crop = int(cfg["preprocess"]["crop"])
    if full is None and images.shape[-1] == crop:  # not resized: the input is the full map
        return images
    if full is None or tuple(full.shape) != (len(images), 1, crop, crop):
        got = "none" if full is None else f"shape {tuple(full.shape)}"
        raise UsageError(
            f"config model.crop_source=full: the {crop} px maps before the resize are needed "
            f"(fit_fold(full_images=...), (N, 1, {crop}, {crop})); got {got}"
        )
    return full


def _tcool_targets(cfg: dict, tcool: np.ndarray | None, used: np.ndarray) -> np.ndarray | None:
    """The cooling-time targets of a run with the head (checked on the maps ``used``), else None."""
    if not cfg["model"].get("regression", False):
        return None
    if tcool is None:
        raise UsageError(
            "config model.regression=true: no cooling times were given to train on "
            "(fit_fold(tcool=log10_tcool_targets(catalog, path)))"
        )
    tcool = np.asarray(tcool, dtype=np.float64)
    if not np.isfinite(tcool[used]).all():
        raise UsageError("config model.regression=true: a training map has no finite log10 t_cool")
    return tcool


def checkpoint_epoch(path: str | Path) -> int:
    """The (0-based) epoch whose end a Lightning checkpoint of ours was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def _read_log(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame({"epoch": pd.Series([], dtype=int)})


def _join_logs(older: pd.DataFrame, newer: pd.DataFrame) -> pd.DataFrame:
    """``older``'s rows before ``newer``'s first epoch, then ``newer``."""
    if not len(newer):
        return older
    if not len(older):
        return newer
    return pd.concat([older[older["epoch"] < newer["epoch"].min()], newer], ignore_index=True)


def keep_log_before_resume(fold_dir: Path, last: Path) -> None:
    """Save the CSV log of the finished epochs before Lightning's logger deletes it.

    Lightning's CSVLogger removes an existing ``metrics.csv`` when it starts, so
    on resume the rows of the epochs up to the checkpoint ``last``'s are moved to
    :data:`KEPT_LOG_FILE` (rows of the interrupted epoch are dropped: it is run
    again), and :func:`merge_kept_log` puts them back when the fold is done.
    """
    log = fold_dir / LOG_FILE
    kept_path = fold_dir / KEPT_LOG_FILE
    current = _read_log(log)
    if not len(current):
        return
    done_epoch = checkpoint_epoch(last)
    kept = _join_logs(_read_log(kept_path), current[current["epoch"] <= done_epoch])
    atomic_write_text(kept_path, kept.to_csv(index=False))
    log.unlink()


def merge_kept_log(fold_dir: Path) -> None:
    """Prepend the rows kept by :func:`keep_log_before_resume` to ``metrics.csv``."""
    kept_path = fold_dir / KEPT_LOG_FILE
    if not kept_path.is_file():
        return
    merged = _join_logs(_read_log(kept_path), _read_log(fold_dir / LOG_FILE))
    atomic_write_text(fold_dir / LOG_FILE, merged.to_csv(index=False))
    kept_path.unlink()


def predictions_frame(
    catalog: pd.DataFrame, idx: np.ndarray, probs: np.ndarray, fold: int
) -> pd.DataFrame:
    """The rows of predictions.csv for one fold's test images.

    ``probs`` is (n, 3), or (n, 5) with the cooling-time head's ``mu`` and
    ``sigma`` (log10 Gyr) after the probabilities: then the columns
    :data:`TCOOL_COLUMNS` follow ``predicted``: ``log10_tcool`` (mu),
    ``log10_tcool_sigma``, ``t_cool_gyr`` (the catalogue's, NaN where absent) and
    ``predicted_from_tcool`` (the class of 10**mu Gyr by the 1.0 / 7.7 Gyr
    thresholds, :func:`coolcore.data.catalog.labels_from_t_cool`).
    """
    probs = np.asarray(probs, dtype=np.float64)
    rows = catalog.iloc[idx]
    frame = pd.DataFrame(
        {
            "image_id": rows["image_id"].astype(str).to_numpy(),
            "cluster_id": rows["cluster_id"].astype(str).to_numpy(),
            "fold": fold,
            "label": rows["label"].to_numpy(),
        }
    )
    for c, name in enumerate(CLASS_NAMES):
        frame[f"p_{name}"] = probs[:, c]
    n_classes = len(CLASS_NAMES)
    frame["predicted"] = np.asarray(CLASS_NAMES)[probs[:, :n_classes].argmax(axis=1)]
    if probs.shape[1] > n_classes:
        mu = probs[:, n_classes]
        frame["log10_tcool"] = mu
        frame["log10_tcool_sigma"] = probs[:, n_classes + 1]
        true = rows["t_cool_gyr"] if "t_cool_gyr" in rows else pd.Series(np.nan, index=rows.index)
        frame["t_cool_gyr"] = pd.to_numeric(true, errors="coerce").to_numpy(dtype=np.float64)
        frame["predicted_from_tcool"] = np.asarray(CLASS_NAMES)[labels_from_t_cool(10.0**mu)]
    return frame
