"""The surface-brightness profile baseline: photutils as the reference, formulas by hand."""

import numpy as np
import pytest
from photutils.profiles import RadialProfile

from coolcore.errors import UsageError
from coolcore.evaluate.profiles import PROFILE_EDGES_KPC, ProfileClassifier, radial_profile

# radii (px) whose squares are no sum of two squares of integers: no pixel centre on an edge
EDGES_PX = np.array([1.1, 2.3, 4.7, 9.4, 17.2, 30.3])


def test_profile_matches_photutils_center_method():
    rng = np.random.default_rng(0)
    images = rng.gamma(2.0, 1.0, size=(3, 64, 64))
    centers = np.array([[32, 32], [30, 35], [33, 28]])
    pix = np.array([1.0, 2.0, 0.5])
    prof = radial_profile(images, pix, edges_kpc=EDGES_PX * 2.0, center=centers)
    for i in range(3):
        # the same annuli in pixels of map i: edges_kpc / pixel_kpc
        ref = RadialProfile(
            images[i],
            (centers[i, 1], centers[i, 0]),
            EDGES_PX * 2.0 / pix[i],
            method="center",
        )
        mean = np.asarray(ref.profile)
        ok = np.isfinite(mean)  # annuli photutils finds empty are filled by ours (tested below)
        assert ok.sum() >= 4
        np.testing.assert_allclose(prof[i][ok], np.log10(mean[ok] / pix[i] ** 2), rtol=1e-12)


def test_constant_map_and_distance_term_by_hand():
    img = np.full((128, 128), 3.0)
    prof = radial_profile(img, 2.0, center="image")
    assert prof.shape == (len(PROFILE_EDGES_KPC) - 1,)
    # 3 per pixel of 4 kpc^2 everywhere; annuli beyond the map (r > 128 kpc) take the
    # nearest annulus that has pixels, which is also 3 / 4
    np.testing.assert_allclose(prof, np.log10(0.75))
    # a map times a constant (an observation's 4 pi D_L^2): the profile moves by its log
    np.testing.assert_allclose(
        radial_profile(img * 7.0e4, 2.0, center="image"), np.log10(0.75 * 7.0e4)
    )


def test_empty_annulus_takes_the_nearest_and_floor():
    img = np.zeros((32, 32))
    yy, xx = np.mgrid[:32, :32]
    r = np.hypot(yy - 16, xx - 16)
    img[r <= 1.0] = 10.0  # the centre and its four neighbours
    img[(r > 1.0) & (r <= 2.3)] = 4.0
    img[(r > 2.3) & (r <= 4.7)] = -1.0  # noise below zero
    prof = radial_profile(img, 1.0, edges_kpc=[0.5, 0.9, 1.1, 2.3, 4.7], center="image")
    # (0.5, 0.9] holds no pixel centre -> the nearest annulus with pixels, (0.9, 1.1]
    np.testing.assert_allclose(prof[:2], [1.0, 1.0])
    assert prof[2] == pytest.approx(np.log10(4.0))
    # the mean <= 0 is floored at a tenth of the smallest positive annulus mean (4)
    assert prof[3] == pytest.approx(np.log10(0.4))


def test_bad_edges():
    img = np.ones((16, 16))
    with pytest.raises(UsageError, match="edges_kpc"):
        radial_profile(img, 1.0, edges_kpc=[3.0, 2.0])


def test_profile_classifier_learns_levels_and_orders_columns():
    rng = np.random.default_rng(1)
    n = 60
    labels = np.array(["CC", "WCC", "NCC"] * (n // 3))
    level = np.select([labels == "CC", labels == "WCC"], [2.0, 1.0], 0.0)
    x = level[:, None] + rng.normal(0, 0.1, size=(n, 5))
    clf = ProfileClassifier().fit(x, labels)
    assert (clf.predict(x) == labels).mean() > 0.95
    p = clf.predict_proba([[2.0] * 5, [0.0] * 5])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0].argmax() == 0 and p[1].argmax() == 2  # columns CC, WCC, NCC
    # a class missing from training gets probability 0
    two = ProfileClassifier().fit(x[labels != "WCC"], labels[labels != "WCC"])
    assert np.all(two.predict_proba(x)[:, 1] == 0.0)
    with pytest.raises(UsageError, match="unknown label"):
        ProfileClassifier().fit(x, ["A"] * n)
