"""Tests of the mock Chandra / XMM-Newton / eROSITA observations (coolcore.sim.instruments,
coolcore.sim.observe, simulate_sample(instrument=...)): counts against a hand-made flux,
the pixel scale from WCS + redshift, the PSF's half-energy width, exposure maps, files."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.cosmology import Planck18
from astropy.io import fits
from astropy.wcs import WCS
from helpers import run_cli_here
from scipy import integrate

from coolcore.cli import simulate as cli_simulate
from coolcore.errors import UsageError
from coolcore.sim import instruments as ins
from coolcore.sim import observe as ob
from coolcore.sim import population as pop
from coolcore.sim import projection as proj
from coolcore.sim import simulate as sim

KPC_CM = 3.0857e21
KEV_ERG = 1.602177e-9


def _smooth(model: pop.ClusterModel) -> pop.ClusterModel:
    """The model without clumps, cavities and 2-D fields: only the smooth gas, whose
    rendering does not depend on the grid beyond the pixel integration."""
    return dataclasses.replace(model, clumps=(), cavities=(), sloshing=None, fluct_rms=0.0)


@pytest.fixture(scope="module")
def bright_cc() -> pop.ClusterModel:
    rng = np.random.default_rng(21)
    models = [pop.draw_cluster(rng, "CC", i) for i in range(4)]
    return _smooth(max(models, key=lambda m: m.m500_msun))


def _quiet_observation(model, inst, z, exposure_s, *, psf=True, offset=(0.0, 0.0)):
    """An observation with no vignetting, chips, background, field sources or AGN."""
    place = ob.Placement(z, 150.0, 20.0, 0.0)
    point = ob.Pointing(exposure_s, 0.0, offset)
    return ob.observe_projection(
        model, "z", inst, place, point, np.random.default_rng(0), size=128,
        vignetting=False, detector=False, psf=psf, background=False, point_sources=False,
        agn=False,
    )  # fmt: skip


# -------------------------------------------------------------------- the counts


def test_total_counts_are_flux_times_exposure_times_area(bright_cc):
    inst, z, t = ins.INSTRUMENTS["xmm"], 0.2, 1e6
    obs = _quiet_observation(bright_cc, inst, z, t)
    # by hand: the emissivity map over the image's field, at the image's pixel scale
    kpc_pix = inst.pixel_arcsec * Planck18.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60
    n = inst.image_pixels + 1  # odd: the cluster at the centre of the middle pixel
    emissivity = proj.render_projection(bright_cc, "z", n, n * kpc_pix)
    lum = emissivity.sum() * (kpc_pix * KPC_CM) ** 2  # erg/s
    d_l = Planck18.luminosity_distance(z).to_value(u.cm)
    kT, lo, hi = bright_cc.T_keV, 0.5, 2.0
    a = (1 + z) / kT
    energy = integrate.quad(lambda e: np.exp(-a * e), lo, hi)[0]
    f_band = energy / integrate.quad(lambda e: np.exp(-a * e), 0, np.inf)[0]
    mean_e = energy / integrate.quad(lambda e: np.exp(-a * e) / e, lo, hi)[0]  # keV
    assert f_band == pytest.approx(math.exp(-0.5 * a) - math.exp(-2 * a), rel=1e-9)
    expected = lum / (4 * math.pi * d_l**2) * f_band / (mean_e * KEV_ERG) * 1000.0 * t
    assert expected > 2e4, expected  # enough counts for a 4 sigma test to mean something
    counts = obs.counts.sum()
    assert abs(counts - expected) < 4 * math.sqrt(expected), (counts, expected)
    assert obs.info["expected_counts"] == pytest.approx(expected, rel=2e-3)
    assert obs.counts.dtype == np.int32 and obs.background.sum() == 0


def test_pixel_scale_from_wcs_and_redshift(tmp_path, bright_cc):
    cat = sim.simulate_sample(tmp_path / "s", n_clusters=1, size=32, seed=2, instrument="chandra",
                              progress=False)  # fmt: skip
    hdr = fits.getheader(tmp_path / "s" / cat["file"][0])
    assert "PIXKPC" not in hdr and hdr["CTYPE1"] == "RA---TAN" and hdr["CTYPE2"] == "DEC--TAN"
    d_a = Planck18.angular_diameter_distance(hdr["REDSHIFT"]).to_value(u.kpc)
    kpc_pix = math.radians(abs(hdr["CDELT2"])) * d_a
    expected = 0.492 * 4 * Planck18.kpc_proper_per_arcmin(hdr["REDSHIFT"]).value / 60
    assert kpc_pix == pytest.approx(expected, rel=1e-6)
    assert hdr["CDELT1"] == pytest.approx(-hdr["CDELT2"], rel=1e-12)
    # the rendering uses that scale: the share of photons within 100 kpc of the centre
    # matches the emissivity map's (no PSF)
    inst, z = ins.INSTRUMENTS["xmm"], 0.1
    obs = _quiet_observation(bright_cc, inst, z, 1e5, psf=False, offset=(10.0, -6.0))
    w = WCS(fits.Header(obs.cards))
    cx, cy = (float(v) for v in w.world_to_pixel_values(150.0, 20.0))
    yy, xx = np.indices(obs.cluster.shape)
    kpc_pix = math.radians(abs(w.wcs.cdelt[1])) * Planck18.angular_diameter_distance(z).to_value(
        u.kpc
    )
    r = np.hypot(xx - cx, yy - cy) * kpc_pix
    share = obs.cluster[r < 100].sum() / obs.cluster[r < 400].sum()
    m = proj.render_projection(bright_cc, "z", 801, 801.0)  # 1 kpc pixels
    rk = np.hypot(*np.indices(m.shape) - 400.0)
    assert share == pytest.approx(m[rk < 100].sum() / m[rk < 400].sum(), rel=0.02)
    # 10" and -6" from the aim point: the centre of pixel (242, 238) of the 4" pixels
    assert (cx, cy) == pytest.approx((242.0, 238.0), abs=1e-3)  # meridians converge
    assert np.unravel_index(obs.cluster.argmax(), obs.cluster.shape) == (238, 242)


# ---------------------------------------------------------------------- the PSF


def _measured_hew(image: np.ndarray, cx: float, cy: float) -> float:
    """Diameter (pixels) of the circle holding half the flux, from the pixel centres."""
    yy, xx = np.indices(image.shape)
    r = np.hypot(xx - cx, yy - cy).ravel()
    order = np.argsort(r)
    ee = np.cumsum(image.ravel()[order]) / image.sum()
    return 2 * float(np.interp(0.5, ee, r[order]))


@pytest.mark.parametrize("name", ["chandra", "xmm", "erosita"])
def test_psf_has_the_documented_half_energy_width(name):
    documented = {"chandra": 1.0, "xmm": 15.0, "erosita": 26.0}[name]  # docs/simulator.md
    inst = ins.INSTRUMENTS[name]
    # the same instrument seen with pixels of HEW / 12, so the width can be measured
    fine = dataclasses.replace(inst, pixel_arcsec=documented / 12, image_pixels=121)
    delta = np.zeros((121, 121))
    delta[60, 60] = 1.0
    extended = ins.convolve_psf(delta, fine)  # the path of the cluster's emission
    point = np.zeros((121, 121))  # the path of the point sources and the AGN
    ins.add_point_sources(point, np.array([[60.0, 60.0]]), np.array([1.0]),
                          ins.psf_kernel_1d(fine.psf_sigma_arcsec / fine.pixel_arcsec))  # fmt: skip
    for image in (extended, point):
        assert image.sum() == pytest.approx(1.0, rel=1e-6)
        hew = _measured_hew(image, 60, 60) * fine.pixel_arcsec
        assert hew == pytest.approx(documented, rel=0.10), (name, hew)
    if name == "chandra":  # at its 1.968" image pixels the 1" PSF stays in one pixel
        native = ins.convolve_psf(delta[50:71, 50:71].copy(), inst)
        assert native[10, 10] > 0.95


# ----------------------------------------------------------------- exposure maps


def test_chandra_exposure_map_gaps_edges_vignetting():
    inst = ins.INSTRUMENTS["chandra"]
    n, p = inst.image_pixels, inst.pixel_arcsec / 60  # arcmin
    t = (np.arange(n) - (n - 1) / 2) * p  # pixel centres, arcmin from the aim point
    expo = ins.exposure_map(inst, 5e4, roll_deg=0.0)
    c = n // 2
    assert expo.max() == pytest.approx(5e4, rel=1e-5)
    assert expo[c - 1 : c + 1, c - 1 : c + 1].max() == expo.max()  # at the aim point
    # the aim point is 0.5' from both 11" gaps (docs): the gaps between x = -0.5' - 11"
    # and -0.5', and between y = +0.5' and +0.5' + 11'' (rows of the image)
    gap = 11 / 60
    in_x_gap = (t - p / 2 > -0.5 - gap) & (t + p / 2 < -0.5)
    in_y_gap = (t - p / 2 > 0.5) & (t + p / 2 < 0.5 + gap)
    assert in_x_gap.sum() >= 4 and in_y_gap.sum() >= 4
    assert np.all(expo[:, in_x_gap] == 0) and np.all(expo[in_y_gap, :] == 0)
    # off the 2 x 2 chips of 8.4' (16.9' in all): zero
    off = np.abs(t + 0.5 + gap / 2) > 2 * 8.397 / 2 + gap / 2 + p
    assert off.any() and np.all(expo[:, off] == 0)
    # vignetting: falls monotonically along a ray from the aim point into chip I3
    k = np.arange(c, c + 200)
    ray = expo[c - 1 - (k - c), k]
    assert np.all(np.diff(ray) < 0) and ray[-1] < 0.95 * 5e4
    rolled = ins.exposure_map(inst, 5e4, roll_deg=45.0)
    assert rolled[0, 0] == 0 and rolled.max() == pytest.approx(5e4, rel=1e-5)


def test_xmm_and_erosita_exposure_maps():
    xmm = ins.INSTRUMENTS["xmm"]
    expo = ins.exposure_map(xmm, 4e4, roll_deg=0.0)
    n = xmm.image_pixels
    t = (np.arange(n) - (n - 1) / 2) * xmm.pixel_arcsec / 60
    r_fov = np.hypot(t[None, :] + 1.2, t[:, None] - 1.0)  # the 30' field, centred on the array
    assert np.all(expo[r_fov > 15.0 + 0.1] == 0)
    assert expo.max() == pytest.approx(4e4, rel=1e-4)
    column = expo[:, n // 2]  # crosses the gap between the two CCD rows, 1' above the aim
    near = np.abs(t - 1.0) < 0.2
    assert column[near].min() < 0.55 * column[near].max()
    ero = ins.INSTRUMENTS["erosita"]
    flat = ins.exposure_map(ero, 1000.0, gradient=(0.0, 0.0))
    assert np.all(flat == 1000.0)
    tilted = ins.exposure_map(ero, 1000.0, gradient=(0.2, 0.0))
    assert tilted.min() > 0 and tilted.max() / tilted.min() == pytest.approx(1.2 / 0.8, rel=0.01)
    assert np.all(np.diff(tilted, axis=1) > 0) and np.all(np.diff(tilted, axis=0) == 0)


def test_background_is_a_vignetted_sky_plus_flat_particles():
    inst = ins.INSTRUMENTS["xmm"]
    cov = ins.detector_coverage(inst, 30.0)
    expo = ins.exposure_map(inst, 3e4, roll_deg=30.0, coverage=cov)
    bkg = ins.background_map(inst, expo, 3e4, cov)
    pix = (4.0 / 60) ** 2
    sky = 8e-12 / 3600 / KEV_ERG * 1000.0  # counts/s/arcmin^2 on-axis: the documented sky
    c = inst.image_pixels // 2
    assert bkg[c, c] == pytest.approx((sky * expo[c, c] + 1.5e-3 * 3e4) * pix, rel=1e-6)
    assert np.all(bkg[cov == 0] == 0)


# ------------------------------------------------------------------ the sample


def test_catalogue_files_and_labels(tmp_path):
    kw = dict(n_clusters=3, size=32, seed=5, progress=False)
    cat = sim.simulate_sample(tmp_path / "obs", instrument="xmm", **kw)
    plain = sim.simulate_sample(tmp_path / "plain", **kw)
    new = ["exposure", "background", "redshift", "instrument", "true_ra", "true_dec",
           "offset_arcsec", "exposure_s", "agn", "n_point_sources", "expected_counts"]  # fmt: skip
    assert list(cat.columns) == [c for c in plain.columns if c != "pixel_kpc"] + new
    assert not {"ra", "dec", "pixel_kpc"} & set(cat.columns)
    # labels from the 3-D cooling time, untouched by the instrument's draws
    for col in ("label", "t_cool_gyr", "m500_msun", "image_id"):
        assert cat[col].tolist() == plain[col].tolist()
    on_disk = pd.read_csv(tmp_path / "obs" / "catalog.csv")
    assert on_disk["instrument"].eq("xmm").all() and len(on_disk) == 9
    assert sorted(p.name for p in (tmp_path / "obs").iterdir()) == [
        "background", "catalog.csv", "exposure", "images"]  # fmt: skip
    assert cat["redshift"].between(0.05, 0.5).all() and cat["offset_arcsec"].le(120.01).all()
    assert cat["exposure_s"].between(2e4, 8e4).all() and cat["expected_counts"].gt(0).all()
    assert (cat.groupby("cluster_id")["redshift"].nunique() == 1).all()
    for _, row in on_disk.iterrows():
        paths = [row["file"], row["exposure"], row["background"]]
        assert all(not Path(p).is_absolute() and (tmp_path / "obs" / p).is_file() for p in paths)
        (counts, hdr), (expo, ehdr), (bkg, bhdr) = (fits.getdata(tmp_path / "obs" / p, header=True)
                                                     for p in paths)  # fmt: skip
        assert counts.dtype.kind == "i" and counts.shape == expo.shape == bkg.shape == (480, 480)
        assert hdr["BUNIT"] == "count" and ehdr["BUNIT"] == "s" and bhdr["BUNIT"] == "count"
        assert hdr["INSTRUME"] == "EPN" and hdr["REDSHIFT"] == pytest.approx(row["redshift"])
        assert hdr["EXPOSURE"] == pytest.approx(row["exposure_s"]) and hdr["LABEL"] == row["label"]
        for key in ("CRVAL1", "CRVAL2", "CDELT1", "CRPIX1"):
            assert hdr[key] == ehdr[key] == bhdr[key]
        assert expo.max() <= hdr["EXPOSURE"] * (1 + 1e-6) and np.all(bkg >= 0)
        assert np.all(counts[(expo == 0) & (bkg == 0)] == 0)  # off the detector: nothing
        x, y = WCS(hdr).world_to_pixel_values(row["true_ra"], row["true_dec"])
        off = math.hypot(x - 239.5, y - 239.5) * 4.0
        assert off == pytest.approx(row["offset_arcsec"], abs=0.1)  # 8 digits in the CSV


def test_files_do_not_depend_on_workers(tmp_path):
    kw = dict(n_clusters=2, size=24, seed=9, instrument="erosita", progress=False)
    a = sim.simulate_sample(tmp_path / "a", workers=1, **kw)
    b = sim.simulate_sample(tmp_path / "b", workers=2, **kw)
    pd.testing.assert_frame_equal(a, b)
    names = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    assert len([n for n in names if n.suffix == ".fits"]) == 18
    for name in names:
        if (tmp_path / "a" / name).is_file():
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_agn_probability_follows_the_cooling_time_not_the_label():
    rng = np.random.default_rng(0)
    inst = ins.INSTRUMENTS["erosita"]
    model = pop.draw_cluster(np.random.default_rng(1), "WCC", 0)
    for t_cool, p in ((0.2, 0.05 + 0.35 * math.exp(-0.2)), (9.0, 0.05 + 0.35 * math.exp(-9.0))):
        m = dataclasses.replace(model, t_cool_gyr=t_cool)  # label left as it was
        hits = sum(ob.draw_placement(inst, m, rng).agn_erg_s > 0 for _ in range(3000))
        assert abs(hits - 3000 * p) < 4 * math.sqrt(3000 * p * (1 - p)), (t_cool, hits)
    z = [ob.draw_placement(inst, model, rng).redshift for _ in range(500)]
    assert 0.05 <= min(z) < 0.07 and 0.38 < max(z) <= 0.4


def test_field_sources_follow_the_lognlogs():
    inst = ins.INSTRUMENTS["xmm"]
    rng = np.random.default_rng(3)
    points = [ob.draw_pointing(inst, rng) for _ in range(40)]
    fluxes = np.concatenate([p.sources[:, 2] for p in points])
    area = 40 * (480 * 4 / 3600) ** 2  # deg^2
    # N(>S) = 100 deg^-2 (S / 1e-14)^-1.5 above 1e-14, ^-0.8 below, down to 2e-15 (docs)
    for s, n_per_deg2 in ((1e-14, 100.0), (4e-14, 100.0 * 4**-1.5), (2e-15, 100.0 * 5**0.8)):
        mean = n_per_deg2 * area
        assert abs((fluxes >= s * (1 - 1e-12)).sum() - mean) < 4 * math.sqrt(mean), s
    offsets = np.array([math.hypot(*p.offset_arcsec) for p in points])
    assert offsets.max() <= 120.0 and all(2e4 <= p.exposure_s <= 8e4 for p in points)


# ------------------------------------------------------------------------ errors


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match=r"instrument='hubble': not one of chandra, xmm, erosita"):
        sim.simulate_sample(tmp_path / "a", n_clusters=1, size=16, instrument="hubble")
    with pytest.raises(UsageError, match="instrument='xmm': not with observed=True"):
        sim.simulate_sample(tmp_path / "a", n_clusters=1, size=16, instrument="xmm", observed=True)
    assert not (tmp_path / "a").exists()
    assert cli_simulate.INSTRUMENTS == tuple(ins.INSTRUMENTS)
    for argv, needle in (
        (["--instrument", "hubble"], "invalid choice: 'hubble'"),
        (["--instrument", "xmm", "--observed"], "--instrument xmm: not with --observed"),
        (["--instrument", "erosita", "--exposure-ks", "5"], "--exposure-ks: only for --observed"),
    ):
        res = run_cli_here("simulate", tmp_path / "b", "--clusters", "1", *argv, cwd=tmp_path)
        err = res.stderr.strip()
        assert res.returncode == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_detected_sources_are_cut_from_the_exposure_map():
    """A field source expected to give >= SOURCE_CUT_COUNTS counts gets a zero-exposure disc
    of 1.5 HEW (>= 3 px) around it; a fainter one does not; the counts stay in the image."""
    from coolcore.sim.instruments import INSTRUMENTS, exposure_map
    from coolcore.sim.observe import SOURCE_CUT_COUNTS, SOURCE_CUT_HEW, _cut_sources

    inst = INSTRUMENTS["xmm"]
    expo = exposure_map(inst, 50e3, 0.0, (0.0, 0.0), vignetting=False, detector=False)
    photon_erg = 0.924 * 1.602177e-9  # POWER_LAW_PHOTON_KEV keV in erg, by hand
    per_count = photon_erg / (inst.area_cm2 * 50e3)  # flux giving one expected count
    bright = (100.0, 120.0, 5 * SOURCE_CUT_COUNTS * per_count)
    faint = (300.0, 300.0, 0.5 * SOURCE_CUT_COUNTS * per_count)
    cut = expo.copy()
    n = _cut_sources(cut, np.array([bright, faint]), inst)
    assert n == 1
    radius = max(3.0, SOURCE_CUT_HEW * inst.psf_hew_arcsec / inst.pixel_arcsec)
    yy, xx = np.indices(cut.shape)
    inside = np.hypot(xx - 100.0, yy - 120.0) <= radius
    assert np.all(cut[inside] == 0) and np.all(cut[~inside] == expo[~inside])
