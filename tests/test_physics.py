"""Tests of coolcore.sim.physics against hand evaluations, analytic integrals and ACCEPT."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coolcore.sim import physics as ph

ACCEPT_CSV = Path(__file__).resolve().parent / "data" / "accept" / "accept_cooling.csv"
"""Four columns of the ACCEPT catalogue (MIT licence; source in the README beside it)."""


def test_cooling_function_hand_value():
    # Tozzi & Norman (2001) at T = 4 keV, evaluated term by term.
    expected = (8.6e-3 * 4.0**-1.7 + 5.8e-2 * 2.0 + 6.3e-2) * 1e-22
    assert ph.cooling_function(4.0) == pytest.approx(expected, rel=1e-12)
    assert ph.cooling_function(4.0) == pytest.approx(1.798e-23, rel=1e-3)


def test_cooling_time_check_value_from_simulator_spec():
    # SIMULATOR.md: n_e = 0.05 cm^-3, T = 4 keV gives about 0.78 Gyr.
    assert ph.cooling_time_gyr(0.05, 4.0) == pytest.approx(0.78, abs=0.005)


def test_cooling_time_from_first_principles():
    # t = (3/2) (n_e + n_i) k T / (n_e n_H Lambda), n_i = 0.92 n_e, n_H = n_e / 1.2.
    n_e, T = 0.013, 3.3
    kT_erg = T * 1.602177e-9
    lam = (8.6e-3 * T**-1.7 + 5.8e-2 * math.sqrt(T) + 6.3e-2) * 1e-22
    t_s = 1.5 * 1.92 * n_e * kT_erg / (n_e * (n_e / 1.2) * lam)
    t_gyr = t_s / (365.25 * 86400 * 1e9)
    assert ph.cooling_time_gyr(n_e, T) == pytest.approx(t_gyr, rel=2e-3)


def test_cooling_time_is_vectorised():
    n = np.array([[0.01], [0.1]])
    T = np.array([2.0, 4.0, 8.0])
    out = ph.cooling_time_gyr(n, T)
    assert out.shape == (2, 3)
    assert out[1, 1] == pytest.approx(ph.cooling_time_gyr(0.1, 4.0))
    assert np.all(out[0] > out[1])  # denser gas cools faster


@pytest.mark.parametrize(("m500", "r500_mpc"), [(1e14, 0.72), (3e14, 1.04), (1e15, 1.55)])
def test_r500_values_from_simulator_spec(m500, r500_mpc):
    assert ph.r500_kpc(m500) / 1e3 == pytest.approx(r500_mpc, abs=0.006)


def test_r500_definition():
    # M500 = (4 pi / 3) 500 rho_crit R500^3, rho_crit = 2.775e11 h^2 Msun / Mpc^3.
    r_mpc = ph.r500_kpc(4e14) / 1e3
    rho_crit = 2.775e11 * 0.6774**2
    assert 4.0 / 3.0 * math.pi * 500.0 * rho_crit * r_mpc**3 == pytest.approx(4e14, rel=1e-10)


def test_mean_temperature_inverts_vikhlinin_2009():
    T = ph.mean_temperature_keV(np.array([1e14, 5e14]))
    # M500 = 3.02e14 h^-1 Msun (T / 5 keV)^1.53
    m_back = 3.02e14 / 0.6774 * (T / 5.0) ** 1.53
    np.testing.assert_allclose(m_back, [1e14, 5e14], rtol=1e-10)
    assert 1.5 < T[0] < 2.5 and 4.0 < T[1] < 6.0


def test_density_hand_value_a133():
    # The A133 fit quoted in SIMULATOR.md, evaluated by hand at r = 100 kpc.
    p = ph.DensityParams(4.7e-3, 95.0, 1240.0, 0.92, 0.53, 4.9, 0.025, 76.0, 3.6)
    r = 100.0
    x_soft = math.sqrt(r**2 + ph.CUSP_SOFTENING_KPC**2) / 95.0
    main = (
        4.7e-3**2
        * x_soft**-0.92
        / (1 + (r / 95.0) ** 2) ** (3 * 0.53 - 0.46)
        / (1 + (r / 1240.0) ** 3) ** (4.9 / 3)
    )
    second = 0.025**2 / (1 + (r / 76.0) ** 2) ** (3 * 3.6)
    assert ph.ne_cm3(r, p) == pytest.approx(math.sqrt(1.2 * (main + second)), rel=1e-12)


def test_density_profile_of_a133_is_plausible():
    p = ph.DensityParams(4.7e-3, 95.0, 1240.0, 0.92, 0.53, 4.9, 0.025, 76.0, 3.6)
    n = ph.ne_cm3(np.array([10.0, 100.0, 1000.0]), p)
    assert 0.02 < n[0] < 0.1  # a cool core (SIMULATOR.md: CC 0.02-0.1 cm^-3)
    assert np.all(np.diff(n) < 0)


def test_temperature_profile_limits():
    p = ph.TemperatureParams(
        T0_keV=6.0, tmin_ratio=0.4, rcool_kpc=50.0, acool=2.0, rt_kpc=1e9, c=0.3
    )
    assert ph.temperature_keV(1e-6, p) == pytest.approx(2.4, rel=1e-6)  # T0 Tmin/T0
    assert ph.temperature_keV(50.0, p) == pytest.approx(6.0 * (0.4 + 1) / 2, rel=1e-9)
    assert ph.temperature_keV(1e5, p) == pytest.approx(6.0, rel=1e-3)
    q = ph.TemperatureParams(6.0, 1.0, 50.0, 2.0, rt_kpc=500.0, c=0.4)
    assert ph.temperature_keV(500.0, q) == pytest.approx(6.0 * 2**-0.2, rel=1e-9)


def test_gas_mass_matches_analytic_beta_model():
    # beta = 2/3, no cusp, no steepening: n_e = sqrt(1.2) n0 / (1 + x^2), whose mass
    # inside r is 4 pi mu_e m_p sqrt(1.2) n0 rc^3 (x - arctan x).
    n0, rc, r = 3e-3, 150.0, 900.0
    p = ph.DensityParams(n0, rc, rs_kpc=1.0, alpha=0.0, beta=2.0 / 3.0, eps=0.0)
    x = r / rc
    kpc, msun, mp = 3.0857e21, 1.98847e33, 1.67262e-24
    mass = 4 * math.pi * (1.4 / 1.2) * mp * math.sqrt(1.2) * n0 * (rc * kpc) ** 3
    mass *= x - math.atan(x)
    assert ph.gas_mass_msun(r, p) == pytest.approx(mass / msun, rel=1e-4)


def test_gas_mass_broadcasts_over_clusters():
    p = ph.DensityParams(
        n0_cm3=np.array([1e-3, 2e-3]), rc_kpc=np.array([100.0, 200.0]), rs_kpc=1e4,
        alpha=0.0, beta=2.0 / 3.0, eps=0.0,
    )  # fmt: skip
    both = ph.gas_mass_msun(np.array([500.0, 800.0]), p)
    one = ph.gas_mass_msun(800.0, ph.DensityParams(2e-3, 200.0, 1e4, 0.0, 2.0 / 3.0, 0.0))
    assert both.shape == (2,)
    assert both[1] == pytest.approx(one, rel=1e-12)


def test_labels_use_inclusive_thresholds():
    t = np.array([0.2, 1.0, 1.0000001, 5.0, 7.6999, 7.7, 20.0])
    assert ph.label_from_tcool(t).tolist() == ["CC", "CC", "WCC", "WCC", "WCC", "NCC", "NCC"]


def test_accept_cooling_times_reproduced():
    """Cavagnolo et al. (2009) ACCEPT: our formula on nelec, clustemp vs tcool3/2."""
    table = pd.read_csv(ACCEPT_CSV)  # units: cm^-3, keV, Gyr (tests/data/accept/README.md)
    table = table.dropna(subset=["nelec", "clustemp", "tcool3/2"])
    table = table[(table["nelec"] > 0) & (table["clustemp"] > 0) & (table["tcool3/2"] > 0)]
    assert len(table) > 200
    ours = ph.cooling_time_gyr(table["nelec"].to_numpy(), table["clustemp"].to_numpy())
    ratio = np.median(ours / table["tcool3/2"].to_numpy())
    assert abs(ratio - 1.0) < 0.15, ratio


def _cdf_by_quadrature(m, lo, hi, slope, cutoff):
    """CDF of dN/dlnM ~ M^slope exp(-M / Mc) on [lo, hi] by numerical integration in ln M."""
    from scipy import integrate

    def density(lnm):
        return math.exp(slope * (lnm - math.log(lo)) - (math.exp(lnm) - lo) / cutoff)

    total = integrate.quad(density, math.log(lo), math.log(hi), limit=200)[0]
    return integrate.quad(density, math.log(lo), math.log(m), limit=200)[0] / total


@pytest.mark.parametrize(("slope", "cutoff"), [(-1.4, math.inf), (1.75, 10**14.56), (0.8, 3e14)])
def test_m500_quantile_inverts_the_mass_distribution(slope, cutoff):
    # u -> M and back through the CDF integrated by quadrature (an independent reference).
    lo, hi = 10**13.75, 10**15.4
    u = np.array([0.0, 0.02, 0.1, 0.37, 0.5, 0.81, 0.99, 1.0])
    m = ph.m500_quantile(u, (lo, hi), slope, cutoff)
    assert np.all(np.diff(m) > 0)
    assert m[0] == pytest.approx(lo, rel=1e-9) and m[-1] == pytest.approx(hi, rel=1e-9)
    back = [_cdf_by_quadrature(x, lo, hi, slope, cutoff) for x in m]
    np.testing.assert_allclose(back, u, atol=1e-6)


def test_m500_quantile_is_a_truncated_gamma_distribution():
    # dN/dlnM ~ M^k exp(-M/Mc) is a gamma distribution of M with shape k, scale Mc.
    from scipy import stats

    lo, hi, k, mc = 1e14, 2e15, 1.75, 4e14
    dist = stats.gamma(k, scale=mc)
    u = np.linspace(0.05, 0.95, 7)
    expected = dist.ppf(dist.cdf(lo) + u * (dist.cdf(hi) - dist.cdf(lo)))
    np.testing.assert_allclose(ph.m500_quantile(u, (lo, hi), k, mc), expected, rtol=1e-8)


@pytest.mark.parametrize(
    ("m_range", "slope", "cutoff"),
    [((1e15, 1e14), 1.0, 1e14), ((0.0, 1e15), 1.0, 1e14), ((1e14, 1e15), 0.0, math.inf),
     ((1e14, 1e15), -1.4, 3e14)],
)  # fmt: skip
def test_m500_quantile_refuses_an_impossible_distribution(m_range, slope, cutoff):
    with pytest.raises(ValueError, match="^m500_quantile: needs"):
        ph.m500_quantile(0.5, m_range, slope, cutoff)
