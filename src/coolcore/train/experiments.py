"""The paper's protocol: cluster-grouped K-fold cross-validation, and the ablation.

``run_cv`` trains one variant on every fold and writes a run folder;
``run_ablation`` runs the paper's Table I variants, the ``intersection`` mask and
the astronomers' concentration baselines on identical folds and seeds, over
repeats, and writes the table. Both resume: finished folds are never recomputed.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.runs.folder import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    check_same_config,
    finish_run_dir,
    open_run_dir,
    prepare_run_dir,
    raise_if_interrupted,
    versions,
)
from coolcore.train.config import dump_config
from coolcore.train.hardware import Hardware, check_hardware, launched_rank


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def load_data(data: str | Path, cfg: dict, *, progress: bool = True):
    """Resolve DATA, read its catalogue and the preprocessed maps (cached)."""
    from coolcore.data.io import resolve_data
    from coolcore.data.preprocess import PreprocessConfig, load_dataset

    catalog_path = resolve_data(data)
    p = cfg["preprocess"]
    pcfg = PreprocessConfig(crop=p["crop"], size=p["size"], scaling=p["scaling"])
    return load_dataset(catalog_path, pcfg, progress=progress)


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


def _catalog_of(data) -> Path:
    """The catalogue that DATA names (DATA itself if it cannot be resolved)."""
    from coolcore.data.io import resolve_data
    from coolcore.errors import CoolcoreError

    try:
        return resolve_data(data)
    except CoolcoreError:
        return Path(data)


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
    out : the run folder; built as ``out.partial`` and renamed when complete.
    fold : train only this fold (for running folds as separate jobs); the run is
        completed by a later call with ``resume=True`` once every fold is done.
    resume : continue an unfinished run; finished folds are kept as they are.
    force : delete an existing run at ``out`` first.
    dataset : an already loaded dataset (the ablation passes it to avoid reloading).
    keep_checkpoints : keep each fold's best weights (needed by ``coolcore export``).

    Returns
    -------
    The path of the run folder (``out`` when complete, ``out.partial`` otherwise).
    """
    main_process = launched_rank() == 0
    if not main_process:  # a DDP worker started by Lightning or srun: rank 0 owns the folder
        resume, force, quiet = True, False, True
    final, partial, done = prepare_run_dir(out, resume=resume, force=force)
    if done:
        _say(f"{final}: already complete, nothing to do", quiet)
        return final
    if not force:
        check_same_config(partial, cfg)
    if dataset is None:
        dataset = load_data(data, cfg, progress=progress)
    folds = make_folds(dataset, cfg, data)
    n_folds = len(folds)
    if fold is not None and not 0 <= fold < n_folds:
        raise UsageError(f"--fold {fold}: must lie in [0, {n_folds - 1}] for {n_folds} folds")
    from coolcore.train.training import (
        as_tensor_images,
        checkpoint_epoch,
        fit_fold,
        predictions_frame,
    )

    check_model_and_hardware(cfg, hardware)
    if main_process:
        open_run_dir(final, partial, force=force)
        _write_run_record(partial, cfg, dataset, data, kind="cv")
        atomic_write_csv(partial / "folds.csv", folds_frame(dataset, folds))

    images = as_tensor_images(dataset.images)
    todo = [fold] if fold is not None else list(range(n_folds))
    variant = cfg["model"]["variant"]
    for k in todo:
        raise_if_interrupted()
        fold_dir = partial / f"fold_{k:02d}"
        if (fold_dir / "predictions.csv").is_file():
            _say(f"fold {k + 1}/{n_folds}: done before, kept", quiet)
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        last = fold_dir / "checkpoints" / "last.ckpt"
        how = ""
        if last.is_file():
            how = f", resuming at epoch {checkpoint_epoch(last) + 2}/{cfg['train']['epochs']}"
        _say(f"fold {k + 1}/{n_folds}: training {variant}{how} ...", quiet)
        t0 = time.perf_counter()
        result = fit_fold(
            images,
            dataset.labels,
            folds[k],
            cfg,
            fold_dir,
            seed=int(cfg["train"]["seed"]) * 1000 + k,
            hardware=hardware,
            resume=True,
            progress=progress,
            keep_checkpoint=keep_checkpoints,
        )
        if result is None:  # not the global-zero process of a distributed run
            _barrier()
            continue
        probs, info = result
        info["seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(fold_dir / "fold.json", info)
        frame = predictions_frame(dataset.catalog, folds[k][2], probs, k)
        atomic_write_csv(fold_dir / "predictions.csv", frame)
        _say(
            f"fold {k + 1}/{n_folds}: best epoch {info['best_epoch'] + 1}, "
            f"val macro-F1 {info['best_val_macro_f1']:.3f}, {info['seconds']:.0f} s",
            quiet,
        )
        _barrier()
    if not main_process or not _is_global_zero():
        return partial
    missing = [
        k for k in range(n_folds) if not (partial / f"fold_{k:02d}" / "predictions.csv").is_file()
    ]
    if missing:
        _say(
            f"{partial}: folds {', '.join(map(str, missing))} still to train; "
            "run them, then the same command with --resume to finish",
            quiet,
        )
        return partial
    finalise_cv(partial, n_folds)
    finish_run_dir(partial, final)
    metrics = json.loads((final / "metrics.json").read_text())
    lo, hi = metrics["macro_f1_ci"]
    _say(
        f"{final}: macro-F1 {metrics['macro_f1']:.3f} (95% cluster-bootstrap interval "
        f"{lo:.3f}-{hi:.3f}) over {metrics['n_images']} images",
        quiet,
    )
    return final


def check_model_and_hardware(cfg: dict, hardware=None) -> None:
    """Build the network once and check the hardware options, before anything is written.

    A ``--weights`` file that is missing or does not fit, or ``--accelerator gpu``
    without a GPU, is a :class:`~coolcore.errors.UsageError` while the run folder
    is still untouched.
    """
    import torch

    from coolcore.nn.model import build_network

    net = build_network(cfg)
    if cfg["train"]["batch_size"] == 1:  # BatchNorm in training mode needs two values
        size = cfg["preprocess"]["size"] or cfg["preprocess"]["crop"]
        try:
            with torch.no_grad():
                net.train()(torch.rand(1, 1, size, size))
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


def finalise_cv(run: Path, n_folds: int) -> dict:
    """Merge the folds' predictions; write metrics.json and the figures."""
    from coolcore.evaluate.metrics import compute_metrics
    from coolcore.evaluate.plots import plot_confusion_matrix, plot_learning_curves

    preds = pd.concat(
        [
            pd.read_csv(
                run / f"fold_{k:02d}" / "predictions.csv",
                dtype={"image_id": str, "cluster_id": str},
            )
            for k in range(n_folds)
        ],
        ignore_index=True,
    )
    atomic_write_csv(run / "predictions.csv", preds)
    metrics = compute_metrics(preds)
    metrics["folds"] = {
        str(k): json.loads((run / f"fold_{k:02d}" / "fold.json").read_text())
        for k in range(n_folds)
    }
    atomic_write_json(run / "metrics.json", metrics)
    plot_confusion_matrix(metrics, run / "confusion_matrix.png")
    history = learning_history(run, n_folds)
    if len(history):
        atomic_write_csv(run / "history.csv", history)
        plot_learning_curves(history, run / "learning_curves.png")
    return metrics


def learning_history(run: Path, n_folds: int) -> pd.DataFrame:
    """The folds' Lightning CSV logs, one row per fold and epoch."""
    frames = []
    for k in range(n_folds):
        path = run / f"fold_{k:02d}" / "metrics.csv"
        if not path.is_file():
            continue
        log = pd.read_csv(path)
        cols = [c for c in ("train_loss", "val_loss", "val_macro_f1") if c in log]
        per_epoch = log.groupby("epoch")[cols].mean().reset_index()
        per_epoch.insert(0, "fold", k)
        frames.append(per_epoch)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _write_run_record(partial: Path, cfg: dict, dataset, data, *, kind: str, extra=None) -> None:
    record = {
        "kind": kind,
        "command": " ".join(sys.argv),
        "data": str(Path(data).resolve()) if data is not None else None,
        "data_checksum": dataset.cache_key,
        "log_range": None if dataset.log_range is None else [float(v) for v in dataset.log_range],
        "n_images": int(len(dataset.labels)),
        "n_clusters": int(len(set(dataset.cluster_ids))),
        "seed": int(cfg["train"]["seed"]),
        "cv_seed": int(cfg["cv"]["seed"]),
        "config": cfg,
        "versions": versions(),
    }
    if extra:
        record.update(extra)
    run_json = partial / "run.json"
    if run_json.is_file():  # keep the first start time of a resumed run
        record["started"] = json.loads(run_json.read_text()).get("started")
    record.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if record["started"] is None:
        record["started"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_json(run_json, record)
    atomic_write_text(partial / "config.yaml", dump_config(cfg))


# --------------------------------------------------------------------------- ablation

ABLATION_METHODS: dict[str, dict] = {
    "baseline": {"variant": "baseline"},
    "att": {"variant": "att"},
    "gauss": {"variant": "gauss"},
    "att+gauss": {"variant": "att+gauss"},
    "all": {"variant": "all"},
    "all (intersection)": {"variant": "all", "combine": "intersection"},
}
"""The network rows of the ablation: the paper's Table I and the intersection mask."""

LOSS_WEIGHT_SWEEP: list[tuple[float, float, float, float]] = [
    (0.8, 0.1, 0.1, 1.0),
    (0.8, 0.1, 0.1, 100.0),
    (0.1, 0.1, 0.8, 0.1),
    (0.1, 0.8, 0.1, 0.1),
    (0.8, 0.1, 0.1, 0.1),
]
"""The paper's Table II: (a_p, a_a, a_f, a_r) for the ``all`` variant."""


def _method_dir(name: str) -> str:
    return name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")


def ablation_plan(cfg: dict, sweep: str | None) -> dict[str, dict]:
    """Method name -> its config, for the ablation or the loss-weight sweep."""
    plan: dict[str, dict] = {}
    if sweep is None:
        for name, model in ABLATION_METHODS.items():
            c = copy.deepcopy(cfg)
            c["model"].update(model)
            plan[name] = c
    elif sweep == "loss-weights":
        c = copy.deepcopy(cfg)
        c["model"]["variant"] = "baseline"
        plan["baseline"] = c
        for alphas in LOSS_WEIGHT_SWEEP:
            c = copy.deepcopy(cfg)
            c["model"]["variant"] = "all"
            c["loss"]["alphas"] = list(alphas)
            plan["all a=" + "/".join(f"{a:g}" for a in alphas)] = c
    else:
        raise UsageError(f"--sweep {sweep}: unknown sweep (known: loss-weights)")
    return plan


def run_ablation(
    data: str | Path,
    cfg: dict,
    out: str | Path,
    *,
    repeats: int = 1,
    methods: list[str] | None = None,
    sweep: str | None = None,
    resume: bool = False,
    force: bool = False,
    hardware=None,
    progress: bool = True,
    keep_checkpoints: bool = False,
) -> Path:
    """Every method on identical folds and seeds, ``repeats`` times; the table.

    Repeat ``r`` uses ``train.seed + r`` for every method (the folds stay those of
    ``cv.seed``), so differences between methods are paired. The fold models are
    not kept unless ``keep_checkpoints`` (an ablation is about scores; keep
    models of the variant you want to use with ``coolcore cv``).
    """
    from coolcore.evaluate.metrics import ablation_table
    from coolcore.evaluate.plots import plot_ablation

    if repeats < 1:
        raise UsageError(f"--repeats {repeats}: must be at least 1")
    plan = ablation_plan(cfg, sweep)
    if methods:
        unknown = [m for m in methods if m not in plan]
        if unknown:
            raise UsageError(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(plan)})")
        plan = {m: c for m, c in plan.items() if m in methods or m == "baseline"}
    final, partial, done = prepare_run_dir(out, resume=resume, force=force)
    if done:
        _say(f"{final}: already complete, nothing to do")
        if (final / "table.md").is_file():
            print((final / "table.md").read_text().rstrip())
        return final
    if not force:
        check_same_config(partial, cfg)
    dataset = load_data(data, cfg, progress=progress)
    folds = make_folds(dataset, cfg, data)
    check_model_and_hardware(cfg, hardware)
    open_run_dir(final, partial, force=force)
    _write_run_record(
        partial,
        cfg,
        dataset,
        data,
        kind="ablation",
        extra={"repeats": repeats, "methods": list(plan), "sweep": sweep},
    )
    atomic_write_csv(partial / "folds.csv", folds_frame(dataset, folds))

    results: dict[str, list[pd.DataFrame]] = {}
    if sweep is None:
        for name, frame in concentration_predictions(dataset, folds).items():
            atomic_write_csv(partial / f"{_method_dir(name)}_predictions.csv", frame)
            results[name] = [frame]
    for r in range(repeats):
        for name, mcfg in plan.items():
            c = copy.deepcopy(mcfg)
            c["train"]["seed"] = int(cfg["train"]["seed"]) + r
            run = partial / _method_dir(name) / f"rep_{r:02d}"
            run.parent.mkdir(exist_ok=True)
            _say(f"[repeat {r + 1}/{repeats}] {name}")
            done_run = run_cv(
                data,
                c,
                run,
                resume=True,
                hardware=hardware,
                progress=progress,
                dataset=dataset,
                keep_checkpoints=keep_checkpoints,
            )
            if done_run != run:
                return partial
            results.setdefault(name, []).append(
                pd.read_csv(run / "predictions.csv", dtype={"image_id": str, "cluster_id": str})
            )
    table = ablation_table(results)
    atomic_write_text(partial / "table.md", table + "\n")
    plot_ablation(results, partial / "ablation.png")
    finish_run_dir(partial, final)
    print(table)
    _say(f"{final}: table in {final / 'table.md'}")
    return final


CONCENTRATION_METHODS: tuple[str, ...] = ("c_SB (literature)", "c_SB (fit)", "c_scaled (fit)")
"""The concentration baselines of an ablation, in table order."""


def load_ablation_results(run: str | Path) -> dict[str, list[pd.DataFrame]]:
    """``{method: [predictions per repeat]}`` read back from an ablation run folder
    (finished or ``.partial``): the concentration baselines, then the networks in
    run order, every repeat whose cross-validation has finished. ``ablation_table``
    of it gives the run's ``table.md``."""
    run = Path(run)
    record_path = run / "run.json"
    if not record_path.is_file():
        raise UsageError(f"{run}: not an ablation run folder (no run.json)")
    record = json.loads(record_path.read_text())
    if record.get("kind") != "ablation":
        raise UsageError(f"{run}: not an ablation run folder (kind {record.get('kind')!r})")

    def read(path: Path) -> pd.DataFrame:
        return pd.read_csv(path, dtype={"image_id": str, "cluster_id": str})

    results: dict[str, list[pd.DataFrame]] = {}
    if record.get("sweep") is None:
        for name in CONCENTRATION_METHODS:
            path = run / f"{_method_dir(name)}_predictions.csv"
            if path.is_file():
                results[name] = [read(path)]
    for name in record.get("methods", []):
        for r in range(int(record.get("repeats", 1))):
            path = run / _method_dir(name) / f"rep_{r:02d}" / "predictions.csv"
            if path.is_file():
                results.setdefault(name, []).append(read(path))
    return results


def concentration_predictions(dataset, folds) -> dict[str, pd.DataFrame]:
    """The concentration classifiers on the same folds as the networks.

    ``c_SB (literature)`` uses Santos et al. (2008)'s thresholds; ``c_SB (fit)`` and
    ``c_scaled (fit)`` choose their two thresholds on each fold's training images.
    The indicators are measured on the maps as stored (linear flux), which needs
    the pixel scale (``pixel_kpc``) and, for the scaled one, ``r500_kpc``.
    """
    from coolcore.data.io import read_image
    from coolcore.evaluate.baselines import (
        ConcentrationClassifier,
        concentration,
        scaled_concentration,
    )
    from coolcore.train.training import predictions_frame

    cat = dataset.catalog
    if "pixel_kpc" not in cat:
        _say("concentration baselines skipped: the catalogue has no pixel_kpc column")
        return {}
    raw = np.stack([read_image(p) for p in cat["path"]])
    pix = cat["pixel_kpc"].to_numpy(dtype=float)
    features = {"c_SB": concentration(raw, pix)}
    if "r500_kpc" in cat:
        features["c_scaled"] = scaled_concentration(raw, pix, cat["r500_kpc"].to_numpy(dtype=float))
    y = dataset.labels
    out: dict[str, pd.DataFrame] = {}
    specs = [
        ("c_SB (literature)", "c_sb", "c_SB", "literature"),
        ("c_SB (fit)", "c_sb", "c_SB", "fit"),
    ]
    if "c_scaled" in features:
        specs.append(("c_scaled (fit)", "c_scaled", "c_scaled", "fit"))
    for name, indicator, key, thresholds in specs:
        probs = np.zeros((len(y), len(CLASS_NAMES)))
        for train_idx, _, test_idx in folds:
            clf = ConcentrationClassifier(indicator=indicator, thresholds=thresholds)
            clf.fit(features[key][train_idx], y[train_idx])
            probs[test_idx] = clf.predict_proba(features[key][test_idx])
        frame = pd.concat(
            [predictions_frame(cat, f[2], probs[f[2]], k) for k, f in enumerate(folds)],
            ignore_index=True,
        )
        out[name] = frame
    return out
