"""The astronomers' baselines: surface-brightness concentration classifiers.

* :func:`concentration`: ``c_SB = S(< 40 kpc) / S(< 400 kpc)`` (Santos et al. 2008).
* :func:`scaled_concentration`: ``S(< 0.15 R500) / S(< R500)`` (Andrade-Santos et al.
  2017), with the outer aperture shrunk to the largest circle that fits inside the
  map where R500 does not.
* :class:`ConcentrationClassifier`: thresholds on either indicator, high
  concentration -> CC, as a small scikit-learn-style estimator.

Apertures are summed over the pixels whose *centres* lie within the radius
(distance <= r), so a pixel is either wholly in or wholly out.  The centre is the
brightest pixel of the map smoothed with a Gaussian of ``SMOOTH_SIGMA_PX`` pixels
(``center="peak"``, the default), the central pixel ``(H // 2, W // 2)``
(``center="image"``), or given explicitly as ``(row, col)`` per image.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError

SMOOTH_SIGMA_PX = 2.0
"""Gaussian sigma (pixels) of the light smoothing used to find the peak."""

SANTOS_THRESHOLDS: tuple[float, float] = (0.075, 0.155)
"""Santos et al. (2008) c_SB class limits: > 0.155 strong CC (-> CC),
0.075-0.155 moderate (-> WCC), < 0.075 non cool core (-> NCC)."""

LITERATURE_THRESHOLDS: dict[str, tuple[float, float]] = {"c_sb": SANTOS_THRESHOLDS}
"""Published (low, high) three-class limits per indicator.  None is known to us for
the scaled concentration S(<0.15 R500)/S(<R500), so it is fitted."""

_CHUNK = 64


def as_batch(images: ArrayLike) -> tuple[NDArray[np.float64], bool]:
    arr = np.asarray(images, dtype=np.float64)
    if arr.ndim == 2:
        return arr[None], True
    if arr.ndim == 3:
        return arr, False
    raise UsageError(f"images: expected shape (H, W) or (N, H, W), got {arr.shape}")


def find_centers(
    images: ArrayLike, center: Literal["peak", "image"] | ArrayLike = "peak"
) -> NDArray[np.int64]:
    """Aperture centres ``(row, col)`` for a batch ``(N, H, W)``, shape ``(N, 2)``.

    ``"peak"``: the brightest pixel after a Gaussian smoothing of
    ``SMOOTH_SIGMA_PX`` pixels (first in row-major order on ties); ``"image"``:
    ``(H // 2, W // 2)``; otherwise an array of ``(row, col)`` of shape ``(2,)`` or
    ``(N, 2)``.
    """
    batch, _ = as_batch(images)
    n, h, w = batch.shape
    if isinstance(center, str):
        if center == "image":
            return np.tile(np.array([h // 2, w // 2]), (n, 1))
        if center == "peak":
            finite = np.where(np.isfinite(batch), batch, 0.0)
            smooth = ndimage.gaussian_filter(
                finite, sigma=(0.0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX), mode="nearest"
            )
            flat = smooth.reshape(n, -1).argmax(axis=1)
            return np.stack(np.unravel_index(flat, (h, w)), axis=1)
        raise UsageError(f"center: {center!r} is not 'peak', 'image' or (row, col)")
    c = np.asarray(center)
    if c.shape == (2,):
        c = np.tile(c, (n, 1))
    if c.shape != (n, 2):
        raise UsageError(f"center: expected shape (2,) or ({n}, 2), got {c.shape}")
    return c


def aperture_sums(
    images: ArrayLike,
    radii_px: ArrayLike,
    centers: ArrayLike,
) -> NDArray[np.float64]:
    """Sum of each image over the pixels whose centres are within each radius.

    Parameters
    ----------
    images : array_like, shape (N, H, W)
    radii_px : array_like, shape (N, K)
        Aperture radii in pixels, per image.
    centers : array_like, shape (N, 2)
        ``(row, col)`` of each aperture centre.

    Returns
    -------
    numpy.ndarray, shape (N, K)
    """
    batch, _ = as_batch(images)
    n, h, w = batch.shape
    radii = np.asarray(radii_px, dtype=np.float64).reshape(n, -1)
    cen = np.asarray(centers, dtype=np.float64).reshape(n, 2)
    rows = np.arange(h, dtype=np.float64)
    cols = np.arange(w, dtype=np.float64)
    out = np.empty(radii.shape)
    for s in range(0, n, _CHUNK):
        e = min(s + _CHUNK, n)
        d2 = (rows[None, :, None] - cen[s:e, 0, None, None]) ** 2 + (
            cols[None, None, :] - cen[s:e, 1, None, None]
        ) ** 2
        img = np.where(np.isfinite(batch[s:e]), batch[s:e], 0.0)
        inside = d2[:, None] <= radii[s:e, :, None, None] ** 2
        out[s:e] = (inside * img[:, None]).sum(axis=(2, 3))
    return out


def pixel_array(pixel_kpc: ArrayLike, n: int, name: str = "pixel_kpc") -> NDArray[np.float64]:
    p = np.broadcast_to(np.asarray(pixel_kpc, dtype=np.float64), (n,)).copy()
    if not np.all(np.isfinite(p) & (p > 0)):
        raise UsageError(f"{name}: must be positive and finite")
    return p


def concentration(
    images: ArrayLike,
    pixel_kpc: ArrayLike,
    r_in_kpc: float = 40.0,
    r_out_kpc: float = 400.0,
    center: Literal["peak", "image"] | ArrayLike = "peak",
) -> float | NDArray[np.float64]:
    """Surface-brightness concentration ``S(< r_in) / S(< r_out)`` (Santos et al. 2008).

    Parameters
    ----------
    images : array_like, shape (H, W) or (N, H, W)
        Surface-brightness maps (any linear unit).
    pixel_kpc : float or array_like of shape (N,)
        Pixel size in kpc.
    r_in_kpc, r_out_kpc : float
        Aperture radii in kpc (defaults: 40 and 400 kpc).  An aperture that runs
        off the map is truncated to the pixels inside it.
    center : "peak", "image" or (row, col)
        See :func:`find_centers`.  ``None`` means ``"peak"``.

    Returns
    -------
    float or numpy.ndarray of shape (N,)

    Examples
    --------
    >>> img = np.ones((64, 64))
    >>> round(concentration(img, 10.0, 40.0, 200.0, center="image"), 4)  # 49 / 1257 px
    0.039
    """
    if not (0 < r_in_kpc < r_out_kpc):
        raise UsageError(f"r_in_kpc, r_out_kpc: need 0 < r_in < r_out, got {r_in_kpc}, {r_out_kpc}")
    batch, single = as_batch(images)
    pix = pixel_array(pixel_kpc, batch.shape[0])
    cen = find_centers(batch, "peak" if center is None else center)
    radii = np.stack([r_in_kpc / pix, r_out_kpc / pix], axis=1)
    sums = aperture_sums(batch, radii, cen)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = sums[:, 0] / sums[:, 1]
    return float(c[0]) if single else c


def scaled_concentration(
    images: ArrayLike,
    pixel_kpc: ArrayLike,
    r500_kpc: ArrayLike,
    center: Literal["peak", "image"] | ArrayLike = "peak",
) -> float | NDArray[np.float64]:
    """Scaled concentration ``S(< 0.15 R500) / S(< R500)`` (Andrade-Santos et al. 2017).

    Where the circle of radius R500 does not fit inside the map, the outer aperture
    is the largest circle around the centre that does (its radius: the distance
    from the centre pixel to the nearest map edge, ``min(row + 0.5, H - row - 0.5,
    col + 0.5, W - col - 0.5)`` pixels).  The inner aperture is always 0.15 R500.
    On the default 1 Mpc maps this means S(< 0.15 R500) / S(< ~500 kpc).

    Parameters
    ----------
    images : array_like, shape (H, W) or (N, H, W)
    pixel_kpc : float or array_like of shape (N,)
    r500_kpc : float or array_like of shape (N,)
    center : "peak", "image" or (row, col)

    Returns
    -------
    float or numpy.ndarray of shape (N,)
    """
    batch, single = as_batch(images)
    n, h, w = batch.shape
    pix = pixel_array(pixel_kpc, n)
    r500 = pixel_array(r500_kpc, n, "r500_kpc")
    cen = find_centers(batch, "peak" if center is None else center)
    fit_px = np.minimum.reduce(
        [cen[:, 0] + 0.5, h - cen[:, 0] - 0.5, cen[:, 1] + 0.5, w - cen[:, 1] - 0.5]
    )
    r_out_px = np.minimum(r500 / pix, fit_px)
    r_in_px = 0.15 * r500 / pix
    sums = aperture_sums(batch, np.stack([r_in_px, r_out_px], axis=1), cen)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = sums[:, 0] / sums[:, 1]
    return float(c[0]) if single else c


def labels_to_index(y: ArrayLike) -> NDArray[np.int64]:
    arr = np.asarray(y)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 2):
            raise UsageError("y: integer labels must be 0 (CC), 1 (WCC) or 2 (NCC)")
        return arr.astype(np.int64)
    lookup = {name: i for i, name in enumerate(CLASS_NAMES)}
    try:
        return np.array([lookup[str(v)] for v in arr.ravel()], dtype=np.int64)
    except KeyError as exc:
        raise UsageError(
            f"y: unknown label {exc.args[0]!r}; expected one of {CLASS_NAMES}"
        ) from None


def _macro_f1(y: NDArray[np.int64], pred: NDArray[np.int64]) -> float:
    f1 = []
    for k in range(3):
        tp = np.sum((pred == k) & (y == k))
        fp = np.sum((pred == k) & (y != k))
        fn = np.sum((pred != k) & (y == k))
        denom = 2 * tp + fp + fn
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


class ConcentrationClassifier:
    """Three-class classifier by two thresholds on a concentration indicator.

    ``value > high`` -> CC, ``low <= value <= high`` -> WCC, ``value < low`` -> NCC
    (a more concentrated core cools faster).

    Parameters
    ----------
    indicator : {"c_sb", "c_scaled"}
        Which indicator the features are (only used to look up thresholds).
    thresholds : None, "literature", "fit" or (low, high)
        ``"literature"``: the published limits (c_SB: Santos et al. 2008, 0.075 and
        0.155; none known for c_scaled).  ``"fit"``: the pair of training values that
        maximises the training macro-F1.  ``None``: literature where known, else fit.

    Examples
    --------
    >>> clf = ConcentrationClassifier("c_sb", "literature").fit([0.2, 0.1, 0.05], None)
    >>> clf.predict([0.3, 0.1, 0.01]).tolist()
    ['CC', 'WCC', 'NCC']
    """

    def __init__(
        self,
        indicator: Literal["c_sb", "c_scaled"] = "c_sb",
        thresholds: None | Literal["literature", "fit"] | tuple[float, float] = None,
    ) -> None:
        if indicator not in ("c_sb", "c_scaled"):
            raise UsageError(f"indicator: {indicator!r} is not 'c_sb' or 'c_scaled'")
        if isinstance(thresholds, str) and thresholds not in ("literature", "fit"):
            raise UsageError(
                f"thresholds: {thresholds!r} is not None, 'literature', 'fit' or a pair"
            )
        if thresholds == "literature" and indicator not in LITERATURE_THRESHOLDS:
            raise UsageError(
                f"thresholds: no literature thresholds for {indicator!r}; use 'fit' or a pair"
            )
        self.indicator = indicator
        self.thresholds = thresholds
        self.classes_ = np.asarray(CLASS_NAMES)

    @staticmethod
    def _values(features: ArrayLike) -> NDArray[np.float64]:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise UsageError(f"features: expected shape (N,) or (N, 1), got {x.shape}")
        return x

    def fit(self, features: ArrayLike, y: ArrayLike | None = None) -> ConcentrationClassifier:
        """Set ``thresholds_`` = (low, high); ``y`` is only needed for ``"fit"``."""
        mode = self.thresholds
        if mode is None:
            mode = "literature" if self.indicator in LITERATURE_THRESHOLDS else "fit"
        if mode == "literature":
            self.thresholds_ = LITERATURE_THRESHOLDS[self.indicator]
        elif mode == "fit":
            if y is None:
                raise UsageError("y: labels are needed to fit thresholds")
            self.thresholds_ = self._fit_thresholds(self._values(features), labels_to_index(y))
        else:
            low, high = (float(t) for t in mode)
            if not low <= high:
                raise UsageError(f"thresholds: need low <= high, got {mode}")
            self.thresholds_ = (low, high)
        return self

    @staticmethod
    def _fit_thresholds(x: NDArray[np.float64], y: NDArray[np.int64]) -> tuple[float, float]:
        """Exhaustive search over midpoints between sorted training values."""
        ok = np.isfinite(x)
        x, y = x[ok], y[ok]
        if x.size == 0:
            raise UsageError("features: no finite values to fit thresholds on")
        order = np.argsort(x, kind="stable")
        xs, ys = x[order], y[order]
        uniq = np.unique(xs)
        cuts = np.concatenate([[uniq[0] - 1.0], (uniq[:-1] + uniq[1:]) / 2.0, [uniq[-1] + 1.0]])
        # Counts of each class below each cut (value < cut).
        pos = np.searchsorted(xs, cuts, side="left")
        below = np.stack([np.concatenate([[0], np.cumsum(ys == k)])[pos] for k in range(3)])
        total = np.array([np.sum(ys == k) for k in range(3)])[:, None]
        lo_i, hi_i = np.triu_indices(cuts.size)  # low cut index <= high cut index
        # NCC: value < low; WCC: low <= value <= high (i.e. < high cut); CC: >= high cut.
        tp_ncc = below[2][lo_i]
        pred_ncc = below.sum(0)[lo_i]
        tp_wcc = below[1][hi_i] - below[1][lo_i]
        pred_wcc = below.sum(0)[hi_i] - below.sum(0)[lo_i]
        tp_cc = total[0, 0] - below[0][hi_i]
        pred_cc = x.size - below.sum(0)[hi_i]
        f1 = np.zeros(lo_i.size)
        for tp, pred, k in ((tp_cc, pred_cc, 0), (tp_wcc, pred_wcc, 1), (tp_ncc, pred_ncc, 2)):
            denom = pred + total[k, 0]
            f1 += np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
        best = int(np.argmax(f1))
        return float(cuts[lo_i[best]]), float(cuts[hi_i[best]])

    def predict(self, features: ArrayLike) -> NDArray[np.str_]:
        """Labels CC / WCC / NCC; a NaN feature is predicted NCC (no visible core)."""
        low, high = self.thresholds_
        x = np.nan_to_num(self._values(features), nan=-np.inf)
        idx = np.where(x > high, 0, np.where(x >= low, 1, 2))
        return self.classes_[idx]

    def predict_proba(self, features: ArrayLike) -> NDArray[np.float64]:
        """One-hot probabilities over (CC, WCC, NCC)."""
        lookup = {name: i for i, name in enumerate(self.classes_)}
        return np.eye(3)[[lookup[p] for p in self.predict(features)]]

    def score(self, features: ArrayLike, y: ArrayLike) -> float:
        """Macro-averaged F1 on ``(features, y)``."""
        return _macro_f1(labels_to_index(y), labels_to_index(self.predict(features)))


__all__ = [
    "LITERATURE_THRESHOLDS",
    "SANTOS_THRESHOLDS",
    "ConcentrationClassifier",
    "aperture_sums",
    "concentration",
    "find_centers",
    "scaled_concentration",
]
