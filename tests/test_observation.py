"""From an X-ray observation to the model's input field (coolcore.data.observation).

Every check is against an independent reference: the angular-diameter distance
evaluated by hand, a brute-force supersampled sum, ``reproject.reproject_exact``,
the truth injected into a synthetic cluster.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter

from coolcore.data.observation import (
    LOW_COUNTS_WARNING,
    MIN_SOURCE_COUNTS,
    Observation,
    observation_pixel_kpc,
    prepare_observation,
    read_observation,
)
from coolcore.errors import ImageError, UsageError

REAL = Path(__file__).resolve().parents[1] / "examples" / "a1835"
ARCSEC = 1 / 3600


def make_wcs(crpix: tuple[float, float], cdelt_deg: float = 4 * ARCSEC, crval=(180.0, 0.0)) -> WCS:
    """A TAN WCS whose reference point (crval) lies at 0-based pixel ``crpix``."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [crpix[0] + 1, crpix[1] + 1]
    w.wcs.cdelt = [-cdelt_deg, cdelt_deg]
    return w


def write_fits(path: Path, data: np.ndarray, wcs: WCS | None = None, **keys) -> str:
    header = wcs.to_header() if wcs is not None else fits.Header()
    for key, value in keys.items():
        header[key] = value
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(path)
    return str(path)


def beta_model(shape, cx, cy, rc, amp, beta=2 / 3):
    yy, xx = np.indices(shape, dtype=np.float64)
    return amp * (1 + ((xx - cx) ** 2 + (yy - cy) ** 2) / rc**2) ** (0.5 - 3 * beta)


def one_line_naming(exc: pytest.ExceptionInfo, name: str) -> None:
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"{name}: "), text


# --------------------------------------------------------------------------- pixel scale
def test_pixel_scale_is_the_angular_diameter_distance_times_the_pixel_angle(tmp_path):
    from astropy.cosmology import WMAP9, Planck18

    z = 0.2532
    path = write_fits(tmp_path / "c.fits", np.ones((20, 20)), make_wcs((9.5, 9.5)), REDSHIFT=z)
    obs = read_observation(path)
    assert obs.redshift == z  # from the header keyword
    angle_rad = 4 * ARCSEC * math.pi / 180
    for name, cosmo in (("Planck18", Planck18), ("WMAP9", WMAP9)):
        by_hand = cosmo.angular_diameter_distance(z).to_value("kpc") * angle_rad
        assert observation_pixel_kpc(obs, name) == pytest.approx(by_hand, rel=1e-6)
    assert abs(observation_pixel_kpc(obs, "WMAP9") / observation_pixel_kpc(obs) - 1) > 1e-3
    explicit = read_observation(path, pixel_kpc=2.5, redshift=0.05)
    assert observation_pixel_kpc(explicit) == 2.5 and explicit.redshift == 0.05


def test_an_all_zero_background_file_is_read(tmp_path):
    wcs = make_wcs((9.5, 9.5))
    counts = write_fits(tmp_path / "c.fits", np.ones((20, 20)), wcs, REDSHIFT=0.1)
    zero = write_fits(tmp_path / "b.fits", np.zeros((20, 20)), wcs)  # mocks without background
    obs = read_observation(counts, background=zero)
    assert obs.background is not None and not obs.background.any()


def test_a_string_simple_card_still_opens(tmp_path):
    path = write_fits(tmp_path / "s.fits", np.ones((8, 8)), make_wcs((3.5, 3.5)), Z=0.1)
    raw = bytearray(Path(path).read_bytes())
    raw[:80] = "SIMPLE  = 'T'".ljust(80).encode()
    Path(path).write_bytes(bytes(raw))
    obs = read_observation(path)
    assert obs.counts.shape == (8, 8) and obs.redshift == pytest.approx(0.1)
    assert obs.wcs is not None


# --------------------------------------------------------------------------- rebinning
def test_flux_is_conserved_against_a_supersampled_brute_force():
    rng = np.random.default_rng(1)
    counts = rng.uniform(0.5, 2.0, (120, 130))
    cx, cy, side, grid, f = 64.3125, 57.6875, 40.25, 7, 16  # edges on 1/16-pixel multiples
    obs = Observation("flux", counts, None, np.zeros_like(counts), make_wcs((cx, cy)), 0.1, 1.0)
    obs.center = (180.0, 0.0)
    out = prepare_observation(obs, field_kpc=side, grid=grid)
    assert out.center_xy == pytest.approx((cx, cy), abs=1e-9)
    sub = np.kron(counts, np.ones((f, f))) / f**2  # sub-pixel j spans [j, j+1) / f - 0.5
    x0, y0 = round((cx - side / 2 + 0.5) * f), round((cy - side / 2 + 0.5) * f)
    n, step = round(side * f), round(side * f / grid)
    square = sub[y0 : y0 + n, x0 : x0 + n]
    assert out.image.sum() == pytest.approx(square.sum(), rel=1e-10)
    brute = square.reshape(grid, step, grid, step).sum(axis=(1, 3))
    np.testing.assert_allclose(out.image, brute, rtol=1e-10)
    assert out.counts == pytest.approx(square.sum(), rel=1e-10)  # no exposure: counts = rate
    assert out.masked_fraction == pytest.approx(0.0, abs=1e-12) and not out.mask.any()


def test_rebin_matches_reproject_exact():
    from reproject import reproject_exact

    rng = np.random.default_rng(2)
    counts = rng.uniform(0.1, 3.0, (80, 90))
    cx, cy, side, grid = 41.3, 38.7, 33.3, 12
    w_in = make_wcs((cx, cy), cdelt_deg=ARCSEC)
    obs = Observation("rep", counts, None, np.zeros_like(counts), w_in, 0.1, 1.0, (180.0, 0.0))
    out = prepare_observation(obs, field_kpc=side, grid=grid)
    s = side / grid
    w_out = make_wcs((grid / 2 - 0.5, grid / 2 - 0.5), cdelt_deg=ARCSEC * s)
    surface, footprint = reproject_exact((counts, w_in), w_out, shape_out=(grid, grid))
    assert np.all(footprint > 0.999)
    np.testing.assert_allclose(out.image, surface * s**2, rtol=1e-6)


# --------------------------------------------------------------------------- centring
def test_centre_is_found_despite_a_point_source_and_a_chip_gap():
    rng = np.random.default_rng(3)
    shape, psf = (300, 300), 3.0
    tx, ty = 149.5 + 37, 149.5 - 21
    model = gaussian_filter(beta_model(shape, tx, ty, rc=12.0, amp=30.0), psf)
    yy, xx = np.indices(shape)
    px, py = tx + 80 * math.cos(0.6), ty + 80 * math.sin(0.6)
    model += 3000 * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * psf**2)) / (2 * np.pi * psf**2)
    peak_y, peak_x = np.unravel_index(np.argmax(model), shape)
    assert math.hypot(peak_x - px, peak_y - py) < 2  # unsmoothed, the point source is brightest
    exposure = np.full(shape, 1e4)
    exposure[:, int(tx) + 2 : int(tx) + 8] = 0.0  # a 6-px chip gap through the cluster
    counts = rng.poisson((model + 0.2) * (exposure > 0)).astype(float)
    obs = read_observation(counts, exposure=exposure, pixel_kpc=4.0, name="mock")
    out = prepare_observation(obs, field_kpc=1000, grid=64)
    assert out.center_source == "found" and math.isnan(out.center_ra)
    assert math.hypot(out.center_xy[0] - tx, out.center_xy[1] - ty) < psf


# --------------------------------------------------------------------------- filling
def test_chip_gap_through_a_cool_core_is_filled_with_the_core_level():
    shape, c = (201, 201), 100
    exposure = np.full(shape, 1000.0)
    exposure[:, c - 3 : c + 3] = 0.0
    true_rate = beta_model(shape, c, c, rc=5.0, amp=2.0)
    counts = true_rate * exposure  # noiseless
    obs = read_observation(
        counts, exposure=exposure, background=np.zeros(shape), pixel_kpc=5.0, name="gap"
    )
    obs.wcs, obs.center = make_wcs((c, c)), (180.0, 0.0)
    out = prepare_observation(obs, field_kpc=995, grid=199)  # one output pixel per input pixel
    assert out.image.shape == (199, 199) and np.all(out.image > 0)
    k = c - 1  # output index of input pixel c (the square starts at input pixel 1)
    assert out.mask[k, k] and out.mask[:, k - 3 : k + 3].all() and out.mask.sum() == 6 * 199
    assert 0.5 < out.image[k, k] / true_rate[c, c] < 2.0
    ratio = out.image[out.mask] / true_rate[1:200, 1:200][out.mask]  # the whole gap, any radius
    assert 0.5 < ratio.min() and ratio.max() < 2.0
    assert out.image[out.mask].max() <= np.nanmax(out.rate_map[1:200, 1:200])
    np.testing.assert_allclose(out.image[~out.mask], true_rate[1:200, 1:200][~out.mask])


# --------------------------------------------------------------------------- background
def _blob_counts(rng, shape, total, bkg):
    yy, xx = np.indices(shape)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 6.0**2))
    source = total * blob / blob.sum()
    return rng.poisson(source + bkg).astype(float)


def test_background_map_is_subtracted():
    rng = np.random.default_rng(4)
    total, shape = 5000.0, (200, 200)
    counts = _blob_counts(rng, shape, total, 0.5)
    obs = read_observation(counts, background=np.full(shape, 0.5), pixel_kpc=5.0, name="bkg")
    out = prepare_observation(obs, field_kpc=500, grid=50)
    assert out.background_method == "map"
    sigma = math.sqrt(total + 0.5 * out.field_px**2)
    assert abs(out.counts - total) < 3 * sigma
    assert abs(out.counts - counts.sum()) > 3 * sigma  # without subtraction it would fail


def test_flat_background_from_outside_the_field():
    rng = np.random.default_rng(5)
    total, shape = 5000.0, (400, 400)
    counts = _blob_counts(rng, shape, total, 0.5)
    exposure = np.full(shape, 2000.0)
    obs = read_observation(counts, exposure=exposure, pixel_kpc=5.0, name="flat")
    out = prepare_observation(obs, field_kpc=500, grid=50)
    assert out.background_method == "outer annulus" and out.warnings == []
    assert abs(out.counts - total) < 3 * math.sqrt(total + 0.5 * out.field_px**2)


# --------------------------------------------------------------------------- warnings
def test_warnings_low_counts_masked_core_off_image_and_no_background():
    shape = (60, 60)
    counts = beta_model(shape, 20.0, 30.0, rc=4.0, amp=20.0)
    exposure = np.ones(shape)
    exposure[25:36, 15:26] = 0.0  # the core
    obs = read_observation(counts, exposure=exposure, pixel_kpc=1.0, name="warn")
    obs.wcs, obs.center = make_wcs((20.0, 30.0)), (180.0, 0.0)
    out = prepare_observation(obs, field_kpc=60, grid=30)
    text = out.diagnostics()["warning"]
    assert out.counts < LOW_COUNTS_WARNING and f"{out.counts:.0f} source counts" in text
    # the square spans x in [-10, 50] and y in [0, 60]; the image [-0.5, 59.5] in both
    off = 1 - 50.5 * 59.5 / 60**2
    assert f"partly off the detector: {100 * off:.0f}% of the 60 kpc field" in text
    assert "strongly masked core" in text
    assert "not background-subtracted" in text and out.background_method == "none"
    assert all(w.startswith("warn: ") and "\n" not in w for w in out.warnings)
    assert set(out.diagnostics()) == {
        *("center_ra", "center_dec", "pixel_kpc", "field_kpc", "counts", "masked_fraction"),
        "warning",
    }


# --------------------------------------------------------------------------- errors
@pytest.fixture
def files(tmp_path):
    """A 60 x 60 counts file with WCS and redshift, and a matching exposure file."""
    wcs = make_wcs((29.5, 29.5))
    counts = beta_model((60, 60), 29.5, 29.5, rc=5.0, amp=40.0)
    return {
        "wcs": wcs,
        "counts": counts,
        "c": write_fits(tmp_path / "c.fits", counts, wcs, REDSHIFT=0.1),
        "nz": write_fits(tmp_path / "nz.fits", counts, wcs),
        "e": write_fits(tmp_path / "e.fits", np.full((60, 60), 100.0), wcs),
        "tmp": tmp_path,
    }


def test_errors_of_reading(files):
    tmp, c = files["tmp"], files["c"]
    e_shape = write_fits(tmp / "e1.fits", np.ones((60, 61)), files["wcs"])
    with pytest.raises(ImageError, match="shape") as exc:
        read_observation(c, exposure=e_shape)
    one_line_naming(exc, e_shape)
    shifted = make_wcs((29.5, 29.5), crval=(180.0, 0.01))
    e_wcs = write_fits(tmp / "e2.fits", np.ones((60, 60)), shifted)
    with pytest.raises(ImageError, match="WCS differs") as exc:
        read_observation(c, exposure=e_wcs)
    one_line_naming(exc, e_wcs)
    negative = files["counts"].copy()
    negative[3, 4] = -3.0
    with pytest.raises(ImageError, match=r"negative counts \(min -3\); give the raw") as exc:
        read_observation(negative, name="neg")
    one_line_naming(exc, "neg")
    e_neg = write_fits(tmp / "e3.fits", np.full((60, 60), -1.0), files["wcs"])
    with pytest.raises(ImageError, match="negative exposure") as exc:
        read_observation(c, exposure=e_neg)
    one_line_naming(exc, e_neg)
    with pytest.raises(ImageError, match="negative background") as exc:
        read_observation(c, background=-np.ones((60, 60)))
    bad_z = write_fits(tmp / "z.fits", files["counts"], files["wcs"], Z=12.0)
    with pytest.raises(ImageError, match=r"\(0, 10\)") as exc:
        read_observation(bad_z)
    one_line_naming(exc, bad_z)


def test_errors_of_pixel_scale_and_cosmology(files):
    obs = read_observation(files["counts"], redshift=0.1, name="arr")
    with pytest.raises(ImageError, match="no WCS and no --pixel-kpc") as exc:
        prepare_observation(obs, field_kpc=100, grid=16)
    one_line_naming(exc, "arr")
    with pytest.raises(ImageError, match="no redshift: give --redshift Z") as exc:
        observation_pixel_kpc(read_observation(files["nz"]))
    one_line_naming(exc, files["nz"])
    with pytest.raises(UsageError, match="Planck18") as exc:
        observation_pixel_kpc(read_observation(files["c"]), "Planck99")
    assert "\n" not in str(exc.value)


def test_errors_of_the_field(files):
    c = files["c"]
    small = np.ones((128, 128)) * 5
    with pytest.raises(ImageError, match="smaller than the 1000 kpc training field") as exc:
        prepare_observation(
            read_observation(small, pixel_kpc=0.5, name="cut"), field_kpc=1000, grid=8
        )
    one_line_naming(exc, "cut")
    assert "64 x 64 kpc" in str(exc.value) and "cannot be stretched" in str(exc.value)
    with pytest.raises(ImageError, match="lies off the image") as exc:
        prepare_observation(read_observation(c, center=(181.0, 0.0)), field_kpc=100, grid=8)
    one_line_naming(exc, c)
    exposure = np.full((60, 60), 100.0)
    exposure[:, :45] = 0.0
    obs = read_observation(c, exposure=exposure, center=(180.0, 0.0))
    with pytest.raises(ImageError, match="zero exposure across the field") as exc:
        prepare_observation(obs, field_kpc=10 * obs_px(obs), grid=8)
    one_line_naming(exc, c)
    with pytest.raises(ImageError, match="zero exposure across the field"):
        prepare_observation(read_observation(c, exposure=np.zeros((60, 60))), field_kpc=100, grid=8)
    corner = files["wcs"].pixel_to_world_values(1.0, 1.0)
    with pytest.raises(ImageError, match="outside the image") as exc:
        obs = read_observation(c, center=tuple(float(v) for v in corner))
        prepare_observation(obs, field_kpc=30 * obs_px(obs), grid=8)
    one_line_naming(exc, c)
    faint = read_observation(files["counts"] / files["counts"].sum() * 12, pixel_kpc=1.0, name="f")
    with pytest.raises(
        ImageError, match=r"too few counts to say anything: \d+ source counts in the field"
    ) as exc:
        prepare_observation(faint, field_kpc=40, grid=8)
    one_line_naming(exc, "f")
    assert f"(need {MIN_SOURCE_COUNTS:.0f})" in str(exc.value)


def obs_px(obs: Observation) -> float:
    return observation_pixel_kpc(obs)


# --------------------------------------------------------------------------- Abell 1835
def test_abell_1835():
    from astropy.coordinates import SkyCoord
    from astropy.cosmology import Planck18

    obs = read_observation(
        REAL / "a1835_xmm_img.fits.gz", exposure=REAL / "a1835_xmm_exp.fits.gz", redshift=0.2532
    )
    out = prepare_observation(obs, field_kpc=1000, grid=256)
    cdelt = abs(fits.getheader(REAL / "a1835_xmm_img.fits.gz")["CDELT2"])
    by_hand = Planck18.angular_diameter_distance(0.2532).to_value("kpc") * math.radians(cdelt)
    assert out.pixel_kpc == pytest.approx(by_hand, rel=1e-6)
    assert 16.0 < out.pixel_kpc < 16.6
    found = SkyCoord(out.center_ra, out.center_dec, unit="deg")
    assert found.separation(SkyCoord(210.2581, 2.8787, unit="deg")).arcsec < 20
    assert not any("masked core" in w for w in out.warnings)
    assert out.counts > 10000  # measured: about 22 500 (docs/observations.md)
    assert out.image.shape == (256, 256) and np.isfinite(out.image).all()


# --------------------------------------------------------------------------- brightness
def test_surface_luminosity_is_the_same_cluster_at_any_distance():
    """One cluster (a beta model of surface luminosity S(r) per kpc^2) seen at z = 0.1 and
    0.4 with 4" pixels: the count rates differ by the ratio of D_L^2, the distance-free
    brightness is S(r) x (photons per unit S) at both, the injected truth."""
    from astropy.cosmology import Planck18

    rc, s0, t_exp, per_unit = 60.0, 5.0, 4.0e4, 1.0e3  # kpc, per kpc^2, s, rate scale
    out = {}
    for z in (0.1, 0.4):
        w = make_wcs((199.5, 199.5))
        obs = read_observation(np.ones((400, 400)), redshift=z, name=f"z{z}")
        obs.wcs = w
        p = observation_pixel_kpc(obs)
        d_mpc = Planck18.luminosity_distance(z).to_value("Mpc")
        # counts per pixel: S x pixel area x (photons per unit S) / (4 pi D_L^2) x exposure
        rate = beta_model((400, 400), 199.5, 199.5, rc / p, s0) * p**2 * per_unit
        rate /= 4 * math.pi * d_mpc**2
        zero = np.zeros((400, 400))  # no background: none estimated from the outskirts either
        obs = Observation(f"z{z}", rate * t_exp, np.full((400, 400), t_exp), zero, w, z)
        out[z] = prepare_observation(obs, field_kpc=600.0, grid=60)
    near, far = out[0.1], out[0.4]
    d = {z: Planck18.luminosity_distance(z).to_value("Mpc") for z in out}
    centre = (slice(25, 35), slice(25, 35))
    assert np.median(far.image[centre] / near.image[centre]) == pytest.approx(
        (d[0.1] / d[0.4]) ** 2, rel=0.03
    )
    yy, xx = (np.indices((60, 60)) - 29.5) * 10.0  # output pixel centres, kpc
    truth = s0 * (1 + (xx**2 + yy**2) / rc**2) ** (0.5 - 3 * 2 / 3) * per_unit
    for field in (near, far):
        ratio = field.surface_luminosity() / truth
        assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
        # flux is conserved: the field's total (coarse 22 kpc pixels at z = 0.4 make
        # single output pixels step, not the sum)
        assert field.surface_luminosity().sum() == pytest.approx(truth.sum(), rel=0.02)
    no_z = prepare_observation(
        Observation(
            "noz",
            beta_model((60, 60), 29.5, 29.5, 5.0, 1e3),
            None,
            np.zeros((60, 60)),
            None,
            None,
            pixel_kpc=10.0,
        ),  # fmt: skip
        field_kpc=300.0,
        grid=30,
    )
    with pytest.raises(ImageError, match="needs the redshift"):
        no_z.surface_luminosity()
