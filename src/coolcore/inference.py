"""Trained models on new maps: export a cv run, load it safely, predict with the ensemble.

The model folder
----------------
``coolcore export RUN --out MODEL_DIR`` (:func:`export_model`) writes::

    MODEL_DIR/model.json           what the model is (below)
    MODEL_DIR/fold_00.safetensors  one network state dict per fold of the cv run
    MODEL_DIR/fold_01.safetensors  ...

``model.json`` holds ``format`` / ``format_version``, ``class_names``, the
``variant`` and mask ``combine`` mode, ``network`` (the constructor arguments of
:class:`~coolcore.model.MultiBranchAttentionNet`), ``preprocess`` (``crop``,
``size``, ``input_size``, ``scaling``, ``center`` and, for data-set scaling, the
training data's ``log_range``), ``training_data`` (path, checksum, image count,
the median ``pixel_kpc`` of the catalogue, the field of view ``fov_kpc = crop *
pixel_kpc``, the maps' ``BUNIT``), the full run ``config``, the ``folds``
exported, ``weights`` (file name -> SHA-256), ``versions`` (of the training run
and of the export) and ``source_run``.

Loading (:func:`load_model`) never unpickles code: the weights are safetensors,
and a cv run folder is read with ``torch.load(..., weights_only=True)``.  Every
weight file's SHA-256 is checked against ``model.json`` before it is read, so a
truncated, corrupt or modified file is refused with a one-line
:class:`~coolcore.errors.DataError` naming it.

Bringing a map to the model
---------------------------
The network was trained on ``crop`` x ``crop``-pixel central windows of maps
with pixel scale ``p_train`` kpc (field of view ``F = crop * p_train`` kpc),
resized to ``input_size``.  For a new map of pixel scale ``p`` the central
window of ``N`` x ``N`` map pixels is cut out, preprocessed like the training
maps (log, min-max) and resized to ``input_size``:

1. ``crop_px=N`` (``--crop-px``): ``N`` as given.
2. ``crop_kpc=X`` (``--crop-kpc``): ``N = round(X / p)``; needs ``p``.
3. Otherwise, when both ``p`` and ``p_train`` are known: ``N = round(F / p)``,
   the training field of view; else ``N = crop`` (the training window in pixels).

``p`` comes from, in this order: ``pixel_kpc=`` (``--pixel-kpc``), the
catalogue's ``pixel_kpc`` column, the header keyword ``PIXKPC``, or a FITS
celestial WCS together with a ``REDSHIFT`` (or ``Z``) header keyword, converted
with astropy's Planck18 cosmology.  A map whose ``p`` differs from ``p_train``
by more than 20 % gets a one-line warning: the resize matches the field of view,
not the resolution the network learned from.  A window larger than the map is
an error for that map.

Predictions
-----------
Each fold model gives class probabilities; the ensemble's are their mean.
``predicted`` is the arg-max of the mean, ``ordinal_score = sum_k k p_k`` the
expected class index (0 CC, 1 WCC, 2 NCC), ``spread`` the standard deviation
over the fold models (``ddof=0``) of the probability of the predicted class
(0 for a single model).  The box ``box_x0, box_y0, box_x1, box_y1`` is the
auxiliary branch's crop box in pixels of the *model input*
(``input_size`` x ``input_size``; x the column, y the row, both ends inclusive),
averaged over the fold models; ``baseline`` models give the whole input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES, __version__
from coolcore.errors import CoolcoreError, DataError, ImageError, UsageError

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FILE",
    "PIXEL_SCALE_TOLERANCE",
    "PREDICTION_COLUMNS",
    "MapInput",
    "TrainedModel",
    "collect_inputs",
    "export_model",
    "input_window_px",
    "load_model",
    "map_pixel_kpc",
]

FORMAT_VERSION = 1
"""Version of the model-folder layout this coolcore writes and reads."""

MODEL_FILE = "model.json"
FORMAT_NAME = "coolcore-model"
PIXEL_SCALE_TOLERANCE = 0.2
"""Relative pixel-scale difference to the training data above which a map is warned about."""

PREDICTION_COLUMNS: tuple[str, ...] = (
    "file",
    "image_id",
    *(f"p_{c}" for c in CLASS_NAMES),
    "predicted",
    "ordinal_score",
    "spread",
    "box_x0",
    "box_y0",
    "box_x1",
    "box_y1",
    "error",
)
"""Columns of ``coolcore predict``'s CSV, in order."""

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
_REDSHIFT_KEYS = ("REDSHIFT", "Z", "Z_CL", "ZCLUST")


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
    from coolcore.runs import versions

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
    from coolcore import io as cio

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
    from coolcore.experiments import load_data

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


# --------------------------------------------------------------------------- loading
def _build_net(network: dict, state: dict, source: Path):
    import torch

    from coolcore.model import MultiBranchAttentionNet

    config = {k: v for k, v in network.items() if k in MultiBranchAttentionNet._CONFIG_KEYS}
    config["weights"] = "none"  # the trained weights come from the state dict
    try:
        # built on the meta device: no time spent on a random initialisation that
        # the state dict replaces at once (assign=True adopts its tensors)
        with torch.device("meta"):
            net = MultiBranchAttentionNet.from_config(config)
    except CoolcoreError as exc:
        raise DataError(f"{source}: bad network description ({exc})") from None
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())[:200]
        raise DataError(
            f"{source}: weights do not fit the network in {MODEL_FILE} ({text})"
        ) from None
    return net.eval()


def _load_weight_file(path: Path, expected_sha: str | None) -> dict:
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(f"{path}: weight file missing (listed in {MODEL_FILE})")
    if expected_sha is not None:
        actual = _sha256(path)
        if actual != expected_sha:
            raise DataError(
                f"{path}: SHA-256 {actual[:12]}... does not match {MODEL_FILE} "
                f"({str(expected_sha)[:12]}...): the file is truncated, corrupt or was modified"
            )
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise DataError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None


def _check_meta(meta: dict, path: Path) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"{path}: not a coolcore model description (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version != FORMAT_VERSION:
        raise DataError(
            f"{path}: model format version {version!r} is not supported by coolcore "
            f"{__version__} (it reads version {FORMAT_VERSION}); use the coolcore that wrote it"
        )
    for key in ("network", "preprocess", "weights", "folds", "class_names"):
        if key not in meta:
            raise DataError(f"{path}: missing key '{key}'")
    if list(meta["class_names"]) != list(CLASS_NAMES):
        raise DataError(
            f"{path}: class names {meta['class_names']} differ from {list(CLASS_NAMES)}"
        )


def load_model(path: str | os.PathLike, *, device: str | None = None) -> TrainedModel:
    """Load a model folder (or use a cv run folder directly) for prediction.

    Parameters
    ----------
    path : path
        A folder written by :func:`export_model` (``model.json`` + safetensors),
        or a finished cv run folder (its fold checkpoints, read with
        ``weights_only=True``, form the ensemble).
    device : str, optional
        ``"cpu"``, ``"cuda"`` ... (default: CUDA when available).

    Returns
    -------
    TrainedModel

    Raises
    ------
    coolcore.errors.UsageError
        ``path`` is neither a model folder nor a cv run.
    coolcore.errors.DataError
        ``model.json`` unreadable or of an unknown format version; a weight file
        missing, truncated, corrupt or modified (SHA-256 mismatch).

    Examples
    --------
    >>> import coolcore
    >>> model = coolcore.load_model("model")            # doctest: +SKIP
    >>> model.predict(["maps/a1795.fits"])              # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such model folder")
    if path.is_dir() and not (path / MODEL_FILE).is_file() and (path / "run.json").is_file():
        return _model_from_run(path, device=device)
    if not path.is_dir():
        raise UsageError(
            f"{path}: not a model folder (MODEL_DIR is the folder `coolcore export` writes)"
        )
    meta_path = path / MODEL_FILE
    if not meta_path.is_file():
        raise UsageError(
            f"{path}: not a model folder (no {MODEL_FILE}); make one with "
            f"`coolcore export RUN --out {path}`"
        )
    meta = _read_json(meta_path)
    _check_meta(meta, meta_path)
    nets = []
    for k in meta["folds"]:
        name = f"fold_{int(k):02d}.safetensors"
        if name not in meta["weights"]:
            raise DataError(f"{meta_path}: no SHA-256 listed for {name}")
        file = path / name
        state = _load_weight_file(file, meta["weights"][name])
        nets.append(_build_net(meta["network"], state, file))
    return TrainedModel(nets, meta, path, device=device)


def _model_from_run(run: Path, *, device: str | None) -> TrainedModel:
    record = _cv_record(run)
    dirs = _fold_dirs(run)
    n_folds = int(record["config"]["cv"]["folds"])
    folds = [k for k in range(n_folds) if k in dirs]
    if not folds:
        raise DataError(f"{run}: no fold folders with checkpoints")
    nets = []
    for k in folds:
        ckpt = _checkpoint_of(dirs[k])
        state, cfg = _state_from_checkpoint(ckpt)
        nets.append(_build_net(_network_config(cfg), state, ckpt))
    meta = _metadata(run, record, folds, weights={})
    return TrainedModel(nets, meta, run, device=device)


# --------------------------------------------------------------------------- inputs
@dataclass
class MapInput:
    """One map to classify: a file, or an array already in memory.

    Attributes
    ----------
    file : str
        The path as given ("" for an array).
    image_id : str
        Identifier in the output (catalogue ``image_id``, else the file name without
        its extension, else ``image_<i>``).
    array : numpy.ndarray or None
        The map, when it is not read from ``file``.
    pixel_kpc : float or None
        Pixel scale from a catalogue column or the caller.
    cluster_id, label : str or None
        From a catalogue, for metrics.
    """

    file: str
    image_id: str
    array: np.ndarray | None = None
    pixel_kpc: float | None = None
    cluster_id: str | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        return self.file or self.image_id


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".fz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return Path(name).stem if "." in name else name


def _folder_maps(folder: Path) -> list[Path]:
    from coolcore.io import IMAGE_SUFFIXES

    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(root) / f)
    return found


def collect_inputs(
    paths: Sequence[str | os.PathLike] = (), catalog: str | os.PathLike | None = None
) -> list[MapInput]:
    """The maps named on the command line: files, folders (searched recursively) and a catalogue.

    A path that does not exist is kept: it becomes an error row when predicted.
    A folder contributes every file with a known image extension
    (:data:`coolcore.io.IMAGE_SUFFIXES`), sorted; hidden files and folders are skipped.

    Raises
    ------
    coolcore.errors.UsageError
        Nothing to predict, or a folder without maps.
    coolcore.errors.CatalogError
        An unreadable catalogue.
    """
    from coolcore.io import read_catalog

    items: list[MapInput] = []
    if catalog is not None:
        df = read_catalog(catalog, require_labels=False, check_files=False)
        pix = (
            pd.to_numeric(df["pixel_kpc"], errors="coerce").to_numpy(dtype=float)
            if "pixel_kpc" in df
            else np.full(len(df), np.nan)
        )
        for row, p in zip(df.itertuples(index=False), pix, strict=True):
            items.append(
                MapInput(
                    file=str(row.path),
                    image_id=str(row.image_id),
                    pixel_kpc=float(p) if np.isfinite(p) and p > 0 else None,
                    cluster_id=str(row.cluster_id),
                    label=row.label if isinstance(row.label, str) else None,
                )
            )
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            maps = _folder_maps(p)
            if not maps:
                raise UsageError(
                    f"{p}: folder holds no maps (known extensions: .fits, .npy, .h5, .png ...)"
                )
            items.extend(MapInput(file=str(m), image_id=_stem(m)) for m in maps)
        else:
            items.append(MapInput(file=str(p), image_id=_stem(p)))
    if not items:
        raise UsageError("no maps given: pass files, folders or --catalog CSV")
    return items


def _as_inputs(images_or_paths: Any, pixel_kpc: float | None) -> list[MapInput]:
    """Normalise the Python API's argument to MapInput records."""
    if isinstance(images_or_paths, MapInput):
        return [images_or_paths]
    if isinstance(images_or_paths, str | os.PathLike):
        p = Path(images_or_paths)
        return collect_inputs([p]) if p.is_dir() else [MapInput(str(p), _stem(p))]
    if isinstance(images_or_paths, np.ndarray):
        arr = images_or_paths
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise UsageError(
                f"images: expected a 2-D map or an (N, H, W) stack, got shape {arr.shape}"
            )
        return [MapInput("", f"image_{i}", array=a, pixel_kpc=pixel_kpc) for i, a in enumerate(arr)]
    out: list[MapInput] = []
    for i, item in enumerate(images_or_paths):
        if isinstance(item, MapInput):
            out.append(item)
        elif isinstance(item, str | os.PathLike):
            p = Path(item)
            out.extend(collect_inputs([p]) if p.is_dir() else [MapInput(str(p), _stem(p))])
        else:
            arr = np.asarray(item)
            out.append(MapInput("", f"image_{i}", array=arr, pixel_kpc=pixel_kpc))
    return out


# ------------------------------------------------------------------ pixel scale
def _wcs_pixel_kpc(path: Path) -> float | None:
    """Pixel scale in kpc from a FITS celestial WCS and a redshift keyword (Planck18)."""
    from astropy.io import fits

    name = path.name.lower()
    if not any(s in name for s in (".fits", ".fit", ".fts", ".fz")):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with fits.open(path, ignore_missing_end=True, memmap=False) as hdul:
                hdul.verify("silentfix+ignore")
                hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2), None)
                if hdu is None:
                    return None
                header = hdu.header.copy()
        except Exception:
            return None
        z = None
        for key in _REDSHIFT_KEYS:
            try:
                value = float(header[key])
            except (KeyError, TypeError, ValueError):
                continue
            if np.isfinite(value) and value > 0:
                z = value
                break
        if z is None:
            return None
        try:
            from astropy import units as u
            from astropy.cosmology import Planck18
            from astropy.wcs import WCS
            from astropy.wcs.utils import proj_plane_pixel_scales

            wcs = WCS(header).celestial
            if wcs.naxis != 2:
                return None
            scale_deg = float(np.mean(proj_plane_pixel_scales(wcs)))
            kpc_per_deg = Planck18.kpc_proper_per_arcmin(z).to(u.kpc / u.deg).value
        except Exception:
            return None
    value = scale_deg * kpc_per_deg
    return value if np.isfinite(value) and value > 0 else None


def map_pixel_kpc(path: str | os.PathLike) -> float | None:
    """A map file's pixel scale in kpc, from its header: ``PIXKPC``, else WCS + redshift.

    The WCS route takes the mean of the two celestial axes' pixel scales
    (degrees) and converts with :meth:`astropy.cosmology.Planck18.kpc_proper_per_arcmin`
    at the header's ``REDSHIFT`` (or ``Z``, ``Z_CL``, ``ZCLUST``).  None when
    neither is there.
    """
    return _header_scale_and_unit(Path(path))[0]


def _header_scale_and_unit(path: Path) -> tuple[float | None, str | None]:
    """Pixel scale in kpc (see :func:`map_pixel_kpc`) and ``BUNIT`` of a map file's header."""
    from coolcore.io import image_header_info

    try:
        info = image_header_info(path)
    except CoolcoreError:
        return None, None
    unit = info.get("bunit")
    if info.get("pixel_kpc"):
        return float(info["pixel_kpc"]), unit
    return _wcs_pixel_kpc(path), unit


def input_window_px(
    shape: tuple[int, int],
    map_pixel_kpc: float | None,
    *,
    model_crop_px: int,
    model_pixel_kpc: float | None,
    crop_px: int | None = None,
    crop_kpc: float | None = None,
    name: str = "",
) -> int:
    """Side ``N`` of the central window of a map that is brought to the model input.

    See the module docstring for the rules.

    Parameters
    ----------
    shape : (int, int)
        The map's (rows, columns).
    map_pixel_kpc : float or None
        The map's pixel scale in kpc.
    model_crop_px, model_pixel_kpc
        The training window in pixels and the training pixel scale (kpc, or None).
    crop_px, crop_kpc
        The user's choice (at most one).

    Raises
    ------
    coolcore.errors.ImageError
        ``crop_kpc`` without a pixel scale, or a window larger than the map.
    """
    prefix = f"{name}: " if name else ""
    if crop_px is not None and crop_kpc is not None:
        raise UsageError("--crop-px and --crop-kpc exclude each other: pick one")
    if crop_px is not None:
        n, how = int(crop_px), f"--crop-px {crop_px}"
    elif crop_kpc is not None:
        if not map_pixel_kpc:
            raise ImageError(
                f"{prefix}--crop-kpc needs the map's pixel scale: give --pixel-kpc, a catalogue "
                "pixel_kpc column or the header keyword PIXKPC"
            )
        n, how = int(round(crop_kpc / map_pixel_kpc)), f"--crop-kpc {crop_kpc:g}"
    elif map_pixel_kpc and model_pixel_kpc:
        fov = model_crop_px * model_pixel_kpc
        n = int(round(fov / map_pixel_kpc))
        how = f"the training field of view {fov:g} kpc at {map_pixel_kpc:g} kpc/pixel"
    else:
        n, how = int(model_crop_px), "the training window in pixels"
    if n < 2:
        raise ImageError(f"{prefix}the window of {n} px ({how}) is too small")
    if n > min(shape):
        raise ImageError(
            f"{prefix}map of {shape[0]} x {shape[1]} px is smaller than the {n} px window "
            f"({how}); pass --crop-px N with N <= {min(shape)}"
        )
    return n


# --------------------------------------------------------------------------- the model
@dataclass
class _Prepared:
    """A batch ready for the network: which inputs, their tensors, and the failures."""

    ok: list[int]
    images: np.ndarray  # (n_ok, S, S) float32
    errors: dict[int, str]
    warnings: list[str]


class TrainedModel:
    """A trained ensemble (one network per fold) with its preprocessing; see :func:`load_model`.

    Attributes
    ----------
    meta : dict
        The content of ``model.json``.
    nets : list of MultiBranchAttentionNet
        The fold models, in eval mode.
    path : Path
        The folder it was loaded from.
    """

    def __init__(self, nets: list, meta: dict, path: Path, *, device: str | None = None) -> None:
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.nets = [n.to(self.device).eval() for n in nets]
        if self.device.type == "cpu":
            self.nets = [n.to_channels_last() for n in self.nets]
        self.meta = meta
        self.path = Path(path)

    # ---------------------------------------------------------------- properties
    @property
    def variant(self) -> str:
        return self.meta["variant"]

    @property
    def folds(self) -> list[int]:
        return [int(k) for k in self.meta["folds"]]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @property
    def input_size(self) -> int:
        return int(self.meta["preprocess"]["input_size"])

    @property
    def crop_px(self) -> int:
        """The training window side in map pixels."""
        return int(self.meta["preprocess"]["crop"])

    @property
    def pixel_kpc(self) -> float | None:
        """The training maps' pixel scale (median over the catalogue), if known."""
        return self.meta.get("training_data", {}).get("pixel_kpc")

    @property
    def fov_kpc(self) -> float | None:
        """The training window's field of view in kpc, if known."""
        return self.meta.get("training_data", {}).get("fov_kpc")

    def __repr__(self) -> str:
        pix = f", {self.pixel_kpc:g} kpc/px" if self.pixel_kpc else ""
        return (
            f"TrainedModel({self.variant}, {len(self.nets)} fold model(s), "
            f"input {self.input_size} px from {self.crop_px} px{pix}, from {self.path})"
        )

    # ---------------------------------------------------------------- preparing
    def _read(
        self, item: MapInput, pixel_kpc: float | None
    ) -> tuple[np.ndarray, float | None, str | None]:
        """The map, its pixel scale in kpc and its unit (None where unknown)."""
        from coolcore.io import read_image

        if item.array is not None:
            arr = np.asarray(item.array)
            if arr.ndim != 2:
                raise ImageError(f"{item.name}: expected a 2-D map, got shape {arr.shape}")
            if arr.dtype.kind not in "iuf":
                raise ImageError(f"{item.name}: non-numeric data (dtype {arr.dtype})")
            return np.asarray(arr, dtype=np.float64), pixel_kpc or item.pixel_kpc, None
        arr = read_image(item.file)
        header_scale, unit = _header_scale_and_unit(Path(item.file))
        return arr, pixel_kpc or item.pixel_kpc or header_scale, unit

    def _warnings(self, item: MapInput, scale: float | None, unit: str | None) -> list[str]:
        """One-line warnings: pixel scale off by more than 20 %; other units under data-set scaling."""
        out = []
        ref = self.pixel_kpc
        if scale and ref and abs(scale - ref) / ref > PIXEL_SCALE_TOLERANCE:
            out.append(
                f"{item.name}: pixel scale {scale:.4g} kpc differs from the training maps' "
                f"{ref:.4g} kpc by {100 * abs(scale - ref) / ref:.0f}% "
                f"(> {100 * PIXEL_SCALE_TOLERANCE:.0f}%); predictions may be unreliable"
            )
        train_unit = self.meta.get("training_data", {}).get("bunit")
        if (
            self.meta["preprocess"]["scaling"] == "dataset"
            and unit
            and train_unit
            and unit.strip().lower() != train_unit.strip().lower()
        ):
            out.append(
                f"{item.name}: unit '{unit}' differs from the training maps' '{train_unit}'; "
                "this model scales all maps with one range of log values, so units matter"
            )
        return out

    def prepare(
        self,
        items: Sequence[MapInput],
        *,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
    ) -> _Prepared:
        """Read and preprocess maps into the model's input; failures are collected, not raised."""
        from coolcore.preprocess import PreprocessConfig, preprocess_batch

        p = self.meta["preprocess"]
        log_range = tuple(p["log_range"]) if p.get("log_range") else None
        errors: dict[int, str] = {}
        notes: list[str] = []
        arrays: dict[int, np.ndarray] = {}
        windows: dict[int, int] = {}
        for i, item in enumerate(items):
            try:
                arr, scale, unit = self._read(item, pixel_kpc)
                windows[i] = input_window_px(
                    arr.shape,
                    scale,
                    model_crop_px=self.crop_px,
                    model_pixel_kpc=self.pixel_kpc,
                    crop_px=crop_px,
                    crop_kpc=crop_kpc,
                    name=item.name,
                )
                arrays[i] = arr
                notes.extend(self._warnings(item, scale, unit))
            except UsageError:
                raise
            except CoolcoreError as exc:
                errors[i] = str(exc)
        done: dict[int, np.ndarray] = {}
        for n in sorted(set(windows.values())):
            members = [i for i in windows if windows[i] == n]
            cfg = PreprocessConfig(
                crop=n, size=self.input_size, scaling=p["scaling"], center=p.get("center", "image")
            )
            try:
                out = preprocess_batch(
                    [arrays[i] for i in members], cfg, [items[i].name for i in members], log_range
                )
                done.update(zip(members, out, strict=True))
            except CoolcoreError:  # isolate the bad map(s)
                for i in members:
                    try:
                        done[i] = preprocess_batch([arrays[i]], cfg, [items[i].name], log_range)[0]
                    except CoolcoreError as exc:
                        errors[i] = str(exc)
        ok = sorted(done)
        s = self.input_size
        images = np.stack([done[i] for i in ok]) if ok else np.zeros((0, s, s), np.float32)
        return _Prepared(ok=ok, images=images, errors=errors, warnings=notes)

    # ---------------------------------------------------------------- inference
    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every fold model on a batch of preprocessed images.

        Parameters
        ----------
        images : numpy.ndarray
            (B, S, S) float32 in [0, 1].

        Returns
        -------
        probs : numpy.ndarray
            (F, B, 3) class probabilities of each fold model.
        boxes : numpy.ndarray
            (F, B, 4) crop boxes ``(x0, y0, x1, y1)`` in input pixels (the whole
            input for ``baseline``).
        """
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None].to(
            self.device
        )
        s = images.shape[-1]
        probs, boxes = [], []
        with torch.inference_mode():
            for net in self.nets:
                out = net(x)
                probs.append(out.logits.float().softmax(dim=1).cpu().double().numpy())
                if out.boxes is None:
                    b = np.tile(np.array([0, 0, s - 1, s - 1], dtype=np.float64), (len(images), 1))
                else:
                    b = out.boxes.cpu().double().numpy()
                boxes.append(b)
        return np.stack(probs), np.stack(boxes)

    def _iter_batches(
        self,
        items: Sequence[MapInput],
        *,
        batch_size: int,
        crop_px: int | None,
        crop_kpc: float | None,
        pixel_kpc: float | None,
        progress: bool,
        on_warning: Callable[[str], None] | None,
        on_error: Callable[[str], None] | None,
        desc: str,
        stacklevel: int = 5,
    ) -> Iterator[tuple[int, _Prepared, np.ndarray | None, np.ndarray | None]]:
        from tqdm import tqdm

        if batch_size < 1:
            raise UsageError(f"batch size {batch_size}: must be at least 1")
        if crop_px is not None and crop_px < 2:
            raise UsageError(f"--crop-px {crop_px}: must be at least 2")
        if crop_kpc is not None and not crop_kpc > 0:
            raise UsageError(f"--crop-kpc {crop_kpc}: must be a positive number of kpc")
        if pixel_kpc is not None and not pixel_kpc > 0:
            raise UsageError(f"--pixel-kpc {pixel_kpc}: must be a positive number of kpc")
        with tqdm(
            total=len(items), desc=desc, unit="map", disable=not progress, file=sys.stderr
        ) as bar:

            def say(fn: Callable[[str], None] | None, text: str) -> None:
                if fn is None:
                    warnings.warn(text, stacklevel=stacklevel)
                elif progress:
                    bar.clear()
                    fn(text)
                    bar.refresh()
                else:
                    fn(text)

            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                prep = self.prepare(chunk, crop_px=crop_px, crop_kpc=crop_kpc, pixel_kpc=pixel_kpc)
                for text in prep.warnings:
                    say(on_warning, text)
                for i in sorted(prep.errors):
                    if on_error is not None:
                        say(on_error, prep.errors[i])
                probs = boxes = None
                if prep.ok:
                    probs, boxes = self.forward(prep.images)
                yield start, prep, probs, boxes
                bar.update(len(chunk))

    def predict(
        self,
        images_or_paths: Any = None,
        *,
        catalog: str | os.PathLike | None = None,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
        batch_size: int = 32,
        progress: bool = False,
        output: str = "frame",
        errors: str = "row",
        on_warning: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> pd.DataFrame | list[dict]:
        """Classify maps with the ensemble.

        Parameters
        ----------
        images_or_paths
            A path (file or folder), a 2-D array, an (N, H, W) stack, or a
            sequence of paths / arrays / :class:`MapInput`.
        catalog : path, optional
            A catalogue CSV whose maps are predicted first (as ``--catalog``).
        crop_px, crop_kpc, pixel_kpc
            How a map is brought to the model input (see the module docstring).
            ``pixel_kpc`` overrides every map's own pixel scale.
        batch_size : int
            Maps per forward pass.
        progress : bool
            Show a tqdm progress bar on stderr.
        output : {"frame", "records"}
            A :class:`pandas.DataFrame` or a list of dicts.
        errors : {"row", "raise"}
            A map that cannot be read or used gives a row with ``error`` set
            (default), or raises its :class:`~coolcore.errors.ImageError`.
        on_warning, on_error : callable, optional
            Receive one-line messages (default: warnings go to :func:`warnings.warn`,
            errors only to the ``error`` column).

        Returns
        -------
        pandas.DataFrame or list of dict
            Columns :data:`PREDICTION_COLUMNS`, one row per map in input order;
            failed maps have NaN numbers, an empty ``predicted`` and the message in
            ``error`` (empty when fine).
        """
        if output not in ("frame", "records"):
            raise UsageError(f"output={output!r}: must be 'frame' or 'records'")
        if errors not in ("row", "raise"):
            raise UsageError(f"errors={errors!r}: must be 'row' or 'raise'")
        items = _as_inputs(images_or_paths, pixel_kpc) if images_or_paths is not None else []
        if catalog is not None:
            items = collect_inputs(catalog=catalog) + items
        if not items:
            raise UsageError("no maps given: pass paths, arrays or catalog=CSV")
        frame = self._predict_items(
            items,
            crop_px=crop_px,
            crop_kpc=crop_kpc,
            pixel_kpc=pixel_kpc,
            batch_size=batch_size,
            progress=progress,
            on_warning=on_warning,
            on_error=on_error,
            raise_errors=errors == "raise",
        )
        return frame if output == "frame" else frame.to_dict(orient="records")

    def evaluate(
        self, catalog: str | os.PathLike, **kwargs: Any
    ) -> tuple[pd.DataFrame, dict | None]:
        """Predict a labelled catalogue's maps and score them (``predict --catalog``).

        Parameters
        ----------
        catalog : path
            Catalogue CSV with ``label`` (or ``t_cool_gyr``) for some or all rows.
        **kwargs
            Options of :meth:`predict` (``crop_px``, ``pixel_kpc``, ``batch_size`` ...).

        Returns
        -------
        (pandas.DataFrame, dict or None)
            The prediction table, and :func:`coolcore.evaluation.compute_metrics`
            of the maps that have labels and were predicted (None if there are none).
        """
        items = collect_inputs(catalog=catalog)
        frame = self._predict_items(items, **kwargs)
        return frame, catalog_metrics(items, frame)

    def _predict_items(
        self,
        items: Sequence[MapInput],
        *,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
        batch_size: int = 32,
        progress: bool = False,
        on_warning: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        raise_errors: bool = False,
    ) -> pd.DataFrame:
        n = len(items)
        probs = np.full((n, len(CLASS_NAMES)), np.nan)
        spread = np.full(n, np.nan)
        boxes = np.full((n, 4), np.nan)
        error = [""] * n
        for start, prep, p, b in self._iter_batches(
            items,
            batch_size=batch_size,
            crop_px=crop_px,
            crop_kpc=crop_kpc,
            pixel_kpc=pixel_kpc,
            progress=progress,
            on_warning=on_warning,
            on_error=on_error,
            desc="predicting",
        ):
            if raise_errors and prep.errors:
                first = min(prep.errors)
                raise ImageError(prep.errors[first])
            for i, text in prep.errors.items():
                error[start + i] = text
            if p is None:
                continue
            rows = start + np.asarray(prep.ok)
            mean = p.mean(axis=0)  # (B, 3)
            pred = mean.argmax(axis=1)
            probs[rows] = mean
            spread[rows] = p[:, np.arange(len(pred)), pred].std(axis=0)
            boxes[rows] = b.mean(axis=0)
        return _frame(items, probs, spread, boxes, error)


def _frame(
    items: Sequence[MapInput],
    probs: np.ndarray,
    spread: np.ndarray,
    boxes: np.ndarray,
    error: list[str],
) -> pd.DataFrame:
    """The prediction table (columns :data:`PREDICTION_COLUMNS`)."""
    ok = np.isfinite(probs).all(axis=1)
    names = np.asarray(CLASS_NAMES, dtype=object)
    predicted = np.where(ok, names[np.where(ok, np.nan_to_num(probs).argmax(axis=1), 0)], "")
    data: dict[str, Any] = {
        "file": [it.file for it in items],
        "image_id": [it.image_id for it in items],
    }
    for c, name in enumerate(CLASS_NAMES):
        data[f"p_{name}"] = probs[:, c]
    data["predicted"] = predicted
    data["ordinal_score"] = probs @ np.arange(len(CLASS_NAMES), dtype=np.float64)
    data["spread"] = spread
    for j, key in enumerate(("box_x0", "box_y0", "box_x1", "box_y1")):
        data[key] = boxes[:, j]
    data["error"] = error
    return pd.DataFrame(data, columns=list(PREDICTION_COLUMNS))


def catalog_metrics(items: Sequence[MapInput], frame: pd.DataFrame) -> dict | None:
    """Metrics (:func:`coolcore.evaluation.compute_metrics`) of predicted maps that have labels."""
    from coolcore.evaluation import compute_metrics

    labels = [it.label for it in items]
    keep = np.array([lab in CLASS_NAMES for lab in labels]) & (frame["error"] == "").to_numpy()
    if not keep.any():
        return None
    table = frame.loc[keep, ["image_id", "predicted", *(f"p_{c}" for c in CLASS_NAMES)]].copy()
    table["label"] = np.asarray(labels, dtype=object)[keep]
    table["cluster_id"] = [
        it.cluster_id or it.image_id for it, k in zip(items, keep, strict=True) if k
    ]
    return compute_metrics(table)


def write_predictions(frame: pd.DataFrame, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the prediction table atomically; an existing ``out`` needs ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out}: already exists; pass --force to overwrite it")
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; --out names the CSV file to write")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UsageError(f"{out}: cannot write the file ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
