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
from scipy import special

from coolcore import CLASS_NAMES, __version__
from coolcore import physics as ph
from coolcore.errors import UsageError

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

R_TCOOL_R500 = 0.012
"""Radius, in units of R500, at which the central cooling time is taken."""

M500_RANGE_MSUN: tuple[float, float] = (10**13.75, 10**15.2)
"""Mass range of the population (Barnes et al. 2018 used M500 >= 10^13.75 Msun)."""

MASS_FUNCTION_SLOPE = 1.4
"""dN / dln M500 is proportional to M500^-MASS_FUNCTION_SLOPE inside the range."""

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


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Clump:
    """A 3-D gas clump with emissivity ``amplitude (1 + d^T Q d)^-2``, d = x - centre.

    Its projection is analytic: ``amplitude pi / 2 (1 + m^2)^-3/2 / sqrt(Q_ll)`` with
    ``m^2`` the projected quadratic form (a beta model with beta = 2/3).
    """

    center_kpc: NDArray[np.float64]
    shape_matrix: NDArray[np.float64]  # Q, kpc^-2
    amplitude: float  # erg s^-1 cm^-3
    kind: str = "subclump"  # "subclump", "satellite" or "corona"


@dataclass(frozen=True)
class Cavity:
    """A spherical AGN bubble that removes ``fill`` of the gas emissivity inside it."""

    center_kpc: NDArray[np.float64]
    radius_kpc: float
    fill: float


@dataclass(frozen=True)
class Sloshing:
    """A sloshing spiral: a 2-D multiplicative sawtooth along an Archimedean spiral.

    ``1 + A env(R) saw(chirality phi - 2 pi R / pitch - phase)``, the amplitude
    scaled by ``0.3 + 0.7 |n . los|`` (a spiral seen face-on is the strongest).
    """

    normal: NDArray[np.float64]
    amplitude: float
    r_in_kpc: float
    r_out_kpc: float
    pitch_kpc: float
    phase: float
    chirality: float


@dataclass(frozen=True)
class ClusterModel:
    """One simulated cluster: its gas, its geometry, its disturbances, its label.

    Lengths are in kpc in the box frame, centred on the cluster.  The smooth gas is
    a function of the ellipsoidal radius ``m = sqrt(x^T shape_matrix x)``, with
    ``shape_matrix = R diag(1/a^2, 1/b^2, 1/c^2) R^T`` and ``a b c = 1``.
    """

    cluster_id: int
    m500_msun: float
    r500_kpc: float
    T_keV: float
    fgas: float
    density: ph.DensityParams
    temperature: ph.TemperatureParams
    shape_matrix: NDArray[np.float64]
    axis_ratios: NDArray[np.float64]
    ne0_cm3: float
    T_center_keV: float
    t_cool_gyr: float
    label: str
    clumps: tuple[Clump, ...] = ()
    cavities: tuple[Cavity, ...] = ()
    sloshing: Sloshing | None = None
    fluct_rms: float = 0.0
    fluct_scale_kpc: float = 100.0
    noise_seed: int = 0

    @property
    def r_tcool_kpc(self) -> float:
        """Radius (kpc) at which ``t_cool_gyr`` is evaluated: 0.012 R500."""
        return R_TCOOL_R500 * self.r500_kpc

    def emissivity_1d(self, m_kpc: NDArray[np.float64]) -> NDArray[np.float64]:
        """Smooth-gas emissivity (erg s^-1 cm^-3) at ellipsoidal radius ``m_kpc``."""
        return ph.emissivity_cgs(m_kpc, self.density, self.temperature)


# ----------------------------------------------------------------- population draw


def _random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    """A rotation matrix uniform on SO(3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _unit_vector(rng: np.random.Generator) -> NDArray[np.float64]:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _ellipsoid_matrix(
    rotation: NDArray[np.float64], semi_axes: NDArray[np.float64]
) -> NDArray[np.float64]:
    return rotation @ np.diag(1.0 / np.asarray(semi_axes) ** 2) @ rotation.T


@dataclass(frozen=True)
class _Candidates:
    """A batch of candidate gas models (arrays of shape (k,)) with their cooling times."""

    m500: NDArray[np.float64]
    r500: NDArray[np.float64]
    T_mean: NDArray[np.float64]
    fgas: NDArray[np.float64]
    density: ph.DensityParams
    temperature: ph.TemperatureParams
    ne0: NDArray[np.float64]
    T_center: NDArray[np.float64]
    t_cool: NDArray[np.float64]
    labels: NDArray[np.str_]


@dataclass(frozen=True)
class PopulationPrior:
    """The population the candidates are drawn from (units: R500 for ``x*`` radii).

    Two latent variables in [0, 1], correlated through a Gaussian copula with
    correlation ``rho``, shape the core: ``s_halo`` moves the main density component
    from a large flat core (``rc = xc_flat R500``, no cusp) to a small cuspy one
    (``rc = xc_cuspy R500``, cusp ``alpha ~ alpha_max``); ``s_core`` switches on the
    compact second component (probability ``s_core``, amplitude ``n02 / n0 = s_core
    10^U(log_k2)``, core radius log-uniform in ``x2_range``).  The central
    temperature drop follows the gas that makes it: ``Tmin / T0 = 1.05 - tmin_core w
    - tmin_cusp s_halo + N(0, tmin_sigma)``, ``w`` being the compact component's share
    of ``n_p n_e`` at 0.012 R500.  Other parameters are independent (see the docs).
    """

    T_sigma: float = 0.10  # log-normal scatter of the M-T relation
    fgas_sigma: float = 0.06  # log-normal scatter of the gas fraction
    rho: float = 0.5
    coolness_shift: float = -0.6  # mean of the Gaussian behind s_halo
    alpha_max: float = 1.5
    xc_flat: float = 0.30
    xc_cuspy: float = 0.08
    xc_sigma: float = 0.2  # log-normal scatter of rc
    beta_range: tuple[float, float] = (0.5, 0.75)
    log_k2: tuple[float, float] = (-0.3, 1.2)
    x2_range: tuple[float, float] = (0.005, 0.04)
    tmin_core: float = 0.5
    tmin_cusp: float = 0.25
    tmin_sigma: float = 0.05
    xcool_range: tuple[float, float] = (0.03, 0.12)
    p_corona: tuple[float, float, float] = (0.0, 0.4, 0.6)  # per class CC, WCC, NCC
    corona_flux: tuple[float, float] = (0.005, 0.05)  # fraction of L(<R500), log-uniform


DEFAULT_PRIOR = PopulationPrior()


def _draw_candidates(
    rng: np.random.Generator, k: int, prior: PopulationPrior = DEFAULT_PRIOR
) -> _Candidates:
    """Draw ``k`` candidate gas models from the population prior (see the docs)."""
    lo, hi = M500_RANGE_MSUN
    a = -MASS_FUNCTION_SLOPE
    m500 = (lo**a + rng.random(k) * (hi**a - lo**a)) ** (1.0 / a)
    r500 = ph.r500_kpc(m500)
    T_mean = ph.mean_temperature_keV(m500) * np.exp(rng.normal(0.0, prior.T_sigma, k))
    fgas = 0.13 * (m500 / 3e14) ** 0.05 * np.exp(rng.normal(0.0, prior.fgas_sigma, k))
    fgas = np.clip(fgas, 0.09, 0.17)

    z1 = rng.standard_normal(k) + prior.coolness_shift
    z2 = prior.rho * z1 + np.sqrt(1.0 - prior.rho**2) * rng.standard_normal(k)
    s_halo, s_core = special.ndtr(z1), special.ndtr(z2)
    alpha = np.clip(rng.normal(prior.alpha_max * s_halo, 0.2), 0.0, 2.0)
    xc_mid = prior.xc_flat - (prior.xc_flat - prior.xc_cuspy) * s_halo
    xc = np.exp(rng.normal(np.log(xc_mid), prior.xc_sigma))
    beta = rng.uniform(*prior.beta_range, k)
    xs = rng.uniform(0.8, 2.0, k)
    eps = rng.uniform(2.0, 5.0, k)
    has2 = rng.random(k) < s_core
    k2 = has2 * s_core * 10 ** rng.uniform(*prior.log_k2, k)
    x2 = np.exp(rng.uniform(*np.log(prior.x2_range), k))
    beta2 = rng.uniform(1.0, 3.0, k)
    t_noise = rng.normal(0.0, prior.tmin_sigma, k)
    xcool = rng.uniform(*prior.xcool_range, k)
    acool = rng.uniform(1.5, 3.0, k)
    xt = rng.uniform(0.5, 0.9, k)
    c_t = rng.uniform(0.2, 0.5, k)

    unit = ph.DensityParams(
        n0_cm3=np.ones(k),
        rc_kpc=xc * r500,
        rs_kpc=xs * r500,
        alpha=alpha,
        beta=beta,
        eps=eps,
        n02_cm3=k2,
        rc2_kpc=x2 * r500,
        beta2=beta2,
    )
    mgas_unit = ph.gas_mass_msun(r500, unit)
    n0 = fgas * m500 / mgas_unit
    density = ph.DensityParams(**{**unit.__dict__, "n0_cm3": n0, "n02_cm3": k2 * n0})
    r_c = R_TCOOL_R500 * r500
    core2 = k2**2 / (1.0 + (r_c / (x2 * r500)) ** 2) ** (3.0 * beta2)
    share = core2 / (ph.ne_cm3(r_c, unit) ** 2 / ph.NE_OVER_NH)
    tmin = 1.05 - prior.tmin_core * share - prior.tmin_cusp * s_halo + t_noise
    tmin = np.clip(tmin, 0.3, 1.15)

    temp_unit = ph.TemperatureParams(
        T0_keV=np.ones(k),
        tmin_ratio=tmin,
        rcool_kpc=xcool * r500,
        acool=acool,
        rt_kpc=xt * r500,
        c=c_t,
    )
    # T0 such that the gas-density-squared weighted T over 0.15-1 R500 is T_mean.
    rr = r500[:, None] * np.linspace(0.15, 1.0, 128)
    w = ph.ne_cm3(rr, ph.with_trailing_axis(density)) ** 2 * rr**2
    t_rel = ph.temperature_keV(rr, ph.with_trailing_axis(temp_unit))
    T0 = T_mean * np.trapezoid(w, rr, axis=1) / np.trapezoid(w * t_rel, rr, axis=1)
    temperature = ph.TemperatureParams(**{**temp_unit.__dict__, "T0_keV": T0})

    ne0 = ph.ne_cm3(r_c, density)
    T_center = ph.temperature_keV(r_c, temperature)
    t_cool = ph.cooling_time_gyr(ne0, T_center)
    return _Candidates(
        m500, r500, T_mean, fgas, density, temperature, ne0, T_center, t_cool,
        ph.label_from_tcool(t_cool),
    )  # fmt: skip


def _pick(params: ph.DensityParams | ph.TemperatureParams, i: int):
    return type(params)(
        **{k: float(np.asarray(v)[i] if np.ndim(v) else v) for k, v in params.__dict__.items()}
    )


def draw_cluster(
    rng: np.random.Generator,
    target_label: str,
    cluster_id: int = 0,
    *,
    prior: PopulationPrior = DEFAULT_PRIOR,
    max_batches: int = 200,
) -> ClusterModel:
    """Draw one cluster whose computed label is ``target_label``.

    Candidates come from the population prior in batches of 64; the first whose
    central cooling time (3-D model, 0.012 R500) gives ``target_label`` is kept
    (rejection sampling: the label is always the computed one).  Geometry and
    disturbances are drawn afterwards, with class-dependent rates.

    Parameters
    ----------
    rng : numpy.random.Generator
        The cluster's own generator (everything drawn comes from it).
    target_label : {"CC", "WCC", "NCC"}
    cluster_id : int
    prior : PopulationPrior
        The population (default :data:`DEFAULT_PRIOR`).
    max_batches : int
        Give up (RuntimeError) after this many batches without a match.
    """
    if target_label not in CLASS_NAMES:
        raise UsageError(f"target_label: {target_label!r} is not one of {CLASS_NAMES}")
    for _ in range(max_batches):
        cand = _draw_candidates(rng, 64, prior)
        hits = np.flatnonzero(cand.labels == target_label)
        if hits.size:
            i = int(hits[0])
            break
    else:  # pragma: no cover - the prior covers every class
        raise RuntimeError(f"no {target_label} cluster after {max_batches * 64} draws")

    r500 = float(cand.r500[i])
    density = _pick(cand.density, i)
    temperature = _pick(cand.temperature, i)
    label = str(cand.labels[i])
    cls = CLASS_NAMES.index(label)

    # Triaxial shape, random orientation.
    q1 = rng.uniform(0.75, 1.0)
    q2 = q1 * rng.uniform(0.75, 1.0)
    axes = np.array([1.0, q1, q2]) / np.cbrt(q1 * q2)
    rotation = _random_rotation(rng)
    shape_matrix = _ellipsoid_matrix(rotation, axes)

    # Luminosity of the smooth gas inside R500, to scale the clumps.
    m = r500 * np.exp(np.linspace(np.log(1e-4), 0.0, 600))
    eps_m = ph.emissivity_cgs(m, density, temperature)
    lum_kpc3 = 4.0 * np.pi * np.trapezoid(eps_m * m**3, np.log(m))

    clumps: list[Clump] = []
    n_sub = rng.choice(3, p=((0.8, 0.2, 0.0), (0.5, 0.4, 0.1), (0.3, 0.5, 0.2))[cls])
    for _ in range(n_sub):
        rc = rng.uniform(40.0, 150.0)
        semi = rc * np.array([1.0, rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)])
        q = _ellipsoid_matrix(_random_rotation(rng), semi)
        pos = _unit_vector(rng) * rng.uniform(0.15, 0.8) * r500
        flux = rng.uniform(0.05, 0.3) * lum_kpc3
        clumps.append(Clump(pos, q, flux * np.sqrt(np.linalg.det(q)) / np.pi**2, "subclump"))
    if rng.random() < prior.p_corona[cls]:
        # A BCG corona (Sun et al. 2007): a few-kpc clump of cool galaxy gas at the
        # centre, outside the ICM model that sets t_cool (it is negligible at 0.012 R500).
        rc = rng.uniform(1.0, 4.0)
        flux = np.exp(rng.uniform(*np.log(prior.corona_flux))) * lum_kpc3
        clumps.append(Clump(np.zeros(3), np.eye(3) / rc**2, flux / rc**3 / np.pi**2, "corona"))
    for _ in range(rng.poisson(4.0)):
        rc = rng.uniform(3.0, 15.0)
        r = r500 * np.cbrt(rng.uniform(0.001, 1.0))
        pos = _unit_vector(rng) * max(r, 50.0)
        flux = np.exp(rng.uniform(np.log(1e-3), np.log(1e-2))) * lum_kpc3
        q = np.eye(3) / rc**2
        clumps.append(Clump(pos, q, flux / rc**3 / np.pi**2, "satellite"))

    cavities: list[Cavity] = []
    if rng.random() < (0.7, 0.2, 0.0)[cls]:
        jet = _unit_vector(rng)
        for sign in (1.0, -1.0):
            a = rng.uniform(5.0, 25.0)
            d = rng.uniform(max(10.0, 1.2 * a), max(50.0, 1.3 * a))
            cavities.append(Cavity(sign * jet * d, a, rng.uniform(0.5, 0.9)))

    sloshing = None
    if rng.random() < (0.6, 0.5, 0.1)[cls]:
        sloshing = Sloshing(
            normal=_unit_vector(rng),
            amplitude=rng.uniform(0.1, 0.3),
            r_in_kpc=rng.uniform(20.0, 50.0),
            r_out_kpc=rng.uniform(150.0, 300.0),
            pitch_kpc=rng.uniform(150.0, 300.0),
            phase=rng.uniform(0.0, 2.0 * np.pi),
            chirality=float(rng.choice((-1.0, 1.0))),
        )
    fluct_rms = rng.uniform(*((0.03, 0.08), (0.03, 0.10), (0.05, 0.15))[cls])
    fluct_scale = rng.uniform(50.0, 200.0)
    noise_seed = int(rng.integers(2**63))

    return ClusterModel(
        cluster_id=cluster_id,
        m500_msun=float(cand.m500[i]),
        r500_kpc=r500,
        T_keV=float(cand.T_mean[i]),
        fgas=float(cand.fgas[i]),
        density=density,
        temperature=temperature,
        shape_matrix=shape_matrix,
        axis_ratios=axes,
        ne0_cm3=float(cand.ne0[i]),
        T_center_keV=float(cand.T_center[i]),
        t_cool_gyr=float(cand.t_cool[i]),
        label=label,
        clumps=tuple(clumps),
        cavities=tuple(cavities),
        sloshing=sloshing,
        fluct_rms=float(fluct_rms),
        fluct_scale_kpc=float(fluct_scale),
        noise_seed=noise_seed,
    )


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
        ("ORIGIN", "coolcore", "coolcore.simulate"),
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


__all__ = [
    "AXES",
    "ClusterModel",
    "draw_cluster",
    "observe_counts",
    "projected_profile",
    "render_projection",
    "sample_coordinates",
    "simulate_sample",
]
