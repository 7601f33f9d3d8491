"""Tests of coolcore.sim (population, projection, simulate): projections against brute force,
labels, files, errors."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from scipy import special

from coolcore.errors import UsageError
from coolcore.sim import flat
from coolcore.sim import physics as ph
from coolcore.sim import population as pop
from coolcore.sim import projection as proj
from coolcore.sim import simulate as sim

KPC_CM = 3.0857e21


# ------------------------------------------------------------------ brute force


def _los_grid(step_kpc: float) -> np.ndarray:
    """A fine line-of-sight grid (kpc): ``step_kpc`` within 80 kpc of the plane,
    2 kpc steps to 2 Mpc, 20 kpc steps to 10 Mpc."""
    inner = np.arange(-80.0, 80.0 + 1e-9, step_kpc)
    mid = np.arange(80.0, 2000.0 + 1e-9, 2.0)[1:]
    outer = np.arange(2000.0, 10000.0 + 1e-9, 20.0)[1:]
    pos = np.concatenate([mid, outer])
    return np.concatenate([-pos[::-1], inner, pos])


def _brute_force_image(
    model: pop.ClusterModel,
    axis: str,
    size: int,
    fov_kpc: float,
    with_cavities: bool,
    step_kpc: float = 0.25,
) -> np.ndarray:
    """Sum the 3-D emissivity along the line of sight on a fine grid (trapezoid rule).

    The emissivity is rebuilt here from coolcore.sim.physics and the model's parameters:
    smooth gas at the ellipsoidal radius sqrt(x^T Q x), clumps (1 + d^T Q_c d)^-2, and
    optionally the cavities as spheres that keep (1 - fill) of the gas emissivity.
    """
    perm = proj.PLANE_PERMUTATION[axis]
    coords = proj.sample_coordinates(size, fov_kpc)
    uu, vv = np.meshgrid(coords, coords)  # rows v, columns u
    z = _los_grid(step_kpc)
    out = np.empty(uu.size)
    flat_u, flat_v = uu.ravel(), vv.ravel()
    for start in range(0, uu.size, 128):
        u = flat_u[start : start + 128, None]
        v = flat_v[start : start + 128, None]
        pts = np.empty((u.shape[0], z.size, 3))
        pts[..., perm[0]] = u
        pts[..., perm[1]] = v
        pts[..., perm[2]] = z[None, :]
        m = np.sqrt(np.einsum("pzi,ij,pzj->pz", pts, model.shape_matrix, pts))
        n_e = ph.ne_cm3(m, model.density)
        eps = n_e**2 / 1.2 * ph.cooling_function(ph.temperature_keV(m, model.temperature))
        if with_cavities:
            for cav in model.cavities:
                inside = np.sum((pts - cav.center_kpc) ** 2, axis=-1) < cav.radius_kpc**2
                eps = np.where(inside, eps * (1.0 - cav.fill), eps)
        for cl in model.clumps:
            d = pts - cl.center_kpc
            eps = (
                eps + cl.amplitude / (1.0 + np.einsum("pzi,ij,pzj->pz", d, cl.shape_matrix, d)) ** 2
            )
        out[start : start + 128] = np.trapezoid(eps, z, axis=1) * KPC_CM
    fine = out.reshape(uu.shape)
    ss = proj.SUBSAMPLE
    return fine.reshape(size, ss, size, ss).mean(axis=(1, 3))


def _quiet(model: pop.ClusterModel) -> pop.ClusterModel:
    """The model without its 2-D multiplicative fields (sloshing, fluctuations)."""
    return dataclasses.replace(model, sloshing=None, fluct_rms=0.0)


@pytest.fixture(scope="module")
def cool_core() -> pop.ClusterModel:
    rng = np.random.default_rng(11)
    for _ in range(50):  # find one with AGN cavities
        model = pop.draw_cluster(rng, "CC", 0)
        if model.cavities:
            return model
    raise AssertionError("no CC with cavities")


@pytest.fixture(scope="module")
def non_cool_core() -> pop.ClusterModel:
    rng = np.random.default_rng(5)
    for _ in range(50):  # find one with a subclump, to test the clumps too
        model = pop.draw_cluster(rng, "NCC", 1)
        if any(c.kind == "subclump" for c in model.clumps):
            return model
    raise AssertionError("no NCC with a subclump")


def _assert_close_above(fast: np.ndarray, ref: np.ndarray, rtol: float = 0.01) -> None:
    mask = ref > 1e-3 * ref.max()
    rel = np.abs(fast[mask] / ref[mask] - 1.0)
    assert mask.sum() > 0.5 * mask.size
    assert rel.max() < rtol, f"max relative error {rel.max():.4f}"


@pytest.mark.parametrize("axis", ["x", "z"])
def test_projection_matches_brute_force_full_field(non_cool_core, axis):
    model = non_cool_core
    fast = proj.render_projection(model, axis, 16, 1000.0, disturbances=False)
    ref = _brute_force_image(model, axis, 16, 1000.0, with_cavities=False)
    _assert_close_above(fast, ref)


def test_projection_matches_brute_force_core_with_cavities(cool_core):
    model = _quiet(cool_core)
    fast = proj.render_projection(model, "y", 16, 160.0)
    ref = _brute_force_image(model, "y", 16, 160.0, with_cavities=True, step_kpc=0.1)
    _assert_close_above(fast, ref)
    # and the cavities do remove light somewhere in the core
    no_cav = proj.render_projection(model, "y", 16, 160.0, disturbances=False)
    assert (fast / no_cav).min() < 0.97


def test_projection_of_spherical_beta_model_is_analytic():
    # Isothermal beta model: eps = eps0 (1 + r^2/rc^2)^(-3 beta) projects to
    # eps0 sqrt(pi) rc Gamma(3 beta - 1/2) / Gamma(3 beta) (1 + R^2/rc^2)^(1/2 - 3 beta).
    n0, rc, beta, T = 5e-3, 120.0, 0.6, 5.0
    dens = ph.DensityParams(n0, rc, rs_kpc=1.0, alpha=0.0, beta=beta, eps=0.0)
    temp = ph.TemperatureParams(T, 1.0, 100.0, 2.0, 1e12, 0.0)
    model = pop.ClusterModel(
        cluster_id=0, m500_msun=3e14, r500_kpc=1000.0, T_keV=T, fgas=0.13,
        density=dens, temperature=temp, shape_matrix=np.eye(3),
        axis_ratios=np.ones(3), ne0_cm3=0.0, T_center_keV=T, t_cool_gyr=1.0, label="WCC",
    )  # fmt: skip
    img = proj.render_projection(model, "z", 64, 800.0, subsample=1)
    eps0 = 1.2 * n0**2 / 1.2 * ph.cooling_function(T)
    norm = eps0 * math.sqrt(math.pi) * rc * special.gamma(3 * beta - 0.5) / special.gamma(3 * beta)
    c = proj.sample_coordinates(64, 800.0, 1)
    R = np.hypot(c[None, :], c[:, None])
    expected = norm * (1 + (R / rc) ** 2) ** (0.5 - 3 * beta) * KPC_CM
    np.testing.assert_allclose(img, expected, rtol=2e-3)


# ----------------------------------------------------------------------- labels


@pytest.mark.parametrize("label", ["CC", "WCC", "NCC"])
def test_labels_come_from_the_3d_cooling_time(label):
    model = pop.draw_cluster(np.random.default_rng(3), label, 7)
    r = 0.012 * model.r500_kpc
    n_e = ph.ne_cm3(r, model.density)
    T = ph.temperature_keV(r, model.temperature)
    t = ph.cooling_time_gyr(n_e, T)
    assert model.ne0_cm3 == pytest.approx(n_e, rel=1e-12)
    assert model.t_cool_gyr == pytest.approx(t, rel=1e-12)
    assert model.label == label == ph.label_from_tcool(t).item()
    # the gas fraction inside R500 is the one drawn
    assert ph.gas_mass_msun(model.r500_kpc, model.density) / model.m500_msun == pytest.approx(
        model.fgas, rel=1e-6
    )


def test_cool_cores_are_denser_and_cooler_in_the_centre():
    rng = np.random.default_rng(0)
    cc = [pop.draw_cluster(rng, "CC") for _ in range(8)]
    ncc = [pop.draw_cluster(rng, "NCC") for _ in range(8)]
    assert np.median([m.ne0_cm3 for m in cc]) > 3 * np.median([m.ne0_cm3 for m in ncc])
    ratio = lambda m: m.T_center_keV / m.T_keV  # noqa: E731
    assert np.median([ratio(m) for m in cc]) < np.median([ratio(m) for m in ncc])


# ------------------------------------------------------------------- the sample


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("sample")
    cat = sim.simulate_sample(out, n_clusters=10, size=32, seed=4, workers=1, progress=False)
    return out, cat


def test_catalogue_columns_and_class_mix(small_sample):
    out, cat = small_sample
    assert len(cat) == 30
    for col in ("image_id", "cluster_id", "file", "label", "axis", "m500_msun", "r500_kpc",
                "T_keV", "ne0_cm3", "t_cool_gyr", "pixel_kpc"):  # fmt: skip
        assert col in cat
    per_cluster = cat.groupby("cluster_id")["label"].agg(["first", "nunique"])
    assert (per_cluster["nunique"] == 1).all()
    assert per_cluster["first"].value_counts().to_dict() == {"WCC": 6, "NCC": 3, "CC": 1}
    assert sorted(cat["axis"].unique()) == ["x", "y", "z"]
    assert cat["image_id"].is_unique
    on_disk = pd.read_csv(out / "catalog.csv")
    assert on_disk["file"].tolist() == cat["file"].tolist()
    assert all((out / f).is_file() for f in on_disk["file"])
    # labels agree with the catalogued cooling times
    assert (ph.label_from_tcool(cat["t_cool_gyr"]) == cat["label"]).all()
    t = ph.cooling_time_gyr(cat["ne0_cm3"], cat["T_center_keV"])
    np.testing.assert_allclose(t, cat["t_cool_gyr"], rtol=1e-5)


def test_fits_header_carries_the_physics(small_sample):
    out, cat = small_sample
    row = cat.iloc[4]
    with fits.open(out / row["file"]) as hdul:
        hdr = hdul[0].header
        data = hdul[0].data
    assert data.shape == (32, 32) and data.dtype.kind == "f"
    assert np.all(data > 0)
    assert hdr["BUNIT"] == "erg s-1 cm-2"
    assert hdr["PIXKPC"] == pytest.approx(1000.0 / 32)
    assert hdr["CDELT1"] == hdr["CDELT2"] == hdr["PIXKPC"]
    assert hdr["CUNIT1"] == "kpc"
    assert hdr["CLUSTID"] == row["cluster_id"]
    assert hdr["AXIS"] == row["axis"]
    assert hdr["LABEL"] == row["label"]
    assert hdr["M500"] == pytest.approx(row["m500_msun"], rel=1e-5)
    assert hdr["R500"] == pytest.approx(row["r500_kpc"], rel=1e-5)
    assert hdr["TKEV"] == pytest.approx(row["T_keV"], rel=1e-5)
    assert hdr["NE0"] == pytest.approx(row["ne0_cm3"], rel=1e-5)
    assert hdr["TCOOL"] == pytest.approx(row["t_cool_gyr"], rel=1e-5)
    for key, unit in (("M500", "[Msun]"), ("R500", "[kpc]"), ("TCOOL", "[Gyr]"), ("NE0", "[cm-3]")):
        assert hdr.comments[key].startswith(unit)
    assert "DATE" not in hdr


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    kwargs = dict(n_clusters=4, size=24, seed=9, progress=False)
    a = sim.simulate_sample(tmp_path / "a", workers=1, **kwargs)
    b = sim.simulate_sample(tmp_path / "b", workers=2, **kwargs)
    pd.testing.assert_frame_equal(a, b)
    names = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(names) == 13
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    c = sim.simulate_sample(tmp_path / "c", n_clusters=4, size=24, seed=10, progress=False)
    assert not np.array_equal(
        fits.getdata(tmp_path / "a" / a["file"][0]), fits.getdata(tmp_path / "c" / c["file"][0])
    )


def test_observed_mode_poisson_counts(tmp_path):
    kw = dict(n_clusters=2, size=32, seed=3, progress=False)
    clean = sim.simulate_sample(tmp_path / "clean", **kw)
    obs = sim.simulate_sample(
        tmp_path / "obs", observed=True, exposure_ks=50.0, background=0.2, **kw
    )
    sim.simulate_sample(tmp_path / "again", observed=True, exposure_ks=50.0, background=0.2, **kw)
    total_counts, total_expected = 0.0, 0.0
    for f in obs["file"]:
        counts = fits.getdata(tmp_path / "obs" / f).astype(np.float64)
        assert np.array_equal(counts, fits.getdata(tmp_path / "again" / f))
        assert np.all(counts >= 0) and np.all(counts == np.round(counts))
        assert fits.getheader(tmp_path / "obs" / f)["BUNIT"] == "count"
        sb = fits.getdata(tmp_path / "clean" / f).astype(np.float64)
        # expected counts: S A_pix t A_eff / (4 pi D^2 E_ph) + background t
        a_pix = (1000.0 / 32 * KPC_CM) ** 2
        d_cm = 230.0 * 3.0857e24
        rate = a_pix * 400.0 / (4 * math.pi * d_cm**2) / (2.0 * 1.602177e-9)
        total_expected += (sb * rate * 50e3 + 0.2 * 50.0).sum()
        total_counts += counts.sum()
    assert abs(total_counts - total_expected) < 5 * math.sqrt(total_expected)
    assert clean["label"].tolist() == obs["label"].tolist()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(class_mix=(0.2, 0.6, 0.3)), "class_mix"),
        (dict(class_mix=(-0.1, 0.8, 0.3)), "class_mix"),
        (dict(class_mix=(0.5, 0.5)), "class_mix"),
        (dict(size=8), "size"),
        (dict(n_clusters=0), "n_clusters"),
        (dict(fov_kpc=-1.0), "fov_kpc"),
        (dict(workers=0), "workers"),
        (dict(seed=-3), "seed"),
        (dict(seed=2**32), "seed: must be an integer in 0..4294967295"),
        (dict(exposure_ks=0.0), "exposure_ks"),
        (dict(background=-1.0), "background"),
    ],
)
def test_bad_arguments_raise_usage_errors(tmp_path, kwargs, name):
    with pytest.raises(UsageError, match=name):
        sim.simulate_sample(tmp_path, progress=False, **kwargs)


def test_out_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UsageError, match="file.txt: exists and is not a folder"):
        sim.simulate_sample(f, n_clusters=1, size=16, progress=False)
    assert f.read_text() == "x"


def test_exact_class_counts():
    assert sim.class_counts(318, (0.1, 0.6, 0.3)).tolist() == [32, 191, 95]
    assert sim.class_counts(7, (0.0, 1.0, 0.0)).tolist() == [0, 7, 0]
    assert sim.class_counts(10, (1 / 3, 1 / 3, 1 / 3)).sum() == 10


def test_size_beyond_memory_is_refused_with_the_estimate(tmp_path):
    with pytest.raises(UsageError) as info:
        sim.simulate_sample(tmp_path / "big", n_clusters=2, size=10**6, workers=2, progress=False)
    msg = str(info.value)
    # 256 bytes per pixel: 10^12 pixels need 2.56e14 bytes = 2.38e+05 GiB per worker
    assert msg.startswith("size=1000000:") and "2.38e+05 GiB per worker" in msg, msg
    assert "2 workers: 4.77e+05 GiB" in msg and "\n" not in msg
    assert not (tmp_path / "big").exists()
    assert sim.map_memory_bytes(1024) == 256 * 1024**2


def test_observation_without_counts_is_an_error(tmp_path):
    with pytest.raises(UsageError) as info:
        sim.simulate_sample(
            tmp_path / "obs", n_clusters=2, size=32, seed=3, observed=True, exposure_ks=1e-9,
            progress=False,
        )  # fmt: skip
    msg = str(info.value)
    assert (
        msg.startswith("exposure_ks=1e-09: the mock observation of c0000_x") and "no counts" in msg
    )
    assert not (tmp_path / "obs").exists()
    # the exposure a message names is the one that expects one count in the map
    image, rng = np.full((4, 4), 1e-12), np.random.default_rng(0)
    with pytest.raises(UsageError) as info:
        sim.observe_counts(image, 10.0, 1e-6, 0.0, rng)
    need = float(str(info.value).rsplit("at least ", 1)[1].split(" ks")[0])
    assert flat.expected_counts(image, 10.0, need, 0.0).sum() == pytest.approx(1.0, rel=1e-2)
    sim.observe_counts(image, 10.0, need * 1.01, 0.0, rng)
    with pytest.raises(UsageError, match="no counts"):
        sim.observe_counts(image, 10.0, need * 0.99, 0.0, rng)
    # expected counts by hand: S A_pix t A_eff / (4 pi D^2 E_ph) + background t
    rate = (10.0 * KPC_CM) ** 2 * 400.0 / (4 * math.pi * (230.0 * 3.0857e24) ** 2) / 3.204354e-9
    expected = flat.expected_counts(np.full((4, 4), 3.0), 10.0, 2.0, 0.5)
    np.testing.assert_allclose(expected, 3.0 * rate * 2e3 + 0.5 * 2.0, rtol=1e-12)
    with pytest.raises(UsageError, match="expects 0 photon counts"):
        sim.observe_counts(np.zeros((4, 4)), 10.0, 5.0, 0.0, np.random.default_rng(0))


def test_a_failure_while_drawing_leaves_no_map_behind(tmp_path, monkeypatch):
    """A cluster that fails after others were drawn: no map, no catalogue, no staging left."""
    from coolcore.sim import simulate as simulate_module

    real = simulate_module.simulate_cluster
    calls = []

    def flaky(job):
        calls.append(job)
        if len(calls) == 3:
            raise UsageError("cluster 2: too faint")
        return real(job)

    monkeypatch.setattr(simulate_module, "simulate_cluster", flaky)
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine\n")
    for out in (fresh, kept):
        calls.clear()
        with pytest.raises(UsageError, match="too faint"):
            simulate_module.simulate_sample(out, n_clusters=4, size=32, workers=1, progress=False)
    assert not fresh.exists()
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
