"""Mock X-ray observations of a simulated cluster with Chandra, XMM-Newton or eROSITA.

A cluster (:class:`~coolcore.sim.population.ClusterModel`) is put at a redshift and
a sky position (:func:`draw_placement`, once per cluster) and observed once per
projection (:func:`draw_pointing`: exposure, roll, offset from the aim point, field
point sources).  :func:`observe_projection` renders the projected emissivity
(:func:`~coolcore.sim.projection.render_projection`) on a kpc grid, resamples the
luminosity onto the detector pixels around the cluster's position (flux
conserving), converts it to soft-band photons (Planck18 distances, bremsstrahlung
band fraction), adds the point sources, convolves with the PSF, multiplies by the
effective area and the exposure map, adds the background and draws Poisson counts.
:func:`write_observation` writes the counts, exposure and background images with a
celestial WCS.  The instruments are :mod:`coolcore.sim.instruments`; the choices are
documented in ``docs/simulator.md`` ("Mock observations").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from coolcore.sim import physics as ph
from coolcore.sim.instruments import (
    BAND_KEV,
    KEV_ERG,
    POWER_LAW_PHOTON_KEV,
    Instrument,
    add_point_sources,
    aim_point,
    background_map,
    band_fraction,
    convolve_psf,
    detector_coverage,
    exposure_map,
    mean_photon_kev,
    psf_kernel_1d,
    sky_to_pixel,
    wcs_cards,
)
from coolcore.sim.population import ClusterModel
from coolcore.sim.projection import SUBSAMPLE, render_projection

__all__ = [
    "AGN_LOG_LUMINOSITY",
    "COARSE_FACTOR",
    "LOGN_LOGS",
    "Observation",
    "Placement",
    "Pointing",
    "agn_probability",
    "cluster_luminosity_image",
    "draw_placement",
    "draw_pointing",
    "kpc_per_arcsec",
    "luminosity_distance_cm",
    "observe_projection",
    "write_observation",
]

LOGN_LOGS: dict[str, float] = dict(
    n_above_break_deg2=100.0, break_cgs=1e-14, slope_bright=1.5, slope_faint=0.8, s_min_cgs=2e-15
)
"""Field point sources, 0.5-2 keV: ``N(>S) = 100 deg^-2 (S / 1e-14)^-1.5`` above the
break (Euclidean), ``(S / 1e-14)^-0.8`` below it, down to 2e-15 erg s^-1 cm^-2."""

AGN_LOG_LUMINOSITY: tuple[float, float] = (41.5, 43.5)
"""A central AGN's 0.5-2 keV luminosity is 10^U(41.5, 43.5) erg s^-1."""

SOURCE_CUT_COUNTS = 30.0
"""A field point source expected to give at least this many counts is "detected" and cut
out of the exposure map (exposure 0 within :data:`SOURCE_CUT_HEW` half-energy widths, at
least 3 pixels), as pipelines cut detected sources; fainter ones stay in the image.  The
central AGN is not cut (it sits on the cluster's core, as in real cool cores)."""

SOURCE_CUT_HEW = 1.5
"""Radius of a source cut-out in units of the PSF's half-energy width."""

COARSE_FACTOR = 3
"""Outside the training field the cluster is rendered on pixels this many times larger,
or the largest odd factor whose pixel still fits in the PSF's HEW if that is larger."""

FIELD_MARGIN = 1.1
"""The fine rendering grid covers ``FIELD_MARGIN x fov_kpc`` around the cluster."""


# ------------------------------------------------------------------------- physics


def luminosity_distance_cm(z: float) -> float:
    """Luminosity distance (cm) in Planck18."""
    from astropy import units as u
    from astropy.cosmology import Planck18

    return float(Planck18.luminosity_distance(z).to_value(u.cm))


def kpc_per_arcsec(z: float) -> float:
    """Proper kpc per arcsec at redshift ``z`` in Planck18."""
    from astropy.cosmology import Planck18

    return float(Planck18.kpc_proper_per_arcmin(z).value) / 60.0


def agn_probability(t_cool_gyr: float) -> float:
    """Probability of a central X-ray AGN: ``0.05 + 0.35 exp(-t_cool / 1 Gyr)``."""
    return 0.05 + 0.35 * math.exp(-t_cool_gyr)


# --------------------------------------------------------------------------- draws


@dataclass(frozen=True)
class Placement:
    """Where a cluster is: redshift, true sky position (deg), central AGN luminosity."""

    redshift: float
    ra_deg: float
    dec_deg: float
    agn_erg_s: float = 0.0  # 0.5-2 keV; 0: no central AGN


@dataclass(frozen=True)
class Pointing:
    """One observation: nominal exposure, roll, cluster offset, field sources.

    ``offset_arcsec`` is the cluster centre minus the aim point along the image
    axes (x: columns, y: rows); ``sources`` is ``(k, 3)``: column, row (pixels,
    0-based) and flux (erg s^-1 cm^-2, 0.5-2 keV); ``gradient`` the survey exposure
    gradient (see :func:`~coolcore.sim.instruments.exposure_map`).
    """

    exposure_s: float
    roll_deg: float = 0.0
    offset_arcsec: tuple[float, float] = (0.0, 0.0)
    gradient: tuple[float, float] = (0.0, 0.0)
    sources: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))


def draw_placement(inst: Instrument, model: ClusterModel, rng: np.random.Generator) -> Placement:
    """Redshift uniform in the instrument's range, position uniform on the sphere, and a
    central AGN with probability :func:`agn_probability` of the cluster's cooling time."""
    z = rng.uniform(*inst.redshift_range)
    ra = 360.0 * rng.random()
    dec = math.degrees(math.asin(2.0 * rng.random() - 1.0))
    has_agn = rng.random() < agn_probability(model.t_cool_gyr)
    lum = 10.0 ** rng.uniform(*AGN_LOG_LUMINOSITY)
    return Placement(float(z), ra, dec, float(lum) if has_agn else 0.0)


def _source_fluxes(rng: np.random.Generator, k: int) -> NDArray[np.float64]:
    """``k`` fluxes from the broken power law :data:`LOGN_LOGS` (inverse transform)."""
    p = LOGN_LOGS
    n_min = (p["s_min_cgs"] / p["break_cgs"]) ** -p["slope_faint"]  # N(>S_min) / N(>S_break)
    ratio = rng.random(k) * n_min  # N(>S) / N(>S_break), uniform in (0, n_min)
    bright = ratio <= 1.0
    slope = np.where(bright, p["slope_bright"], p["slope_faint"])
    return p["break_cgs"] * ratio ** (-1.0 / slope)


def draw_pointing(inst: Instrument, rng: np.random.Generator) -> Pointing:
    """Exposure log-uniform in range, roll uniform, the cluster's offset (pointed: uniform
    in a disc of ``max_offset_arcmin``; survey: uniform in the central half of the image
    along each axis), and Poisson field sources from :data:`LOGN_LOGS`, placed uniformly."""
    lo, hi = inst.exposure_s
    exposure = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    roll = 360.0 * rng.random()
    if inst.survey:
        offset = rng.uniform(-0.25, 0.25, 2) * inst.image_arcmin * 60.0
        g = inst.exposure_gradient * rng.random()
        psi = 2.0 * math.pi * rng.random()
        gradient = (g * math.cos(psi), g * math.sin(psi))
    else:
        r = inst.max_offset_arcmin * 60.0 * math.sqrt(rng.random())
        phi = 2.0 * math.pi * rng.random()
        offset = np.array([r * math.cos(phi), r * math.sin(phi)])
        gradient = (0.0, 0.0)
    p = LOGN_LOGS
    area_deg2 = (inst.image_arcmin / 60.0) ** 2
    mean = (
        area_deg2 * p["n_above_break_deg2"] * (p["s_min_cgs"] / p["break_cgs"]) ** -p["slope_faint"]
    )
    k = int(rng.poisson(mean))
    xy = rng.uniform(-0.5, inst.image_pixels - 0.5, (k, 2))
    sources = np.column_stack([xy, _source_fluxes(rng, k)])
    return Pointing(exposure, roll, (float(offset[0]), float(offset[1])), gradient, sources)


# ----------------------------------------------------------------------- rendering


def _odd_at_least(x: float) -> int:
    n = max(1, math.ceil(x))
    return n if n % 2 else n + 1


def _overlap_matrix(det_edges: NDArray[np.float64], h: float, n: int) -> sparse.csr_array:
    """Fraction of each render pixel (odd ``n``, size ``h``, centred on 0) in each image pixel."""
    b = (np.arange(n + 1) - n / 2.0) * h
    w = np.minimum(det_edges[1:, None], b[None, 1:]) - np.maximum(
        det_edges[:-1, None], b[None, :-1]
    )
    return sparse.csr_array(np.clip(w, 0.0, None) / h)


def cluster_luminosity_image(
    model: ClusterModel,
    axis: str,
    inst: Instrument,
    kpc_arcsec: float,
    centre_pix: tuple[float, float],
    *,
    profile: tuple[NDArray, NDArray] | None = None,
    size: int = 256,
    fov_kpc: float = 1000.0,
) -> NDArray[np.float64]:
    """Bolometric luminosity (erg s^-1) of the cluster in each image pixel.

    The emissivity map of :func:`~coolcore.sim.projection.render_projection` times the
    render pixel's area is resampled onto the image pixels by their overlap (flux
    conserving; the cluster centre at ``centre_pix``, 0-based column and row).  Inside
    ``FIELD_MARGIN x fov_kpc`` the render pixel is the larger of the image pixel and
    ``fov_kpc / size``; the rest of the image (plus 5 PSF sigma) comes from a grid
    coarser by an odd factor (``COARSE_FACTOR``, or more while the image pixel times the
    factor stays within the PSF's HEW), one sample per pixel, whose central block the
    fine grid replaces.
    """
    n = inst.image_pixels
    det_kpc = inst.pixel_arcsec * kpc_arcsec
    ex = (np.arange(n + 1) - 0.5 - centre_pix[0]) * det_kpc
    ey = (np.arange(n + 1) - 0.5 - centre_pix[1]) * det_kpc
    half_need = max(abs(ex[0]), ex[-1], abs(ey[0]), ey[-1]) + 5 * inst.psf_sigma_arcsec * kpc_arcsec
    h_f = max(det_kpc, fov_kpc / size)
    f = max(COARSE_FACTOR, int((inst.psf_hew_arcsec / inst.pixel_arcsec - 1) // 2) * 2 + 1)
    m = _odd_at_least(FIELD_MARGIN * fov_kpc / (f * h_f))
    grids = [(m * f, h_f, 0)]
    if m * f * h_f / 2.0 >= half_need:  # the fine grid covers the image
        grids = [(_odd_at_least(2.0 * half_need / h_f), h_f, 0)]
    else:
        h_c = f * h_f
        grids.append((_odd_at_least(2.0 * half_need / h_c), h_c, m))
    out = np.zeros((n, n))
    for size_px, h, blank in grids:
        lum = render_projection(model, axis, size_px, size_px * h, profile=profile,
                                subsample=1 if blank else SUBSAMPLE)  # fmt: skip
        lum *= (h * ph.KPC_CM) ** 2
        if blank:
            c, b = size_px // 2, blank // 2
            lum[c - b : c + b + 1, c - b : c + b + 1] = 0.0
        wx, wy = _overlap_matrix(ex, h, size_px), _overlap_matrix(ey, h, size_px)
        out += (wx @ (wy @ lum).T).T
    return out


# --------------------------------------------------------------------- observation


@dataclass(frozen=True)
class Observation:
    """A mock observation on the image grid (rows: y, columns: x).

    ``counts`` (int32) is the Poisson draw of ``cluster + sources + background``;
    ``exposure`` (s) and ``background`` (expected counts) are the maps written beside
    it; ``cluster`` the cluster's expected counts alone; ``cards`` the WCS and
    observation header cards; ``info`` the catalogue values.
    """

    counts: NDArray[np.int32]
    exposure: NDArray[np.float64]
    background: NDArray[np.float64]
    cluster: NDArray[np.float64]
    sources: NDArray[np.float64]
    cards: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


def _observation_cards(inst: Instrument, place: Placement, point: Pointing) -> list:
    """The image's WCS (aimed so that the cluster lies at ``point.offset_arcsec``) and
    the observation's header cards."""
    ra, dec = aim_point(inst, place.ra_deg, place.dec_deg, point.offset_arcsec)
    return [
        *wcs_cards(inst, ra, dec),
        ("RA_PNT", ra, "[deg] pointing right ascension"),
        ("DEC_PNT", dec, "[deg] pointing declination"),
        ("PA_PNT", point.roll_deg, "[deg] roll angle of the detector"),
        ("TELESCOP", inst.telescope, "mission"),
        ("INSTRUME", inst.detector, "instrument"),
        ("ENERG_LO", BAND_KEV[0], "[keV] lower end of the band"),
        ("ENERG_HI", BAND_KEV[1], "[keV] upper end of the band"),
        ("EXPOSURE", point.exposure_s, "[s] nominal exposure, at the aim point"),
        ("PSFHEW", inst.psf_hew_arcsec, "[arcsec] half-energy width of the Gaussian PSF"),
        ("REDSHIFT", place.redshift, "redshift of the cluster"),
    ]


def _photon_images(
    model: ClusterModel,
    inst: Instrument,
    z: float,
    lum: NDArray,
    sources: NDArray,
    centre: tuple[float, float],
    agn_erg_s: float,
    psf: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Photons s^-1 cm^-2 per pixel in the band, PSF-convolved: the cluster, and the point
    sources (field ``sources`` rows column, row, flux; an AGN of ``agn_erg_s`` at ``centre``)."""
    sphere = 4.0 * math.pi * luminosity_distance_cm(z) ** 2
    photon_erg = mean_photon_kev(model.T_keV, z) * KEV_ERG
    cluster = lum * band_fraction(model.T_keV, z) / sphere / photon_erg
    kernel = psf_kernel_1d(inst.psf_sigma_arcsec / inst.pixel_arcsec) if psf else np.ones(1)
    if psf:
        cluster = convolve_psf(cluster, inst)
    points = np.zeros_like(cluster)
    pl_erg = POWER_LAW_PHOTON_KEV * KEV_ERG
    if len(sources):
        add_point_sources(points, sources[:, :2], sources[:, 2] / pl_erg, kernel)
    if agn_erg_s > 0:
        add_point_sources(
            points, np.array([centre]), np.array([agn_erg_s / sphere / pl_erg]), kernel
        )
    return cluster, points


def _cut_sources(expo: NDArray[np.float64], sources: NDArray, inst: Instrument) -> int:
    """Zero the exposure around each field source expected to give >= SOURCE_CUT_COUNTS
    counts (in place); the number cut."""
    n = expo.shape[0]
    col = np.clip(np.rint(sources[:, 0]).astype(int), 0, n - 1)
    row = np.clip(np.rint(sources[:, 1]).astype(int), 0, n - 1)
    photons = sources[:, 2] / (POWER_LAW_PHOTON_KEV * KEV_ERG)
    expected = photons * inst.area_cm2 * expo[row, col]
    radius = max(3.0, SOURCE_CUT_HEW * inst.psf_hew_arcsec / inst.pixel_arcsec)
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    for x, y in sources[expected >= SOURCE_CUT_COUNTS, :2]:
        x0, y0 = round(x), round(y)
        ys, xs = yy + y0, xx + x0
        keep = (np.hypot(xs - x, ys - y) <= radius) & (ys >= 0) & (ys < n) & (xs >= 0) & (xs < n)
        expo[ys[keep], xs[keep]] = 0.0
    return int((expected >= SOURCE_CUT_COUNTS).sum())


def observe_projection(
    model: ClusterModel,
    axis: str,
    inst: Instrument,
    place: Placement,
    point: Pointing,
    rng: np.random.Generator,
    *,
    profile: tuple[NDArray, NDArray] | None = None,
    size: int = 256,
    fov_kpc: float = 1000.0,
    vignetting: bool = True,
    detector: bool = True,
    psf: bool = True,
    background: bool = True,
    point_sources: bool = True,
    agn: bool = True,
) -> Observation:
    """Observe one projection of ``model`` with ``inst`` (see the module docstring).

    Photons per pixel: ``L_pix f_band / (4 pi D_L^2) / <E>`` with ``L_pix`` from
    :func:`cluster_luminosity_image`, ``f_band`` :func:`band_fraction` and ``<E>``
    :func:`mean_photon_kev` at the cluster's mean temperature ``T_keV``; point sources
    ``S / 0.924 keV``; expected counts = photons x area x exposure map.  The switches
    leave out the vignetting (or the survey gradient), the chips and field of view
    (``detector``), the PSF, the background, the field sources and the central AGN.
    ``size`` and ``fov_kpc`` set the fine rendering grid (``fov_kpc / size`` kpc).
    """
    cards = _observation_cards(inst, place, point)
    aim = {key: value for key, value, _ in cards}
    # the cluster's pixel from the image's own WCS: the rendering and true_ra/dec agree
    centre = sky_to_pixel(inst, aim["CRVAL1"], aim["CRVAL2"], place.ra_deg, place.dec_deg)
    lum = cluster_luminosity_image(
        model, axis, inst, kpc_per_arcsec(place.redshift), centre,
        profile=profile, size=size, fov_kpc=fov_kpc,
    )  # fmt: skip
    sources = point.sources if point_sources else np.zeros((0, 3))
    agn_erg_s = place.agn_erg_s if agn else 0.0
    cluster, sources = _photon_images(model, inst, place.redshift, lum, sources, centre,
                                      agn_erg_s, psf)  # fmt: skip
    n = inst.image_pixels
    coverage = detector_coverage(inst, point.roll_deg) if detector else np.ones((n, n))
    expo = exposure_map(inst, point.exposure_s, point.roll_deg, point.gradient,
                        vignetting=vignetting, detector=detector, coverage=coverage)  # fmt: skip
    bkg = background_map(inst, expo, point.exposure_s, coverage) if background else np.zeros((n, n))
    cluster *= inst.area_cm2 * expo
    sources *= inst.area_cm2 * expo
    if point_sources and len(point.sources):
        _cut_sources(expo, point.sources, inst)
    counts = rng.poisson(cluster + sources + bkg).astype(np.int32)
    x0, y0 = (centre[i] - (n - 1) / 2.0 for i in (0, 1))
    info = {
        "redshift": place.redshift,
        "instrument": inst.name,
        "true_ra": place.ra_deg,
        "true_dec": place.dec_deg,
        "offset_arcsec": math.hypot(x0, y0) * inst.pixel_arcsec,
        "exposure_s": point.exposure_s,
        "agn": agn_erg_s > 0,
        "n_point_sources": len(point.sources) if point_sources else 0,
        "expected_counts": float(cluster.sum()),
    }
    return Observation(counts, expo, bkg, cluster, sources, cards, info)


def write_observation(
    obs: Observation, out_dir: str | Path, image_id: str, extra_cards: list = ()
) -> dict:
    """Write ``images/``, ``exposure/`` and ``background/<image_id>.fits`` under ``out_dir``.

    Every file has the observation's WCS and cards plus ``extra_cards`` (the cluster's
    physics); returns the catalogue values: the three paths, relative to ``out_dir``
    (``file``, ``exposure``, ``background``), then ``obs.info``.
    """
    from astropy.io import fits

    products = (
        ("file", "images", obs.counts, "count", "photon counts, 0.5-2 keV"),
        ("exposure", "exposure", obs.exposure.astype(np.float32), "s",
         "[s] effective exposure (vignetting, chips)"),
        ("background", "background", obs.background.astype(np.float32), "count",
         "expected background counts per pixel (model)"),
    )  # fmt: skip
    row = {}
    header = fits.Header([*obs.cards, *extra_cards])  # built once: astropy's cards are slow
    for key, folder, data, bunit, comment in products:
        rel = f"{folder}/{image_id}.fits"
        header["BUNIT"] = (bunit, comment)
        fits.PrimaryHDU(data, header=header).writeto(Path(out_dir) / rel, overwrite=True)
        row[key] = rel
    return {**row, **obs.info}
