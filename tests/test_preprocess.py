"""Tests of coolcore.data.transforms and coolcore.data.cache against hand-computed values,
Pillow, and the cache rules."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import coolcore.data.images as cimages
from coolcore.data.cache import default_cache_dir, load_dataset
from coolcore.data.transforms import (
    PreprocessConfig,
    crop_image,
    preprocess_batch,
    preprocess_image,
    resize_batch,
)
from coolcore.errors import ImageError, UsageError

RNG = np.random.default_rng(7)
E = np.e


def _pil_resize(x: np.ndarray, size: int) -> np.ndarray:
    """Pillow's antialiased bilinear resampling: an independent implementation."""
    img = Image.fromarray(np.asarray(x, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))


def _reference(image: np.ndarray, crop: int, size: int | None = None, lo=None, hi=None):
    """METHOD.md's steps written out plainly with NumPy and Pillow, one image."""
    h, w = image.shape
    top, left = (h - crop) // 2, (w - crop) // 2
    x = image[top : top + crop, left : left + crop].astype(np.float64)
    floor = min(v for v in x.ravel() if np.isfinite(v) and v > 0)
    x = np.where(np.isfinite(x), np.maximum(x, floor), floor)
    logs = np.log(x)
    lo = logs.min() if lo is None else lo
    hi = logs.max() if hi is None else hi
    norm = np.zeros_like(logs) if hi == lo else np.clip((logs - lo) / (hi - lo), 0, 1)
    return norm if size is None else _pil_resize(norm, size)


# ------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"crop": 0}, "crop=0"),
        ({"crop": 2.5}, "crop=2.5"),
        ({"crop": True}, "crop=True"),
        ({"size": 1}, "size=1"),
        ({"size": "64"}, "size='64'"),
        ({"scaling": "global"}, "scaling='global'"),
        ({"center": "middle"}, "center='middle'"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(UsageError, match=field.replace("(", r"\(")):
        PreprocessConfig(**kwargs)


def test_config_defaults():
    cfg = PreprocessConfig()
    assert (cfg.crop, cfg.size, cfg.scaling, cfg.center, cfg.output_size) == (
        256,
        None,
        "image",
        "image",
        256,
    )
    assert PreprocessConfig(crop=np.int64(64), size=32).to_dict()["crop"] == 64


# ---------------------------------------------------------- single images
def test_hand_computed_crop_log_minmax():
    # log values 0..35 in a 6 x 6 image; the central 4 x 4 is rows/cols 1..4
    logs = np.arange(36.0).reshape(6, 6)
    out = preprocess_image(np.exp(logs), PreprocessConfig(crop=4))
    inner = logs[1:5, 1:5]  # 7 .. 28
    np.testing.assert_allclose(out, (inner - 7.0) / 21.0, atol=1e-6)
    assert out.dtype == np.float32 and out.shape == (4, 4)


def test_odd_margins_take_the_floor():
    # 7 x 6 map, crop 4: top = (7 - 4) // 2 = 1, left = (6 - 4) // 2 = 1
    img = np.arange(42.0).reshape(7, 6) + 1
    np.testing.assert_array_equal(crop_image(img, 4), img[1:5, 1:5])


def test_floor_for_zeros_negatives_and_nonfinite():
    img = np.array(
        [
            [0.0, -5.0, np.nan],
            [E**1, E**2, E**4],
            [np.inf, E**3, E**1],
        ]
    )
    out = preprocess_image(img, PreprocessConfig(crop=3))
    # floor = e (smallest positive finite): log = [[1,1,1],[1,2,4],[1,3,1]] -> (x - 1) / 3
    expected = (np.array([[1, 1, 1], [1, 2, 4], [1, 3, 1]], float) - 1) / 3
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    "img",
    [np.full((5, 5), 3.7), np.pad([[2.0]], 2)],
    ids=["constant", "one-positive-pixel"],
)
def test_constant_image_becomes_zeros(img):
    out = preprocess_image(img, PreprocessConfig(crop=5))
    np.testing.assert_array_equal(out, np.zeros((5, 5), np.float32))


def test_errors_name_the_file_shape_and_crop():
    with pytest.raises(ImageError) as info:
        preprocess_image(np.ones((100, 120)), PreprocessConfig(crop=128), name="maps/x.fits")
    msg = str(info.value)
    assert msg.startswith("maps/x.fits: ") and "(100, 120)" in msg and "128" in msg
    with pytest.raises(ImageError, match="^y.npy: no finite positive pixel"):
        preprocess_image(np.full((8, 8), np.nan), PreprocessConfig(crop=4), name="y.npy")
    outside = np.zeros((8, 8))
    outside[0, 0] = 1.0  # the only positive pixel lies outside the central crop
    with pytest.raises(ImageError, match="^z.npy: no finite positive pixel in the central crop"):
        preprocess_image(outside, PreprocessConfig(crop=4), name="z.npy")


@pytest.mark.parametrize(("n", "crop", "size"), [(40, 32, 16), (40, 30, 12), (20, 16, 24)])
def test_matches_independent_reference_with_resize(n, crop, size):
    img = np.exp(RNG.normal(size=(n, n)) * 2)
    img[0, :] = np.nan
    img[5, 5] = 0.0
    out = preprocess_image(img, PreprocessConfig(crop=crop, size=size))
    ref = _reference(img, crop, size)
    assert out.shape == (size, size) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-6)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_resize_weights_by_hand():
    # halving: interior output j averages inputs 2j-1..2j+2 with weights (1, 3, 3, 1) / 8;
    # at the border the out-of-image weight is dropped and the rest renormalised
    v = np.arange(8.0) ** 2
    out = resize_batch(np.tile(v, (8, 1))[None], 4)[0]
    np.testing.assert_allclose(out[3, 1], (v[1] + 3 * v[2] + 3 * v[3] + v[4]) / 8, rtol=1e-6)
    np.testing.assert_allclose(out[3, 0], (0.75 * v[0] + 0.75 * v[1] + 0.25 * v[2]) / 1.75)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    margin=st.integers(0, 9),
    crop=st.integers(2, 12),
)
def test_result_depends_only_on_the_crop(seed, margin, crop):
    rng = np.random.default_rng(seed)
    inner = rng.lognormal(size=(crop, crop)) * (rng.random((crop, crop)) > 0.2)
    inner.flat[0] = 1.0  # at least one positive pixel
    outer = rng.normal(size=(crop + 2 * margin, crop + 2 * margin)) * 100
    outer[margin : margin + crop, margin : margin + crop] = inner
    cfg = PreprocessConfig(crop=crop)
    np.testing.assert_array_equal(preprocess_image(outer, cfg), preprocess_image(inner, cfg))


def test_center_peak():
    img = np.ones((20, 30))
    img[4, 25] = 50.0  # peak near the top-right corner
    img[12, 6] = 9.0
    out = crop_image(img, 6, "peak")
    # centred on (4, 25): rows 1..6, columns 22..27
    np.testing.assert_array_equal(out, img[1:7, 22:28])
    img[1, 28] = 1000.0  # a peak at the edge: the window is moved inside the image
    np.testing.assert_array_equal(crop_image(img, 6, "peak"), img[0:6, 24:30])
    # a broad core (sigma 3 px, peak 10) beats a single hot pixel of 60 after smoothing
    yy, xx = np.mgrid[:20, :30]
    img = 1 + 10 * np.exp(-((yy - 12) ** 2 + (xx - 8) ** 2) / (2 * 3.0**2))
    img[4, 25] = 60.0
    np.testing.assert_array_equal(crop_image(img, 6, "peak"), img[9:15, 5:11])


# ------------------------------------------------------- batches, scaling
def test_batch_mixed_shapes_equals_reference():
    imgs = [np.exp(RNG.normal(size=s)) for s in [(20, 20), (24, 21), (16, 30)]]
    out = preprocess_batch(imgs, PreprocessConfig(crop=16, size=8))
    for o, im in zip(out, imgs, strict=True):
        np.testing.assert_allclose(o, _reference(im, 16, 8), atol=2e-6)
    stack = np.stack([np.exp(RNG.normal(size=(18, 18))) for _ in range(5)])
    fast = preprocess_batch(stack, PreprocessConfig(crop=12))
    for o, im in zip(fast, stack, strict=True):
        np.testing.assert_allclose(o, _reference(im, 12), atol=1e-6)


def test_dataset_scaling_by_hand():
    # log ranges [0, 2] and [1, 4]: the data set's range is [0, 4]
    a = np.exp(np.array([[0.0, 1.0], [2.0, 0.5]]))
    b = np.exp(np.array([[1.0, 4.0], [3.0, 2.0]]))
    cfg = PreprocessConfig(crop=2, scaling="dataset")
    out = preprocess_batch(np.stack([a, b]), cfg)
    np.testing.assert_allclose(out[0], [[0.0, 0.25], [0.5, 0.125]], atol=1e-6)
    np.testing.assert_allclose(out[1], [[0.25, 1.0], [0.75, 0.5]], atol=1e-6)
    # a saved range for new images: values outside it are clipped
    new = preprocess_image(b, cfg, log_range=(2.0, 3.0))
    np.testing.assert_allclose(new, [[0.0, 1.0], [1.0, 0.0]], atol=1e-6)
    with pytest.raises(UsageError, match="log_range"):
        preprocess_image(b, cfg, log_range=(3.0, np.nan))


# ------------------------------------------------------------------ dataset
def _make_data(folder: Path, n: int = 6, shape=(24, 24)) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "maps").mkdir(exist_ok=True)
    images = []
    rows = []
    for i in range(n):
        img = np.exp(RNG.normal(size=shape) * 2).astype(np.float32)
        img[:, 0] = np.nan  # NaN border
        fits.PrimaryHDU(img.astype(">f4")).writeto(folder / "maps" / f"m{i}.fits", overwrite=True)
        images.append(img)
        rows.append(
            {
                "image_id": f"{i:03d}",
                "cluster_id": f"c{i // 2}",
                "file": f"maps/m{i}.fits",
                "label": ["CC", "WCC", "NCC"][(i // 2) % 3],  # one label per cluster
            }
        )
    pd.DataFrame(rows).to_csv(folder / "catalog.csv", index=False)
    return images


def _count_reads(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = cimages.read_image

    def counting(path, **kwargs):
        calls.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(cimages, "read_image", counting)
    return calls


def _forbid_reads(monkeypatch) -> None:
    def fail(path, **kwargs):
        raise AssertionError(f"read_image({path}) called on a cache hit")

    monkeypatch.setattr(cimages, "read_image", fail)


def test_load_dataset_values_and_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("COOLCORE_CACHE_DIR", str(tmp_path / "cache"))
    images = _make_data(tmp_path / "d")
    cfg = PreprocessConfig(crop=16, size=8)
    ds = load_dataset(tmp_path / "d", cfg, progress=False)
    assert ds.images.shape == (6, 8, 8) and ds.images.dtype == np.float32
    assert ds.images.flags.c_contiguous
    for out, img in zip(ds.images, images, strict=True):
        np.testing.assert_allclose(out, _reference(img, 16, 8), atol=2e-6)
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.image_ids.tolist() == ["000", "001", "002", "003", "004", "005"]
    assert ds.cluster_ids.tolist() == ["c0", "c0", "c1", "c1", "c2", "c2"]
    assert ds.log_range is None and len(ds) == 6 and len(ds.cache_key) == 64
    cache = tmp_path / "cache"
    assert [p.suffix for p in cache.iterdir()] == [".npz"]  # no temporary file left
    assert ds.cache_path is not None and ds.cache_path.parent == cache


def test_load_dataset_dataset_scaling(tmp_path):
    images = _make_data(tmp_path / "d", n=4)
    ds = load_dataset(tmp_path / "d" / "catalog.csv", PreprocessConfig(crop=16, scaling="dataset"))
    crops = [np.log(np.where(np.isfinite(c := im[4:20, 4:20]), c, np.inf)) for im in images]
    lo = min(c.min() for c in crops)
    hi = max(c[np.isfinite(c)].max() for c in crops)
    assert ds.log_range == pytest.approx((lo, hi), rel=1e-12)
    for out, img in zip(ds.images, images, strict=True):
        np.testing.assert_allclose(out, _reference(img, 16, lo=lo, hi=hi), atol=2e-6)


def test_cache_hit_does_not_read_images(tmp_path, monkeypatch):
    _make_data(tmp_path / "d")
    cfg = PreprocessConfig(crop=16, size=8)
    first = load_dataset(tmp_path / "d", cfg, progress=False)
    _forbid_reads(monkeypatch)
    second = load_dataset(tmp_path / "d", cfg, progress=False)
    np.testing.assert_array_equal(first.images, second.images)
    assert first.cache_key == second.cache_key
    # touching a file (new mtime, same bytes) or moving the folder keeps the cache
    (tmp_path / "d" / "maps" / "m0.fits").touch()
    shutil.copytree(tmp_path / "d", tmp_path / "moved")
    moved = load_dataset(tmp_path / "moved", cfg, progress=False)
    np.testing.assert_array_equal(first.images, moved.images)


def test_labels_are_reread_on_a_cache_hit(tmp_path, monkeypatch):
    _make_data(tmp_path / "d")
    cfg = PreprocessConfig(crop=16)
    load_dataset(tmp_path / "d", cfg, progress=False)
    catalog = pd.read_csv(tmp_path / "d" / "catalog.csv", dtype=str)
    catalog["label"] = "NCC"
    catalog.to_csv(tmp_path / "d" / "catalog.csv", index=False)
    _forbid_reads(monkeypatch)
    assert load_dataset(tmp_path / "d", cfg, progress=False).labels.tolist() == [2] * 6


def test_cache_invalidated_by_content_change(tmp_path, monkeypatch):
    _make_data(tmp_path / "d")
    cfg = PreprocessConfig(crop=16, size=8)
    first = load_dataset(tmp_path / "d", cfg, progress=False)
    path = tmp_path / "d" / "maps" / "m3.fits"
    size = path.stat().st_size
    new = np.exp(RNG.normal(size=(24, 24))).astype(np.float32)
    fits.PrimaryHDU(new).writeto(path, overwrite=True)
    assert path.stat().st_size == size  # same size, different content
    calls = _count_reads(monkeypatch)
    second = load_dataset(tmp_path / "d", cfg, progress=False)
    assert len(calls) == 6 and second.cache_key != first.cache_key
    np.testing.assert_allclose(second.images[3], _reference(new, 16, 8), atol=2e-6)
    np.testing.assert_array_equal(second.images[:3], first.images[:3])


@pytest.mark.parametrize(
    "changed",
    [
        PreprocessConfig(crop=16, size=4),
        PreprocessConfig(crop=12, size=8),
        PreprocessConfig(crop=16, size=8, scaling="dataset"),
        PreprocessConfig(crop=16, size=8, center="peak"),
    ],
)
def test_cache_invalidated_by_parameters(tmp_path, monkeypatch, changed):
    _make_data(tmp_path / "d", n=3)
    cache = tmp_path / "cache"
    load_dataset(tmp_path / "d", PreprocessConfig(crop=16, size=8), cache_dir=cache, progress=False)
    calls = _count_reads(monkeypatch)
    ds = load_dataset(tmp_path / "d", changed, cache_dir=cache, progress=False)
    assert len(calls) == 3 and ds.images.shape[1] == changed.output_size
    assert len(list(cache.glob("*.npz"))) == 2


def test_unwritable_cache_dir_warns_and_continues(tmp_path):
    _make_data(tmp_path / "d", n=2)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    with pytest.warns(UserWarning, match="cannot write the preprocessing cache"):
        ds = load_dataset(
            tmp_path / "d", PreprocessConfig(crop=16), cache_dir=blocker / "c", progress=False
        )
    assert ds.images.shape == (2, 16, 16) and ds.cache_path is None


def test_corrupt_cache_is_rebuilt(tmp_path):
    _make_data(tmp_path / "d", n=2)
    cfg = PreprocessConfig(crop=16)
    ds = load_dataset(tmp_path / "d", cfg, progress=False)
    ds.cache_path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_dataset(tmp_path / "d", cfg, progress=False)
    np.testing.assert_array_equal(ds.images, again.images)


def test_load_dataset_errors_name_the_file(tmp_path):
    _make_data(tmp_path / "d", n=2)
    small = tmp_path / "d" / "maps" / "m1.fits"
    fits.PrimaryHDU(np.ones((8, 8), np.float32)).writeto(small, overwrite=True)
    with pytest.raises(ImageError, match=f"^{small.resolve()}: image of shape \\(8, 8\\)"):
        load_dataset(tmp_path / "d", PreprocessConfig(crop=16), progress=False)


def test_unlabelled_catalogue_for_prediction(tmp_path):
    _make_data(tmp_path / "d", n=2)
    cat = pd.read_csv(tmp_path / "d" / "catalog.csv", dtype=str).drop(columns="label")
    cat.to_csv(tmp_path / "d" / "catalog.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset(
            tmp_path / "d", PreprocessConfig(crop=16), require_labels=False, use_cache=False
        )
    assert ds.labels.tolist() == [-1, -1] and ds.cache_path is None
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["catalog.csv", "maps"]


def test_threaded_reading_leaves_warning_state_alone(tmp_path):
    images = _make_data(tmp_path / "d", n=5)
    filters = list(warnings.filters)
    ds = load_dataset(tmp_path / "d", PreprocessConfig(crop=16), workers=3, use_cache=False)
    assert warnings.filters == filters
    for out, img in zip(ds.images, images, strict=True):
        np.testing.assert_allclose(out, _reference(img, 16), atol=2e-6)


# ------------------------------------------------------------ where the cache lives
def _tree(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file and folder under ``folder`` (folders: b"")."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(folder.rglob("*"))
    }


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COOLCORE_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "own"
    monkeypatch.delenv("COOLCORE_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "coolcore"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # ignored, as the XDG rules say
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "coolcore"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "coolcore"


def test_read_only_data_folder_is_used_and_left_unchanged(tmp_path, monkeypatch):
    """A cv-style load (crop, resize, data-set scaling; a miss, then a hit) never writes
    into the data folder: the cache goes to the cache folder."""
    images = _make_data(tmp_path / "d", n=4)
    cache = tmp_path / "cache"
    monkeypatch.setenv("COOLCORE_CACHE_DIR", str(cache))
    data = tmp_path / "d"
    before = _tree(data)
    modes = {p: p.stat().st_mode for p in [data, *data.rglob("*")]}
    for p in modes:
        p.chmod(p.stat().st_mode & ~0o222)  # read-only (root ignores it; the digest does not)
    try:
        cfg = PreprocessConfig(crop=16, size=8, scaling="dataset")
        first = load_dataset(data, cfg, progress=False)
        _forbid_reads(monkeypatch)
        second = load_dataset(data, cfg, progress=False)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert _tree(data) == before
    assert first.cache_path is not None and first.cache_path.parent == cache
    assert [p.suffix for p in cache.iterdir()] == [".npz"]
    np.testing.assert_array_equal(first.images, second.images)
    crops = [np.log(np.where(np.isfinite(c := im[4:20, 4:20]), c, np.inf)) for im in images]
    lo = min(c.min() for c in crops)
    hi = max(c[np.isfinite(c)].max() for c in crops)
    assert first.log_range == pytest.approx((lo, hi), rel=1e-6)
    for out, img in zip(first.images, images, strict=True):
        np.testing.assert_allclose(out, _reference(img, 16, 8, lo=lo, hi=hi), atol=2e-6)


def test_cache_dir_inside_the_data_folder_is_refused(tmp_path, monkeypatch):
    _make_data(tmp_path / "d", n=2)
    before = _tree(tmp_path / "d")
    with pytest.raises(UsageError, match="lies inside the data folder"):
        load_dataset(
            tmp_path / "d",
            PreprocessConfig(crop=16),
            cache_dir=tmp_path / "d" / "c",
            progress=False,
        )
    # the default folder inside the data (a sample in the user's cache): no cache, a warning
    monkeypatch.setenv("COOLCORE_CACHE_DIR", str(tmp_path / "d" / "maps"))
    with pytest.warns(UserWarning, match="continuing without the preprocessing cache"):
        ds = load_dataset(tmp_path / "d", PreprocessConfig(crop=16), progress=False)
    assert ds.cache_path is None and _tree(tmp_path / "d") == before
