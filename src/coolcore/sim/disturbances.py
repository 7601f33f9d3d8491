"""The disturbances of a simulated cluster, drawn from its physical state, never its label.

A cluster's clumps (subclumps, a BCG corona, satellites), AGN cavities, sloshing spiral
and gas fluctuations are drawn by :func:`draw_disturbances` from a
:class:`PhysicalState`: R500, the luminosity of the smooth gas, the central cooling
time and the dynamical state (``relaxedness`` in [0, 1], drawn with the gas before the
label exists, see :mod:`coolcore.sim.population`).  The probabilities are smooth
functions of the cooling time and of the disturbance ``d = 1 - relaxedness``
(:func:`disturbance_rates`), so nothing jumps at the class thresholds and the label
cannot be read off a disturbance except through the physics.  This module does not
know the class names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Cavity",
    "Clump",
    "DisturbancePrior",
    "Disturbances",
    "PhysicalState",
    "Sloshing",
    "disturbance_rates",
    "draw_disturbances",
    "ellipsoid_matrix",
    "random_rotation",
    "unit_vector",
]


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
class PhysicalState:
    """What a cluster's disturbances are drawn from: its physics, never its label.

    ``lum_kpc3`` is the luminosity of the smooth gas inside R500 divided by 1 kpc^3
    (erg s^-1 cm^-3 kpc^3): the clumps' brightness scale.  ``t_cool_gyr`` is the
    central cooling time (0.012 R500), ``relaxedness`` the dynamical state (0: just
    merged, 1: long relaxed).
    """

    r500_kpc: float
    lum_kpc3: float
    t_cool_gyr: float
    relaxedness: float


@dataclass(frozen=True)
class Disturbances:
    """The clumps, cavities, sloshing spiral and fluctuation field of one cluster."""

    clumps: tuple[Clump, ...]
    cavities: tuple[Cavity, ...]
    sloshing: Sloshing | None
    fluct_rms: float
    fluct_scale_kpc: float


@dataclass(frozen=True)
class DisturbancePrior:
    """The rates of the disturbances; ``t`` is the central cooling time (Gyr), ``d = 1 -
    relaxedness``.

    - AGN cavities (a pair): ``p / (1 + (t / t_half)^n)``, ``cavity_rate = (p, t_half,
      n)``: feedback where the gas cools fast.
    - BCG corona: ``p h (1 + d) / 2``, ``h = (t / t_half)^n / (1 + (t / t_half)^n)``
      (``corona_rate``): a small cool corona stands out in hot, high-entropy,
      disturbed gas.
    - Sloshing spiral: ``p exp(-((d - d_peak) / w)^2) / (1 + (t / t_half)^n)``
      (``sloshing_rate``, ``sloshing_peak = (d_peak, w)``): after minor mergers, in
      moderately relaxed clusters that have cool gas to slosh.
    - Subclumps: Poisson of mean ``a + b d^2`` (``subclump_mean = (a, b)``), at most 3.
    - Fluctuation rms: ``base + slope d + U(0, width)`` (``fluct_rms``).
    """

    cavity_rate: tuple[float, float, float] = (0.75, 1.5, 3.0)  # p, t_half (Gyr), n
    corona_rate: tuple[float, float, float] = (0.7, 5.0, 2.0)
    sloshing_rate: tuple[float, float, float] = (0.8, 8.0, 2.0)
    sloshing_peak: tuple[float, float] = (0.35, 0.45)
    subclump_mean: tuple[float, float] = (0.1, 1.8)
    fluct_rms: tuple[float, float, float] = (0.03, 0.08, 0.04)  # base, slope, width
    corona_flux: tuple[float, float] = (0.005, 0.05)  # fraction of L(<R500), log-uniform


# ----------------------------------------------------------------------- geometry


def random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    """A rotation matrix uniform on SO(3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def unit_vector(rng: np.random.Generator) -> NDArray[np.float64]:
    """A direction uniform on the sphere."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def ellipsoid_matrix(
    rotation: NDArray[np.float64], semi_axes: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``R diag(1 / a^2) R^T``: the quadratic form of an ellipsoid with these semi-axes."""
    return rotation @ np.diag(1.0 / np.asarray(semi_axes) ** 2) @ rotation.T


# ---------------------------------------------------------------------- the draw


def disturbance_rates(
    t_cool_gyr: ArrayLike, relaxedness: ArrayLike, prior: DisturbancePrior | None = None
) -> dict[str, NDArray[np.float64]]:
    """Probabilities of the disturbances for a central cooling time and a dynamical state.

    Smooth in both (no step at the class thresholds); formulas in
    :class:`DisturbancePrior`.  Returns the probabilities ``cavities``, ``corona``,
    ``sloshing`` and the Poisson mean ``subclumps`` (before the cap at 3).
    """
    prior = DisturbancePrior() if prior is None else prior
    t = np.asarray(t_cool_gyr, dtype=np.float64)
    d = 1.0 - np.asarray(relaxedness, dtype=np.float64)
    p, t_half, n = prior.cavity_rate
    cavities = p / (1.0 + (t / t_half) ** n)
    p, t_half, n = prior.corona_rate
    high = (t / t_half) ** n
    corona = p * high / (1.0 + high) * (1.0 + d) / 2.0
    p, t_half, n = prior.sloshing_rate
    d_peak, width = prior.sloshing_peak
    sloshing = p * np.exp(-(((d - d_peak) / width) ** 2)) / (1.0 + (t / t_half) ** n)
    a, b = prior.subclump_mean
    return {"cavities": cavities, "corona": corona, "sloshing": sloshing,
            "subclumps": a + b * d**2}  # fmt: skip


def _draw_clumps(
    rng: np.random.Generator, state: PhysicalState, rates: dict, prior: DisturbancePrior
) -> list[Clump]:
    """Subclumps, a BCG corona and satellites, scaled to the cluster's luminosity."""
    r500, lum = state.r500_kpc, state.lum_kpc3
    clumps: list[Clump] = []
    for _ in range(min(int(rng.poisson(rates["subclumps"])), 3)):
        rc = rng.uniform(40.0, 150.0)
        semi = rc * np.array([1.0, rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)])
        q = ellipsoid_matrix(random_rotation(rng), semi)
        pos = unit_vector(rng) * rng.uniform(0.15, 0.8) * r500
        flux = rng.uniform(0.05, 0.3) * lum
        clumps.append(Clump(pos, q, flux * np.sqrt(np.linalg.det(q)) / np.pi**2, "subclump"))
    if rng.random() < rates["corona"]:
        # A BCG corona (Sun et al. 2007): a few-kpc clump of cool galaxy gas at the
        # centre, outside the ICM model that sets t_cool (it is negligible at 0.012 R500).
        rc = rng.uniform(1.0, 4.0)
        flux = np.exp(rng.uniform(*np.log(prior.corona_flux))) * lum
        clumps.append(Clump(np.zeros(3), np.eye(3) / rc**2, flux / rc**3 / np.pi**2, "corona"))
    for _ in range(rng.poisson(4.0)):
        rc = rng.uniform(3.0, 15.0)
        r = r500 * np.cbrt(rng.uniform(0.001, 1.0))
        pos = unit_vector(rng) * max(r, 50.0)
        flux = np.exp(rng.uniform(np.log(1e-3), np.log(1e-2))) * lum
        q = np.eye(3) / rc**2
        clumps.append(Clump(pos, q, flux / rc**3 / np.pi**2, "satellite"))
    return clumps


def _draw_cavity_pair(rng: np.random.Generator) -> list[Cavity]:
    """A pair of AGN bubbles along a random jet axis."""
    jet = unit_vector(rng)
    cavities: list[Cavity] = []
    for sign in (1.0, -1.0):
        a = rng.uniform(5.0, 25.0)
        d = rng.uniform(max(10.0, 1.2 * a), max(50.0, 1.3 * a))
        cavities.append(Cavity(sign * jet * d, a, rng.uniform(0.5, 0.9)))
    return cavities


def _draw_spiral(rng: np.random.Generator) -> Sloshing:
    """A sloshing spiral of random orientation, amplitude and winding."""
    return Sloshing(
        normal=unit_vector(rng),
        amplitude=rng.uniform(0.1, 0.3),
        r_in_kpc=rng.uniform(20.0, 50.0),
        r_out_kpc=rng.uniform(150.0, 300.0),
        pitch_kpc=rng.uniform(150.0, 300.0),
        phase=rng.uniform(0.0, 2.0 * np.pi),
        chirality=float(rng.choice((-1.0, 1.0))),
    )


def draw_disturbances(
    rng: np.random.Generator, state: PhysicalState, prior: DisturbancePrior | None = None
) -> Disturbances:
    """Draw a cluster's disturbances from its physical state (rates: :func:`disturbance_rates`).

    Parameters
    ----------
    rng : numpy.random.Generator
        The cluster's generator.
    state : PhysicalState
        R500, luminosity, central cooling time and dynamical state: the label is not
        an argument, so the disturbances depend on it only through the physics.
    prior : DisturbancePrior, optional
        The rates (default ``DisturbancePrior()``).
    """
    prior = DisturbancePrior() if prior is None else prior
    rates = disturbance_rates(state.t_cool_gyr, state.relaxedness, prior)
    rates = {key: float(value) for key, value in rates.items()}
    clumps = _draw_clumps(rng, state, rates, prior)
    cavities = _draw_cavity_pair(rng) if rng.random() < rates["cavities"] else []
    sloshing = _draw_spiral(rng) if rng.random() < rates["sloshing"] else None
    base, slope, width = prior.fluct_rms
    fluct_rms = base + slope * (1.0 - state.relaxedness) + rng.uniform(0.0, width)
    return Disturbances(
        clumps=tuple(clumps),
        cavities=tuple(cavities),
        sloshing=sloshing,
        fluct_rms=float(fluct_rms),
        fluct_scale_kpc=float(rng.uniform(50.0, 200.0)),
    )
