"""X-ray instruments for mock observations: Chandra ACIS-I, XMM-Newton EPIC-pn, SRG/eROSITA.

One frozen :class:`Instrument` per telescope in :data:`INSTRUMENTS` holds what a mock
observation needs in the 0.5-2 keV band (pixel, Gaussian PSF of the published
half-energy width, on-axis area, exposures, background, chips, vignetting); the
functions turn it into maps on the image grid (:func:`exposure_map`,
:func:`background_map`, :func:`convolve_psf`), photons (:func:`band_fraction`,
:func:`mean_photon_kev`) and a celestial WCS (:func:`wcs_cards`).
:mod:`coolcore.sim.observe` puts a cluster in front of it; the numbers and their
sources are in ``docs/simulator.md`` ("Mock observations").  Image-plane coordinates
are arcmin from the aim point, the image centre: ``x`` along the columns (FITS axis 1),
``y`` along the rows; the detector frame is the image frame turned by the roll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, special

__all__ = [
    "BAND_KEV",
    "HEW_PER_SIGMA",
    "INSTRUMENTS",
    "KEV_ERG",
    "POWER_LAW_PHOTON_KEV",
    "SKY_SB_ERG_DEG2",
    "Instrument",
    "add_point_sources",
    "aim_point",
    "background_map",
    "band_fraction",
    "convolve_psf",
    "detector_coverage",
    "exposure_map",
    "image_offsets_arcmin",
    "mean_photon_kev",
    "psf_kernel_1d",
    "sky_to_pixel",
    "wcs_cards",
]

BAND_KEV: tuple[float, float] = (0.5, 2.0)
"""The observed soft band (keV) of every mock observation."""

KEV_ERG = 1.602177e-9
"""One keV in erg."""

HEW_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""Half-energy width (diameter) of a 2-D Gaussian PSF in units of its sigma: 2.3548."""

POWER_LAW_PHOTON_KEV = math.log(4.0) / 1.5
"""Mean photon energy (keV) in 0.5-2 keV of a photon index 2 power law (0.924 keV):
the AGN and the field sources.  With index 2 there is no K-correction."""

SKY_SB_ERG_DEG2 = 8e-12
"""Smooth sky in 0.5-2 keV (erg s^-1 cm^-2 deg^-2): Galactic foreground plus the
cosmic X-ray background not drawn as point sources; counted as 1 keV photons."""


@dataclass(frozen=True)
class Instrument:
    """An X-ray imaging instrument in the 0.5-2 keV band (values approximate, on-axis).

    Attributes
    ----------
    name, telescope, detector : str
        Key in :data:`INSTRUMENTS` (``--instrument``); FITS ``TELESCOP``, ``INSTRUME``.
    pixel_arcsec : float
        Image pixel (native pixels binned, or a pipeline image binning).
    image_pixels : int
        Side of the square image in pixels; the aim point is the image centre.
    psf_hew_arcsec : float
        Half-energy width (diameter) of the Gaussian PSF, constant over the field.
    area_cm2 : float
        On-axis effective area, 0.5-2 keV average.
    exposure_s : (float, float)
        Nominal exposure range (drawn log-uniformly).
    redshift_range : (float, float)
        Redshifts the clusters are put at (uniformly).
    particle_rate : float
        Particle (non-X-ray) background, counts s^-1 arcmin^-2, not vignetted.
    vignetting_arcmin : float
        ``theta_v`` of the vignetting ``1 / (1 + (theta / theta_v)^2)``; ``inf``: none.
    chips_arcmin : tuple of (x0, x1, y0, y1)
        Sensitive chip rectangles in the detector frame, arcmin from the aim point.
    fov_radius_arcmin, fov_centre_arcmin : float, (float, float)
        Zero exposure beyond this radius from this centre (detector frame; ``inf``: none).
    max_offset_arcmin : float
        Pointed: the cluster lies uniformly in a disc of this radius around the aim
        point.  Survey: uniformly in the central half of the image (each axis).
    survey : bool
        Survey exposure (eROSITA): vignetting averaged into the exposure map,
        which varies smoothly across the field (``exposure_gradient``), no chips.
    exposure_gradient : float
        Survey: largest fractional exposure change from the centre to an image edge.
    """

    name: str
    telescope: str
    detector: str
    pixel_arcsec: float
    image_pixels: int
    psf_hew_arcsec: float
    area_cm2: float
    exposure_s: tuple[float, float]
    redshift_range: tuple[float, float]
    particle_rate: float
    vignetting_arcmin: float = math.inf
    chips_arcmin: tuple[tuple[float, float, float, float], ...] = ()
    fov_radius_arcmin: float = math.inf
    fov_centre_arcmin: tuple[float, float] = (0.0, 0.0)
    max_offset_arcmin: float = 2.0
    survey: bool = False
    exposure_gradient: float = 0.0

    @property
    def psf_sigma_arcsec(self) -> float:
        """Gaussian sigma of the PSF: HEW / (2 sqrt(2 ln 2))."""
        return self.psf_hew_arcsec / HEW_PER_SIGMA

    @property
    def sky_rate(self) -> float:
        """Sky background on-axis, counts s^-1 arcmin^-2: the smooth sky times the area."""
        return SKY_SB_ERG_DEG2 / 3600.0 / KEV_ERG * self.area_cm2

    @property
    def pixel_arcmin2(self) -> float:
        """Solid angle of one image pixel in arcmin^2."""
        return (self.pixel_arcsec / 60.0) ** 2

    @property
    def image_arcmin(self) -> float:
        """Side of the image in arcmin."""
        return self.image_pixels * self.pixel_arcsec / 60.0


def _chip_grid(
    nx: int, ny: int, size: tuple[float, float], gap: float, aim: tuple[float, float]
) -> tuple[tuple[float, float, float, float], ...]:
    """``nx`` x ``ny`` chips of ``size`` arcmin with ``gap`` between them, relative to the
    aim point, which lies at ``aim`` from the array's centre."""
    w, h = size
    return tuple(
        (x0 - aim[0], x0 + w - aim[0], y0 - aim[1], y0 + h - aim[1])
        for x0 in ((i - nx / 2) * (w + gap) + gap / 2 for i in range(nx))
        for y0 in ((j - ny / 2) * (h + gap) + gap / 2 for j in range(ny))
    )


_ACIS_CHIP = 1024 * 0.492 / 60.0  # 8.397 arcmin
_ACIS_GAP = 11.0 / 60.0
_PN_CCD = (64 * 4.1 / 60.0, 200 * 4.1 / 60.0)  # 4.37 x 13.67 arcmin
_PN_GAP = 4.1 / 60.0

INSTRUMENTS: dict[str, Instrument] = {
    "chandra": Instrument(
        name="chandra",
        telescope="CHANDRA",
        detector="ACIS-I",
        pixel_arcsec=4 * 0.492,
        image_pixels=640,
        psf_hew_arcsec=1.0,
        area_cm2=400.0,
        exposure_s=(20e3, 100e3),
        redshift_range=(0.05, 0.5),
        particle_rate=5e-4,
        vignetting_arcmin=20.0,
        # 2 x 2 chips of 8.4' with 11" gaps; the aim point on I3, 0.5' from both gaps
        chips_arcmin=_chip_grid(
            2, 2, (_ACIS_CHIP, _ACIS_CHIP), _ACIS_GAP, (0.5 + _ACIS_GAP / 2, -0.5 - _ACIS_GAP / 2)
        ),
        max_offset_arcmin=2.0,
    ),
    "xmm": Instrument(
        name="xmm",
        telescope="XMM",
        detector="EPN",
        pixel_arcsec=4.0,
        image_pixels=480,
        psf_hew_arcsec=15.0,
        area_cm2=1000.0,
        exposure_s=(20e3, 80e3),
        redshift_range=(0.05, 0.5),
        particle_rate=1.5e-3,
        vignetting_arcmin=15.0,
        # 6 x 2 CCDs of 4.37' x 13.67' with gaps of one pn pixel; the aim point on a
        # CCD 1.2' and 1.0' from the central gaps; the 30' telescope field of view
        chips_arcmin=_chip_grid(6, 2, _PN_CCD, _PN_GAP, (1.2, -1.0)),
        fov_radius_arcmin=15.0,
        fov_centre_arcmin=(-1.2, 1.0),
        max_offset_arcmin=2.0,
    ),
    "erosita": Instrument(
        name="erosita",
        telescope="SRG",
        detector="eROSITA",
        pixel_arcsec=4.0,
        image_pixels=600,
        psf_hew_arcsec=26.0,
        area_cm2=1300.0,
        exposure_s=(500.0, 2000.0),
        redshift_range=(0.05, 0.4),
        particle_rate=6e-4,
        survey=True,
        exposure_gradient=0.2,
    ),
}
"""The instruments, by ``--instrument`` name."""


# ------------------------------------------------------------------- the band


def band_fraction(kT_keV: float, z: float) -> float:
    """Fraction of a ``dL/dE ~ exp(-E / kT)`` spectrum's energy seen in the observed band.

    ``exp(-0.5 (1 + z) / kT) - exp(-2 (1 + z) / kT)``: the rest-frame band is
    ``0.5 (1 + z) - 2 (1 + z)`` keV.  An approximation of bremsstrahlung (Gaunt
    factor 1, no lines), with one temperature for the whole cluster.
    """
    lo, hi = BAND_KEV
    a = (1.0 + z) / kT_keV
    return math.exp(-lo * a) - math.exp(-hi * a)


def mean_photon_kev(kT_keV: float, z: float) -> float:
    """Mean observed photon energy (keV) in the band for ``dL/dE ~ exp(-E / kT)`` at ``z``.

    Photons ``dN/dE ~ exp(-a E) / E`` with ``a = (1 + z) / kT``:
    ``<E> = (exp(-a E1) - exp(-a E2)) / (a [E_1(a E1) - E_1(a E2)])`` (exponential integral).
    """
    lo, hi = BAND_KEV
    a = (1.0 + z) / kT_keV
    energy = (math.exp(-a * lo) - math.exp(-a * hi)) / a
    photons = float(special.exp1(a * lo) - special.exp1(a * hi))
    return energy / photons


# ------------------------------------------------------------------------ the maps


def image_offsets_arcmin(inst: Instrument) -> NDArray[np.float64]:
    """Offsets (arcmin) from the aim point of the image's pixel centres along one axis."""
    return (np.arange(inst.image_pixels) - (inst.image_pixels - 1) / 2.0) * inst.pixel_arcsec / 60.0


def _ramp_coverage(
    t: NDArray[np.float64], width: float, intervals: list[tuple[float, float]]
) -> NDArray[np.float64]:
    """Fraction of ``[t - width/2, t + width/2]`` inside the disjoint ``intervals``.

    The fraction is piecewise linear in ``t`` with breaks at the interval ends
    ``+- width/2``: it is computed there and interpolated.
    """
    ends = np.array(intervals, dtype=np.float64)
    knots = np.unique(np.concatenate([ends.ravel() - width / 2, ends.ravel() + width / 2]))
    lo, hi = knots[:, None] - width / 2, knots[:, None] + width / 2
    inside = np.minimum(hi, ends[None, :, 1]) - np.maximum(lo, ends[None, :, 0])
    values = np.clip(inside / width, 0.0, 1.0).sum(axis=1)
    values = np.where(values < 1e-9, 0.0, np.where(values > 1.0 - 1e-9, 1.0, values))  # rounding
    return np.interp(t, knots, values, left=0.0, right=0.0)


def detector_coverage(inst: Instrument, roll_deg: float) -> NDArray[np.float64]:
    """Fraction (0-1) of each image pixel on a chip and inside the field of view.

    The chips form a regular grid of columns and rows in the detector frame; a pixel's
    coverage is the product of the fractions of its footprint across the detector x
    and y axes that fall on a chip column and row, the footprint being taken as a box
    of the pixel's width at half height in that direction (``p max(|cos|, |sin|)`` of
    the roll); the field-of-view circle is a one-pixel linear ramp.  An instrument
    without chips (a survey) covers the whole image.
    """
    n = inst.image_pixels
    if not inst.chips_arcmin:
        return np.ones((n, n))
    t = image_offsets_arcmin(inst)
    x, y = t[None, :], t[:, None]
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    xd = c * x + s * y  # the detector frame: the image frame turned by -roll
    yd = -s * x + c * y
    p = inst.pixel_arcsec / 60.0
    width = p * max(abs(c), abs(s))
    columns = sorted({ch[:2] for ch in inst.chips_arcmin})
    rows = sorted({ch[2:] for ch in inst.chips_arcmin})
    cov = _ramp_coverage(xd, width, columns) * _ramp_coverage(yd, width, rows)
    if math.isfinite(inst.fov_radius_arcmin):
        fx, fy = inst.fov_centre_arcmin
        r = np.hypot(xd - fx, yd - fy)
        cov *= np.clip((inst.fov_radius_arcmin - r) / p + 0.5, 0.0, 1.0)
    return cov


def exposure_map(
    inst: Instrument,
    exposure_s: float,
    roll_deg: float = 0.0,
    gradient: tuple[float, float] = (0.0, 0.0),
    *,
    vignetting: bool = True,
    detector: bool = True,
    coverage: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Effective exposure (s) of each image pixel for a nominal ``exposure_s``.

    Pointed instruments: ``exposure_s / (1 + (theta / theta_v)^2)`` with ``theta`` the
    off-axis angle of the pixel centre, times the pixel's chip coverage
    (:func:`detector_coverage`): the nominal exposure at the aim point, zero in the
    chip gaps and off the field of view.  Survey (eROSITA): the survey exposure, with
    the vignetting averaged in, ``exposure_s (1 + gx x + gy y)`` with ``x, y`` the
    pixel centre in units of the image half-side (``gradient`` from
    :func:`coolcore.sim.observe.draw_pointing`).  ``vignetting=False`` leaves out the
    fall with theta (or the gradient), ``detector=False`` the chips and field of view;
    ``coverage`` is :func:`detector_coverage` when the caller already has it.
    """
    t = image_offsets_arcmin(inst)
    x, y = t[None, :], t[:, None]
    out = np.full((inst.image_pixels, inst.image_pixels), float(exposure_s))
    if vignetting and inst.survey:
        half = inst.image_arcmin / 2.0
        out *= 1.0 + gradient[0] * x / half + gradient[1] * y / half
    elif vignetting and math.isfinite(inst.vignetting_arcmin):
        out /= 1.0 + (x**2 + y**2) / inst.vignetting_arcmin**2
    if detector:
        out *= detector_coverage(inst, roll_deg) if coverage is None else coverage
    return out


def background_map(
    inst: Instrument, exposure: NDArray[np.float64], exposure_s: float, coverage: NDArray
) -> NDArray[np.float64]:
    """Expected background counts per pixel (a model, not a draw).

    The sky is vignetted: ``sky_rate x exposure``; the particle background is not:
    ``particle_rate x exposure_s x coverage`` (pointed), or follows the survey
    exposure map (survey).  Both per arcmin^2, times the pixel's solid angle.
    """
    if inst.survey:
        rate = (inst.sky_rate + inst.particle_rate) * exposure
    else:
        rate = inst.sky_rate * exposure + inst.particle_rate * exposure_s * coverage
    return rate * inst.pixel_arcmin2


def psf_kernel_1d(sigma_pix: float) -> NDArray[np.float64]:
    """A 1-D Gaussian of ``sigma_pix`` pixels integrated over each pixel (sums to 1).

    ``k[i] = Phi((i + 1/2) / sigma) - Phi((i - 1/2) / sigma)`` for
    ``|i| <= ceil(4 sigma) + 1``, so a sub-pixel PSF stays a single pixel.
    """
    r = math.ceil(4.0 * sigma_pix) + 1
    edges = (np.arange(-r, r + 2) - 0.5) / max(sigma_pix, 1e-12)
    k = np.diff(special.ndtr(edges))
    return k / k.sum()


def convolve_psf(image: NDArray[np.float64], inst: Instrument) -> NDArray[np.float64]:
    """``image`` convolved with the instrument's Gaussian PSF (flux leaving the edge is lost)."""
    k = psf_kernel_1d(inst.psf_sigma_arcsec / inst.pixel_arcsec)
    if k.size == 1:
        return image.copy()
    out = ndimage.convolve1d(image, k, axis=0, mode="constant", cval=0.0)
    return ndimage.convolve1d(out, k, axis=1, mode="constant", cval=0.0)


def add_point_sources(
    image: NDArray[np.float64], xy: NDArray[np.float64], flux: NDArray[np.float64], kernel: NDArray
) -> None:
    """Add point sources to ``image`` in place: ``flux x outer(kernel, kernel)`` stamps.

    ``xy`` holds 0-based (column, row) positions, rounded to the nearest pixel;
    ``kernel`` is :func:`psf_kernel_1d` (the same PSF as :func:`convolve_psf`).
    """
    n = image.shape[0]
    r = kernel.size // 2
    stamp = np.outer(kernel, kernel)
    for (x, y), f in zip(np.rint(xy).astype(int), flux, strict=True):
        x0, x1, y0, y1 = max(x - r, 0), min(x + r + 1, n), max(y - r, 0), min(y + r + 1, n)
        if x0 < x1 and y0 < y1:
            image[y0:y1, x0:x1] += f * stamp[y0 - y + r : y1 - y + r, x0 - x + r : x1 - x + r]


# ------------------------------------------------------------------------- the sky


def _tan_wcs(crval: tuple[float, float], crpix: tuple[float, float], cdelt_deg: float):
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cdelt = [-cdelt_deg, cdelt_deg]
    w.wcs.crval = list(crval)
    w.wcs.crpix = list(crpix)
    w.wcs.radesys = "ICRS"
    return w


def aim_point(
    inst: Instrument, ra_deg: float, dec_deg: float, offset_arcsec: tuple[float, float]
) -> tuple[float, float]:
    """The aim point (deg) that puts a source at ``ra_deg, dec_deg`` at ``offset_arcsec``
    from the image centre along the image axes (x: columns, y: rows).

    It is where the image centre falls in a TAN projection about the source with the
    image's pixel scale and orientation (north up, east left).
    """
    c = (inst.image_pixels + 1) / 2.0  # FITS pixels are 1-based
    dx, dy = (o / inst.pixel_arcsec for o in offset_arcsec)
    about = _tan_wcs((ra_deg, dec_deg), (c + dx, c + dy), inst.pixel_arcsec / 3600.0)
    ra, dec = about.wcs_pix2world([[c, c]], 1)[0]
    return float(ra), float(dec)


def sky_to_pixel(
    inst: Instrument, aim_ra: float, aim_dec: float, ra_deg: float, dec_deg: float
) -> tuple[float, float]:
    """0-based (column, row) of ``ra_deg, dec_deg`` in the image aimed at ``aim_ra, aim_dec``."""
    c = (inst.image_pixels + 1) / 2.0
    w = _tan_wcs((aim_ra, aim_dec), (c, c), inst.pixel_arcsec / 3600.0)
    px, py = w.wcs_world2pix([[ra_deg, dec_deg]], 1)[0]
    return float(px) - 1.0, float(py) - 1.0


def wcs_cards(inst: Instrument, aim_ra: float, aim_dec: float) -> list[tuple]:
    """FITS cards of the image's celestial WCS: TAN about the aim point, the image centre."""
    c = (inst.image_pixels + 1) / 2.0
    cd = inst.pixel_arcsec / 3600.0
    return [
        ("WCSAXES", 2, "number of WCS axes"),
        ("CTYPE1", "RA---TAN", "gnomonic projection about the aim point"),
        ("CTYPE2", "DEC--TAN", "gnomonic projection about the aim point"),
        ("CUNIT1", "deg", "unit of CDELT1 and CRVAL1"),
        ("CUNIT2", "deg", "unit of CDELT2 and CRVAL2"),
        ("CRPIX1", c, "reference pixel: the aim point, image centre"),
        ("CRPIX2", c, "reference pixel: the aim point, image centre"),
        ("CRVAL1", aim_ra, "[deg] right ascension of the aim point"),
        ("CRVAL2", aim_dec, "[deg] declination of the aim point"),
        ("CDELT1", -cd, "[deg] pixel size (RA grows to the left)"),
        ("CDELT2", cd, "[deg] pixel size"),
        ("RADESYS", "ICRS", "reference frame"),
    ]
