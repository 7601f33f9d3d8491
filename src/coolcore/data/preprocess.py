"""Preprocessing of X-ray maps (METHOD.md, "Preprocessing") and the cached dataset.

Per image, in this order:

1. Non-finite pixels (NaN, +-inf) are replaced by the floor of step 3, i.e. they
   become the dimmest valid pixel; an image without any finite positive pixel is
   rejected (:class:`~coolcore.errors.ImageError`).
2. The central ``crop`` x ``crop`` window is cut out: rows ``(H - crop) // 2``
   onwards, columns ``(W - crop) // 2`` onwards (``center="image"``), or the
   window centred on the brightest pixel of the image smoothed with a Gaussian of
   sigma 2 pixels, moved inside the image where needed (``center="peak"``).  A map smaller than the
   crop is an error.  Steps 1 and 3 use the crop only, so the result never depends
   on pixels outside it (a 1024-pixel map and its central 256 pixels give the same
   output).
3. Natural log, with the image floored at its smallest positive finite value, so
   zeros and negative pixels (background-subtracted data) map to the log of the
   dimmest positive pixel instead of -inf/NaN.
4. Min-max normalisation to [0, 1]: per image (``scaling="image"``; a constant
   image becomes all zeros) or with one range ``(lo, hi)`` of log values for the
   whole data set (``scaling="dataset"``: the range is the minimum and maximum log
   value over the data set, computed by :func:`load_dataset`; values outside a
   range given for new images are clipped).
5. Optional resize to ``size`` x ``size`` with antialiased bilinear
   interpolation (``torch.nn.functional.interpolate(..., mode="bilinear",
   antialias=True, align_corners=False)``: a triangle filter stretched by the
   scale factor, the same as Pillow's ``BILINEAR`` resampling).  Its weights are
   non-negative and sum to one, so values stay in [0, 1].

The output is ``float32``.  Grey images are not repeated to three channels here;
the model decides that.

:func:`load_dataset` preprocesses a whole catalogue once and keeps the result in
a cache file keyed by the preprocessing parameters and by every file's relative
path, size and SHA-256 content hash, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore.data import io as cio
from coolcore.errors import ImageError, UsageError

__all__ = [
    "CACHE_FORMAT_VERSION",
    "Dataset",
    "PreprocessConfig",
    "crop_image",
    "dataset_cache_key",
    "load_dataset",
    "preprocess_batch",
    "preprocess_image",
    "resize_batch",
]

CACHE_FORMAT_VERSION = 1
"""Bumped whenever the preprocessing or the cache layout changes; part of the cache key."""

SCALINGS = ("image", "dataset")
CENTERS = ("image", "peak")
_CHUNK = 64  # images preprocessed together (bounds the float64 working memory)


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing parameters.

    Parameters
    ----------
    crop : int
        Side of the central window in pixels (paper: 256 from 1024).
    size : int or None
        Side of the output after resizing; None keeps ``crop``.
    scaling : {"image", "dataset"}
        Min-max range of the log image: per image, or over the whole data set.
    center : {"image", "peak"}
        Centre of the crop: the geometric centre, or the brightest pixel after
        Gaussian smoothing (sigma 2 pixels).
    """

    crop: int = 256
    size: int | None = None
    scaling: str = "image"
    center: str = "image"

    def __post_init__(self) -> None:
        if isinstance(self.crop, bool) or not isinstance(self.crop, int | np.integer):
            raise UsageError(
                f"preprocessing crop={self.crop!r}: must be an integer number of pixels"
            )
        if self.crop < 2:
            raise UsageError(f"preprocessing crop={self.crop}: must be at least 2 pixels")
        if self.size is not None:
            if isinstance(self.size, bool) or not isinstance(self.size, int | np.integer):
                raise UsageError(f"preprocessing size={self.size!r}: must be an integer or None")
            if self.size < 2:
                raise UsageError(f"preprocessing size={self.size}: must be at least 2 pixels")
        if self.scaling not in SCALINGS:
            raise UsageError(
                f"preprocessing scaling={self.scaling!r}: must be one of {', '.join(SCALINGS)}"
            )
        if self.center not in CENTERS:
            raise UsageError(
                f"preprocessing center={self.center!r}: must be one of {', '.join(CENTERS)}"
            )
        object.__setattr__(self, "crop", int(self.crop))
        if self.size is not None:
            object.__setattr__(self, "size", int(self.size))

    @property
    def output_size(self) -> int:
        """Side of the preprocessed image in pixels."""
        return self.size if self.size is not None else self.crop

    def to_dict(self) -> dict[str, int | str | None]:
        """Plain dictionary (for JSON/YAML model metadata)."""
        return asdict(self)


# ----------------------------------------------------------------- pure steps
def _prefix(name: str) -> str:
    return f"{name}: " if name else ""


def crop_image(image: np.ndarray, crop: int, center: str = "image", name: str = "") -> np.ndarray:
    """The ``crop`` x ``crop`` window of a 2-D map (a view, not a copy).

    Parameters
    ----------
    image : numpy.ndarray
        2-D map (H, W) with H, W >= crop.
    crop : int
        Window side in pixels.
    center : {"image", "peak"}
        ``"image"``: rows ``(H - crop) // 2 : (H - crop) // 2 + crop`` and the same
        for columns.  ``"peak"``: centred on the brightest pixel of the map
        smoothed with a Gaussian of sigma 2 pixels (non-finite pixels count as 0;
        ties: the first in row-major order), shifted to lie inside.
    name : str
        File name for error messages.
    """
    if image.ndim != 2:
        raise ImageError(f"{_prefix(name)}expected a 2-D image, got shape {image.shape}")
    h, w = image.shape
    if h < crop or w < crop:
        raise ImageError(
            f"{_prefix(name)}image of shape {image.shape} is smaller than the crop "
            f"{crop} x {crop}; use a smaller --crop"
        )
    if center == "image":
        top, left = (h - crop) // 2, (w - crop) // 2
    elif center == "peak":
        from scipy.ndimage import gaussian_filter

        finite = np.where(np.isfinite(image), image, 0.0)
        smooth = gaussian_filter(finite, sigma=2.0, mode="nearest")
        r, c = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        top = int(np.clip(r - crop // 2, 0, h - crop))
        left = int(np.clip(c - crop // 2, 0, w - crop))
    else:
        raise UsageError(f"center={center!r}: must be one of {', '.join(CENTERS)}")
    return image[top : top + crop, left : left + crop]


def _floor_log(stack: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Steps 1 and 3 on a (N, h, w) float64 stack: floored natural log, non-finite -> floor."""
    valid = np.isfinite(stack) & (stack > 0)
    has = valid.any(axis=(1, 2))
    if not has.all():
        i = int(np.flatnonzero(~has)[0])
        raise ImageError(f"{_prefix(names[i])}no finite positive pixel in the central crop")
    floor = np.where(valid, stack, np.inf).min(axis=(1, 2))[:, None, None]
    floored = np.where(np.isfinite(stack), np.maximum(stack, floor), floor)
    return np.log(floored)


def _minmax(logs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(logs - lo) / (hi - lo) per image, clipped to [0, 1]; zeros where hi <= lo."""
    span = hi - lo
    ok = span > 0
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=ok)
    out = (logs - lo[:, None, None]) * scale[:, None, None]
    return np.clip(out, 0.0, 1.0, out=out)


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of a (N, H, W) stack to (N, size, size) float32.

    Uses ``torch.nn.functional.interpolate(mode="bilinear", antialias=True,
    align_corners=False)``, which matches Pillow's ``BILINEAR`` resampling.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if x.shape[-2:] == (size, size):
        return x[:, 0].numpy()
    with torch.no_grad():
        y = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return y[:, 0].numpy()


def _normalised(
    crops: np.ndarray,
    cfg: PreprocessConfig,
    names: Sequence[str],
    log_range: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1, 3, 4, 5 on cropped (N, crop, crop) maps.

    Returns the float32 images, and each image's minimum and maximum log value.
    With ``log_range`` None the images are normalised per image.
    """
    logs = _floor_log(np.asarray(crops, dtype=np.float64), names)
    lmin = logs.min(axis=(1, 2))
    lmax = logs.max(axis=(1, 2))
    if log_range is None:
        norm = _minmax(logs, lmin, lmax)
    else:
        lo = np.full(len(logs), float(log_range[0]))
        hi = np.full(len(logs), float(log_range[1]))
        norm = _minmax(logs, lo, hi)
    out = norm.astype(np.float32)
    if cfg.size is not None and cfg.size != cfg.crop:
        out = np.clip(resize_batch(out, cfg.size), 0.0, 1.0)
    return out, lmin, lmax


def _check_range(log_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in log_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo):
        raise UsageError(f"log_range={log_range!r}: must be two finite numbers lo <= hi")
    return lo, hi


def preprocess_batch(
    images: np.ndarray | Sequence[np.ndarray],
    cfg: PreprocessConfig,
    names: Sequence[str] | None = None,
    log_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Preprocess several maps at once.

    Parameters
    ----------
    images : array (N, H, W) or sequence of 2-D arrays (shapes may differ)
        Maps as read by :func:`coolcore.data.io.read_image`.
    cfg : PreprocessConfig
    names : sequence of str, optional
        File names for error messages.
    log_range : (lo, hi), optional
        For ``scaling="dataset"``: the data set's range of log values (saved with
        a trained model).  Without it, the batch itself is the data set.  Ignored
        for ``scaling="image"``.

    Returns
    -------
    numpy.ndarray
        (N, S, S) float32 in [0, 1], ``S = cfg.output_size``.
    """
    n = len(images)
    names = list(names) if names is not None else [""] * n
    if len(names) != n:
        raise UsageError(f"names has {len(names)} entries for {n} images")
    if n == 0:
        s = cfg.output_size
        return np.zeros((0, s, s), dtype=np.float32)
    if isinstance(images, np.ndarray) and images.ndim == 3 and cfg.center == "image":
        crop_image(images[0], cfg.crop, "image", names[0])  # validates the shape
        h, w = images.shape[1:]
        top, left = (h - cfg.crop) // 2, (w - cfg.crop) // 2
        crops = images[:, top : top + cfg.crop, left : left + cfg.crop]
    else:
        crops = np.stack(
            [
                crop_image(np.asarray(im), cfg.crop, cfg.center, nm)
                for im, nm in zip(images, names, strict=True)
            ]
        )
    if cfg.scaling == "dataset":
        if log_range is None:
            out, lmin, lmax = _normalised(crops, cfg, names, None)
            return _rescale(out, lmin, lmax, (float(lmin.min()), float(lmax.max())))
        return _normalised(crops, cfg, names, _check_range(log_range))[0]
    return _normalised(crops, cfg, names, None)[0]


def preprocess_image(
    image: np.ndarray,
    cfg: PreprocessConfig,
    name: str = "",
    log_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Preprocess one map (see the module docstring for the steps).

    Parameters
    ----------
    image : numpy.ndarray
        2-D map as read by :func:`coolcore.data.io.read_image`.
    cfg : PreprocessConfig
    name : str
        File name for error messages.
    log_range : (lo, hi), optional
        Data-set range of log values for ``scaling="dataset"``; without it the
        image is scaled on its own range (a one-image data set).

    Returns
    -------
    numpy.ndarray
        (S, S) float32 in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> img = np.exp(np.arange(16.0).reshape(4, 4))
    >>> preprocess_image(img, PreprocessConfig(crop=2))
    array([[0. , 0.2],
           [0.8, 1. ]], dtype=float32)
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ImageError(f"{_prefix(name)}expected a 2-D image, got shape {image.shape}")
    return preprocess_batch(image[None], cfg, [name], log_range)[0]


def _rescale(
    norm: np.ndarray, lmin: np.ndarray, lmax: np.ndarray, log_range: tuple[float, float]
) -> np.ndarray:
    """Turn per-image normalised images into data-set normalised ones, in place.

    Exact because the resize is linear with weights summing to one:
    ``(L - lo) / (hi - lo) = n * (b - a) / (hi - lo) + (a - lo) / (hi - lo)``.
    """
    lo, hi = log_range
    span = hi - lo
    if span <= 0:
        norm[...] = 0.0
        return norm
    gain = ((lmax - lmin) / span).astype(np.float32)[:, None, None]
    offset = ((lmin - lo) / span).astype(np.float32)[:, None, None]
    norm *= gain
    norm += offset
    return np.clip(norm, 0.0, 1.0, out=norm)


# ---------------------------------------------------------------- the dataset
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
        As returned by :func:`coolcore.data.io.read_catalog`.
    cfg : PreprocessConfig
    cache_key : str
        SHA-256 hex digest identifying the inputs and parameters.
    log_range : (float, float) or None
        Range of log values used for ``scaling="dataset"`` (None for ``"image"``).
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
    folder, its size in bytes and the SHA-256 of its content.
    """
    paths = catalog["path"].tolist()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(_file_digest, paths))
    files = [
        [os.path.relpath(p, catalog_dir), size, digest]
        for p, (size, digest) in zip(paths, digests, strict=True)
    ]
    blob = json.dumps(
        {
            "version": CACHE_FORMAT_VERSION,
            "cfg": cfg.to_dict(),
            "hdu": hdu,
            "plane": plane,
            "files": files,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_cache(
    path: Path, key: str, n: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if not path.is_file():
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

    def read_crop(p: str) -> np.ndarray:
        image = cio.read_image(p, hdu=hdu, plane=plane)
        return np.array(crop_image(image, cfg.crop, cfg.center, p))

    from astropy.utils.exceptions import AstropyWarning

    with (
        warnings.catch_warnings(),  # on this thread: see coolcore.data.io._quiet_astropy
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=n, desc="preprocessing", unit="img", disable=not progress) as bar,
    ):
        warnings.simplefilter("ignore", AstropyWarning)
        for start in range(0, n, _CHUNK):
            chunk = paths[start : start + _CHUNK]
            crops = np.stack(list(pool.map(read_crop, chunk)))
            out, a, b = _normalised(crops, cfg, chunk, None)
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
) -> Dataset:
    """Read a catalogue and preprocess all its images, through a cache.

    Parameters
    ----------
    catalog_path : str or Path
        Catalogue CSV, or a folder holding ``catalog.csv``.
    cfg : PreprocessConfig
    cache_dir : str or Path, optional
        Folder of cache files (default ``<catalogue folder>/.coolcore_cache``).
        If it cannot be written, a warning is issued and nothing is cached.
    progress : bool
        Show a tqdm progress bar while preprocessing.
    workers : int, optional
        Threads reading and hashing files (default ``min(4, cpu_count)``).
    hdu, plane
        Passed to :func:`coolcore.data.io.read_image` for every file.
    require_labels : bool
        Passed to :func:`coolcore.data.io.read_catalog` (False for prediction).
    use_cache : bool
        False neither reads nor writes the cache.

    Returns
    -------
    Dataset
    """
    catalog_path = cio.resolve_data(catalog_path)
    catalog = cio.read_catalog(catalog_path, require_labels=require_labels)
    folder = catalog_path.resolve().parent
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    key = dataset_cache_key(catalog, folder, cfg, hdu=hdu, plane=plane, workers=workers)
    cache_dir = Path(cache_dir) if cache_dir is not None else folder / ".coolcore_cache"
    cache_path = cache_dir / f"{key[:24]}.npz"
    n, s = len(catalog), cfg.output_size

    cached = _load_cache(cache_path, key, n, s) if use_cache else None
    if cached is not None:
        images, lmin, lmax = cached
    else:
        images, lmin, lmax = _compute(
            catalog, cfg, hdu=hdu, plane=plane, progress=progress, workers=workers
        )
        if cfg.scaling == "dataset":
            _rescale(images, lmin, lmax, (float(lmin.min()), float(lmax.max())))
        if not (use_cache and _save_cache(cache_path, key, images, lmin, lmax)):
            cache_path = None
    log_range = (float(lmin.min()), float(lmax.max())) if cfg.scaling == "dataset" else None
    return Dataset(
        images=np.ascontiguousarray(images),
        labels=catalog["y"].to_numpy(dtype=np.int64),
        image_ids=catalog["image_id"].to_numpy(dtype=str),
        cluster_ids=catalog["cluster_id"].to_numpy(dtype=str),
        catalog=catalog,
        cfg=cfg,
        cache_key=key,
        log_range=log_range,
        cache_path=cache_path,
    )
