"""Gas physics of the intracluster medium: pure, vectorised NumPy, no I/O.

Everything here follows ``SIMULATOR.md`` (and ``docs/simulator.md``):

* R500 from M500 and the critical density of a Planck 2015 universe (h = 0.6774).
* The mean temperature from the M500-T relation of Vikhlinin et al. (2009).
* The mass distribution of the population, ``dN / dln M500 ~ M500^slope exp(-M500 / Mc)``
  in a range (:func:`m500_quantile`, its inverse cumulative distribution).
* The gas density model of Vikhlinin et al. (2006, eq. 3), with ``n_e = 1.2 n_H``.
* A simplified form of the Vikhlinin et al. (2006) temperature profile.
* The cooling function fit of Tozzi & Norman (2001) for Z = 0.3 Z_sun.
* The isochoric cooling time and the CC / WCC / NCC labels of Hudson et al. (2010),
  at the thresholds 1.0 and 7.7 Gyr.

Every function broadcasts: the fields of :class:`DensityParams` and
:class:`TemperatureParams` may be arrays (for instance of shape ``(n, 1)`` for ``n``
clusters) that broadcast against the radii.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from coolcore import CLASS_NAMES, T_COOL_CC_GYR, T_COOL_NCC_GYR

HUBBLE_H = 0.6774
"""Dimensionless Hubble constant of Planck 2015 (IllustrisTNG's cosmology)."""

RHO_CRIT_MSUN_MPC3 = 2.775e11 * HUBBLE_H**2
"""Critical density at z = 0 in Msun / Mpc^3."""

KPC_CM = 3.0857e21
"""One kiloparsec in cm."""

MSUN_G = 1.98847e33
"""One solar mass in g."""

PROTON_MASS_G = 1.67262e-24
"""Proton mass in g."""

NE_OVER_NH = 1.2
"""Electron to hydrogen number density ratio of a fully ionised H + He plasma."""

MU_E = 1.4 / NE_OVER_NH
"""Gas mass per electron in proton masses: rho_gas = MU_E m_p n_e (n_He = 0.1 n_H)."""

COOLING_TIME_COEFF = 1.755e-25
"""t_cool [Gyr] = COOLING_TIME_COEFF T[keV] / (n_e[cm^-3] Lambda[erg cm^3 s^-1]).

It is (3/2) (n_e + n_i) kT / (n_e n_H Lambda) with n_e + n_i = 1.92 n_e, n_e = 1.2 n_H,
1 keV = 1.602e-9 erg and 1 Gyr = 3.156e16 s.
"""

CUSP_SOFTENING_KPC = 1.0
"""Radius within which the density cusp ``(r / rc)^-alpha`` is softened (kpc).

Without it a cusp steeper than alpha = 1 would give an infinite surface brightness at
the centre of a projection; 1 kpc is far below the pixel scale of any map we make.
"""


@dataclass(frozen=True)
class DensityParams:
    """Parameters of the Vikhlinin et al. (2006, eq. 3) gas density model.

    ``n_p n_e = n0^2 (r/rc)^-alpha / (1 + (r/rc)^2)^(3 beta - alpha/2)
    / (1 + (r/rs)^gamma)^(eps/gamma) + n02^2 / (1 + (r/rc2)^2)^(3 beta2)``,
    and ``n_e = sqrt(1.2 n_p n_e)``.  Set ``n02_cm3 = 0`` for a single component.
    Fields may be arrays that broadcast against the radii.
    """

    n0_cm3: ArrayLike
    rc_kpc: ArrayLike
    rs_kpc: ArrayLike
    alpha: ArrayLike
    beta: ArrayLike
    eps: ArrayLike
    n02_cm3: ArrayLike = 0.0
    rc2_kpc: ArrayLike = 10.0
    beta2: ArrayLike = 1.0
    gamma: ArrayLike = 3.0


@dataclass(frozen=True)
class TemperatureParams:
    """Parameters of the simplified Vikhlinin et al. (2006) temperature profile.

    ``T(r) = T0 [tmin_ratio + (r/rcool)^acool] / [1 + (r/rcool)^acool]
    (1 + (r/rt)^2)^(-c/2)``, where ``tmin_ratio = Tmin / T0``.
    Fields may be arrays that broadcast against the radii.
    """

    T0_keV: ArrayLike
    tmin_ratio: ArrayLike
    rcool_kpc: ArrayLike
    acool: ArrayLike
    rt_kpc: ArrayLike
    c: ArrayLike


ProfileParams = TypeVar("ProfileParams", DensityParams, TemperatureParams)


def cooling_function(T_keV: ArrayLike) -> NDArray[np.float64]:
    """Tozzi & Norman (2001) cooling function for Z = 0.3 Z_sun.

    Parameters
    ----------
    T_keV : array_like
        Gas temperature in keV (positive).

    Returns
    -------
    numpy.ndarray
        Lambda(T) in erg cm^3 s^-1:
        ``[8.6e-3 T^-1.7 + 5.8e-2 T^0.5 + 6.3e-2] x 1e-22``.

    Examples
    --------
    >>> float(cooling_function(4.0))  # doctest: +ELLIPSIS
    1.79...e-23
    """
    t = np.asarray(T_keV, dtype=np.float64)
    return (8.6e-3 * t**-1.7 + 5.8e-2 * np.sqrt(t) + 6.3e-2) * 1e-22


def cooling_time_gyr(n_e: ArrayLike, T_keV: ArrayLike) -> NDArray[np.float64]:
    """Isochoric cooling time in Gyr.

    Parameters
    ----------
    n_e : array_like
        Electron number density in cm^-3.
    T_keV : array_like
        Temperature in keV.

    Returns
    -------
    numpy.ndarray
        ``1.755e-25 T / (n_e Lambda(T))`` in Gyr (broadcast of the inputs).

    Examples
    --------
    >>> round(float(cooling_time_gyr(0.05, 4.0)), 2)
    0.78
    """
    n = np.asarray(n_e, dtype=np.float64)
    t = np.asarray(T_keV, dtype=np.float64)
    return COOLING_TIME_COEFF * t / (n * cooling_function(t))


def r500_kpc(m500_msun: ArrayLike) -> NDArray[np.float64]:
    """R500 in kpc from ``M500 = (4 pi / 3) 500 rho_crit R500^3`` (h = 0.6774).

    Examples
    --------
    >>> round(float(r500_kpc(1e14)))
    721
    """
    m = np.asarray(m500_msun, dtype=np.float64)
    r_mpc = np.cbrt(3.0 * m / (4.0 * np.pi * 500.0 * RHO_CRIT_MSUN_MPC3))
    return r_mpc * 1e3


def mean_temperature_keV(m500_msun: ArrayLike) -> NDArray[np.float64]:
    """Mean temperature from the Vikhlinin et al. (2009) M500-T relation.

    ``M500 = 3.02e14 h^-1 Msun (T / 5 keV)^1.53`` solved for T, with h = 0.6774
    (no scatter: the simulator adds it).
    """
    m = np.asarray(m500_msun, dtype=np.float64)
    return 5.0 * (m * HUBBLE_H / 3.02e14) ** (1.0 / 1.53)


def m500_quantile(
    u: ArrayLike,
    m500_range: tuple[float, float],
    slope: float,
    cutoff_msun: float = np.inf,
) -> NDArray[np.float64]:
    """Inverse cumulative distribution of ``dN / dln M500 ~ M500^slope exp(-M500 / Mc)``.

    Parameters
    ----------
    u : array_like
        Quantiles in [0, 1] (uniform random numbers give random masses).
    m500_range : (float, float)
        Lowest and highest M500 (Msun).
    slope : float
        The power of M500 in dN / dln M500 (non-zero; positive where ``cutoff_msun`` is
        finite: the distribution of M500 is then a gamma distribution of shape ``slope``
        and scale ``Mc``, truncated to the range).
    cutoff_msun : float
        ``Mc`` (Msun); ``inf`` for a pure power law.

    Returns
    -------
    numpy.ndarray
        M500 in Msun, increasing with ``u``.

    Raises
    ------
    ValueError
        An empty or non-positive range, ``slope == 0``, or ``slope <= 0`` with a
        finite cutoff (no such distribution).

    Examples
    --------
    >>> m500_quantile([0.0, 1.0], (1e14, 1e15), -1.4).round(-10).tolist()
    [100000000000000.0, 1000000000000000.0]
    """
    q = np.asarray(u, dtype=np.float64)
    lo, hi = m500_range
    if not (0.0 < lo < hi and slope != 0.0 and (np.isinf(cutoff_msun) or slope > 0.0)):
        raise ValueError(
            f"m500_quantile: needs 0 < lo < hi, slope != 0, and slope > 0 with a finite "
            f"cutoff; got range {m500_range}, slope {slope}, cutoff {cutoff_msun}"
        )
    if np.isinf(cutoff_msun):
        a = float(slope)
        return (lo**a + q * (hi**a - lo**a)) ** (1.0 / a)
    p_lo, p_hi = (
        special.gammainc(slope, lo / cutoff_msun),
        special.gammainc(slope, hi / cutoff_msun),
    )
    m = cutoff_msun * special.gammaincinv(slope, p_lo + q * (p_hi - p_lo))
    return np.clip(m, lo, hi)


def ne_cm3(r_kpc: ArrayLike, params: DensityParams) -> NDArray[np.float64]:
    """Electron density of the Vikhlinin et al. (2006) model in cm^-3.

    Parameters
    ----------
    r_kpc : array_like
        Radius in kpc (for an ellipsoidal cluster: the ellipsoidal radius).
    params : DensityParams
        The model parameters (scalars or broadcastable arrays).

    Returns
    -------
    numpy.ndarray
        ``n_e = sqrt(1.2 n_p n_e)``.  The cusp term uses
        ``sqrt(r^2 + CUSP_SOFTENING_KPC^2)`` in place of ``r``.
    """
    p = params
    r = np.asarray(r_kpc, dtype=np.float64)
    x = r / np.asarray(p.rc_kpc)
    x_soft = np.sqrt(r**2 + CUSP_SOFTENING_KPC**2) / np.asarray(p.rc_kpc)
    alpha = np.asarray(p.alpha)
    gamma = np.asarray(p.gamma)
    npne = (
        np.asarray(p.n0_cm3) ** 2
        * x_soft ** (-alpha)
        / (1.0 + x**2) ** (3.0 * np.asarray(p.beta) - alpha / 2.0)
        / (1.0 + (r / np.asarray(p.rs_kpc)) ** gamma) ** (np.asarray(p.eps) / gamma)
    )
    npne = npne + np.asarray(p.n02_cm3) ** 2 / (1.0 + (r / np.asarray(p.rc2_kpc)) ** 2) ** (
        3.0 * np.asarray(p.beta2)
    )
    return np.sqrt(NE_OVER_NH * npne)


def temperature_keV(r_kpc: ArrayLike, params: TemperatureParams) -> NDArray[np.float64]:
    """Gas temperature in keV of the simplified Vikhlinin et al. (2006) profile."""
    p = params
    r = np.asarray(r_kpc, dtype=np.float64)
    x = (r / np.asarray(p.rcool_kpc)) ** np.asarray(p.acool)
    core = (np.asarray(p.tmin_ratio) + x) / (1.0 + x)
    outer = (1.0 + (r / np.asarray(p.rt_kpc)) ** 2) ** (-np.asarray(p.c) / 2.0)
    return np.asarray(p.T0_keV) * core * outer


def emissivity_cgs(
    r_kpc: ArrayLike, density: DensityParams, temperature: TemperatureParams
) -> NDArray[np.float64]:
    """Bolometric emissivity ``n_e n_H Lambda(T)`` in erg s^-1 cm^-3."""
    n_e = ne_cm3(r_kpc, density)
    return n_e**2 / NE_OVER_NH * cooling_function(temperature_keV(r_kpc, temperature))


def gas_mass_msun(
    r_kpc: ArrayLike, density: DensityParams, n_grid: int = 512
) -> NDArray[np.float64]:
    """Gas mass inside radius ``r_kpc`` (``rho_gas = MU_E m_p n_e``), in Msun.

    The integral ``4 pi int_0^r rho_gas r'^2 dr'`` is done by the trapezoid rule in
    ``ln r'`` on ``n_grid`` points from 1e-3 r, which is accurate to better than
    1e-4 for the profiles of this package.
    """
    r = np.asarray(r_kpc, dtype=np.float64)
    u = np.linspace(np.log(1e-3), 0.0, n_grid)
    rr = r[..., None] * np.exp(u)
    dens = with_trailing_axis(density)
    integrand = ne_cm3(rr, dens) * rr**3  # r^2 dr = r^3 du
    integral = np.trapezoid(integrand, u, axis=-1)
    mass_g = 4.0 * np.pi * MU_E * PROTON_MASS_G * integral * KPC_CM**3
    return mass_g / MSUN_G


def with_trailing_axis(params: ProfileParams) -> ProfileParams:
    """The same parameters with a trailing axis on array fields.

    Parameters of ``n`` clusters (fields of shape ``(n,)``) then broadcast against
    radii of shape ``(n, k)``.
    """
    fields = {
        k: (np.asarray(v)[..., None] if np.ndim(v) else v) for k, v in params.__dict__.items()
    }
    return type(params)(**fields)


def label_from_tcool(t_cool_gyr: ArrayLike) -> NDArray[np.str_]:
    """CC / WCC / NCC labels from central cooling times (Hudson et al. 2010).

    ``t <= 1.0`` Gyr is CC, ``t >= 7.7`` Gyr is NCC, anything between is WCC.

    Examples
    --------
    >>> label_from_tcool([0.5, 1.0, 3.0, 7.7]).tolist()
    ['CC', 'CC', 'WCC', 'NCC']
    """
    t = np.asarray(t_cool_gyr, dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError("label_from_tcool: t_cool_gyr contains NaN")
    idx = np.where(t <= T_COOL_CC_GYR, 0, np.where(t >= T_COOL_NCC_GYR, 2, 1))
    return np.asarray(CLASS_NAMES)[idx]


__all__ = [
    "DensityParams",
    "TemperatureParams",
    "cooling_function",
    "cooling_time_gyr",
    "emissivity_cgs",
    "gas_mass_msun",
    "label_from_tcool",
    "m500_quantile",
    "mean_temperature_keV",
    "ne_cm3",
    "r500_kpc",
    "temperature_keV",
    "with_trailing_axis",
]
