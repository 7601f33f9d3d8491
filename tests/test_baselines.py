"""Tests of the concentration baselines against hand counts and analytic profiles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from coolcore.errors import UsageError
from coolcore.evaluate import baselines as bl


def _count_centres_within(h: int, w: int, row: int, col: int, r_px: float) -> int:
    """Brute-force count of pixel centres within r_px of pixel (row, col)."""
    return sum(1 for i in range(h) for j in range(w) if (i - row) ** 2 + (j - col) ** 2 <= r_px**2)


def test_constant_image_gives_the_pixel_count_ratio():
    img = np.ones((120, 120))
    # pixel 2.5 kpc: 40 kpc = 16 px, 140 kpc = 56 px
    c = bl.concentration(img, 2.5, 40.0, 140.0, center="image")
    n_in = _count_centres_within(120, 120, 60, 60, 16.0)
    n_out = _count_centres_within(120, 120, 60, 60, 56.0)
    assert c == pytest.approx(n_in / n_out, rel=1e-12)
    assert c == pytest.approx((40.0 / 140.0) ** 2, rel=0.03)  # the area ratio


def test_constant_image_santos_apertures_area_ratio():
    img = np.ones((400, 400))  # 2.5 kpc pixels: the 400 kpc aperture fits
    c = bl.concentration(img, 2.5, center="image")
    assert c == pytest.approx((40.0 / 400.0) ** 2, rel=0.02)


def _beta_image(size: int, pix: float, rc: float, beta: float, center: tuple[int, int]):
    i, j = np.mgrid[:size, :size]
    R = np.hypot(i - center[0], j - center[1]) * pix
    return (1 + (R / rc) ** 2) ** (0.5 - 3 * beta)


def _beta_flux(R: float, rc: float, beta: float) -> float:
    # 2 pi int_0^R (1 + r^2/rc^2)^(1/2 - 3 beta) r dr
    a = 1.5 - 3 * beta
    return math.pi * rc**2 * ((1 + (R / rc) ** 2) ** a - 1) / a


@pytest.mark.parametrize(("rc", "beta"), [(30.0, 0.6), (120.0, 0.7), (250.0, 0.55)])
def test_beta_model_matches_analytic_aperture_ratio(rc, beta):
    img = _beta_image(480, 2.0, rc, beta, (243, 231))  # off-centre peak, found by "peak"
    c = bl.concentration(img, 2.0)
    expected = _beta_flux(40.0, rc, beta) / _beta_flux(400.0, rc, beta)
    assert c == pytest.approx(expected, rel=0.03)


def test_peak_finding_and_explicit_centres():
    img = _beta_image(100, 5.0, 20.0, 0.7, (30, 70))
    assert bl.find_centers(img).tolist() == [[30, 70]]
    assert bl.find_centers(img, "image").tolist() == [[50, 50]]
    c_peak = bl.concentration(img, 5.0, 20.0, 100.0)
    c_given = bl.concentration(img, 5.0, 20.0, 100.0, center=(30, 70))
    assert c_peak == c_given


def test_batch_equals_single_images_with_per_image_pixels():
    imgs = np.stack([_beta_image(128, 4.0, rc, 0.65, (64, 64)) for rc in (20.0, 60.0, 150.0)])
    pix = np.array([4.0, 3.0, 5.0])
    batch = bl.concentration(imgs, pix)
    singles = [bl.concentration(im, p) for im, p in zip(imgs, pix, strict=True)]
    np.testing.assert_allclose(batch, singles, rtol=1e-12)
    assert batch[0] > batch[1] > batch[2]  # smaller core, more concentrated


def test_scaled_concentration_when_r500_fits_and_when_it_does_not():
    img = _beta_image(201, 5.0, 50.0, 0.65, (100, 100))  # map of 1005 kpc
    small = bl.scaled_concentration(img, 5.0, 300.0)
    assert small == pytest.approx(bl.concentration(img, 5.0, 45.0, 300.0), rel=1e-12)
    # R500 = 1200 kpc does not fit: the outer aperture is the largest circle inside
    # the map, 100.5 px = 502.5 kpc from the centre pixel to the edge.
    big = bl.scaled_concentration(img, 5.0, 1200.0)
    assert big == pytest.approx(bl.concentration(img, 5.0, 180.0, 502.5), rel=1e-12)


def test_bad_inputs():
    with pytest.raises(UsageError, match="images"):
        bl.concentration(np.ones(5), 1.0)
    with pytest.raises(UsageError, match="pixel_kpc"):
        bl.concentration(np.ones((8, 8)), 0.0)
    with pytest.raises(UsageError, match="center"):
        bl.concentration(np.ones((8, 8)), 1.0, center="middle")
    with pytest.raises(UsageError, match="r_in_kpc"):
        bl.concentration(np.ones((8, 8)), 1.0, 50.0, 40.0)


# ------------------------------------------------------------------ classifier


def test_literature_thresholds_and_ordering():
    clf = bl.ConcentrationClassifier("c_sb", "literature").fit([0.1])
    assert clf.thresholds_ == (0.075, 0.155)
    pred = clf.predict([0.5, 0.156, 0.155, 0.1, 0.075, 0.0749, 0.01, np.nan])
    assert pred.tolist() == ["CC", "CC", "WCC", "WCC", "WCC", "NCC", "NCC", "NCC"]
    proba = clf.predict_proba([0.5, 0.1, 0.01])
    np.testing.assert_array_equal(proba, np.eye(3))


def test_default_thresholds_per_indicator():
    assert bl.ConcentrationClassifier("c_sb").fit([0.1]).thresholds_ == (0.075, 0.155)
    with pytest.raises(UsageError, match="y"):
        bl.ConcentrationClassifier("c_scaled").fit([0.1, 0.2])  # fitted: needs labels
    with pytest.raises(UsageError, match="thresholds"):
        bl.ConcentrationClassifier("c_scaled", "literature")
    with pytest.raises(UsageError, match="indicator"):
        bl.ConcentrationClassifier("cusp")


def test_fitted_thresholds_maximise_training_macro_f1():
    rng = np.random.default_rng(0)
    y = rng.choice(["CC", "WCC", "NCC"], size=40, p=[0.2, 0.5, 0.3])
    centre = {"CC": 0.2, "WCC": 0.1, "NCC": 0.04}
    x = np.array([centre[k] for k in y]) * np.exp(rng.normal(0, 0.5, y.size))
    clf = bl.ConcentrationClassifier("c_sb", "fit").fit(x, y)
    got = f1_score(y, clf.predict(x), average="macro")
    # brute force over every pair of cuts between sorted values, scored by sklearn
    xs = np.sort(x)
    cuts = np.concatenate([[xs[0] - 1], (xs[:-1] + xs[1:]) / 2, [xs[-1] + 1]])
    best = 0.0
    for lo, hi in itertools.combinations_with_replacement(cuts, 2):
        pred = np.where(x > hi, "CC", np.where(x >= lo, "WCC", "NCC"))
        best = max(best, f1_score(y, pred, average="macro"))
    assert got == pytest.approx(best, abs=1e-12)
    assert clf.score(x, y) == pytest.approx(got, abs=1e-12)


def test_explicit_thresholds_and_integer_labels():
    clf = bl.ConcentrationClassifier("c_scaled", (0.2, 0.4)).fit([0.3], [1])
    assert clf.predict([0.5, 0.3, 0.1]).tolist() == ["CC", "WCC", "NCC"]
    assert clf.score([0.5, 0.3, 0.1], [0, 1, 2]) == 1.0
    with pytest.raises(UsageError, match="thresholds"):
        bl.ConcentrationClassifier("c_sb", (0.4, 0.2)).fit([0.3])


# --------------------------------------------------------------- calibration


@pytest.mark.slow
def test_default_sample_calibration(tmp_path):
    """SIMULATOR.md: on the default sample, the Santos thresholds are clearly better
    than chance and clearly imperfect."""
    from astropy.io import fits

    from coolcore.sim.simulate import simulate_sample

    cat = simulate_sample(tmp_path, workers=2, progress=False)
    assert len(cat) == 954
    images = np.stack([fits.getdata(tmp_path / f).astype(np.float64) for f in cat["file"]])
    c = bl.concentration(images, cat["pixel_kpc"].to_numpy())
    clf = bl.ConcentrationClassifier("c_sb", "literature").fit(c)
    f1 = f1_score(cat["label"], clf.predict(c), average="macro")
    assert 0.45 < f1 < 0.80, f1
