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
and of the export), ``source_run`` and ``meta_sha256``, the SHA-256 of the rest of
``model.json`` (:func:`meta_checksum`), so an edit of ``model.json`` is detected
like a modified weight file. Every file is written with the mode of a new file
(``0666`` less the umask, usually ``0644``), so other users can load the model.

Only a finished cv run is exported (an unfinished one is refused with the
command that finishes it), except one explicitly chosen finished fold
(``--fold K``). The model folder must lie apart from the run and its data, and
``--force`` replaces only a model folder.

:func:`coolcore.apps.inference.load_model` reads the folder back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.data.transforms import DEFAULT_FIELD_KPC
from coolcore.errors import CoolcoreError, DataError, UsageError
from coolcore.nn.model import network_config
from coolcore.runs.atomic import file_sha256, json_sha256
from coolcore.runs.folder import RunFolder
from coolcore.runs.outputs import check_output_apart, check_replaceable
from coolcore.runs.record import versions

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "META_CHECKSUM_KEY",
    "MODEL_FILE",
    "export_model",
    "meta_checksum",
    "model_metadata",
    "one_line",
    "state_from_checkpoint",
]

FORMAT_VERSION = 1
"""Version of the model-folder layout this coolcore writes and reads."""

MODEL_FILE = "model.json"
FORMAT_NAME = "coolcore-model"

META_CHECKSUM_KEY = "meta_sha256"
"""The key of ``model.json`` that holds the SHA-256 of the rest of ``model.json``."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def meta_checksum(meta: dict) -> str:
    """SHA-256 of ``model.json``'s content less its ``meta_sha256`` key:
    ``json.dumps(meta, sort_keys=True, separators=(",", ":"))`` hashed."""
    return json_sha256({k: v for k, v in meta.items() if k != META_CHECKSUM_KEY})


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- export
def state_from_checkpoint(path: Path) -> tuple[dict, dict]:
    """The network's state dict (``net.`` prefix removed) and the run config of a checkpoint."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable checkpoint ({one_line(exc)})") from None
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
    from coolcore.data.catalog import read_catalog, resolve_data
    from coolcore.data.images import image_header_info

    crop = int(cfg["preprocess"]["crop"])
    info: dict[str, Any] = {
        "path": record.get("data"),
        "checksum": record.get("data_checksum"),
        "n_images": record.get("n_images"),
        "n_clusters": record.get("n_clusters"),
        "pixel_kpc": None,
        "fov_kpc": None,
        "bunit": None,
        "kind": "maps",
        "instrument": None,
    }
    data = record.get("data")
    if not data:
        return info
    try:
        catalog_path = resolve_data(data)
        catalog = read_catalog(catalog_path, require_labels=False, check_files=False)
    except CoolcoreError:
        return info
    sample = [p for p in catalog["path"].head(5) if Path(p).is_file()]
    headers = []
    for p in sample:
        try:
            headers.append(image_header_info(p))
        except CoolcoreError:
            continue
    instruments = {str(h["instrument"]) for h in headers if h.get("instrument")}
    info["instrument"] = instruments.pop() if len(instruments) == 1 else None  # INSTRUME
    if "exposure" in catalog or "background" in catalog:  # observations: one field in kpc
        field = float(cfg["preprocess"].get("field_kpc", DEFAULT_FIELD_KPC))
        info.update(kind="observations", pixel_kpc=field / crop, fov_kpc=field, bunit="count")
        return info
    pix = None
    if "pixel_kpc" in catalog:
        values = pd.to_numeric(catalog["pixel_kpc"], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            pix = float(np.median(values))
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
    from coolcore.train.protocol import load_data

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


def preprocess_meta(p: dict, log_range: list[float] | None) -> dict:
    """The ``preprocess`` section of ``model.json`` from a config's ``preprocess``."""
    size = p["size"] if p.get("size") is not None else p["crop"]
    return {
        "crop": int(p["crop"]),
        "size": p.get("size"),
        "input_size": int(size),
        "scaling": p["scaling"],
        "center": p.get("center", "image"),
        "field_kpc": float(p.get("field_kpc", DEFAULT_FIELD_KPC)),
        "log_range": log_range,
    }


def model_metadata(run: Path, record: dict, folds: list[int], weights: dict[str, str]) -> dict:
    """The content of ``model.json`` for ``folds`` of the cv run ``run`` (see the module
    docstring), less ``meta_sha256`` (:func:`meta_checksum`)."""
    cfg = record["config"]
    p = cfg["preprocess"]
    fold_info = {}
    for k in folds:
        fj = RunFolder(run).read_fold_info(k)
        if fj is not None:
            fold_info[str(k)] = {
                key: fj.get(key)
                for key in (
                    "best_epoch",
                    "best_val_macro_f1",
                    "epochs",
                    "temperature",
                    "tcool_sigma_scale",
                )
            }
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class_names": list(CLASS_NAMES),
        "variant": cfg["model"]["variant"],
        "combine": cfg["model"]["combine"],
        "network": network_config(cfg),
        "preprocess": preprocess_meta(p, _log_range(record, cfg)),
        "training_data": _training_data_info(record, cfg),
        "ensemble": "mean of the fold models' probabilities (logits / fold temperature); "
        "cooling time: their Gaussians (sigma times the fold's tcool_sigma_scale) mixed",
        "folds": folds,
        "fold_info": fold_info,
        "weights": weights,
        "config": cfg,
        "versions": {"training": record.get("versions"), "export": versions()},
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
        ``run`` is not a finished cv run (or ``fold`` not a finished fold of it),
        ``fold`` does not exist, ``out`` exists without ``force`` or is not a model
        folder, ``out`` is, contains or lies inside the run or its data.
    coolcore.errors.DataError
        A checkpoint is missing or unreadable.
    """
    from safetensors.torch import save_file

    run = Path(run)
    folder = RunFolder(run)
    record = folder.finished_cv_record(fold=fold)
    out = Path(out)
    check_output_apart(out, [run, record.get("data")])
    folds = _folds_to_export(folder, record, fold)
    if os.path.lexists(out):
        if not force:
            raise UsageError(f"{out}: already exists; pass --force to replace it")
        check_replaceable(out, markers=[MODEL_FILE], what="model folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    mode = 0o666 & ~_umask()  # as model.json: readable by the folder's other users
    try:
        weights = {}
        for k in folds:
            state, _ = state_from_checkpoint(folder.checkpoint(k))
            name = f"fold_{k:02d}.safetensors"
            save_file(state, str(tmp / name), metadata={"format": "pt", "fold": str(k)})
            os.chmod(tmp / name, mode)
            weights[name] = file_sha256(tmp / name)
        meta = json.loads(json.dumps(model_metadata(run, record, folds, weights), default=str))
        meta[META_CHECKSUM_KEY] = meta_checksum(meta)
        (tmp / MODEL_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if os.path.lexists(out):
            shutil.rmtree(out) if out.is_dir() and not out.is_symlink() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _folds_to_export(folder: RunFolder, record: dict, fold: int | None) -> list[int]:
    if fold is None:
        return list(range(int(record["config"]["cv"]["folds"])))
    dirs = folder.fold_dirs()
    if fold not in dirs:
        raise UsageError(
            f"--fold {fold}: {folder.path} has folds {', '.join(map(str, sorted(dirs))) or 'none'}"
        )
    return [fold]
