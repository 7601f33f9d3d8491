"""The paper's protocol: cluster-grouped K-fold cross-validation of one variant.

``run_cv`` trains one variant on every fold and writes a run folder
(:class:`coolcore.runs.folder.RunFolder`); it resumes, and finished folds are
never recomputed. The ablation (:mod:`coolcore.train.ablation`) runs it once per
method and repeat.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.data.transforms import DEFAULT_FIELD_KPC
from coolcore.errors import UsageError
from coolcore.runs.atomic import file_sha256
from coolcore.runs.folder import RunFolder
from coolcore.runs.interrupts import raise_if_interrupted
from coolcore.runs.lifecycle import check_resume, finish_run_dir, open_run_dir, prepare_run_dir
from coolcore.runs.outputs import check_output_apart
from coolcore.runs.record import make_run_record
from coolcore.train.config import DEFAULTS
from coolcore.train.hardware import Hardware, check_hardware, launched_rank

__all__ = [
    "catalog_checksum",
    "check_model_and_hardware",
    "data_inputs",
    "finalise_cv",
    "folds_frame",
    "learning_history",
    "load_data",
    "make_folds",
    "run_cv",
]


def say(msg: str, quiet: bool = False) -> None:
    """A progress line on stderr (nothing when ``quiet``)."""
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def load_data(
    data: str | Path, cfg: dict, *, progress: bool = True, cache_dir: str | Path | None = None
):
    """Resolve DATA, read its catalogue and the preprocessed maps (cached in ``cache_dir``,
    default :func:`coolcore.data.cache.default_cache_dir`); with ``model.crop_source=full``
    also the maps before the resize (``Dataset.full_images``)."""
    from coolcore.data.cache import load_dataset
    from coolcore.data.catalog import resolve_data
    from coolcore.data.transforms import PreprocessConfig

    catalog_path = resolve_data(data)
    p = cfg["preprocess"]
    pcfg = PreprocessConfig(
        crop=p["crop"],
        size=p["size"],
        scaling=p["scaling"],
        field_kpc=float(p.get("field_kpc", DEFAULT_FIELD_KPC)),
    )
    full = cfg["model"].get("crop_source", "input") == "full"
    return load_dataset(
        catalog_path, pcfg, progress=progress, cache_dir=cache_dir, full_resolution=full
    )


def _catalog_of(data) -> Path:
    """The catalogue that DATA names (DATA itself if it cannot be resolved)."""
    from coolcore.data.catalog import resolve_data
    from coolcore.errors import CoolcoreError

    try:
        return resolve_data(data)
    except CoolcoreError:
        return Path(data)


def catalog_checksum(data: str | Path) -> str | None:
    """SHA-256 of the bytes of the catalogue DATA names (None if it cannot be read)."""
    try:
        return file_sha256(_catalog_of(data))
    except OSError:
        return None


def data_inputs(data: str | Path, dataset=None) -> list[Path]:
    """The inputs a run must stay apart from: DATA, its catalogue and, once the
    dataset is loaded, the folder that holds all its maps."""
    inputs = [Path(data), _catalog_of(data)]
    if dataset is not None and len(dataset.catalog):
        folders = {os.path.dirname(os.path.abspath(p)) for p in dataset.catalog["path"]}
        inputs.append(Path(os.path.commonpath(sorted(folders))))
    return inputs


def make_folds(
    dataset, cfg: dict, source: str | Path | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The config's cluster-grouped stratified folds for a dataset.

    ``source`` (DATA: the catalogue or its folder) prefixes the message of a data
    set that cannot be split, e.g. a class with fewer clusters than folds.
    """
    from coolcore.data.splits import cluster_folds
    from coolcore.errors import DataError

    if (dataset.labels < 0).any():
        raise UsageError("cross-validation needs a label (or t_cool_gyr) for every image")
    try:
        return cluster_folds(
            dataset.cluster_ids, dataset.labels, n_folds=cfg["cv"]["folds"], seed=cfg["cv"]["seed"]
        )
    except DataError as exc:
        if source is None:
            raise
        raise DataError(f"{_catalog_of(source)}: {exc} (cv.folds={cfg['cv']['folds']})") from None


def folds_frame(dataset, folds) -> pd.DataFrame:
    """image_id -> test fold, recorded in every run folder."""
    fold_of = np.empty(len(dataset.labels), dtype=int)
    for k, (_, _, test_idx) in enumerate(folds):
        fold_of[test_idx] = k
    return pd.DataFrame(
        {
            "image_id": dataset.image_ids,
            "cluster_id": dataset.cluster_ids,
            "label": np.asarray(CLASS_NAMES)[dataset.labels],
            "fold": fold_of,
        }
    )


def run_cv(
    data: str | Path,
    cfg: dict,
    out: str | Path,
    *,
    fold: int | None = None,
    resume: bool = False,
    force: bool = False,
    hardware=None,
    progress: bool = True,
    dataset=None,
    quiet: bool = False,
    keep_checkpoints: bool = True,
) -> Path:
    """Cross-validate one variant and write the run folder ``out``.

    Parameters
    ----------
    data : a folder with ``catalog.csv`` or a catalogue CSV.
    cfg : the run config (:func:`coolcore.train.config.load_config`).
    out : the run folder; built as ``out.partial`` and renamed when complete. It
        must lie apart from the data (:func:`coolcore.runs.outputs.check_output_apart`).
    fold : train only this fold (for running folds as separate jobs); the run is
        completed by a later call with ``resume=True`` once every fold is done.
    resume : continue an unfinished run made from the same catalogue, maps and
        config; finished folds are kept as they are.
    force : delete an existing run at ``out`` first (only a run folder).
    dataset : an already loaded dataset (the ablation passes it to avoid reloading).
    keep_checkpoints : keep each fold's best weights (needed by ``coolcore export``).

    Returns
    -------
    The path of the run folder (``out`` when complete, ``out.partial`` otherwise).
    """
    writer = launched_rank() == 0  # a DDP worker (rank > 0) never writes the folder
    if not writer:
        resume, force, quiet = True, False, True
    for path in (Path(out), Path(f"{out}.partial")):  # before anything else: inputs stay apart
        check_output_apart(path, data_inputs(data))
    final, partial, done = prepare_run_dir(out, resume=resume, force=force, check_lock=writer)
    if done:
        say(f"{final}: already complete, nothing to do", quiet)
        return final
    if dataset is None:
        dataset = load_data(data, cfg, progress=progress)
    folds = make_folds(dataset, cfg, data)
    n_folds = len(folds)
    tcool = None
    if cfg["model"].get("regression", False):  # before anything is written
        from coolcore.train.loaders import log10_tcool_targets

        tcool = log10_tcool_targets(dataset.catalog, _catalog_of(data))
    if fold is not None and not 0 <= fold < n_folds:
        raise UsageError(f"--fold {fold}: must lie in [0, {n_folds - 1}] for {n_folds} folds")
    check_model_and_hardware(cfg, hardware)
    todo = [fold] if fold is not None else list(range(n_folds))
    options = dict(
        hardware=hardware, progress=progress, keep=keep_checkpoints, quiet=quiet, tcool=tcool
    )
    if not writer:
        _train_folds(RunFolder(partial), dataset, folds, todo, cfg, **options)
        return partial
    check_output_apart(final, data_inputs(data, dataset))
    record = make_run_record(cfg, dataset, data, kind="cv", catalog_checksum=catalog_checksum(data))
    if not force:
        check_resume(partial, record, DEFAULTS)
    run = RunFolder(open_run_dir(final, partial, force=force))
    with run.lock() as lock:
        run.write_record(record)
        run.write_folds(folds_frame(dataset, folds))
        _train_folds(run, dataset, folds, todo, cfg, **options)
        if not _is_global_zero():
            return partial
        missing = [k for k in range(n_folds) if not run.fold_done(k)]
        if missing:
            say(
                f"{partial}: folds {', '.join(map(str, missing))} still to train; "
                "run them, then the same command with --resume to finish",
                quiet,
            )
            return partial
        metrics = finalise_cv(partial, n_folds, dataset=dataset, folds=folds)
        lock.release()
    finish_run_dir(partial, final)
    lo, hi = metrics["macro_f1_ci"]
    say(
        f"{final}: macro-F1 {metrics['macro_f1']:.3f} (95% cluster-bootstrap interval "
        f"{lo:.3f}-{hi:.3f}) over {metrics['n_images']} images",
        quiet,
    )
    return final


def _train_folds(
    run: RunFolder, dataset, folds, todo, cfg, *, hardware, progress, keep, quiet, tcool=None
) -> None:
    """Train the folds ``todo`` that are not done yet; write each one's results."""
    from coolcore.evaluate.calibration import fit_temperature, probs_labels, sigma_scales
    from coolcore.train.fit import checkpoint_epoch, fit_fold, predictions_frame
    from coolcore.train.loaders import as_tensor_images

    images = as_tensor_images(dataset.images)
    full = getattr(dataset, "full_images", None)
    full = None if full is None else as_tensor_images(full)
    n_folds = len(folds)
    for k in todo:
        raise_if_interrupted()
        if run.fold_done(k):
            say(f"fold {k + 1}/{n_folds}: done before, kept", quiet)
            continue
        run.fold_dir(k).mkdir(parents=True, exist_ok=True)
        last = run.last_checkpoint(k)
        how = ""
        if last.is_file():
            how = f", resuming at epoch {checkpoint_epoch(last) + 2}/{cfg['train']['epochs']}"
        say(f"fold {k + 1}/{n_folds}: training {cfg['model']['variant']}{how} ...", quiet)
        t0 = time.perf_counter()
        result = fit_fold(
            images,
            dataset.labels,
            folds[k],
            cfg,
            run.fold_dir(k),
            seed=int(cfg["train"]["seed"]) * 1000 + k,
            hardware=hardware,
            resume=True,
            progress=progress,
            keep_checkpoint=keep,
            tcool=tcool,
            full_images=full,
        )
        if result is None:  # not the global-zero process of a distributed run
            _barrier()
            continue
        probs, info, val_probs = result
        info["seconds"] = round(time.perf_counter() - t0, 1)
        validation = predictions_frame(dataset.catalog, folds[k][1], val_probs, k)
        info["temperature"] = fit_temperature(*probs_labels(validation))
        if "log10_tcool" in validation:
            info["tcool_sigma_scale"] = sigma_scales([validation])[0]
        run.write_fold_result(
            k, info, predictions_frame(dataset.catalog, folds[k][2], probs, k), validation
        )
        say(
            f"fold {k + 1}/{n_folds}: best epoch {info['best_epoch'] + 1}, "
            f"val macro-F1 {info['best_val_macro_f1']:.3f}, {info['seconds']:.0f} s "
            f"({info['precision']})",
            quiet,
        )
        _barrier()


def check_model_and_hardware(cfg: dict, hardware=None) -> None:
    """Build the network once and check the hardware options, before anything is written.

    A ``--weights`` file that is missing or does not fit, or ``--accelerator gpu``
    without a GPU, is a :class:`~coolcore.errors.UsageError` while the run folder
    is still untouched.
    """
    import torch

    from coolcore.nn.model import build_network
    from coolcore.train.weights import read_trunk_state

    net = build_network(cfg, trunk_state=read_trunk_state(cfg["model"]["weights"]))
    if cfg["train"]["batch_size"] == 1:  # BatchNorm in training mode needs two values
        p = cfg["preprocess"]
        size = p["size"] or p["crop"]
        full = torch.rand(1, 1, p["crop"], p["crop"]) if net.crop_source == "full" else None
        try:
            with torch.no_grad():
                net.train()(torch.rand(1, 1, size, size), full)
        except ValueError as exc:
            if "more than 1 value per channel" not in str(exc):
                raise
            raise UsageError(
                f"config train.batch_size=1: with {size} px maps a batch of one leaves "
                "BatchNorm a single value per channel; use a batch size of 2 or more"
            ) from None
    if hardware is not None and hardware != Hardware():  # the default needs no check
        check_hardware(hardware)


def _barrier() -> None:
    """Wait for every DDP process (rank 0 writes a fold's predictions meanwhile)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _is_global_zero() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def finalise_cv(run: str | Path, n_folds: int, *, dataset=None, folds=None) -> dict:
    """Merge the folds' predictions; write metrics.json and the figures.

    Where every fold kept its validation predictions, metrics.json gains a
    ``calibration`` block (:func:`coolcore.evaluate.calibration.calibration_report`:
    ECE and NLL before and after temperature scaling) and ``reliability.png`` is drawn,
    and the ``regression`` block its ``network_scaled`` entry (sigmas scaled per fold).

    With the cooling-time head (``log10_tcool`` in the predictions) metrics.json
    gains a ``regression`` block (:func:`coolcore.evaluate.tcool_report.regression_report`;
    its baselines need the run's ``dataset`` and ``folds``, and are kept row for row in
    ``regression_baselines.csv``).
    """
    from coolcore.evaluate.metrics import compute_metrics
    from coolcore.evaluate.plots import plot_confusion_matrix, plot_learning_curves

    folder = RunFolder(run)
    preds = pd.concat([folder.read_fold_predictions(k) for k in range(n_folds)], ignore_index=True)
    folder.write_predictions(preds)
    metrics = compute_metrics(preds)
    metrics["folds"] = {str(k): folder.read_fold_info(k) for k in range(n_folds)}
    validations = [folder.read_fold_validation(k) for k in range(n_folds)]
    kept = all(v is not None for v in validations)  # runs before they were kept have none
    if "log10_tcool" in preds:
        from coolcore.evaluate.tcool_report import baseline_regressions, regression_report

        baselines = None
        if dataset is not None and folds is not None:
            baselines = baseline_regressions(preds, dataset, folds)
        if baselines is not None:
            folder.write_regression_baselines(baselines)
        metrics["regression"] = regression_report(
            preds, baselines=baselines, validations=validations if kept else None
        )
    if kept:
        from coolcore.evaluate.calibration import calibration_report
        from coolcore.evaluate.plots import plot_reliability

        tests = [folder.read_fold_predictions(k) for k in range(n_folds)]
        metrics["calibration"], _ = calibration_report(tests, validations)
        plot_reliability(metrics["calibration"], folder.figure("reliability.png"))
    folder.write_metrics(metrics)
    plot_confusion_matrix(metrics, folder.figure("confusion_matrix.png"))
    history = learning_history(run, n_folds)
    if len(history):
        folder.write_history(history)
        plot_learning_curves(history, folder.figure("learning_curves.png"))
    return metrics


def learning_history(run: str | Path, n_folds: int) -> pd.DataFrame:
    """The folds' Lightning CSV logs, one row per fold and epoch (``lr``: the learning
    rate of the epoch's first batch, where logged)."""
    folder = RunFolder(run)
    frames = []
    for k in range(n_folds):
        path = folder.fold_log(k)
        if not path.is_file():
            continue
        log = pd.read_csv(path)
        cols = [c for c in ("train_loss", "val_loss", "val_macro_f1", "lr") if c in log]
        per_epoch = log.groupby("epoch")[cols].mean().reset_index()
        per_epoch.insert(0, "fold", k)
        frames.append(per_epoch)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
