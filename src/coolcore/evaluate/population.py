"""The simulated cluster population against real clusters (ACCEPT, Cavagnolo et al. 2009).

Clusters are drawn exactly as :func:`coolcore.sim.simulate.simulate_sample` draws them
(:func:`draw_sample_models`), without rendering, and measured from their 3-D profiles
as ACCEPT measures real ones (:func:`simulated_population`): ``Tx`` (the model's mean
temperature), ``nelec``, ``clustemp``, ``Lambda`` and the isochoric ``tcool20`` at
20 kpc, and ``K0`` from the fit ``K(r) = K0 + K100 (r / 100 kpc)^alpha`` to the entropy
at Chandra-like radii.  :func:`compare_populations` puts quantiles side by side with
two-sample tests; :func:`matched_class_mix`, :func:`subsample_class_mix` and
:func:`match_temperature` correct for ACCEPT's selection.  ``docs/population.md``
has the numbers (``python -m coolcore.evaluate.population ACCEPT_CSV``).
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from coolcore import CLASS_NAMES
from coolcore.data.checks import missing_file_problem
from coolcore.errors import CatalogError, CoolcoreError, UsageError
from coolcore.sim import physics as ph
from coolcore.sim.population import ClusterModel, draw_cluster
from coolcore.sim.simulate import MAX_SEED, class_counts, simulate_sample

__all__ = [
    "ACCEPT_COLUMNS",
    "COMPARED_COLUMNS",
    "accept_class_mix",
    "compare_populations",
    "cooling_time_isochoric_gyr",
    "draw_sample_models",
    "fit_entropy_profile",
    "format_comparison",
    "match_temperature",
    "matched_class_mix",
    "read_accept",
    "simulated_population",
    "solve_class_mix",
    "subsample_class_mix",
]

ACCEPT_COLUMNS = ("Name", "z", "K0", "K100", "alpha", "Tx", "nelec", "clustemp", "Lambda",
                  "tcool3/2")  # fmt: skip
"""The ACCEPT columns this module uses (``tests/data/accept/accept_population.csv``)."""

_REQUIRED = ("K0", "Tx", "nelec", "clustemp", "Lambda", "tcool3/2")

COMPARED_COLUMNS = ("K0", "tcool20", "Tx")
"""The columns :func:`compare_populations` compares by default."""

POSITIVE_COLUMNS = ("K0", "K100", "Tx", "nelec", "clustemp", "Lambda", "tcool20", "t_cool_gyr")
"""Positive quantities: medians compared in dex."""

QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)
TX_WINDOW_KEV = (2.0, 5.0)
"""Tx range (keV) where both samples have clusters enough for a Tx-matched comparison."""

R_ACCEPT_KPC = 20.0
"""ACCEPT gives n_e, T, Lambda and t_cool in the annulus nearest this radius."""

PROFILE_RADII_KPC = tuple(np.geomspace(10.0, 300.0, 10).tolist())
"""Radii (kpc) of the entropy profile fitted for K0: a Chandra-like radial profile."""

N_OVER_NH = 2.3
"""Total particle density over n_H of a fully ionised plasma with n_He = 0.1 n_H
(n_e = 1.2 n_H, n_i = 1.1 n_H; metals at 0.3 solar add well under 1%)."""

KEV_ERG, GYR_S = 1.602177e-9, 3.15576e16  # erg per keV, s per Gyr


def read_accept(path: str | Path) -> pd.DataFrame:
    """Read an ACCEPT catalogue CSV (names on row 1, units on row 2, data from row 3).

    Every column but ``Name`` whose values all parse as numbers becomes numeric; a
    column ``tcool20`` (a copy of ``tcool3/2``) is added so that the table compares
    with :func:`simulated_population`.

    Raises
    ------
    coolcore.errors.CatalogError
        The file is missing or unreadable, lacks a needed column (one of
        ``K0, Tx, nelec, clustemp, Lambda, tcool3/2``) or has a non-number in one.
    """
    path = Path(path)
    problem = missing_file_problem(path)
    if problem is not None:
        raise CatalogError(f"{path}: {problem} (expected the ACCEPT catalogue CSV)")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:
        raise CatalogError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise CatalogError(f"{path}: missing ACCEPT column(s) {', '.join(missing)}")
    if len(raw) and pd.to_numeric(raw["K0"].iloc[:1], errors="coerce").isna().all():
        raw = raw.iloc[1:].reset_index(drop=True)  # the units row
    table = raw.copy()
    for column in raw.columns.drop("Name", errors="ignore"):
        text = raw[column].str.strip()
        values = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = np.flatnonzero((values.isna() & (text != "")).to_numpy())
        if not bad.size:
            table[column] = values
        elif column in _REQUIRED:
            bad_value = f"{column} {text.iloc[bad[0]]!r} in data row {bad[0] + 1}"
            raise CatalogError(f"{path}: {bad_value} is not a number")
    return table.assign(tcool20=table["tcool3/2"])


def cooling_time_isochoric_gyr(
    n_e: ArrayLike, T_keV: ArrayLike, lambda_cgs: ArrayLike
) -> NDArray[np.float64]:
    """ACCEPT's isochoric cooling time ``3 n kT / (2 n_e n_H Lambda)`` in Gyr.

    With ``n = 2.3 n_H`` (:data:`N_OVER_NH`) it is ``3.45 kT / (n_e Lambda)``;
    ``coolcore.sim.physics.cooling_time_gyr`` uses ``n = 1.92 n_e = 2.304 n_H``, 0.17%
    more, and its own cooling function.

    Examples
    --------
    >>> round(float(cooling_time_isochoric_gyr(0.042631, 2.2043, 1.79e-23)), 4)
    0.506
    """
    n = np.asarray(n_e, dtype=np.float64)
    kT = np.asarray(T_keV, dtype=np.float64) * KEV_ERG
    lam = np.asarray(lambda_cgs, dtype=np.float64)
    return 1.5 * N_OVER_NH * kT / (n * lam) / GYR_S


def accept_class_mix(table: pd.DataFrame, column: str = "tcool20") -> tuple[float, float, float]:
    """Fractions of CC / WCC / NCC by the Hudson et al. (2010) limits on ``column``."""
    t = table[column].to_numpy(dtype=np.float64)
    labels = ph.label_from_tcool(t[np.isfinite(t)])
    return tuple(float(np.mean(labels == c)) for c in CLASS_NAMES)  # type: ignore[return-value]


def fit_entropy_profile(r_kpc: ArrayLike, K: ArrayLike) -> tuple[float, float, float]:
    """Fit ``K = K0 + K100 (r / 100 kpc)^alpha`` (Cavagnolo et al. 2009) to one profile.

    Least squares on relative residuals (``sigma = K``: every radius weighs alike, as
    for equal fractional errors) by ``scipy.optimize.curve_fit`` (Levenberg-Marquardt,
    analytic Jacobian); where that finds ``K0 < 0`` or runs off, the fit is redone
    with the bounds ``K0, K100 >= 0``, ``0 <= alpha <= 5`` (trust region).  Returns
    ``(K0, K100, alpha)``; NaNs where both fail.
    """
    r, k = np.asarray(r_kpc, dtype=np.float64), np.asarray(K, dtype=np.float64)

    def model(rr, k0, k100, alpha):
        return k0 + k100 * (rr / 100.0) ** alpha

    def jac(rr, k0, k100, alpha):
        p = (rr / 100.0) ** alpha
        return np.stack([np.ones_like(rr), p, k100 * p * np.log(rr / 100.0)], axis=1)

    k100_0 = float(np.exp(np.interp(0.0, np.log(r / 100.0), np.log(k))))
    p0 = (max(float(k[0]) - k100_0 * float(r[0] / 100.0) ** 1.1, 0.1 * float(k[0])), k100_0, 1.1)
    fit = {"sigma": k, "jac": jac, "maxfev": 2000}
    try:
        p, _ = optimize.curve_fit(model, r, k, p0=p0, method="lm", **fit)
    except RuntimeError:  # ran off towards K0 -> -inf, alpha -> 0
        p = np.array([-1.0])
    if p[0] < 0.0:  # the optimum lies on the bound K0 = 0
        try:
            bounds = ([0.0, 0.0, 0.0], [np.inf, np.inf, 5.0])
            p, _ = optimize.curve_fit(model, r, k, p0=p0, method="trf", bounds=bounds, **fit)
        except (RuntimeError, ValueError):
            return (np.nan, np.nan, np.nan)
    return (float(p[0]), float(p[1]), float(p[2]))


def _check_sample_args(n_clusters: int, seed: int, class_mix) -> tuple[float, float, float]:
    def is_int(v) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    if not is_int(n_clusters) or n_clusters < 1:
        raise UsageError(f"n_clusters: must be a positive integer, got {n_clusters!r}")
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed: must be an integer in 0..{MAX_SEED}, got {seed!r}")
    if class_mix is None:  # simulate_sample's default
        class_mix = inspect.signature(simulate_sample).parameters["class_mix"].default
    try:
        mix = tuple(float(v) for v in class_mix)
        ok = len(mix) == 3 and all(v >= 0 for v in mix) and abs(sum(mix) - 1.0) <= 1e-6
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"class_mix: must be 3 numbers >= 0 (CC, WCC, NCC), sum 1: {class_mix!r}")
    return mix  # type: ignore[return-value]


def draw_sample_models(
    n_clusters: int, seed: int, class_mix: Sequence[float] | None = None
) -> list[ClusterModel]:
    """The 3-D clusters :func:`~coolcore.sim.simulate.simulate_sample` draws, unrendered.

    Same steps as the simulator: exact class counts (``class_counts``), labels
    permuted by the first child of ``SeedSequence(seed)``, cluster ``i`` drawn by
    ``draw_cluster`` from the ``i``-th child of the second.  ``class_mix=None`` is
    ``simulate_sample``'s default.
    """
    mix = _check_sample_args(n_clusters, seed, class_mix)
    labels = np.repeat(np.asarray(CLASS_NAMES), class_counts(n_clusters, mix))
    order_seed, cluster_seeds = np.random.SeedSequence(seed).spawn(2)
    labels = np.random.default_rng(order_seed).permutation(labels)
    seeds = cluster_seeds.spawn(n_clusters)
    return [
        draw_cluster(np.random.default_rng(seeds[i]), str(labels[i]), i) for i in range(n_clusters)
    ]


def simulated_population(
    n_clusters: int,
    seed: int,
    class_mix: Sequence[float] | None = None,
    *,
    r_kpc: float = R_ACCEPT_KPC,
    radii_kpc: Sequence[float] = PROFILE_RADII_KPC,
) -> pd.DataFrame:
    """The simulator's clusters, measured as ACCEPT measures real ones (one row each).

    Parameters
    ----------
    n_clusters, seed, class_mix
        As :func:`~coolcore.sim.simulate.simulate_sample` (``None``: its default mix).
    r_kpc : float
        Radius of ``nelec``, ``clustemp``, ``Lambda`` and ``tcool20`` (spherical
        radius = the model's ellipsoidal radius, whose axes have product 1).
    radii_kpc : sequence of float
        Radii of the entropy profile fitted for ``K0``, ``K100``, ``alpha``.

    Returns
    -------
    pandas.DataFrame
        ``cluster_id, label, m500_msun, r500_kpc, Tx, t_cool_gyr`` (the label's, at
        0.012 R500), ``r_tcool_kpc, nelec, clustemp, Lambda, tcool20, label20`` (the
        class by ``tcool20``), ``K0, K100, alpha``, ``relaxedness`` (dynamical state).
    """
    radii = np.asarray(radii_kpc, dtype=np.float64)
    rows = []
    for model in draw_sample_models(n_clusters, seed, class_mix):
        n_e = float(ph.ne_cm3(r_kpc, model.density))
        T = float(ph.temperature_keV(r_kpc, model.temperature))
        lam = float(ph.cooling_function(T))
        kT, n_r = ph.temperature_keV(radii, model.temperature), ph.ne_cm3(radii, model.density)
        K0, K100, alpha = fit_entropy_profile(radii, kT * n_r ** (-2 / 3))  # K = kT n_e^-2/3
        rows.append({
            "cluster_id": model.cluster_id, "label": model.label, "m500_msun": model.m500_msun,
            "r500_kpc": model.r500_kpc, "Tx": model.T_keV, "t_cool_gyr": model.t_cool_gyr,
            "r_tcool_kpc": model.r_tcool_kpc, "nelec": n_e, "clustemp": T, "Lambda": lam,
            "tcool20": float(cooling_time_isochoric_gyr(n_e, T, lam)),
            "K0": K0, "K100": K100, "alpha": alpha, "relaxedness": model.relaxedness,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("tcool20") + 1, "label20", ph.label_from_tcool(
        table["tcool20"].to_numpy()))  # fmt: skip
    return table


def solve_class_mix(transfer: ArrayLike, target: Sequence[float]) -> tuple[float, float, float]:
    """The class mix ``m`` (>= 0, sum 1) with ``m @ transfer`` closest to ``target``.

    ``transfer[i, j]`` is the fraction of clusters labelled ``i`` (at 0.012 R500) whose
    class at 20 kpc is ``j``.  Non-negative least squares with the sum as a heavily
    weighted extra equation; exact where ``target`` is reachable.
    """
    a = np.asarray(transfer, dtype=np.float64)
    lhs = np.vstack([a.T, np.full((1, a.shape[0]), 100.0)])
    mix, _ = optimize.nnls(lhs, np.append(np.asarray(target, dtype=np.float64), 100.0))
    return tuple(float(v) for v in mix / mix.sum())  # type: ignore[return-value]


def matched_class_mix(accept: pd.DataFrame, sim: pd.DataFrame) -> tuple[float, float, float]:
    """The simulator's class mix whose classes by ``tcool20`` would match ACCEPT's.

    ``sim`` (a :func:`simulated_population`, best with an even mix) gives the transfer
    matrix from the label (0.012 R500) to the class at 20 kpc; :func:`solve_class_mix`
    inverts it.
    """
    transfer = pd.crosstab(sim["label"], sim["label20"], normalize="index")
    transfer = transfer.reindex(index=CLASS_NAMES, columns=CLASS_NAMES, fill_value=0.0)
    return solve_class_mix(transfer.to_numpy(), accept_class_mix(accept))


def _subsample(sim: pd.DataFrame, groups: NDArray, shares: NDArray, seed: int) -> pd.DataFrame:
    """The largest random subsample of ``sim`` with group ``g`` a share ``shares[g]``."""
    have = np.bincount(groups, minlength=len(shares))
    used = shares > 0
    keep = np.floor(shares * np.min(have[used] / shares[used]) + 1e-9).astype(int)
    if not keep.any():
        raise UsageError(f"sim: no simulated cluster in some group ({have.tolist()}); draw more")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(groups == g), k, replace=False) for g, k in enumerate(keep)]
    return sim.iloc[np.sort(np.concatenate(picked))].reset_index(drop=True)


def subsample_class_mix(
    sim: pd.DataFrame, class_mix: Sequence[float], seed: int = 0
) -> pd.DataFrame:
    """The largest subsample of ``sim`` whose labels have ``class_mix``.

    Clusters of one label are drawn independently of the mix, so the subsample is
    distributed as a sample that ``simulate_sample`` draws with ``class_mix``.
    """
    groups = np.array([CLASS_NAMES.index(label) for label in sim["label"]], dtype=int)
    return _subsample(sim, groups, np.asarray(class_mix, dtype=np.float64), seed)


def match_temperature(
    sim: pd.DataFrame, accept: pd.DataFrame, seed: int = 0, n_bins: int = 6
) -> pd.DataFrame:
    """The largest random subsample of ``sim`` with ACCEPT's Tx histogram.

    Bins are ``n_bins`` equal-count bins of ACCEPT's log10 Tx (outer edges open), so
    every bin keeps the same number of simulated clusters.
    """
    logt = np.log10(accept["Tx"].to_numpy(dtype=np.float64))
    edges = np.quantile(logt[np.isfinite(logt)], np.linspace(0, 1, n_bins + 1))[1:-1]
    groups = np.digitize(np.log10(sim["Tx"].to_numpy(dtype=np.float64)), edges)
    return _subsample(sim, groups, np.full(n_bins, 1.0 / n_bins), seed)


def _finite(table: pd.DataFrame, column: str, name: str) -> NDArray[np.float64]:
    if column not in table.columns:
        raise UsageError(f"columns: {column!r} is not a column of the {name} table")
    return (v := pd.to_numeric(table[column], errors="coerce").to_numpy(float))[np.isfinite(v)]


def _two_sample_tests(x: NDArray[np.float64], y: NDArray[np.float64]) -> dict[str, float]:
    ks = stats.ks_2samp(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # p-values floored at 0.001 / capped at 0.25
        ad = stats.anderson_ksamp([x, y], variant="midrank")
    values = (ks.statistic, ks.pvalue, ad.statistic, ad.pvalue)
    return dict(zip(("ks_D", "ks_p", "ad_stat", "ad_p"), map(float, values), strict=True))


def compare_populations(
    sim: pd.DataFrame, accept: pd.DataFrame, columns: Sequence[str] = COMPARED_COLUMNS
) -> pd.DataFrame:
    """Quantiles side by side and two-sample tests, one row per column.

    Both tests are rank tests, so their statistics on log10 values of positive
    quantities (:data:`POSITIVE_COLUMNS`) are those on the values themselves, which
    are used (a K0 of 0 keeps its rank).  Non-finite values are left out.

    Returns
    -------
    pandas.DataFrame
        Indexed by column: ``log`` (a positive quantity), ``n_sim, n_accept``,
        ``sim_q10 .. sim_q90``, ``accept_q10 .. accept_q90``, ``dmedian`` (median of
        sim minus median of ACCEPT; for a positive quantity log10 of their ratio, in
        dex), ``ks_D, ks_p`` (two-sample Kolmogorov-Smirnov, ``scipy.stats.ks_2samp``)
        and ``ad_stat, ad_p`` (Anderson-Darling k-sample, ``scipy.stats.anderson_ksamp``,
        whose p-value is floored at 0.001 and capped at 0.25).
    """
    rows = {}
    for column in columns:
        x, y = _finite(sim, column, "simulated"), _finite(accept, column, "ACCEPT")
        if x.size < 2 or y.size < 2:
            raise UsageError(f"columns: {column!r} has fewer than two finite values in a table")
        log = column in POSITIVE_COLUMNS
        row: dict[str, float | bool] = {"log": log, "n_sim": x.size, "n_accept": y.size}
        for side, values in (("sim", x), ("accept", y)):
            for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True):
                row[f"{side}_q{round(100 * q)}"] = float(v)
        mx, my = np.median(x), np.median(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            row["dmedian"] = float(np.log10(mx / my) if log else mx - my)
        row.update(_two_sample_tests(x, y))
        rows[column] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def format_comparison(table: pd.DataFrame) -> str:
    """Markdown: a quantile table (simulated and ACCEPT rows) and a test table."""
    qs = [f"q{round(100 * q)}" for q in QUANTILES]
    lines = ["| quantity | sample | n | " + " | ".join(f"{q[1:]}%" for q in qs) + " |",
             "|---|---|---|" + "---|" * len(qs)]  # fmt: skip
    for column, row in table.iterrows():
        for side, name in (("sim", "simulated"), ("accept", "ACCEPT")):
            cells = " | ".join(f"{row[f'{side}_{q}']:.3g}" for q in qs)
            lines.append(f"| {column} | {name} | {int(row[f'n_{side}'])} | {cells} |")
    lines += ["", "| quantity | median sim - ACCEPT | KS D | KS p | AD stat | AD p |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for column, row in table.iterrows():
        lines.append(f"| {column} | {row['dmedian']:+.2f}{' dex' if row['log'] else ''} | "
                     f"{row['ks_D']:.3f} | {row['ks_p']:.2g} | {row['ad_stat']:.1f} | "
                     f"{row['ad_p']:.3g} |")  # fmt: skip
    return "\n".join(lines)


def _mix_text(mix: Sequence[float]) -> str:
    return " / ".join(f"{100 * v:.1f}%" for v in mix)


def _matched_runs(accept: pd.DataFrame, n_default: int, n_pool: int) -> list[tuple]:
    """(title, simulated, ACCEPT) of the comparisons of ``docs/population.md``."""
    pool = simulated_population(n_pool, 1, (1 / 3, 1 / 3, 1 / 3))
    mix = matched_class_mix(accept, pool)
    acc_w, pool_w = (t[t["Tx"].between(*TX_WINDOW_KEV)] for t in (accept, pool))
    mix_w = matched_class_mix(acc_w, pool_w)
    window = match_temperature(subsample_class_mix(pool_w, mix_w), acc_w, n_bins=4)
    return [
        ("default class mix", simulated_population(n_default, 0), accept),
        (f"class mix {_mix_text(mix)}, matched at 20 kpc", subsample_class_mix(pool, mix), accept),
        (f"Tx {TX_WINDOW_KEV} keV, class mix {_mix_text(mix_w)}, Tx matched", window, acc_w),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coolcore.evaluate.population ACCEPT_CSV [N_CLUSTERS [N_POOL]]``.

    Prints ``docs/population.md``'s tables: the default class mix (``N_CLUSTERS``,
    default 1000, seed 0); the mix matched to ACCEPT's at 20 kpc, a subsample of
    ``N_POOL`` (default 2400, seed 1) of an even mix; the same within 2-5 keV.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if not 1 <= len(args) <= 3:
            raise UsageError(f"usage: {main.__doc__.splitlines()[0].strip('`.')}")
        try:
            n_default, n_pool = [int(v) for v in args[1:]] + [1000, 2400][len(args) - 1 :]
        except ValueError:
            raise UsageError(f"N_CLUSTERS, N_POOL: not integers: {args[1:]}") from None
        runs = _matched_runs(read_accept(args[0]), n_default, n_pool)
    except CoolcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for title, sim, ref in runs:
        sim_mix, ref_mix = _mix_text(accept_class_mix(sim)), _mix_text(accept_class_mix(ref))
        labels = _mix_text(accept_class_mix(sim, "t_cool_gyr"))
        print(f"\n## {title}: {len(sim)} simulated (labels {labels}), {len(ref)} ACCEPT; "
              f"CC / WCC / NCC by tcool20: simulated {sim_mix}, ACCEPT {ref_mix}\n")  # fmt: skip
        table = compare_populations(sim, ref, (*COMPARED_COLUMNS, "nelec", "clustemp"))
        print(format_comparison(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
