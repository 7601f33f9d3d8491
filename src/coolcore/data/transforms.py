"""Preprocessing of X-ray maps (METHOD.md, "Preprocessing"): pure array transforms.

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
   value over the data set, computed by :func:`coolcore.data.cache.load_dataset`; values outside a
   range given for new images are clipped).
5. Optional resize to ``size`` x ``size`` with antialiased bilinear
   interpolation (``torch.nn.functional.interpolate(..., mode="bilinear",
   antialias=True, align_corners=False)``: a triangle filter stretched by the
   scale factor, the same as Pillow's ``BILINEAR`` resampling).  Its weights are
   non-negative and sum to one, so values stay in [0, 1].

The output is ``float32``.  Grey images are not repeated to three channels here;
the model decides that.

The cached preprocessing of a whole catalogue is :func:`coolcore.data.cache.load_dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from coolcore.errors import ImageError, UsageError

__all__ = [
    "CENTERS",
    "DEFAULT_FIELD_KPC",
    "SCALINGS",
    "PreprocessConfig",
    "crop_image",
    "normalise_crops",
    "preprocess_batch",
    "preprocess_image",
    "rescale_to_range",
    "resize_batch",
]

DEFAULT_FIELD_KPC = 1000.0
"""The field cut around the cluster of an observation (kpc), unless a config says otherwise."""

SCALINGS = ("image", "dataset")
CENTERS = ("image", "peak")


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
    field_kpc : float
        Observations only (maps with an exposure map, :mod:`coolcore.data.observation`):
        the field cut around the cluster, in kpc, rebinned onto ``crop`` x ``crop``
        pixels before the steps above.
    """

    crop: int = 256
    size: int | None = None
    scaling: str = "image"
    center: str = "image"
    field_kpc: float = DEFAULT_FIELD_KPC

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
        if not (isinstance(self.field_kpc, int | float) and 0 < self.field_kpc < float("inf")):
            raise UsageError(
                f"preprocessing field_kpc={self.field_kpc!r}: must be a positive number of kpc"
            )
        object.__setattr__(self, "field_kpc", float(self.field_kpc))
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


def normalise_crops(
    crops: np.ndarray,
    cfg: PreprocessConfig,
    names: Sequence[str],
    log_range: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1, 3, 4, 5 on cropped (N, crop, crop) maps.

    Parameters
    ----------
    crops : numpy.ndarray
        (N, crop, crop) maps as cut by :func:`crop_image`.
    cfg : PreprocessConfig
    names : sequence of str
        File names for error messages.
    log_range : (lo, hi) or None
        The range of log values to normalise with; None normalises per image.

    Returns
    -------
    images, log_min, log_max : numpy.ndarray
        The (N, S, S) float32 images, and each image's minimum and maximum log value.
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
        Maps as read by :func:`coolcore.data.images.read_image`.
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
            out, lmin, lmax = normalise_crops(crops, cfg, names, None)
            return rescale_to_range(out, lmin, lmax, (float(lmin.min()), float(lmax.max())))
        return normalise_crops(crops, cfg, names, _check_range(log_range))[0]
    return normalise_crops(crops, cfg, names, None)[0]


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
        2-D map as read by :func:`coolcore.data.images.read_image`.
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


def rescale_to_range(
    norm: np.ndarray, lmin: np.ndarray, lmax: np.ndarray, log_range: tuple[float, float]
) -> np.ndarray:
    """Turn per-image normalised images into data-set normalised ones, in place.

    Parameters
    ----------
    norm : numpy.ndarray
        (N, S, S) float32 images normalised per image (changed in place).
    lmin, lmax : numpy.ndarray
        (N,) each image's minimum and maximum log value.
    log_range : (lo, hi)
        The data set's range of log values.

    Returns
    -------
    numpy.ndarray
        ``norm``, now ``(L - lo) / (hi - lo)`` clipped to [0, 1].

    Notes
    -----
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
