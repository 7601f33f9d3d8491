"""Simulated X-ray emissivity maps of galaxy clusters: the built-in sample.

Each cluster is one 3-D object: a triaxial, ellipsoidally stratified gas halo
(Vikhlinin et al. 2006 density and temperature, Tozzi & Norman 2001 cooling
function, normalised to a gas fraction inside R500) plus disturbances, seen along
the three axes of the simulation box.  Its label comes from the central cooling
time of the 3-D gas model at 0.012 R500, never from the picture.  The physics and
the numerical design are described in ``docs/simulator.md``.

The one entry point is :func:`simulate_sample`; :func:`draw_cluster` and
:func:`render_projection` are public for tests and notebooks.
"""

from __future__ import annotations

import multiprocessing as mp
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from coolcore import CLASS_NAMES, __version__
from coolcore.errors import UsageError
from coolcore.sim import physics as ph
from coolcore.sim.population import (
    DEFAULT_PRIOR,
    M500_RANGE_MSUN,
    MASS_FUNCTION_SLOPE,
    R_TCOOL_R500,
    Cavity,
    Clump,
    ClusterModel,
    PopulationPrior,
    Sloshing,
    draw_cluster,
)

__all__ = [
    "AXES",
    "DEFAULT_PRIOR",
    "M500_RANGE_MSUN",
    "MASS_FUNCTION_SLOPE",
    "R_TCOOL_R500",
    "Cavity",
    "Clump",
    "ClusterModel",
    "PopulationPrior",
    "Sloshing",
    "draw_cluster",
    "observe_counts",
    "projected_profile",
    "render_projection",
    "sample_coordinates",
    "simulate_sample",
]

AXES: tuple[str, str, str] = ("x", "y", "z")
"""Projection axes of the simulation box."""

PLANE_PERMUTATION: dict[str, tuple[int, int, int]] = {
    "x": (1, 2, 0),
    "y": (2, 0, 1),
    "z": (0, 1, 2),
}
"""Box coordinates (image u, image v, line of sight) for each projection axis."""

SUBSAMPLE = 2
"""Each pixel is the mean of SUBSAMPLE x SUBSAMPLE point samples inside it."""

OBSERVED_EFFECTIVE_AREA_CM2 = 400.0
OBSERVED_DISTANCE_MPC = 230.0
OBSERVED_PHOTON_KEV = 2.0
"""The observed mode puts the cluster at 230 Mpc (z ~ 0.05), collects with 400 cm^2
and counts photons of 2 keV: counts = S A_pix t A_eff / (4 pi D^2 E_ph)."""

BUNIT_EMISSIVITY = "erg s-1 cm-2"
"""Unit of a pixel: emissivity n_e n_H Lambda(T) integrated along the line of sight."""

_KEV_ERG = 1.602177e-9
_MPC_CM = 3.0857e24
_LN_R_GRID = np.linspace(np.log(1e-3), np.log(1e5), 513)  # kpc, for S(R)
_T_GRID = np.linspace(0.0, 1.0, 401)  # fraction of asinh(z_max / R)
_Z_MAX_KPC = 1e5
CLUMP_WINDOW = 46.0  # clumps are drawn where m < 46, i.e. above 1e-5 of their peak
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)


# ---------------------------------------------------------------------- projection


def projected_profile(model: ClusterModel) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The smooth gas's line-of-sight integral for a spherical stratification.

    Returns ``(ln R, ln S)`` on a fixed log grid from 1e-3 to 1e5 kpc, where
    ``S(R) = 2 int_0^zmax eps(sqrt(R^2 + z^2)) dz`` in erg s^-1 cm^-2 (z_max = 100 Mpc),
    integrated by the trapezoid rule in ``t`` with ``z = R sinh t`` (400 intervals).
    """
    R = np.exp(_LN_R_GRID)[:, None]
    t = _T_GRID[None, :] * np.arcsinh(_Z_MAX_KPC / R)
    r = R * np.cosh(t)
    integrand = model.emissivity_1d(r) * r  # dz = R cosh t dt = r dt
    S = 2.0 * np.trapezoid(integrand, t, axis=1) * ph.KPC_CM
    return _LN_R_GRID, np.log(np.maximum(S, 1e-300))


def _projected_form(q: NDArray[np.float64], axis: str) -> tuple[NDArray[np.float64], float]:
    """2x2 projected quadratic form (Schur complement) and Q_ll along ``axis``."""
    p = PLANE_PERMUTATION[axis]
    qp = q[np.ix_(p, p)]
    q_ll = float(qp[2, 2])
    form = qp[:2, :2] - np.outer(qp[:2, 2], qp[:2, 2]) / q_ll
    return form, q_ll


def sample_coordinates(size: int, fov_kpc: float, subsample: int = SUBSAMPLE) -> NDArray:
    """Plane coordinates (kpc) of the point samples along one image axis.

    Pixel ``j`` is centred on ``(j - size // 2) * pixel_kpc``: the cluster centre lies
    at the centre of pixel ``(size // 2, size // 2)``.  Its samples sit at offsets
    ``((k + 0.5) / subsample - 0.5) * pixel_kpc``, ``k = 0 .. subsample - 1``.
    """
    pix = fov_kpc / size
    j = np.arange(size)[:, None]
    k = np.arange(subsample)[None, :]
    return (((j - size // 2) + (k + 0.5) / subsample - 0.5) * pix).ravel()


def _sloshing_field(s: Sloshing, axis: str, u: NDArray, v: NDArray) -> NDArray[np.float64]:
    los = np.zeros(3)
    los[PLANE_PERMUTATION[axis][2]] = 1.0
    amp = s.amplitude * (0.3 + 0.7 * abs(float(s.normal @ los)))
    R = np.hypot(u, v)
    phi = np.arctan2(v, u)
    psi = s.chirality * phi - 2.0 * np.pi * R / s.pitch_kpc - s.phase
    delta = 0.8
    saw = np.arctan2(delta * np.sin(psi), 1.0 - delta * np.cos(psi)) / np.arcsin(delta)
    env = (1.0 - np.exp(-((R / s.r_in_kpc) ** 2))) * np.exp(-((R / s.r_out_kpc) ** 2))
    return 1.0 + amp * env * saw


def _fluctuation_field(
    model: ClusterModel, axis: str, n: int, spacing_kpc: float
) -> NDArray[np.float64]:
    """Log-normal multiplicative field, rms ``fluct_rms``, Kolmogorov-like spectrum."""
    rng = np.random.default_rng([model.noise_seed, AXES.index(axis)])
    white = rng.standard_normal((n, n))
    kx = np.fft.fftfreq(n, spacing_kpc)
    ky = np.fft.rfftfreq(n, spacing_kpc)
    k2 = kx[:, None] ** 2 + ky[None, :] ** 2
    k_inj = 1.0 / model.fluct_scale_kpc
    k_cut = 1.0 / (4.0 * spacing_kpc)
    amp = (k2 + k_inj**2) ** (-11.0 / 12.0) * np.exp(-k2 / k_cut**2)
    g = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(n, n))
    g = (g - g.mean()) / max(g.std(), 1e-300)
    sig = model.fluct_rms
    return np.exp(sig * g - 0.5 * sig**2)


def render_projection(
    model: ClusterModel,
    axis: str,
    size: int = 256,
    fov_kpc: float = 1000.0,
    *,
    disturbances: bool = True,
    profile: tuple[NDArray, NDArray] | None = None,
    subsample: int = SUBSAMPLE,
) -> NDArray[np.float64]:
    """Emissivity integrated along ``axis`` on a ``size`` x ``size`` map (erg s^-1 cm^-2).

    The smooth gas is ellipsoidally stratified, so its projection is elliptically
    stratified: ``S(m_p) / sqrt(Q_ll)`` with ``m_p^2 = p^T P p``, ``P`` the Schur
    complement of the line-of-sight element of ``Q`` and ``S`` the 1-D projected
    profile (:func:`projected_profile`, interpolated linearly in log-log).  Cavities
    subtract ``fill`` times their chord integrals (16-point Gauss-Legendre), and
    clumps add their analytic projections; these are point-sampled and each pixel is
    the mean of its ``subsample``^2 samples.  The 2-D multiplicative fields (sloshing
    spiral, fluctuations) are then evaluated at pixel centres and multiply the gas
    (not the clumps).  Row ``i``, column ``j`` holds the plane coordinates
    ``(u_j, v_i)`` of :func:`sample_coordinates`.

    With ``disturbances=False`` the cavities and the 2-D fields are left out: only the
    smooth gas and the clumps are drawn.
    """
    if axis not in AXES:
        raise UsageError(f"axis: {axis!r} is not one of {AXES}")
    ln_r, ln_s = projected_profile(model) if profile is None else profile
    c = sample_coordinates(size, fov_kpc, subsample)
    u = c[None, :]
    v = c[:, None]
    form, q_ll = _projected_form(model.shape_matrix, axis)
    m2 = form[0, 0] * u**2 + 2.0 * form[0, 1] * u * v + form[1, 1] * v**2
    ln_m = 0.5 * np.log(np.maximum(m2, np.exp(2.0 * ln_r[0])))
    gas = np.exp(np.interp(ln_m, ln_r, ln_s)) / np.sqrt(q_ll)
    if disturbances:
        for cav in model.cavities:
            _subtract_cavity(gas, model, cav, axis, c)
    clumps = np.zeros_like(gas)
    for cl in model.clumps:
        _add_clump(clumps, cl, axis, c)

    def to_pixels(a: NDArray[np.float64]) -> NDArray[np.float64]:
        return a.reshape(size, subsample, size, subsample).mean(axis=(1, 3))

    image = to_pixels(gas)
    if disturbances:
        cp = sample_coordinates(size, fov_kpc, 1)
        if model.sloshing is not None:
            image *= _sloshing_field(model.sloshing, axis, cp[None, :], cp[:, None])
        if model.fluct_rms > 0:
            image *= _fluctuation_field(model, axis, size, fov_kpc / size)
    return image + to_pixels(clumps)


def _window(c: NDArray, center: float, half_width: float) -> slice:
    """Index range of the sorted coordinates ``c`` within ``center +- half_width``."""
    lo = np.searchsorted(c, center - half_width, side="left")
    hi = np.searchsorted(c, center + half_width, side="right")
    return slice(int(lo), int(hi))


def _add_clump(out: NDArray[np.float64], cl: Clump, axis: str, c: NDArray) -> None:
    """Add a clump's analytic projection to ``out`` (rows v, columns u), in place.

    It is evaluated inside the ellipse ``m < CLUMP_WINDOW`` only, where it has fallen
    to ``CLUMP_WINDOW^-3`` (1e-5) of its peak.
    """
    perm = PLANE_PERMUTATION[axis]
    f, ql = _projected_form(cl.shape_matrix, axis)
    inv = np.linalg.inv(f)
    cu, cv = cl.center_kpc[perm[0]], cl.center_kpc[perm[1]]
    su = _window(c, cu, CLUMP_WINDOW * np.sqrt(inv[0, 0]))
    sv = _window(c, cv, CLUMP_WINDOW * np.sqrt(inv[1, 1]))
    du = c[su][None, :] - cu
    dv = c[sv][:, None] - cv
    x = 1.0 + f[0, 0] * du**2 + 2.0 * f[0, 1] * du * dv + f[1, 1] * dv**2
    peak = cl.amplitude * (np.pi / 2.0) / np.sqrt(ql) * ph.KPC_CM
    out[sv, su] += peak / (x * np.sqrt(x))


def _subtract_cavity(
    gas: NDArray[np.float64], model: ClusterModel, cav: Cavity, axis: str, c: NDArray
) -> None:
    """Remove ``fill`` of the emission along each chord through the bubble, in place.

    The chord integral of the smooth-gas emissivity uses 16-point Gauss-Legendre.
    """
    p = PLANE_PERMUTATION[axis]
    cu, cv, cl = cav.center_kpc[list(p)]
    su = _window(c, cu, cav.radius_kpc)
    sv = _window(c, cv, cav.radius_kpc)
    uu, vv = np.meshgrid(c[su], c[sv])
    rho2 = (uu - cu) ** 2 + (vv - cv) ** 2
    inside = rho2 < cav.radius_kpc**2
    if not inside.any():
        return
    half = np.sqrt(cav.radius_kpc**2 - rho2[inside])
    z = cl + half[:, None] * _GL_NODES[None, :]
    pts = np.empty(z.shape + (3,))
    pts[..., p[0]] = uu[inside][:, None]
    pts[..., p[1]] = vv[inside][:, None]
    pts[..., p[2]] = z
    m = np.sqrt(np.einsum("...i,ij,...j->...", pts, model.shape_matrix, pts))
    chord = (model.emissivity_1d(m) * _GL_WEIGHTS).sum(axis=1) * half
    block = gas[sv, su]
    block[inside] -= cav.fill * chord * ph.KPC_CM
    gas[sv, su] = block


# -------------------------------------------------------------------- observations


def observe_counts(
    image: NDArray[np.float64],
    pixel_kpc: float,
    exposure_ks: float,
    background: float,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Poisson photon counts for a map of line-of-sight emissivity (erg s^-1 cm^-2).

    The expected counts of a pixel are
    ``S A_pix t A_eff / (4 pi D^2 E_ph) + background t_ks`` with ``A_pix`` the pixel
    area in cm^2, ``t`` the exposure in s, ``A_eff = 400 cm^2``, ``D = 230 Mpc`` and
    ``E_ph = 2 keV`` (see the ``OBSERVED_*`` constants); ``background`` is in counts
    per pixel per ks.
    """
    area_pix_cm2 = (pixel_kpc * ph.KPC_CM) ** 2
    dist_cm = OBSERVED_DISTANCE_MPC * _MPC_CM
    t_s = exposure_ks * 1e3
    rate_per_sb = (area_pix_cm2 * OBSERVED_EFFECTIVE_AREA_CM2 / (4 * np.pi * dist_cm**2)) / (
        OBSERVED_PHOTON_KEV * _KEV_ERG
    )
    expected = image * rate_per_sb * t_s + background * exposure_ks
    return rng.poisson(expected).astype(np.float64)


# ----------------------------------------------------------------------- the sample


def _class_counts(n: int, mix: Sequence[float]) -> NDArray[np.int64]:
    """Largest-remainder rounding of ``n * mix`` (exact total, ties to the earlier class)."""
    raw = np.asarray(mix, dtype=np.float64) * n
    counts = np.floor(raw).astype(np.int64)
    rest = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _header_cards(model: ClusterModel, axis: str, pixel_kpc: float, size: int) -> list:
    c = size // 2 + 1  # FITS pixels are 1-based; the cluster centre is pixel size // 2
    return [
        ("CTYPE1", "LINEAR", "image u axis: box coordinate, see AXIS"),
        ("CTYPE2", "LINEAR", "image v axis: box coordinate, see AXIS"),
        ("CUNIT1", "kpc", "unit of CDELT1 and CRVAL1"),
        ("CUNIT2", "kpc", "unit of CDELT2 and CRVAL2"),
        ("CRPIX1", float(c), "reference pixel: the cluster centre"),
        ("CRPIX2", float(c), "reference pixel: the cluster centre"),
        ("CRVAL1", 0.0, "[kpc] offset of the cluster centre"),
        ("CRVAL2", 0.0, "[kpc] offset of the cluster centre"),
        ("CDELT1", pixel_kpc, "[kpc] pixel size"),
        ("CDELT2", pixel_kpc, "[kpc] pixel size"),
        ("PIXKPC", pixel_kpc, "[kpc] pixel size"),
        ("CLUSTID", model.cluster_id, "cluster id (3 projections per cluster)"),
        ("AXIS", axis, "projection axis of the simulation box"),
        ("M500", model.m500_msun, "[Msun] M500"),
        ("R500", model.r500_kpc, "[kpc] R500"),
        ("TKEV", model.T_keV, "[keV] mean temperature, 0.15-1 R500"),
        ("TCENKEV", model.T_center_keV, "[keV] temperature at RTCOOL"),
        ("NE0", model.ne0_cm3, "[cm-3] electron density at RTCOOL"),
        ("RTCOOL", model.r_tcool_kpc, "[kpc] radius of t_cool: 0.012 R500"),
        ("TCOOL", model.t_cool_gyr, "[Gyr] central cooling time"),
        ("LABEL", model.label, "CC: TCOOL<=1.0, NCC: TCOOL>=7.7 Gyr, else WCC"),
        ("ORIGIN", "coolcore", "coolcore.sim.simulate"),
        ("CCVERS", __version__, "coolcore version"),
    ]


@dataclass(frozen=True)
class _Job:
    index: int
    label: str
    seed: np.random.SeedSequence
    out_dir: str
    size: int
    fov_kpc: float
    observed: bool
    exposure_ks: float
    background: float


def _simulate_cluster(job: _Job) -> list[dict]:
    """Draw one cluster, write its three FITS files, return its catalogue rows."""
    from astropy.io import fits

    rng = np.random.default_rng(job.seed)
    model = draw_cluster(rng, job.label, job.index)
    profile = projected_profile(model)
    pixel_kpc = job.fov_kpc / job.size
    rows = []
    for axis in AXES:
        image = render_projection(model, axis, job.size, job.fov_kpc, profile=profile)
        cards = _header_cards(model, axis, pixel_kpc, job.size)
        if job.observed:
            obs_rng = np.random.default_rng([model.noise_seed, AXES.index(axis), 1])
            image = observe_counts(image, pixel_kpc, job.exposure_ks, job.background, obs_rng)
            cards += [
                ("BUNIT", "count", "photon counts (observed mode)"),
                ("EXPOSURE", job.exposure_ks * 1e3, "[s] exposure time"),
                ("BKGRATE", job.background, "[count / pixel / ks] flat background"),
            ]
        else:
            cards.append(("BUNIT", BUNIT_EMISSIVITY, "line-of-sight integral of n_e n_H Lambda"))
        image_id = f"c{job.index:04d}_{axis}"
        rel = f"images/{image_id}.fits"
        header = fits.Header(cards)
        fits.PrimaryHDU(image.astype(np.float32), header=header).writeto(
            Path(job.out_dir) / rel, overwrite=True
        )
        rows.append(
            {
                "image_id": image_id,
                "cluster_id": job.index,
                "file": rel,
                "label": model.label,
                "axis": axis,
                "m500_msun": model.m500_msun,
                "r500_kpc": model.r500_kpc,
                "T_keV": model.T_keV,
                "T_center_keV": model.T_center_keV,
                "ne0_cm3": model.ne0_cm3,
                "r_tcool_kpc": model.r_tcool_kpc,
                "t_cool_gyr": model.t_cool_gyr,
                "pixel_kpc": pixel_kpc,
                "fgas": model.fgas,
                "n_subclumps": sum(c.kind == "subclump" for c in model.clumps),
                "n_satellites": sum(c.kind == "satellite" for c in model.clumps),
                "corona": any(c.kind == "corona" for c in model.clumps),
                "n_cavities": len(model.cavities),
                "sloshing": model.sloshing is not None,
                "fluct_rms": model.fluct_rms,
            }
        )
    return rows


def _check_args(
    n_clusters, size, fov_kpc, class_mix, seed, workers, exposure_ks, background
) -> tuple[float, ...]:
    """Validate :func:`simulate_sample`'s arguments; return the class mix as floats."""

    def is_int(v) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    def is_real(v) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and bool(np.isfinite(v))

    if not is_int(n_clusters) or n_clusters < 1:
        raise UsageError(f"n_clusters: must be a positive integer, got {n_clusters!r}")
    if not is_int(size) or size < 16:
        raise UsageError(f"size: must be an integer >= 16 pixels, got {size!r}")
    if not (is_real(fov_kpc) and fov_kpc > 0):
        raise UsageError(f"fov_kpc: must be a positive number of kpc, got {fov_kpc!r}")
    try:
        mix = tuple(float(v) for v in class_mix)
    except (TypeError, ValueError):
        raise UsageError(
            f"class_mix: must be three numbers (CC, WCC, NCC), got {class_mix!r}"
        ) from None
    if len(mix) != 3 or not all(np.isfinite(v) and v >= 0 for v in mix):
        raise UsageError(f"class_mix: must be three non-negative numbers, got {class_mix!r}")
    if abs(sum(mix) - 1.0) > 1e-6:
        raise UsageError(f"class_mix: must sum to 1, got {sum(mix):g}")
    if not is_int(seed) or seed < 0:
        raise UsageError(f"seed: must be a non-negative integer, got {seed!r}")
    if not is_int(workers) or workers < 1:
        raise UsageError(f"workers: must be a positive integer, got {workers!r}")
    if not (is_real(exposure_ks) and exposure_ks > 0):
        raise UsageError(f"exposure_ks: must be a positive number of ks, got {exposure_ks!r}")
    if not (is_real(background) and background >= 0):
        raise UsageError(f"background: must be a non-negative count rate, got {background!r}")
    return mix


def simulate_sample(
    out_dir: str | Path,
    *,
    n_clusters: int = 318,
    size: int = 256,
    fov_kpc: float = 1000.0,
    class_mix: Sequence[float] = (0.1, 0.6, 0.3),
    seed: int = 0,
    workers: int = 1,
    observed: bool = False,
    exposure_ks: float = 100.0,
    background: float = 0.05,
    progress: bool = True,
) -> pd.DataFrame:
    """Simulate a sample of clusters and write FITS maps plus ``catalog.csv``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created); maps go to ``out_dir/images/``.
    n_clusters : int
        Number of clusters; each gives three projections (x, y, z).
    size : int
        Map size in pixels (>= 16).
    fov_kpc : float
        Side of the map in kpc (default 1 Mpc, as Su et al. 2020).
    class_mix : three floats
        Fractions of CC, WCC, NCC clusters (rounded to exact counts by largest
        remainder; every label is the computed one).
    seed : int
        Master seed; cluster ``i`` uses ``SeedSequence(seed).spawn(n)[i]``, so the
        files do not depend on ``workers``.
    workers : int
        Processes (1: no pool).
    observed : bool
        Write Poisson counts (see :func:`observe_counts`) instead of emissivity.
    exposure_ks, background : float
        Exposure in ks and flat background in counts / pixel / ks (observed mode).
    progress : bool
        Show a tqdm progress bar over clusters.

    Returns
    -------
    pandas.DataFrame
        The catalogue, one row per map, also written to ``out_dir/catalog.csv``.

    Examples
    --------
    >>> cat = simulate_sample("data/", n_clusters=4, size=64, progress=False)  # doctest: +SKIP
    """
    mix = _check_args(n_clusters, size, fov_kpc, class_mix, seed, workers, exposure_ks, background)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"out_dir: {out} exists and is not a folder")
    (out / "images").mkdir(parents=True, exist_ok=True)

    counts = _class_counts(n_clusters, mix)
    labels = np.repeat(np.asarray(CLASS_NAMES), counts)
    root = np.random.SeedSequence(seed)
    order_seed, cluster_seeds = root.spawn(2)
    labels = np.random.default_rng(order_seed).permutation(labels)
    seeds = cluster_seeds.spawn(n_clusters)
    jobs = [
        _Job(i, str(labels[i]), seeds[i], str(out), size, float(fov_kpc), bool(observed),
             float(exposure_ks), float(background))
        for i in range(n_clusters)
    ]  # fmt: skip

    from tqdm.auto import tqdm

    rows: list[dict] = []
    with tqdm(total=n_clusters, desc="simulate", unit="cluster", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                rows.extend(_simulate_cluster(job))
                bar.update()
        else:
            ctx = mp.get_context()
            with ctx.Pool(min(workers, n_clusters)) as pool:
                for r in pool.imap(_simulate_cluster, jobs, chunksize=1):
                    rows.extend(r)
                    bar.update()
    catalog = pd.DataFrame(rows)
    catalog.to_csv(out / "catalog.csv", index=False, float_format="%.8g")
    return catalog
