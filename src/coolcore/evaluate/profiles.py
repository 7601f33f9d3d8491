"""A stronger astronomers' baseline: a linear classifier on the surface-brightness profile.

The concentration ``c_SB`` keeps one ratio of the profile.  What an astronomer with
the same map and scikit-learn would also try is the whole azimuthally averaged
profile: :func:`radial_profile` measures ``log10`` of the mean surface brightness
per kpc^2 in :data:`PROFILE_EDGES_KPC` (12 annuli between 4 and 500 kpc, evenly
spaced in log radius) around the same centre as the concentration (the smoothed
peak, :func:`coolcore.evaluate.baselines.find_centers`), with the same pixel rule
(a pixel belongs to an annulus when its centre does: ``r_in < d <= r_out``), so the
annulus mean equals photutils' ``RadialProfile(method="center")``.

* An annulus without a pixel (a coarse map's centre, or beyond a small map's edge)
  takes the value of the nearest annulus that has pixels.
* A mean <= 0 (background-subtracted noise) is floored at a tenth of the map's
  smallest positive annulus mean before the log.
* Observations are count rates, which fall as ``1 / D_L^2``: the ablation measures
  their profile on the surface luminosity, the rate times ``4 pi D_L^2`` in Mpc^2
  (:func:`coolcore.data.brightness.sphere_area_mpc2`, the scale data-set scaling
  uses), so that clusters at different redshifts are on one scale (luminosity per
  kpc^2 up to the instrument's response and the K-correction, which are the same for
  one instrument and similar temperatures).  Emissivity maps need no correction.

:class:`ProfileClassifier` is a standardised multinomial logistic regression
(scikit-learn; ``class_weight="balanced"``, ``C = 1``) on those 12 numbers,
fitted on the training folds like ``c_SB (fit)``'s thresholds.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.evaluate.baselines import (
    aperture_sums,
    as_batch,
    find_centers,
    labels_to_index,
    pixel_array,
)

__all__ = ["PROFILE_EDGES_KPC", "ProfileClassifier", "radial_profile"]

PROFILE_EDGES_KPC: NDArray[np.float64] = np.geomspace(4.0, 500.0, 13)
"""Annulus edges (kpc) of :func:`radial_profile`: 12 annuli, log-spaced."""


def radial_profile(
    images: ArrayLike,
    pixel_kpc: ArrayLike,
    *,
    edges_kpc: ArrayLike = PROFILE_EDGES_KPC,
    center="peak",
) -> NDArray[np.float64]:
    """``log10`` mean surface brightness per kpc^2 in annuli, shape ``(N, len(edges) - 1)``.

    Parameters
    ----------
    images : array (H, W) or (N, H, W)
        Linear maps (flux or count rate per pixel).
    pixel_kpc : float or array (N,)
        Pixel side in kpc.
    edges_kpc : array
        Increasing annulus edges in kpc (default :data:`PROFILE_EDGES_KPC`).
    center : "peak", "image" or (row, col) per image
        As :func:`coolcore.evaluate.baselines.find_centers`.
    """
    batch, single = as_batch(images)
    n = batch.shape[0]
    edges = np.asarray(edges_kpc, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise UsageError("edges_kpc: need at least two increasing, non-negative radii")
    pix = pixel_array(pixel_kpc, n)
    centers = find_centers(batch, center)
    radii = edges[None, :] / pix[:, None]
    sums = np.diff(aperture_sums(batch, radii, centers), axis=1)
    npix = np.diff(aperture_sums(np.ones_like(batch), radii, centers), axis=1)
    mean = np.where(npix > 0, sums / np.maximum(npix, 1) / pix[:, None] ** 2, np.nan)
    out = np.empty_like(mean)
    k = np.arange(mean.shape[1])
    for i in range(n):
        row = mean[i]
        have = np.flatnonzero(np.isfinite(row))
        if have.size == 0:
            raise UsageError(f"image {i}: no pixel within {edges[-1]:g} kpc of its centre")
        nearest = have[np.abs(k[:, None] - have[None, :]).argmin(axis=1)]
        row = row[nearest]
        positive = row[row > 0]
        floor = positive.min() / 10.0 if positive.size else 1e-30
        out[i] = np.log10(np.maximum(row, floor))
    return out[0] if single else out


class ProfileClassifier:
    """Multinomial logistic regression on :func:`radial_profile` (module docstring).

    Examples
    --------
    >>> clf = ProfileClassifier().fit(profiles, labels)         # doctest: +SKIP
    >>> clf.predict_proba(profiles[:2]).shape                   # doctest: +SKIP
    (2, 3)
    """

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, profiles: ArrayLike, y: ArrayLike) -> ProfileClassifier:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(profiles, dtype=np.float64)
        labels = labels_to_index(y)  # names CC / WCC / NCC or indices 0 / 1 / 2
        self.model_ = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000),
        ).fit(x, labels)
        return self

    def predict_proba(self, profiles: ArrayLike) -> NDArray[np.float64]:
        """Probabilities over (CC, WCC, NCC); 0 for a class absent from the training labels."""
        p = self.model_.predict_proba(np.asarray(profiles, dtype=np.float64))
        out = np.zeros((p.shape[0], len(CLASS_NAMES)))
        out[:, self.model_.classes_] = p
        return out

    def predict(self, profiles: ArrayLike) -> NDArray[np.str_]:
        """Labels CC / WCC / NCC (the most probable)."""
        return np.asarray(CLASS_NAMES)[self.predict_proba(profiles).argmax(axis=1)]
