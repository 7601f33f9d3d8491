"""A map file's pixel scale in kpc from its header: ``PIXKPC``, else a celestial WCS
with a redshift keyword (Planck18), and its ``BUNIT``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["header_scale_and_unit", "map_pixel_kpc"]


# ------------------------------------------------------------------ pixel scale
def _wcs_pixel_kpc(path: Path) -> float | None:
    """Pixel scale in kpc from a FITS celestial WCS and a redshift keyword (Planck18)."""
    from coolcore.data.formats import open_fits
    from coolcore.data.observation import REDSHIFT_KEYS

    name = path.name.lower()
    if not any(s in name for s in (".fits", ".fit", ".fts", ".fz")):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open_fits(path) as hdul:
                hdul.verify("silentfix+ignore")
                hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2), None)
                if hdu is None:
                    return None
                header = hdu.header.copy()
        except Exception:
            return None
        z = None
        for key in REDSHIFT_KEYS:
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
    return header_scale_and_unit(path)[0]


def header_scale_and_unit(path: str | os.PathLike) -> tuple[float | None, str | None]:
    """Pixel scale in kpc (see :func:`map_pixel_kpc`) and ``BUNIT`` of a map file's header.

    Either is None where the header does not give it.

    Raises
    ------
    coolcore.errors.ImageError
        The header cannot be read, or its ``PIXKPC`` is not a positive finite number.
    """
    path = Path(path)
    from coolcore.data.images import image_header_info

    info = image_header_info(path)
    unit = info.get("bunit")
    if info.get("pixel_kpc"):
        return float(info["pixel_kpc"]), unit
    return _wcs_pixel_kpc(path), unit
