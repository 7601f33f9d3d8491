"""An observation's brightness on one scale for clusters at any distance."""

from __future__ import annotations

import math

import numpy as np

from coolcore.errors import ImageError

__all__ = ["sphere_area_mpc2", "surface_luminosity"]


def sphere_area_mpc2(redshift: float | None, cosmology: str, name: str = "") -> float:
    """``4 pi D_L^2`` in Mpc^2 of ``redshift`` in the astropy realization ``cosmology``:
    what a count rate is multiplied by to put clusters at any distance on one scale.

    Raises
    ------
    coolcore.errors.ImageError
        No redshift.
    """
    import astropy.units as u
    from astropy.cosmology import realizations

    if redshift is None:
        raise ImageError(
            f"{name}: the brightness on one scale needs the redshift "
            "(catalogue column redshift, header REDSHIFT or --redshift)"
        )
    d_mpc = getattr(realizations, cosmology).luminosity_distance(redshift).to_value(u.Mpc)
    return 4.0 * math.pi * d_mpc**2


def surface_luminosity(
    image: np.ndarray, field_kpc: float, redshift: float | None, cosmology: str, name: str = ""
) -> np.ndarray:
    """An observation's field on one brightness scale for clusters at any distance.

    ``image`` (counts/s per pixel of a ``field_kpc`` square field) divided by the
    pixel's area in kpc^2 and multiplied by ``4 pi D_L^2`` in Mpc^2
    (:func:`sphere_area_mpc2`): the photons a kpc^2 of the cluster emits per second
    into the instrument's band and area, independent of the distance (the band's
    redshift, the K-correction, stays in it).  Data-set scaling of observations uses
    it, so that a distant cluster is not taken for a faint one.

    Raises
    ------
    coolcore.errors.ImageError
        No redshift.
    """
    pixel_area = (field_kpc / image.shape[0]) ** 2
    return image / pixel_area * sphere_area_mpc2(redshift, cosmology, name)
