"""Export a cv run as a model folder (``coolcore export``), and the helpers that read one.

The model folder
----------------
``coolcore export RUN --out MODEL_DIR`` (:func:`export_model`) writes::

    MODEL_DIR/model.json           what the model is (below)
    MODEL_DIR/fold_00.safetensors  one network state dict per fold of the cv run
    MODEL_DIR/fold_01.safetensors  ...

``model.json`` holds ``format`` / ``format_version``, ``class_names``, the
``variant`` and mask ``combine`` mode, ``network`` (the constructor arguments of
:class:`~coolcore.nn.model.MultiBranchAttentionNet`), ``preprocess`` (``crop``,
``size``, ``input_size``, ``scaling``, ``center`` and, for data-set scaling, the
training data's ``log_range``), ``training_data`` (path, checksum, image count,
the median ``pixel_kpc`` of the catalogue, the field of view ``fov_kpc = crop *
pixel_kpc``, the maps' ``BUNIT``), the full run ``config``, the ``folds``
exported, ``weights`` (file name -> SHA-256), ``versions`` (of the training run
and of the export) and ``source_run``.

:func:`coolcore.apps.inference.load_model` reads the folder back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.errors import CoolcoreError, DataError, UsageError

__all__ = ["FORMAT_VERSION", "MODEL_FILE", "export_model"]

FORMAT_VERSION = 1
"""Version of the model-folder layout this coolcore writes and reads."""

MODEL_FILE = "model.json"
FORMAT_NAME = "coolcore-model"

_NETWORK_KEYS = (
    "variant",
    "combine",
    "weights",
    "aux_size",
    "tau1",
    "tau2",
    "lam",
    "center_smoothing",
)


# --------------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({_one_line(exc)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object")
    return obj


def _versions() -> dict:
    from coolcore.runs.folder import versions

    return versions()


# --------------------------------------------------------------------------- export
def _fold_dirs(run: Path) -> dict[int, Path]:
    out = {}
    for d in sorted(run.glob("fold_*")):
        try:
            k = int(d.name.split("_", 1)[1])
        except ValueError:
            continue
        if d.is_dir():
            out[k] = d
    return out


def _checkpoint_of(fold_dir: Path) -> Path:
    info = fold_dir / "fold.json"
    name = "checkpoints/best.ckpt"
    if info.is_file():
        name = _read_json(info).get("best_checkpoint") or name
    path = fold_dir / name
    if not path.is_file():
        last = fold_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        raise DataError(f"{path}: checkpoint missing (the fold did not finish training)")
    return path


def _cv_record(run: Path) -> dict:
    """run.json of a finished cv run, with a clear error for anything else."""
    run = Path(run)
    if not run.exists():
        raise UsageError(f"{run}: no such run folder")
    if not run.is_dir():
        raise UsageError(f"{run}: not a folder (RUN is a cv run folder)")
    record_path = run / "run.json"
    if not record_path.is_file():
        raise UsageError(f"{run}: not a run folder (no run.json); make one with `coolcore cv`")
    record = _read_json(record_path)
    kind = record.get("kind")
    if kind == "ablation":
        raise UsageError(
            f"{run}: an ablation run holds one cv run per method; export one of them, "
            f"e.g. {run / 'all' / 'rep_00'}"
        )
    if kind != "cv" or not isinstance(record.get("config"), dict):
        raise UsageError(f"{run}: run.json does not describe a cv run (kind {kind!r})")
    return record


def _state_from_checkpoint(path: Path) -> tuple[dict, dict]:
    """The network's state dict (``net.`` prefix removed) and the run config of a checkpoint."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable checkpoint ({_one_line(exc)})") from None
    try:
        state = ckpt["state_dict"]
        cfg = ckpt["hyper_parameters"]["cfg"]
    except (KeyError, TypeError):
        raise DataError(f"{path}: not a coolcore checkpoint (no state_dict / cfg)") from None
    net_state = {k[4:]: v.contiguous() for k, v in state.items() if k.startswith("net.")}
    if not net_state:
        raise DataError(f"{path}: the checkpoint holds no network weights (net.*)")
    return net_state, cfg


def _training_data_info(record: dict, cfg: dict) -> dict:
    """Where the training data lie and what their maps are: pixel scale, field of view, units."""
    from coolcore.data import io as cio

    crop = int(cfg["preprocess"]["crop"])
    info: dict[str, Any] = {
        "path": record.get("data"),
        "checksum": record.get("data_checksum"),
        "n_images": record.get("n_images"),
        "n_clusters": record.get("n_clusters"),
        "pixel_kpc": None,
        "fov_kpc": None,
        "bunit": None,
    }
    data = record.get("data")
    if not data:
        return info
    try:
        catalog_path = cio.resolve_data(data)
        catalog = cio.read_catalog(catalog_path, require_labels=False, check_files=False)
    except CoolcoreError:
        return info
    pix = None
    if "pixel_kpc" in catalog:
        values = pd.to_numeric(catalog["pixel_kpc"], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            pix = float(np.median(values))
    sample = [p for p in catalog["path"].head(5) if Path(p).is_file()]
    headers = []
    for p in sample:
        try:
            headers.append(cio.image_header_info(p))
        except CoolcoreError:
            continue
    if pix is None:
        scales = [h["pixel_kpc"] for h in headers if h.get("pixel_kpc")]
        pix = float(np.median(scales)) if scales else None
    info["pixel_kpc"] = pix
    info["fov_kpc"] = None if pix is None else crop * pix
    units = {h["bunit"] for h in headers if h.get("bunit")}
    info["bunit"] = units.pop() if len(units) == 1 else None
    return info


def _log_range(record: dict, cfg: dict) -> list[float] | None:
    """The training data's range of log values, needed for ``scaling: dataset``."""
    if cfg["preprocess"]["scaling"] != "dataset":
        return None
    if record.get("log_range") is not None:
        lo, hi = record["log_range"]
        return [float(lo), float(hi)]
    from coolcore.train.experiments import load_data

    data = record.get("data")
    if not data or not Path(data).exists():
        raise UsageError(
            f"this run uses data-set scaling, whose log range comes from its training data "
            f"{data}, which is not there; export where the data are"
        )
    dataset = load_data(data, cfg, progress=False)
    if record.get("data_checksum") and dataset.cache_key != record["data_checksum"]:
        raise UsageError(f"{data}: the data changed since the run was trained (checksum differs)")
    lo, hi = dataset.log_range
    return [float(lo), float(hi)]


def _network_config(cfg: dict) -> dict:
    m = cfg["model"]
    net = {key: m[key] for key in _NETWORK_KEYS}
    net["num_classes"] = len(CLASS_NAMES)
    return net


def _metadata(run: Path, record: dict, folds: list[int], weights: dict[str, str]) -> dict:
    cfg = record["config"]
    p = cfg["preprocess"]
    size = p["size"] if p.get("size") is not None else p["crop"]
    fold_info = {}
    for k in folds:
        path = run / f"fold_{k:02d}" / "fold.json"
        if path.is_file():
            fj = _read_json(path)
            fold_info[str(k)] = {
                key: fj.get(key) for key in ("best_epoch", "best_val_macro_f1", "epochs")
            }
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class_names": list(CLASS_NAMES),
        "variant": cfg["model"]["variant"],
        "combine": cfg["model"]["combine"],
        "network": _network_config(cfg),
        "preprocess": {
            "crop": int(p["crop"]),
            "size": p.get("size"),
            "input_size": int(size),
            "scaling": p["scaling"],
            "center": p.get("center", "image"),
            "log_range": _log_range(record, cfg),
        },
        "training_data": _training_data_info(record, cfg),
        "ensemble": "mean of the fold models' probabilities",
        "folds": folds,
        "fold_info": fold_info,
        "weights": weights,
        "config": cfg,
        "versions": {"training": record.get("versions"), "export": _versions()},
        "source_run": str(run.resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def export_model(
    run: str | os.PathLike, out: str | os.PathLike, *, fold: int | None = None, force: bool = False
) -> Path:
    """Write the model folder of a finished cv run (see the module docstring).

    Parameters
    ----------
    run : path
        A cv run folder (``coolcore cv``), or one cv run inside an ablation
        (``ABLATION/all/rep_00``).
    out : path
        The model folder to write; built under a temporary name and renamed.
    fold : int, optional
        Export only this fold's model (default: every fold, used as an ensemble).
    force : bool
        Replace an existing ``out``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    coolcore.errors.UsageError
        ``run`` is not a cv run, ``fold`` does not exist, ``out`` exists without ``force``.
    coolcore.errors.DataError
        A checkpoint is missing or unreadable.
    """
    from safetensors.torch import save_file

    run = Path(run)
    record = _cv_record(run)
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out}: already exists; pass --force to replace it")
    dirs = _fold_dirs(run)
    n_folds = int(record["config"]["cv"]["folds"])
    if fold is not None:
        if fold not in dirs:
            raise UsageError(
                f"--fold {fold}: {run} has folds {', '.join(map(str, sorted(dirs))) or 'none'}"
            )
        folds = [fold]
    else:
        missing = [k for k in range(n_folds) if k not in dirs]
        if missing:
            raise UsageError(
                f"{run}: folds {', '.join(map(str, missing))} of {n_folds} are missing; "
                "finish the run (--resume) or export one fold with --fold"
            )
        folds = list(range(n_folds))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        weights = {}
        for k in folds:
            state, _ = _state_from_checkpoint(_checkpoint_of(dirs[k]))
            name = f"fold_{k:02d}.safetensors"
            save_file(state, str(tmp / name), metadata={"format": "pt", "fold": str(k)})
            weights[name] = _sha256(tmp / name)
        meta = _metadata(run, record, folds, weights)
        (tmp / MODEL_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
