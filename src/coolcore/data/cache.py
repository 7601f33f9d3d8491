"""The preprocessed data set of a catalogue, through an on-disk cache.

:func:`load_dataset` reads a catalogue, preprocesses every map once (the pure
steps of :mod:`coolcore.data.transforms`, on worker threads) and keeps the result
in a cache file keyed by the preprocessing parameters and by every file's
relative path, size and SHA-256 content hash, so a stale cache is never used.

Where the cache lives
---------------------
Never in the data folder: a sample on a read-only archive or a shared disk is
used as it is, and its folder is left byte-for-byte unchanged.  The cache folder
is ``cache_dir`` when given (the ``--cache-dir`` option), else
:func:`default_cache_dir`: ``$COOLCORE_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/coolcore``, else ``~/.cache/coolcore``.  Files are named
``<first 24 hex digits of the key>.npz`` and written atomically (a temporary
name, then a rename), so two processes never see half a file.  If the folder
cannot be written, a warning is issued and the data set is used without a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore.data import images as cimages
from coolcore.data.catalog import read_catalog, resolve_data
from coolcore.data.inputs import catalog_inputs, observation_field
from coolcore.data.transforms import (
    PreprocessConfig,
    crop_image,
    normalise_crops,
    rescale_to_range,
)
from coolcore.errors import UsageError

__all__ = [
    "CACHE_ENV",
    "CACHE_FORMAT_VERSION",
    "Dataset",
    "dataset_cache_key",
    "default_cache_dir",
    "load_dataset",
]

CACHE_FORMAT_VERSION = 2
"""Bumped whenever the preprocessing or the cache layout changes; part of the cache key."""

CACHE_ENV = "COOLCORE_CACHE_DIR"
"""Environment variable naming the cache folder (it wins over ``XDG_CACHE_HOME``)."""

_CHUNK = 64  # images preprocessed together (bounds the float64 working memory)


def default_cache_dir() -> Path:
    """The user's cache folder for coolcore.

    Returns
    -------
    Path
        ``$COOLCORE_CACHE_DIR`` if set and not empty; else
        ``$XDG_CACHE_HOME/coolcore`` if ``XDG_CACHE_HOME`` is an absolute path
        (the XDG base-directory rule: a relative one is ignored); else
        ``~/.cache/coolcore``.  The folder is not created here.
    """
    own = os.environ.get(CACHE_ENV, "")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "coolcore"
    return Path.home() / ".cache" / "coolcore"


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symbolic links resolved)."""
    path = Path(os.path.abspath(path))
    try:
        path = path.resolve()
    except (OSError, RuntimeError):
        pass
    return path == folder or folder in path.parents


def _cache_file(cache_dir: str | Path | None, data_folder: Path, key: str) -> Path | None:
    """The cache file of ``key``; None (with a warning) when the default folder is in the data.

    A ``cache_dir`` given explicitly that is, or lies inside, the data folder is
    refused (:class:`~coolcore.errors.UsageError`).
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if _inside(folder, data_folder):
        if cache_dir is not None:
            raise UsageError(
                f"{cache_dir}: the cache folder lies inside the data folder {data_folder}; "
                "caches never go into the data (choose another cache folder)"
            )
        warnings.warn(
            f"{folder}: the cache folder lies inside the data folder {data_folder}; "
            f"continuing without the preprocessing cache (set {CACHE_ENV} elsewhere)",
            stacklevel=3,
        )
        return None
    return folder / f"{key[:24]}.npz"


@dataclass
class Dataset:
    """Preprocessed images of a catalogue, in catalogue order.

    Attributes
    ----------
    images : numpy.ndarray
        (N, S, S) float32 in [0, 1], C-contiguous.
    labels : numpy.ndarray
        (N,) int64 class index into ``CLASS_NAMES``; -1 where unknown.
    image_ids, cluster_ids : numpy.ndarray
        (N,) strings.
    catalog : pandas.DataFrame
        As returned by :func:`coolcore.data.catalog.read_catalog`.
    cfg : PreprocessConfig
    cache_key : str
        SHA-256 hex digest identifying the inputs and parameters.
    log_range : (float, float) or None
        Range of log values used for ``scaling="dataset"`` (None for ``"image"``).
    full_images : numpy.ndarray or None
        (N, crop, crop) float32: the maps before the resize to ``size``, only when
        asked for (``load_dataset(full_resolution=True)``); ``images`` itself (not a
        copy) when they are not resized.
    """

    images: np.ndarray
    labels: np.ndarray
    image_ids: np.ndarray
    cluster_ids: np.ndarray
    catalog: pd.DataFrame
    cfg: PreprocessConfig
    cache_key: str
    log_range: tuple[float, float] | None = None
    cache_path: Path | None = field(default=None, repr=False)
    full_images: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.images)


def _file_digest(path: str) -> tuple[int, str]:
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return os.path.getsize(path), digest


def dataset_cache_key(
    catalog: pd.DataFrame,
    catalog_dir: Path,
    cfg: PreprocessConfig,
    *,
    hdu: int | str | None = None,
    plane: int | None = None,
    workers: int = 1,
) -> str:
    """SHA-256 of the cache-format version, the parameters and every file.

    Each file enters, in catalogue order, as its path relative to the catalogue's
    folder, its size in bytes and the SHA-256 of its content; the exposure and
    background maps of observations follow the maps, and their redshifts and
    centres enter as given.
    """
    paths = catalog["path"].tolist()
    for column in ("exposure_path", "background_path"):
        if column in catalog:
            paths += [p for p in catalog[column] if p]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(_file_digest, paths))
    files = [
        [os.path.relpath(p, catalog_dir), size, digest]
        for p, (size, digest) in zip(paths, digests, strict=True)
    ]
    content = {
        "version": CACHE_FORMAT_VERSION,
        "cfg": cfg.to_dict(),
        "hdu": hdu,
        "plane": plane,
        "files": files,
        "observation": {
            c: [None if pd.isna(v) else float(v) for v in catalog[c]]
            for c in ("redshift", "ra", "dec")
            if c in catalog
        },
    }
    if cfg.scaling == "dataset":  # observations enter as their distance-free brightness
        content["brightness"] = "surface_luminosity"
    blob = json.dumps(content, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_cache(
    path: Path, key: str, n: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        if not path.is_file():
            return None
    except OSError:  # a folder we may not look into: no cache
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            images, lmin, lmax = z["images"], z["log_min"], z["log_max"]
    except Exception as exc:
        warnings.warn(f"{path}: unreadable cache ({exc}); rebuilding it", stacklevel=3)
        return None
    if images.shape != (n, size, size) or images.dtype != np.float32:
        return None
    return np.ascontiguousarray(images), lmin, lmax


def _save_cache(
    path: Path, key: str, images: np.ndarray, lmin: np.ndarray, lmax: np.ndarray
) -> bool:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, images=images, log_min=lmin, log_max=lmax, key=np.array(key))
        os.replace(tmp, path)
        return True
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(
            f"{path.parent}: cannot write the preprocessing cache ({exc.strerror or exc}); "
            "continuing without it",
            stacklevel=3,
        )
        return False


def _compute(
    catalog: pd.DataFrame,
    cfg: PreprocessConfig,
    *,
    hdu: int | str | None,
    plane: int | None,
    progress: bool,
    workers: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read and preprocess every image (per-image normalised) in chunks."""
    from tqdm.auto import tqdm

    paths = catalog["path"].tolist()
    n, s = len(paths), cfg.output_size
    images = np.empty((n, s, s), dtype=np.float32)
    lmin = np.empty(n)
    lmax = np.empty(n)
    items = catalog_inputs(catalog)

    def read_crop(i: int) -> np.ndarray:
        if items[i].is_observation:  # the path of coolcore.data.observation
            f = observation_field(items[i], field_kpc=cfg.field_kpc, grid=cfg.crop)
            return f.surface_luminosity() if cfg.scaling == "dataset" else f.image
        image = cimages.read_image(paths[i], hdu=hdu, plane=plane)
        return np.array(crop_image(image, cfg.crop, cfg.center, paths[i]))

    from astropy.utils.exceptions import AstropyWarning

    with (
        warnings.catch_warnings(),  # on this thread: see coolcore.data.formats.quiet_astropy
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=n, desc="preprocessing", unit="img", disable=None if progress else True) as bar,
    ):
        warnings.simplefilter("ignore", AstropyWarning)
        for start in range(0, n, _CHUNK):
            chunk = paths[start : start + _CHUNK]
            crops = np.stack(list(pool.map(read_crop, range(start, start + len(chunk)))))
            out, a, b = normalise_crops(crops, cfg, chunk, None)
            stop = start + len(chunk)
            images[start:stop], lmin[start:stop], lmax[start:stop] = out, a, b
            bar.update(len(chunk))
    return images, lmin, lmax


def load_dataset(
    catalog_path: str | Path,
    cfg: PreprocessConfig,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    workers: int | None = None,
    hdu: int | str | None = None,
    plane: int | None = None,
    require_labels: bool = True,
    use_cache: bool = True,
    full_resolution: bool = False,
) -> Dataset:
    """Read a catalogue and preprocess all its images, through a cache.

    Parameters
    ----------
    catalog_path : str or Path
        Catalogue CSV, or a folder holding ``catalog.csv``.
    cfg : PreprocessConfig
    cache_dir : str or Path, optional
        Folder of cache files (default :func:`default_cache_dir`); never inside
        the catalogue's folder (:class:`~coolcore.errors.UsageError`).  If it
        cannot be written, a warning is issued and nothing is cached.
    progress : bool
        Show a tqdm progress bar while preprocessing.
    workers : int, optional
        Threads reading and hashing files (default ``min(4, cpu_count)``).
    hdu, plane
        Passed to :func:`coolcore.data.images.read_image` for every file.
    require_labels : bool
        Passed to :func:`coolcore.data.catalog.read_catalog` (False for prediction).
    use_cache : bool
        False neither reads nor writes the cache.
    full_resolution : bool
        Also keep the maps before the resize (:attr:`Dataset.full_images`, which
        ``model.crop_source=full`` crops from): where ``cfg.size`` resizes them, the
        data set of ``cfg`` without ``size``, through its own cache file.

    Returns
    -------
    Dataset
    """
    catalog_path = resolve_data(catalog_path)
    catalog = read_catalog(catalog_path, require_labels=require_labels)
    folder = catalog_path.resolve().parent
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    key = dataset_cache_key(catalog, folder, cfg, hdu=hdu, plane=plane, workers=workers)
    cache_path = _cache_file(cache_dir, folder, key) if use_cache else None
    n, s = len(catalog), cfg.output_size

    cached = _load_cache(cache_path, key, n, s) if cache_path is not None else None
    if cached is not None:
        images, lmin, lmax = cached
    else:
        images, lmin, lmax = _compute(
            catalog, cfg, hdu=hdu, plane=plane, progress=progress, workers=workers
        )
        if cfg.scaling == "dataset":
            rescale_to_range(images, lmin, lmax, (float(lmin.min()), float(lmax.max())))
        if cache_path is not None and not _save_cache(cache_path, key, images, lmin, lmax):
            cache_path = None
    log_range = (float(lmin.min()), float(lmax.max())) if cfg.scaling == "dataset" else None
    images = np.ascontiguousarray(images)
    full = images if full_resolution else None
    if full_resolution and cfg.size is not None and cfg.size != cfg.crop:
        options = dict(cache_dir=cache_dir, progress=progress, workers=workers, hdu=hdu)
        options.update(plane=plane, require_labels=require_labels, use_cache=use_cache)
        full = load_dataset(catalog_path, replace(cfg, size=None), **options).images
    return Dataset(
        images=images,
        labels=catalog["y"].to_numpy(dtype=np.int64),
        image_ids=catalog["image_id"].to_numpy(dtype=str),
        cluster_ids=catalog["cluster_id"].to_numpy(dtype=str),
        catalog=catalog,
        cfg=cfg,
        cache_key=key,
        log_range=log_range,
        cache_path=cache_path,
        full_images=full,
    )
