"""The simulated cluster population: the 3-D cluster model and its random draw.

A cluster (:class:`ClusterModel`) is a triaxial, ellipsoidally stratified gas halo
with clumps, AGN cavities, a sloshing spiral and gas fluctuations.
:func:`draw_cluster` draws one from the population prior
(:class:`PopulationPrior`) whose label, computed from the central cooling time of
the 3-D gas at 0.012 R500, is the one asked for (rejection sampling).  Each candidate
gets a dynamical state (``relaxedness``) with its gas, before any label exists; the
disturbances are then drawn from the kept cluster's physical state alone
(:mod:`coolcore.sim.disturbances`), never from its label.
:mod:`coolcore.sim.simulate` projects clusters into maps; ``docs/simulator.md``
describes the physics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.sim import physics as ph
from coolcore.sim.disturbances import (
    Cavity,
    Clump,
    DisturbancePrior,
    PhysicalState,
    Sloshing,
    draw_disturbances,
    ellipsoid_matrix,
    random_rotation,
)

__all__ = [
    "DEFAULT_PRIOR",
    "VOLUME_LIMITED_PRIOR",
    "Cavity",  # re-exported from coolcore.sim.disturbances
    "Clump",
    "ClusterModel",
    "PopulationPrior",
    "Sloshing",
    "draw_cluster",
]

R_TCOOL_R500 = 0.012
"""Radius, in units of R500, at which the central cooling time is taken."""


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ClusterModel:
    """One simulated cluster: its gas, its geometry, its dynamical state, its
    disturbances, its label.

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
    relaxedness: float = 1.0  # dynamical state: 0 just merged, 1 long relaxed

    @property
    def r_tcool_kpc(self) -> float:
        """Radius (kpc) at which ``t_cool_gyr`` is evaluated: 0.012 R500."""
        return R_TCOOL_R500 * self.r500_kpc

    def emissivity_1d(self, m_kpc: NDArray[np.float64]) -> NDArray[np.float64]:
        """Smooth-gas emissivity (erg s^-1 cm^-3) at ellipsoidal radius ``m_kpc``."""
        return ph.emissivity_cgs(m_kpc, self.density, self.temperature)


# ----------------------------------------------------------------- population draw


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
    relaxedness: NDArray[np.float64]


@dataclass(frozen=True)
class PopulationPrior:
    """The population the candidates are drawn from (units: R500 for ``x*`` radii).

    **Mass**: ``dN / dln M500 ~ M500^mass_slope exp(-M500 / mass_cutoff_msun)`` in
    ``m500_range`` (:func:`coolcore.sim.physics.m500_quantile`); the mean temperature
    follows from the M-T relation with ``T_sigma`` log-normal scatter.

    **Core**: two latent variables in [0, 1], correlated through a Gaussian copula
    with correlation ``rho``, shape the core: ``s_halo`` moves the main density
    component from a large flat core (``rc = xc_flat R500``, no cusp) to a small cuspy
    one (``rc = xc_cuspy R500``, cusp ``alpha ~ alpha_max``); ``s_core`` switches on the
    compact second component (probability ``s_core``, amplitude ``n02 / n0 = s_core
    10^U(log_k2)``, core radius log-uniform in ``x2_range``).  The central
    temperature drop follows the gas that makes it: ``Tmin / T0 = 1.05 - tmin_core w
    - tmin_cusp s_halo + N(0, tmin_sigma)``, ``w`` being the compact component's share
    of ``n_p n_e`` at 0.012 R500.

    **Dynamical state**: ``relaxedness`` in [0, 1] (uniform), a third variable of the
    copula with correlation ``rho_dyn`` to ``s_halo``'s Gaussian: relaxed clusters
    tend to have small cuspy cores.  ``d = 1 - relaxedness`` is the disturbance.

    **Disturbances**: their rates, ``disturbances``
    (:class:`~coolcore.sim.disturbances.DisturbancePrior`), are functions of the kept
    cluster's central cooling time and ``d``.  Other parameters are independent (see
    the docs).
    """

    m500_range: tuple[float, float] = (10**13.75, 10**15.4)
    mass_slope: float = 1.75
    mass_cutoff_msun: float = 10**14.56
    T_sigma: float = 0.10  # log-normal scatter of the M-T relation
    fgas_sigma: float = 0.06  # log-normal scatter of the gas fraction
    rho: float = 0.5
    coolness_shift: float = -0.15  # mean of the Gaussian behind s_halo
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
    rho_dyn: float = 0.6
    disturbances: DisturbancePrior = DisturbancePrior()


DEFAULT_PRIOR = PopulationPrior()
"""The built-in sample's population: massive clusters, as in an X-ray archive."""

VOLUME_LIMITED_PRIOR = PopulationPrior(
    m500_range=(10**13.75, 10**15.2), mass_slope=-1.4, mass_cutoff_msun=np.inf
)
"""The former, volume-limited mass distribution, ``dN / dln M500 ~ M500^-1.4`` from 10^13.75
Msun (TNG300's counts near 10^14 Msun): group-dominated.  Everything else is
:data:`DEFAULT_PRIOR`'s, so this is not the former population as a whole."""


def _draw_candidates(
    rng: np.random.Generator, k: int, prior: PopulationPrior = DEFAULT_PRIOR
) -> _Candidates:
    """Draw ``k`` candidate gas models from the population prior (see the docs)."""
    m500 = ph.m500_quantile(
        rng.random(k), prior.m500_range, prior.mass_slope, prior.mass_cutoff_msun
    )
    r500 = ph.r500_kpc(m500)
    T_mean = ph.mean_temperature_keV(m500) * np.exp(rng.normal(0.0, prior.T_sigma, k))
    fgas = 0.13 * (m500 / 3e14) ** 0.05 * np.exp(rng.normal(0.0, prior.fgas_sigma, k))
    fgas = np.clip(fgas, 0.09, 0.17)

    z1 = rng.standard_normal(k) + prior.coolness_shift
    z2 = prior.rho * z1 + np.sqrt(1.0 - prior.rho**2) * rng.standard_normal(k)
    z3 = prior.rho_dyn * (z1 - prior.coolness_shift)
    z3 = z3 + np.sqrt(1.0 - prior.rho_dyn**2) * rng.standard_normal(k)
    s_halo, s_core, relaxedness = special.ndtr(z1), special.ndtr(z2), special.ndtr(z3)
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
        ph.label_from_tcool(t_cool), relaxedness,
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

    Candidates (gas and dynamical state) come from the population prior in batches of
    64; the first whose central cooling time (3-D model, 0.012 R500) gives
    ``target_label`` is kept (rejection sampling: the label is always the computed
    one).  Geometry and disturbances are drawn afterwards, the disturbances from the
    cluster's physical state alone (:func:`draw_disturbances`).

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

    # Triaxial shape, random orientation.
    q1 = rng.uniform(0.75, 1.0)
    q2 = q1 * rng.uniform(0.75, 1.0)
    axes = np.array([1.0, q1, q2]) / np.cbrt(q1 * q2)
    rotation = random_rotation(rng)
    shape_matrix = ellipsoid_matrix(rotation, axes)

    # Luminosity of the smooth gas inside R500, to scale the clumps.
    m = r500 * np.exp(np.linspace(np.log(1e-4), 0.0, 600))
    eps_m = ph.emissivity_cgs(m, density, temperature)
    lum_kpc3 = 4.0 * np.pi * np.trapezoid(eps_m * m**3, np.log(m))

    state = PhysicalState(r500, float(lum_kpc3), float(cand.t_cool[i]),
                          float(cand.relaxedness[i]))  # fmt: skip
    extra = draw_disturbances(rng, state, prior.disturbances)
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
        t_cool_gyr=state.t_cool_gyr,
        label=str(cand.labels[i]),
        clumps=extra.clumps,
        cavities=extra.cavities,
        sloshing=extra.sloshing,
        fluct_rms=extra.fluct_rms,
        fluct_scale_kpc=extra.fluct_scale_kpc,
        noise_seed=int(rng.integers(2**63)),
        relaxedness=state.relaxedness,
    )
