"""The simulated population against ACCEPT (coolcore.evaluate.population).

References are independent of the code under test: the cooling time evaluated by
hand from the particle densities with astropy's units, a synthetic entropy
profile, a brute-force least-squares fit, scipy's tests on log10 values, the maps'
catalogue written by ``simulate_sample``, and the ACCEPT catalogue itself
(``tests/data/accept/accept_population.csv``, MIT licence, see the README beside it).

Tolerances of the population comparison (docs/population.md): medians of log10 K0
and log10 tcool20 within 0.3 dex of ACCEPT's, median Tx within 30%, KS D on
log10 tcool20 below 0.5 and on log10 Tx below 0.15.  A known departure, K0 at 2-5 keV,
is marked ``xfail(strict=True)`` with the measured numbers, so that it fails when fixed.

The disturbances must come from the physics, not the label: an exact relabelling
test, a source-level test of ``coolcore.sim.disturbances`` and (slow) a comparison of
the rates of two labels in a narrow bin of cooling time at each class boundary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from numpy.typing import NDArray
from scipy import optimize, stats

from coolcore.errors import CatalogError, UsageError
from coolcore.evaluate import population as pop
from coolcore.sim import physics as ph
from coolcore.sim.simulate import simulate_sample

ACCEPT_CSV = Path(__file__).resolve().parent / "data" / "accept" / "accept_population.csv"

DEX_TOL = 0.3  # medians of log10 K0 and log10 tcool20
TX_TOL = 0.30  # median Tx, relative
KS_MAX = 0.5  # KS D on log10 tcool20
TX_KS_MAX = 0.15  # KS D on log10 Tx (the 1% critical value for 300 vs 241 is 0.14)


@pytest.fixture(scope="module")
def accept() -> pd.DataFrame:
    return pop.read_accept(ACCEPT_CSV)


@pytest.fixture(scope="module")
def default_sim() -> pd.DataFrame:
    """300 clusters of the default class mix (the built-in sample's), seed 0: ~4 s."""
    return pop.simulated_population(300, 0)


def _median_dex(sim: pd.DataFrame, accept: pd.DataFrame, column: str) -> float:
    """log10 of the ratio of the medians (a K0 of 0 counts: it is the lowest value)."""
    return float(np.log10(np.median(sim[column]) / np.median(accept[column])))


# ------------------------------------------------------------------------- ACCEPT


def test_read_accept_skips_units_row(accept):
    assert len(accept) == 241
    first = accept.iloc[0]
    assert first["Name"] == "1E_0657-56"
    assert first["K0"] == 307.45 and first["tcool3/2"] == 9.5045
    for column in pop.ACCEPT_COLUMNS[1:]:
        assert pd.api.types.is_float_dtype(accept[column]), column
    assert (accept["tcool20"] == accept["tcool3/2"]).all()


def test_read_accept_errors_name_the_file(tmp_path):
    with pytest.raises(CatalogError, match=r"^\S*nothere.csv: no such file"):
        pop.read_accept(tmp_path / "nothere.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,K0,Tx\n#,keV.cm^2,keV\nA,1,2\n")
    with pytest.raises(CatalogError, match=r"bad.csv: missing ACCEPT column\(s\) nelec"):
        pop.read_accept(bad)
    text = ACCEPT_CSV.read_text().splitlines()
    text[3] = text[3].replace("7.14,", "seven,", 1)  # K0 of 2A_0335+096
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(CatalogError, match=r"bad.csv: K0 'seven' in data row 2 is not a number"):
        pop.read_accept(bad)


def test_cooling_time_by_hand_for_one_accept_row(accept):
    # (a) 2A 0335+096: t = 3 n kT / (2 n_e n_H Lambda), fully ionised H + He with
    # n_He = 0.1 n_H (metals at 0.3 solar neglected): n_e = 1.2 n_H, n_i = 1.1 n_H.
    row = accept.set_index("Name").loc["2A_0335+096"]
    n_e = row["nelec"] * u.cm**-3
    n_H = n_e / 1.2
    n = n_e + 1.1 * n_H
    kT = row["clustemp"] * u.keV
    lam = row["Lambda"] * u.erg * u.cm**3 / u.s
    by_hand = (3 * n * kT / (2 * n_e * n_H * lam)).to(u.Gyr).value
    ours = pop.cooling_time_isochoric_gyr(row["nelec"], row["clustemp"], row["Lambda"])
    assert float(ours) == pytest.approx(by_hand, rel=1e-3)
    assert by_hand == pytest.approx(row["tcool3/2"], rel=0.03)


def test_cooling_time_reproduces_every_accept_row(accept):
    ours = pop.cooling_time_isochoric_gyr(accept["nelec"], accept["clustemp"], accept["Lambda"])
    ratio = ours / accept["tcool3/2"].to_numpy()
    assert np.abs(ratio - 1).max() < 0.03  # measured: 0.33% (Lambda has 3 digits)


def test_simulator_cooling_time_differs_only_in_lambda():
    # coolcore.sim.physics: n = 1.92 n_e, n_e = 1.2 n_H, i.e. n = 2.304 n_H (ACCEPT: 2.3).
    n_e, T = 0.01, 3.0
    lam = float(ph.cooling_function(T))
    ratio = float(ph.cooling_time_gyr(n_e, T) / pop.cooling_time_isochoric_gyr(n_e, T, lam))
    assert ratio == pytest.approx(2.304 / 2.3, rel=1e-3)


# ------------------------------------------------------------------------ K0 fit


def _brute_force_sse(r, k):
    """Least relative squared residuals of K0 + K100 x^alpha (K0, K100 >= 0) over a
    fine alpha grid, K0 and K100 by non-negative linear least squares."""
    best = np.inf
    for alpha in np.linspace(0.0, 3.0, 3001):
        design = np.stack([np.ones_like(r), (r / 100.0) ** alpha], axis=1) / k[:, None]
        coef, _ = optimize.nnls(design, np.ones_like(r))
        best = min(best, float(np.sum((design @ coef - 1.0) ** 2)))
    return best


def test_k0_fit_recovers_synthetic_profile():
    # (b) K = 15 + 150 (r / 100 kpc)^1.1 at the Chandra-like radii: K0 within 10%.
    r = np.asarray(pop.PROFILE_RADII_KPC)
    K0, K100, alpha = pop.fit_entropy_profile(r, 15.0 + 150.0 * (r / 100.0) ** 1.1)
    assert K0 == pytest.approx(15.0, rel=0.10)
    assert K100 == pytest.approx(150.0, rel=0.02) and alpha == pytest.approx(1.1, abs=0.02)


def test_k0_fit_at_the_bound_matches_brute_force():
    # A simulated profile (cluster 1879 of the matched-mix pool) whose unbounded fit
    # runs off to K0 -> -inf: the bounded fit must be the least-squares optimum.
    r = np.asarray(pop.PROFILE_RADII_KPC)
    k = np.array([56.31, 88.75, 141.84, 171.48, 192.52, 214.96, 239.37, 269.32, 313.8, 389.28])
    K0, K100, alpha = pop.fit_entropy_profile(r, k)
    assert K0 >= 0 and np.isfinite(K100) and np.isfinite(alpha)
    sse = float(np.sum(((K0 + K100 * (r / 100.0) ** alpha) / k - 1.0) ** 2))
    assert sse <= _brute_force_sse(r, k) * 1.001 + 1e-12


# ----------------------------------------------------------- the simulated sample


def test_draws_are_the_simulators(tmp_path):
    catalog = simulate_sample(tmp_path / "data", n_clusters=6, size=16, seed=3, progress=False)
    clusters = catalog.groupby("cluster_id").first()
    sim = pop.simulated_population(6, 3).set_index("cluster_id")
    assert (sim["label"] == clusters["label"]).all()
    np.testing.assert_allclose(sim["t_cool_gyr"], clusters["t_cool_gyr"], rtol=1e-6)
    np.testing.assert_allclose(sim["m500_msun"], clusters["m500_msun"], rtol=1e-6)
    np.testing.assert_allclose(sim["Tx"], clusters["T_keV"], rtol=1e-6)


def test_population_columns_are_consistent(default_sim):
    s = default_sim
    assert len(s) == 300 and s["K0"].notna().all()
    assert (s["label"].value_counts().reindex(["CC", "WCC", "NCC"]) == [30, 180, 90]).all()
    t = s["clustemp"].to_numpy()
    lam = (8.6e-3 * t**-1.7 + 5.8e-2 * np.sqrt(t) + 6.3e-2) * 1e-22  # Tozzi & Norman 2001
    np.testing.assert_allclose(s["Lambda"], lam, rtol=1e-12)
    hand = 3.45 * t * 1.602177e-9 / (s["nelec"] * lam) / 3.15576e16
    np.testing.assert_allclose(s["tcool20"], hand, rtol=1e-6)
    cc, ncc = s["tcool20"] <= 1.0, s["tcool20"] >= 7.7
    assert (s.loc[cc, "label20"] == "CC").all() and (s.loc[ncc, "label20"] == "NCC").all()


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="^n_clusters:"):
        pop.simulated_population(0, 0)
    with pytest.raises(UsageError, match="^seed:"):
        pop.simulated_population(3, -1)
    with pytest.raises(UsageError, match="^class_mix:"):
        pop.simulated_population(3, 0, (0.5, 0.6, 0.1))


# --------------------------------------------------------------------- selection


def test_solve_class_mix_inverts_a_hand_transfer():
    transfer = np.array([[0.5, 0.5, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    mix = np.array([0.2, 0.6, 0.2])
    target = mix @ transfer  # (0.10, 0.64, 0.26)
    np.testing.assert_allclose(pop.solve_class_mix(transfer, target), mix, atol=1e-6)
    unreachable = pop.solve_class_mix(transfer, (0.9, 0.0, 0.1))  # CC fraction > 0.5
    assert min(unreachable) >= 0 and sum(unreachable) == pytest.approx(1.0)


def test_subsample_class_mix_has_the_mix():
    sim = pd.DataFrame({"label": ["CC"] * 50 + ["WCC"] * 50 + ["NCC"] * 50, "i": range(150)})
    sub = pop.subsample_class_mix(sim, (0.2, 0.5, 0.3), seed=0)
    assert sub["label"].value_counts().to_dict() == {"CC": 20, "WCC": 50, "NCC": 30}
    assert not sub["i"].duplicated().any()


def test_match_temperature_gives_accepts_histogram(accept):
    rng = np.random.default_rng(0)
    sim = pd.DataFrame({"Tx": 10 ** rng.uniform(-0.2, 1.3, 3000)})
    sub = pop.match_temperature(sim, accept, seed=0, n_bins=6)
    edges = np.quantile(np.log10(accept["Tx"]), np.linspace(0, 1, 7))[1:-1]
    counts = np.bincount(np.digitize(np.log10(sub["Tx"]), edges), minlength=6)
    assert len(set(counts.tolist())) == 1 and counts[0] > 50
    assert sub["Tx"].isin(sim["Tx"]).all() and not sub["Tx"].duplicated().any()


# -------------------------------------------------------------------- comparison


@pytest.mark.filterwarnings("ignore:p-value")
def test_compare_populations_matches_scipy_on_log_values(default_sim, accept):
    table = pop.compare_populations(default_sim, accept)
    assert list(table.index) == ["K0", "tcool20", "Tx"]
    for column in table.index:
        x, y = default_sim[column].to_numpy(), accept[column].to_numpy()
        floor = 0.1 * min(v[v > 0].min() for v in (x, y))  # K0 = 0: the lowest value
        lx, ly = (np.log10(np.where(v > 0, v, floor)) for v in (x, y))
        assert table.loc[column, "ks_D"] == pytest.approx(stats.ks_2samp(lx, ly).statistic)
        ad = stats.anderson_ksamp([lx, ly], variant="midrank").statistic
        assert table.loc[column, "ad_stat"] == pytest.approx(ad, rel=1e-9)
        assert table.loc[column, "accept_q50"] == pytest.approx(np.median(y))
        assert table.loc[column, "sim_q90"] == pytest.approx(np.quantile(x, 0.9))
    with pytest.raises(UsageError, match="'nope' is not a column"):
        pop.compare_populations(default_sim, accept, ["nope"])
    assert "| K0 | simulated | 300 |" in pop.format_comparison(table)


def test_median_k0_within_tolerance(default_sim, accept):
    # (c) measured, seed 0: +0.14 dex (sim 73.1, ACCEPT 53.5 keV cm^2)
    assert abs(_median_dex(default_sim, accept, "K0")) < DEX_TOL


def test_median_tcool20_within_tolerance(default_sim, accept):
    # (c) measured, seed 0: +0.13 dex (sim 4.78 Gyr, ACCEPT 3.55 Gyr)
    assert abs(_median_dex(default_sim, accept, "tcool20")) < DEX_TOL


def test_median_tx_within_tolerance(default_sim, accept):
    # (c) measured, seed 0: -3.6% (sim 5.59, ACCEPT 5.80 keV); with the former
    # group-dominated mass function -70% (1.74 keV)
    sim_tx, acc_tx = np.median(default_sim["Tx"]), np.median(accept["Tx"])
    assert abs(sim_tx / acc_tx - 1.0) < TX_TOL


def test_ks_on_log_tx(default_sim, accept):
    # measured, seed 0: D = 0.080 (p = 0.34); before the archive-like mass prior 0.73
    result = stats.ks_2samp(np.log10(default_sim["Tx"]), np.log10(accept["Tx"]))
    assert result.statistic < TX_KS_MAX


def test_ks_on_log_tcool20(default_sim, accept):
    # (d) measured, seed 0: D = 0.131 (p = 0.018), AD statistic 7.8 (p < 0.001)
    lx, ly = np.log10(default_sim["tcool20"]), np.log10(accept["tcool20"])
    result = stats.ks_2samp(lx, ly)
    print(f"KS on log10 tcool20: D = {result.statistic:.3f}, p = {result.pvalue:.2g}")
    assert result.statistic < KS_MAX


@pytest.fixture(scope="module")
def even_pool() -> pd.DataFrame:
    """2400 clusters of an even class mix, seed 1 (docs/population.md): ~35 s."""
    return pop.simulated_population(2400, 1, (1 / 3, 1 / 3, 1 / 3))


@pytest.mark.slow
def test_matched_class_mix_within_tolerance(accept, even_pool):
    # measured: mix 15.5 / 62.5 / 22.0%, 1279 clusters; K0 +0.06 dex, tcool20 +0.08 dex
    matched = pop.subsample_class_mix(even_pool, pop.matched_class_mix(accept, even_pool))
    got, want = pop.accept_class_mix(matched), pop.accept_class_mix(accept)
    np.testing.assert_allclose(got, want, atol=0.02)
    assert abs(_median_dex(matched, accept, "tcool20")) < DEX_TOL
    assert abs(_median_dex(matched, accept, "K0")) < DEX_TOL
    assert pop.compare_populations(matched, accept).loc["tcool20", "ks_D"] < KS_MAX


@pytest.mark.slow
def test_tx_window_comparison(accept, even_pool):
    # Tx 2-5 keV, class mix matched in the window, Tx matched (4 bins).  Measured: 340
    # simulated vs 85 ACCEPT; tcool20 +0.16 dex, Tx -0.00 dex (K0: the next test).
    acc_w, window = _tx_window(accept, even_pool)
    assert len(window) > 50
    assert abs(np.median(window["Tx"]) / np.median(acc_w["Tx"]) - 1.0) < TX_TOL
    assert abs(_median_dex(window, acc_w, "tcool20")) < DEX_TOL


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="K0 at 2-5 keV (Tx and class mix matched): +0.39 dex, median 56.5 (340 simulated) "
    "vs 23.1 keV cm^2 (85 ACCEPT), KS D 0.38, bootstrap s.e. 0.066 dex; the simulated "
    "entropy profiles are too flat inside 20 kpc and between 20 and 100 kpc (K100 -0.19 dex)",
)
def test_tx_window_k0_within_tolerance(accept, even_pool):
    acc_w, window = _tx_window(accept, even_pool)
    assert abs(_median_dex(window, acc_w, "K0")) < DEX_TOL


def _tx_window(accept: pd.DataFrame, pool: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ACCEPT in 2-5 keV, and the pool there matched to its class mix and Tx histogram."""
    acc_w, pool_w = (t[t["Tx"].between(*pop.TX_WINDOW_KEV)] for t in (accept, pool))
    mixed = pop.subsample_class_mix(pool_w, pop.matched_class_mix(acc_w, pool_w))
    return acc_w, pop.match_temperature(mixed, acc_w, n_bins=4)


# --------------------------------------------- disturbances: physics, not the label


def _disturbance_record(model) -> tuple:
    """Everything ``draw_disturbances`` decides, as exact numbers."""
    clumps = tuple((c.kind, c.amplitude, *c.center_kpc, *c.shape_matrix.ravel()) for c in
                   model.clumps)  # fmt: skip
    cavities = tuple((c.radius_kpc, c.fill, *c.center_kpc) for c in model.cavities)
    s = model.sloshing
    spiral = None if s is None else (s.amplitude, s.pitch_kpc, s.phase, *s.normal)
    return clumps, cavities, spiral, model.fluct_rms, model.fluct_scale_kpc, model.noise_seed


def test_disturbances_do_not_read_the_label(monkeypatch):
    # Rename the classes (CC -> WCC -> NCC -> CC) where the label is computed and ask
    # for the renamed label with the same generator: the same gas is kept, and if the
    # disturbances depend on nothing but the physics, every one of them is the same.
    import coolcore.sim.population as sim_pop

    seeds_labels = [(seed, label) for seed in range(4) for label in ("CC", "WCC", "NCC")]
    models = [sim_pop.draw_cluster(np.random.default_rng(s), lab) for s, lab in seeds_labels]
    rename = {"CC": "WCC", "WCC": "NCC", "NCC": "CC"}
    real = ph.label_from_tcool
    monkeypatch.setattr(ph, "label_from_tcool", lambda t: np.array([rename[v] for v in real(t)]))
    n_disturbed = 0
    for (seed, label), model in zip(seeds_labels, models, strict=True):
        twin = sim_pop.draw_cluster(np.random.default_rng(seed), rename[label])
        assert twin.label == rename[label] and twin.t_cool_gyr == model.t_cool_gyr
        assert twin.relaxedness == model.relaxedness
        assert _disturbance_record(twin) == _disturbance_record(model), (seed, label)
        n_disturbed += bool(model.cavities) + (model.sloshing is not None)
    assert n_disturbed > 3  # the comparison did cover cavities and spirals


def _names_in(tree) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    return names


def test_disturbance_code_takes_physical_variables_only():
    # Source-level: the disturbance module never names a label, a class or the class
    # names, and its entry point takes a generator, a physical state and the rates.
    import ast
    import dataclasses
    import inspect

    from coolcore.sim import disturbances as dist

    assert list(inspect.signature(dist.draw_disturbances).parameters) == ["rng", "state", "prior"]
    fields = {f.name for f in dataclasses.fields(dist.PhysicalState)}
    assert fields == {"r500_kpc", "lum_kpc3", "t_cool_gyr", "relaxedness"}
    names = _names_in(ast.parse(inspect.getsource(dist)))
    forbidden = {"label", "labels", "target_label", "cls", "CLASS_NAMES", "CC", "WCC", "NCC",
                 "label_from_tcool", "coolcore"}  # fmt: skip
    assert not names & forbidden, names & forbidden


def test_relaxed_clusters_have_shorter_cooling_times(default_sim):
    # The dynamical state is drawn with the gas (copula): relaxed clusters tend to have
    # low central entropy.  Measured, seed 0: Spearman -0.39 with t_cool, -0.33 with K0.
    assert stats.spearmanr(default_sim["relaxedness"], default_sim["t_cool_gyr"])[0] < -0.2
    assert stats.spearmanr(default_sim["relaxedness"], default_sim["K0"])[0] < -0.15


def _draw_in_bin(label, t_range, n_want, prior, seed):
    """Clusters of ``label`` (draw_cluster) whose t_cool lies in ``t_range``."""
    import coolcore.sim.population as sim_pop

    rng, kept = np.random.default_rng(seed), []
    for _ in range(60 * n_want):
        model = sim_pop.draw_cluster(rng, label, prior=prior)
        if t_range[0] <= model.t_cool_gyr <= t_range[1]:
            kept.append(model)
            if len(kept) == n_want:
                break
    return kept


def _rates(models) -> dict[str, NDArray]:
    return {"cavities": np.array([bool(m.cavities) for m in models]),
            "corona": np.array([any(c.kind == "corona" for c in m.clumps) for m in models]),
            "sloshing": np.array([m.sloshing is not None for m in models]),
            "subclumps": np.array([sum(c.kind == "subclump" for c in m.clumps) for m in models]),
            "fluct_rms": np.array([m.fluct_rms for m in models])}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("labels", "t_range", "shift"),
    [(("CC", "WCC"), (0.9, 1.1), 1.5), (("WCC", "NCC"), (7.0, 8.5), -0.8)],
)
def test_disturbance_rates_agree_across_a_class_boundary(labels, t_range, shift):
    # Clusters on both sides of a threshold, in a narrow bin of central cooling time: if
    # the disturbances come from the physics, the two labels have the same rates within
    # binomial (Poisson, Gaussian) errors.  The former per-class rates (cavities 0.7 / 0.2,
    # coronae 0 / 0.4 at 1 Gyr; sloshing 0.5 / 0.1, fluctuation rms 0.065 / 0.10 at
    # 7.7 Gyr) differ by about 5-10 standard errors here (put back, they fail this test).
    # The prior's coolness_shift puts more candidates near the threshold (about 50 s).
    import dataclasses

    from coolcore.sim.population import DEFAULT_PRIOR

    prior = dataclasses.replace(DEFAULT_PRIOR, coolness_shift=shift)
    a, b = (_rates(_draw_in_bin(lab, t_range, 60, prior, seed=i)) for i, lab in enumerate(labels))
    for key in a:
        x, y = a[key].astype(float), b[key].astype(float)
        assert x.size == y.size == 60
        pooled = np.concatenate([x, y]).var(ddof=1)
        se = np.sqrt(pooled * (1 / x.size + 1 / y.size))
        print(f"{labels} {key}: {x.mean():.3f} vs {y.mean():.3f} (se {se:.3f})")
        assert abs(x.mean() - y.mean()) < 3 * se + 1e-12, key
