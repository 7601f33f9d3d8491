"""From an X-ray observation (counts, exposure, background, redshift) to the model's input field.

Real and mock observations alike: counts with a celestial WCS, an exposure map
(seconds; zero off the detector, in chip gaps, where point sources were cut out),
optionally a background map (expected background *counts* per pixel) and the
redshift.  :func:`prepare_observation` makes the ``grid`` x ``grid`` field of side
``field_kpc`` that :func:`coolcore.data.transforms.normalise_crops` then logs,
scales and resizes.  Its steps (``p`` = kpc per pixel):

1. ``field_px = field_kpc / p`` (:func:`observation_pixel_kpc`); an image narrower
   than ``field_px`` is refused: a cut-out is never stretched.
2. Valid pixels: finite counts (and background); exposure finite, > 0 and
   ``>= exposure_fraction * max``.  No exposure map: 1 s everywhere.
3. Centre: ``center`` through the WCS, else found on ``counts / exposure``: rate
   (masked -> 0) and valid mask smoothed by a Gaussian (for sigma >= 6 px on
   ``floor(sigma / 3)``-px blocks) and divided; the brightest pixel where the
   smoothed mask is > 0.5 at sigma ``150 kpc/p`` (coarse: a point source's light
   is spread thin there, the cluster's is not), then at ``max(1, 40 kpc/p)`` px
   within 150 kpc of it, refined by photutils
   ``centroid_com`` in a box of half-width ``max(3 px, 60 kpc/p)``, re-centred
   until it moves < 0.01 px, masked pixels and their mirror images excluded.
4. Background: the map (``"map"``); else ``b = sum(counts) / sum(exposure)`` over
   valid pixels beyond ``0.75 * field_px`` from the centre if they are >= 10% of
   the valid pixels (``"outer annulus"``); else none, with a warning (``"none"``).
   ``rate_map = (counts - background counts) / exposure``, NaN where masked.
5. Filling (creates no cool core, no zero holes for the log): masked and off-image
   pixels get the median valid rate of their annulus (width ``max(1, 0.01 *
   field_px)`` px), linear in radius between annuli with valid pixels, constant
   beyond, floored at the field's smallest positive valid rate.
6. The square of side ``field_px`` around the centre is rebinned exactly,
   conserving flux: ``image = Wy @ field @ Wx.T``, ``W[i, k]`` the overlap length of
   output pixel ``i`` with input pixel ``k`` (spanning ``[k - 0.5, k + 0.5]``):
   counts/s per output pixel.  ``mask``: output pixels more than half masked.
7. Valid rates <= 0 (noise) are kept: the downstream log floors them.
8. ``counts``: sum of ``counts - background counts`` over valid pixels, weighted
   by each pixel's area share inside the square.  Warnings: counts <
   :data:`LOW_COUNTS_WARNING`; > 25% of the pixels within ``0.1 * field_px`` of the
   centre masked; > 1% of the field off the image.  ImageError: counts <
   :data:`MIN_SOURCE_COUNTS`; > 50% of the field off the image; no valid pixel in it.

``docs/observations.md``: the reasons, the messages, a worked example (Abell 1835).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coolcore.data.checks import first_line, missing_file_problem, pixel_kpc_problem
from coolcore.data.formats import choose_hdu, format_of, open_fits, quiet_astropy
from coolcore.data.images import read_image
from coolcore.data.resample import overlap_weights, ring_fill, window
from coolcore.errors import ImageError, UsageError

__all__ = ["DEFAULT_COSMOLOGY", "EXPOSURE_FRACTION", "LOW_COUNTS_WARNING", "MIN_SOURCE_COUNTS"]
__all__ += ["REDSHIFT_KEYS", "Observation", "PreparedField", "observation_pixel_kpc"]
__all__ += ["prepare_observation", "read_observation"]

DEFAULT_COSMOLOGY = "Planck18"  # an astropy.cosmology realization
EXPOSURE_FRACTION = 0.1  # pixels with exposure < this * max(exposure) are masked
MIN_SOURCE_COUNTS = 50.0  # fewer background-subtracted counts in the field: ImageError
LOW_COUNTS_WARNING = 2000.0  # fewer: a warning
REDSHIFT_KEYS = ("REDSHIFT", "Z", "Z_CL", "ZCLUST")  # header keywords, in this order
COARSE_SMOOTH_KPC = 150.0  # the centre's first guess: the peak at this smoothing


@dataclass
class Observation:
    """One X-ray observation as read (arrays on the counts image's pixel grid)."""

    name: str
    counts: np.ndarray
    exposure: np.ndarray | None
    background: np.ndarray | None
    wcs: Any
    redshift: float | None
    pixel_kpc: float | None = None
    center: tuple[float, float] | None = None


@dataclass
class PreparedField:
    """The field cut from an observation (module docstring: the steps)."""

    image: np.ndarray
    mask: np.ndarray
    rate_map: np.ndarray
    valid: np.ndarray
    center_xy: tuple[float, float]
    center_ra: float
    center_dec: float
    center_source: str
    pixel_kpc: float
    field_kpc: float
    field_px: float
    counts: float
    masked_fraction: float
    warnings: list[str] = field(default_factory=list)
    background_method: str = "map"
    name: str = ""
    counts_map: np.ndarray | None = field(default=None, repr=False)  # the observation, for figures
    redshift: float | None = None
    cosmology: str = DEFAULT_COSMOLOGY

    def surface_luminosity(self) -> np.ndarray:
        """:func:`coolcore.data.brightness.surface_luminosity` of ``image``."""
        from coolcore.data.brightness import surface_luminosity as lum

        return lum(self.image, self.field_kpc, self.redshift, self.cosmology, self.name)

    def diagnostics(self) -> dict[str, Any]:
        """Centre, scale, counts, masked fraction, and the warnings' texts joined by "; "."""
        keys = ("center_ra", "center_dec", "pixel_kpc", "field_kpc", "counts", "masked_fraction")
        out: dict[str, Any] = {k: float(getattr(self, k)) for k in keys}
        out["warning"] = "; ".join(w.removeprefix(f"{self.name}: ") for w in self.warnings)
        return out


def _read_map(src: Any, label: str, bin_size: float | None = None) -> tuple[np.ndarray, Any]:
    """A 2-D float64 map and its FITS header (None for arrays and other formats); an
    event list is binned when ``bin_size`` is given (:func:`coolcore.data.events.bin_events`)."""
    if not isinstance(src, str | os.PathLike):
        arr = np.array(src, dtype=np.float64)
        if arr.ndim != 2:
            raise ImageError(f"{label}: expected a 2-D array, got shape {arr.shape}")
        return arr, None
    path = Path(os.fspath(src))
    if (problem := missing_file_problem(path)) is not None:
        raise ImageError(f"{path}: {problem}")
    if format_of(path) != "fits":
        return read_image(path), None
    if bin_size is not None:
        from coolcore.data.events import bin_events, is_event_list

        if is_event_list(path):
            return bin_events(path, bin_size)
    with quiet_astropy():
        try:  # a string SIMPLE card ('T') must still open
            with open_fits(path) as hdul:
                hdul.verify("silentfix+ignore")
                hdu = choose_hdu(hdul, None, path)
                data, header = np.asarray(hdu.data, dtype=np.float64), hdu.header.copy()
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"{path}: not a readable FITS file ({first_line(exc)})") from None
    data = data.squeeze() if data.ndim > 2 else data
    if data.ndim != 2:
        raise ImageError(f"{path}: not a 2-D image (array of shape {data.shape})")
    return np.ascontiguousarray(data), header


def _celestial_wcs(header: Any) -> Any:
    """``WCS(header).celestial`` when the header has a 2-D celestial WCS, else None."""
    from astropy.wcs import WCS

    try:
        with quiet_astropy():
            wcs = WCS(header) if header is not None else WCS(naxis=2)
    except Exception:
        return None
    return wcs.celestial if wcs.has_celestial and wcs.celestial.naxis == 2 else None


def _same_wcs(a: Any, b: Any, shape: tuple[int, ...]) -> bool:
    """Whether two WCSs put the image's corners and centre within 0.01 pixel of each other."""
    xs = np.array([0.0, shape[1] - 1, 0.0, shape[1] - 1, (shape[1] - 1) / 2])
    ys = np.array([0.0, 0.0, shape[0] - 1, shape[0] - 1, (shape[0] - 1) / 2])
    bx, by = b.world_to_pixel_values(*a.pixel_to_world_values(xs, ys))
    return bool(np.all(np.hypot(bx - xs, by - ys) < 0.01))


def _redshift(value: Any, header: Any, name: str) -> float | None:
    """The redshift given, else from a header keyword; ImageError outside (0, 10)."""
    keys = [k for k in REDSHIFT_KEYS if value is None and header is not None and k in header]
    value, source = (
        (header[keys[0]], f"header keyword {keys[0]}") if keys else (value, "--redshift")
    )
    if value is None:
        return None
    z = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else -1.0
    if not (math.isfinite(z) and 0.0 < z < 10.0):
        raise ImageError(f"{name}: redshift {value!r} ({source}): must be in (0, 10)")
    return z


def _check_map(data: np.ndarray, role: str, label: str, shape: tuple[int, ...]) -> None:
    """Refuse a map of another shape than the counts, or with negative values."""
    if data.shape != shape:
        raise ImageError(f"{label}: {role} map of shape {data.shape}, but the counts are {shape}")
    finite = data[np.isfinite(data)]
    if finite.size and (low := float(finite.min())) < 0:
        why = "; give the raw counts image, not a background-subtracted one"
        raise ImageError(f"{label}: negative {role} (min {low:g}){why if role == 'counts' else ''}")


def _check_arguments(pixel_kpc: Any, center: Any) -> None:
    if pixel_kpc is not None and (problem := pixel_kpc_problem(pixel_kpc)) is not None:
        raise UsageError(f"--pixel-kpc {pixel_kpc!r}: {problem}")
    try:
        ra, dec = (float(v) for v in center) if center is not None else (0.0, 0.0)
        ok = math.isfinite(ra) and -90.0 <= dec <= 90.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"--center {center!r}: must be RA, Dec in degrees (Dec in [-90, 90])")


def read_observation(
    counts: Any,
    *,
    exposure: Any = None,
    background: Any = None,
    redshift: float | None = None,
    center: tuple[float, float] | None = None,
    pixel_kpc: float | None = None,
    name: str | None = None,
    bin_size: float | None = None,
) -> Observation:
    """Read and check an observation (``name``: the counts path or "observation").

    ``bin_size``: a counts file that is an event list is binned on its sky X/Y in
    ``bin_size``-pixel bins (0.5-2 keV; :func:`coolcore.data.events.bin_events`).

    ``counts``, ``exposure`` (s), ``background`` (expected counts per pixel): a path
    (FITS with header; other formats by :func:`~coolcore.data.images.read_image`) or a
    2-D array.  ``redshift``: else a counts header keyword in :data:`REDSHIFT_KEYS`.
    ImageError (one line naming the file): unreadable, another shape or WCS than the
    counts (corners or centre 0.01 px apart), negative values, redshift not in (0, 10).
    """
    name = name or (os.fspath(counts) if isinstance(counts, str | os.PathLike) else "observation")
    _check_arguments(pixel_kpc, center)
    data, header = _read_map(counts, name, bin_size)
    _check_map(data, "counts", name, data.shape)
    wcs = _celestial_wcs(header)
    maps: dict[str, np.ndarray | None] = {"exposure": None, "background": None}
    for role, src in (("exposure", exposure), ("background", background)):
        if src is None:
            continue
        label = os.fspath(src) if isinstance(src, str | os.PathLike) else f"{name} {role}"
        maps[role], other_header = _read_map(src, label)
        _check_map(maps[role], role, label, data.shape)
        other = _celestial_wcs(other_header)
        if wcs is not None and other is not None and not _same_wcs(wcs, other, data.shape):
            raise ImageError(
                f"{label}: its WCS differs from that of the counts image {name}; "
                "reproject it onto the counts image's pixel grid"
            )
    z = _redshift(redshift, header, name)
    ra_dec = None if center is None else (float(center[0]), float(center[1]))
    scale = None if pixel_kpc is None else float(pixel_kpc)
    return Observation(name, data, maps["exposure"], maps["background"], wcs, z, scale, ra_dec)


def observation_pixel_kpc(obs: Observation, cosmology: str = DEFAULT_COSMOLOGY) -> float:
    """Pixel side in kpc: ``obs.pixel_kpc``, else the WCS pixel scale at the redshift.

    Mean of :func:`astropy.wcs.utils.proj_plane_pixel_scales` (degrees) times
    ``kpc_proper_per_arcmin(z)`` of the astropy realization ``cosmology`` in kpc per
    degree.  ImageError: no WCS and no pixel scale, no redshift; UsageError: a name
    not in ``astropy.cosmology.realizations.available``.
    """
    import astropy.units as u
    from astropy.cosmology import realizations
    from astropy.wcs.utils import proj_plane_pixel_scales

    if not isinstance(cosmology, str) or cosmology not in realizations.available:
        known = ", ".join(realizations.available)
        raise UsageError(f"--cosmology {cosmology!r}: unknown; one of {known}")
    if obs.pixel_kpc is not None:
        _check_arguments(obs.pixel_kpc, None)
        return float(obs.pixel_kpc)
    if obs.wcs is None:
        raise ImageError(f"{obs.name}: no WCS and no --pixel-kpc: give the pixel scale in kpc")
    if obs.redshift is None:
        where = "--redshift Z, a catalogue redshift column or a REDSHIFT header keyword"
        raise ImageError(f"{obs.name}: no redshift: give {where}")
    z = _redshift(obs.redshift, None, obs.name)
    kpc_per_deg = getattr(realizations, cosmology).kpc_proper_per_arcmin(z).to_value(u.kpc / u.deg)
    return float(np.mean(proj_plane_pixel_scales(obs.wcs))) * float(kpc_per_deg)


def _valid_pixels(obs: Observation, counts: np.ndarray, fraction: float) -> tuple:
    """The exposure map (ones without one) and the valid-pixel mask (step 2)."""
    valid = np.ones(counts.shape, dtype=bool)
    maps = {"counts": counts, "exposure": obs.exposure, "background": obs.background}
    for role, arr in maps.items():
        if arr is not None:
            label = obs.name if role == "counts" else f"{obs.name} {role}"
            _check_map(arr := np.asarray(arr, dtype=np.float64), role, label, counts.shape)
            valid &= np.isfinite(arr)
    if obs.exposure is None:
        return np.ones_like(counts), valid
    exposure = np.asarray(obs.exposure, dtype=np.float64)
    top = float(np.max(exposure, where=valid, initial=0.0))
    if top <= 0:
        raise ImageError(f"{obs.name}: zero exposure across the field (and the whole image)")
    return exposure, valid & (exposure > 0) & (exposure >= fraction * top)


def _smoothed_peak(
    rate: np.ndarray, valid: np.ndarray, sigma: float, near: tuple | None = None
) -> tuple[float, float]:
    """(x, y) of the brightest pixel of the normalised convolution (step 3's first guess);
    ``near=(x, y, radius)`` keeps to that circle."""
    from scipy.ndimage import gaussian_filter

    b = max(1, int(sigma // 3))
    ny, nx = -(-rate.shape[0] // b), -(-rate.shape[1] // b)
    ky, kx = np.arange(ny * b), np.arange(nx * b)
    num = window(np.where(valid, rate, 0.0), ky, kx, 0.0).reshape(ny, b, nx, b).mean((1, 3))
    den = window(valid.astype(np.float64), ky, kx, 0.0).reshape(ny, b, nx, b).mean((1, 3))
    num = gaussian_filter(num, sigma / b, mode="constant", cval=0.0)
    den = gaussian_filter(den, sigma / b, mode="constant", cval=0.0)
    cut = 0.5 if (den > 0.5).any() else 0.0
    ratio = np.divide(num, den, out=np.full_like(num, -np.inf), where=den > cut)
    if near is not None:
        yy, xx = np.indices(ratio.shape) * b + (b - 1) / 2
        far = np.hypot(xx - near[0], yy - near[1]) > near[2]
        if not far.all():
            ratio[far] = -np.inf
    row, col = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return col * b + (b - 1) / 2, row * b + (b - 1) / 2


def _centre(obs: Observation, rate: np.ndarray, valid: np.ndarray, p: float) -> tuple:
    """(x, y) of the centre and ``"given"`` or ``"found"`` (step 3)."""
    from photutils.centroids import centroid_com

    if obs.center is not None:
        if obs.wcs is None:
            raise ImageError(f"{obs.name}: --center needs a WCS (the counts image has none)")
        ra, dec = obs.center
        x, y = (float(v) for v in obs.wcs.world_to_pixel_values(ra, dec))
        if not (-0.5 <= x <= rate.shape[1] - 0.5 and -0.5 <= y <= rate.shape[0] - 0.5):
            raise ImageError(f"{obs.name}: centre RA {ra:.5f}, Dec {dec:+.5f} lies off the image")
        return (x, y), "given"
    # coarse to fine: the extended cluster outshines point sources at 150 kpc
    coarse = _smoothed_peak(rate, valid, max(1.0, COARSE_SMOOTH_KPC / p))
    x, y = _smoothed_peak(rate, valid, max(1.0, 40.0 / p), (*coarse, COARSE_SMOOTH_KPC / p))
    half = math.ceil(max(3.0, 60.0 / p))
    for _ in range(20):
        ix, iy = round(x), round(y)
        ky, kx = np.arange(iy - half, iy + half + 1), np.arange(ix - half, ix + half + 1)
        ok = window(valid, ky, kx, False)
        masked = ~(ok & ok[::-1, ::-1])
        box = window(rate, ky, kx, 0.0)
        if masked.all() or box[~masked].sum() <= 0:
            break
        (xc, yc), (x0, y0) = centroid_com(box, mask=masked), (x, y)
        x, y = ix - half + float(xc), iy - half + float(yc)
        if math.hypot(x - x0, y - y0) < 0.01:
            break
    return (x, y), "found"


def _cut(name: str, rate: np.ndarray, valid: np.ndarray, centre: tuple, side: float, grid: int):
    """Fill and rebin the square (steps 5-6): image, mask, area weights, valid, radii, indices."""
    (ky, wy), (kx, wx) = (
        overlap_weights(centre[1], side, grid),
        overlap_weights(centre[0], side, grid),
    )
    area = np.outer(wy.sum(axis=0), wx.sum(axis=0))
    area *= window(np.ones(rate.shape, dtype=bool), ky, kx, False)
    if (off := 1.0 - float(area.sum()) / side**2) > 0.5:
        raise ImageError(f"{name}: {100 * off:.0f}% of the field lies outside the image (> 50%)")
    ok = window(valid, ky, kx, False)
    if not (area * ok).any():
        raise ImageError(f"{name}: zero exposure across the field")
    r = np.hypot(ky[:, None] - centre[1], kx[None, :] - centre[0])
    filled = ring_fill(window(rate, ky, kx, np.nan), ok, r, max(1.0, 0.01 * side))
    from scipy.sparse import csr_array

    wy, wx = csr_array(wy), csr_array(wx)  # W @ A: each row of W, few columns
    image, cover = ((wx @ (wy @ a).T).T for a in (filled, (~ok).astype(np.float64)))
    return image, cover > 0.5 * (side / grid) ** 2, area, ok, r, (ky, kx)


def prepare_observation(
    obs: Observation,
    *,
    field_kpc: float,
    grid: int,
    cosmology: str = DEFAULT_COSMOLOGY,
    exposure_fraction: float = EXPOSURE_FRACTION,
) -> PreparedField:
    """Cut the ``field_kpc`` field around the cluster and rebin it to ``grid`` x ``grid``.

    The steps are those of the module docstring.  ImageError (one line starting
    with ``obs.name``): an observation that cannot give the field; UsageError: a
    bad ``field_kpc``, ``grid``, ``cosmology`` or ``exposure_fraction``.
    """
    if not (isinstance(field_kpc, numbers.Real) and 0 < field_kpc < math.inf):
        raise UsageError(f"field_kpc={field_kpc!r}: must be a positive number of kpc")
    if not (isinstance(grid, int | np.integer) and grid >= 2 and 0 <= exposure_fraction < 1):
        raise UsageError(f"grid={grid!r}, exposure_fraction={exposure_fraction!r}: bad value")
    p = observation_pixel_kpc(obs, cosmology)
    counts = np.asarray(obs.counts, dtype=np.float64)
    side, (ny, nx) = field_kpc / p, counts.shape
    if min(ny, nx) < side:
        raise ImageError(
            f"{obs.name}: the image covers {nx * p:.0f} x {ny * p:.0f} kpc, smaller than the "
            f"{field_kpc:g} kpc training field; a cut-out cannot be stretched: "
            "give the full observation"
        )
    exposure, valid = _valid_pixels(obs, counts, exposure_fraction)
    rate = np.divide(counts, exposure, out=np.zeros_like(counts), where=valid)
    (cx, cy), source = _centre(obs, rate, valid, p)
    bkg, method, warnings = obs.background, "map", []
    if bkg is None:
        yy, xx = np.ogrid[:ny, :nx]
        outer = valid & ((xx - cx) ** 2 + (yy - cy) ** 2 > (0.75 * side) ** 2)
        if outer.any() and outer.sum() >= 0.1 * valid.sum():
            bkg, method = counts[outer].sum() / exposure[outer].sum() * exposure, "outer annulus"
        else:
            bkg, method = np.zeros_like(counts), "none"
            text = "no background map and no area outside the field to estimate one"
            warnings.append(f"{obs.name}: {text}; not background-subtracted")
    bkg, rate = np.asarray(bkg, dtype=np.float64), np.full_like(counts, np.nan)
    rate[valid] = (counts[valid] - bkg[valid]) / exposure[valid]
    image, mask, area, ok, r, (ky, kx) = _cut(obs.name, rate, valid, (cx, cy), side, grid)
    excess = window(counts, ky, kx, 0.0) - window(bkg, ky, kx, 0.0)
    total = float((area * np.where(ok, excess, 0.0)).sum())
    off = max(0.0, 1.0 - float(area.sum()) / side**2)
    core = 1.0 - float(ok[r <= max(0.1 * side, float(r.min()))].mean())
    if total < MIN_SOURCE_COUNTS:
        need = f"{total:.0f} source counts in the field (need {MIN_SOURCE_COUNTS:.0f})"
        raise ImageError(f"{obs.name}: too few counts to say anything: {need}")
    if total < LOW_COUNTS_WARNING:
        warnings.append(f"{obs.name}: low counts: {total:.0f} source counts in the field")
    if core > 0.25:
        where = f"{100 * core:.0f}% of the central {0.1 * field_kpc:.0f} kpc (radius) masked"
        warnings.append(f"{obs.name}: strongly masked core: {where}")
    if off > 0.01:
        where = f"{100 * off:.0f}% of the {field_kpc:g} kpc field lies outside the image"
        warnings.append(f"{obs.name}: field partly off the detector: {where}")
    world = obs.wcs.pixel_to_world_values(cx, cy) if obs.wcs is not None else (math.nan,) * 2
    ra, dec = (float(v) for v in world)
    masked = max(0.0, 1.0 - float((area * ok).sum()) / side**2)
    return PreparedField(
        *(image, mask, rate, valid, (cx, cy), ra, dec, source, p, float(field_kpc), side),
        *(total, masked, warnings, method, obs.name, obs.counts, obs.redshift, cosmology),
    )
