"""Properties that hold for every input (issue 6, item 4), checked with hypothesis.

* Preprocessing: any finite map of any numeric type and any shape at least the
  crop gives float32 values in [0, 1] of the configured size, or, exactly when
  its central crop holds no positive pixel, a one-line ImageError naming it.
* Crops and boxes: the preprocessing window and the attention box always lie
  inside the image and are never empty; the box holds every pixel of its mask
  (brute-force bounding box); the resized crop stays within the image's range.
* Losses: finite, with finite gradients, for batches of all-zero maps, of a
  single class, and of a single map, for every network variant.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from coolcore.data.transforms import (
    PreprocessConfig,
    crop_image,
    preprocess_batch,
    preprocess_image,
)
from coolcore.errors import ImageError
from coolcore.nn.losses import class_weights, total_loss
from coolcore.nn.masks import crop_and_resize, mask_boxes
from coolcore.nn.model import MultiBranchAttentionNet

NUMERIC_DTYPES = [
    np.dtype(t)
    for t in (
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
]
FAST = settings(max_examples=100, deadline=None)
SLOW = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def finite_maps(draw, min_side: int, max_extra: int = 12, dtypes=NUMERIC_DTYPES):
    """A finite 2-D map: any numeric dtype, sides in [min_side, min_side + max_extra]."""
    dtype = draw(st.sampled_from(dtypes))
    shape = (
        draw(st.integers(min_side, min_side + max_extra)),
        draw(st.integers(min_side, min_side + max_extra)),
    )
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    else:
        elements = hnp.from_dtype(dtype)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _central(image: np.ndarray, crop: int) -> np.ndarray:
    h, w = image.shape
    top, left = (h - crop) // 2, (w - crop) // 2
    return image[top : top + crop, left : left + crop]


# --------------------------------------------------------------------------- preprocessing
@FAST
@given(
    data=st.data(),
    crop=st.integers(2, 12),
    scaling=st.sampled_from(["image", "dataset"]),
    shrink=st.booleans(),
)
def test_preprocessing_maps_any_finite_map_into_unit_interval(data, crop, scaling, shrink):
    image = data.draw(finite_maps(crop))
    size = max(2, crop // 2) if shrink else None
    cfg = PreprocessConfig(crop=crop, size=size, scaling=scaling)
    has_positive = bool((_central(image, crop).astype(np.float64) > 0).any())
    if not has_positive:
        with pytest.raises(ImageError, match="^m.fits: no finite positive pixel"):
            preprocess_image(image, cfg, name="m.fits")
        return
    out = preprocess_image(image, cfg, name="m.fits")
    s = size or crop
    assert out.shape == (s, s) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    # per-image scaling spans the whole interval whenever the crop is not constant
    # (before an optional resize, which may average the extremes away)
    floor = _central(image, crop).astype(np.float64)
    floor = np.maximum(floor, floor[floor > 0].min())
    if scaling == "image" and size is None and np.ptp(np.log(floor)) > 0:
        assert out.min() == 0.0 and out.max() == 1.0


@FAST
@given(
    maps=st.lists(finite_maps(6, dtypes=[np.dtype("float64"), np.dtype("uint16")]), max_size=4),
    crop=st.integers(2, 6),
    log_range=st.one_of(
        st.none(),
        st.tuples(st.floats(-50, 50), st.floats(0, 50)).map(lambda t: (t[0], t[0] + t[1])),
    ),
)
def test_batches_of_mixed_shapes_with_a_dataset_range_stay_in_unit_interval(maps, crop, log_range):
    """A list of maps of different shapes, scaled with a data-set range (as for new maps)."""
    maps = [m for m in maps if (_central(m, crop).astype(float) > 0).any()]
    cfg = PreprocessConfig(crop=crop, scaling="dataset")
    out = preprocess_batch(maps, cfg, log_range=log_range)
    assert out.shape == (len(maps), crop, crop) and out.dtype == np.float32
    assert ((out >= 0) & (out <= 1)).all()


@FAST
@given(
    data=st.data(),
    crop=st.integers(1, 16),
    center=st.sampled_from(["image", "peak"]),
)
def test_preprocessing_window_lies_inside_and_is_never_empty(data, crop, center):
    image = data.draw(finite_maps(crop, max_extra=20, dtypes=[np.dtype("float64")]))
    window = crop_image(image, crop, center)
    assert window.shape == (crop, crop)
    # the window is a view into the image: recover its offset from the addresses
    offset = window.__array_interface__["data"][0] - image.__array_interface__["data"][0]
    top, left = divmod(offset // image.itemsize, image.shape[1])
    assert 0 <= top <= image.shape[0] - crop and 0 <= left <= image.shape[1] - crop
    np.testing.assert_array_equal(window, image[top : top + crop, left : left + crop])
    if center == "image":
        assert (top, left) == ((image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2)


# --------------------------------------------------------------------------- boxes and crops
@FAST
@given(
    masks=hnp.arrays(
        np.bool_,
        st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24)),
    )
)
def test_mask_box_is_the_bounding_box_inside_the_image(masks):
    boxes = mask_boxes(torch.from_numpy(masks)).numpy()
    b, h, w = masks.shape
    assert boxes.shape == (b, 4)
    x0, y0, x1, y1 = boxes.T
    assert ((0 <= x0) & (x0 <= x1) & (x1 <= w - 1)).all()
    assert ((0 <= y0) & (y0 <= y1) & (y1 <= h - 1)).all()
    for i in range(b):  # brute force: np.nonzero's extremes
        ys, xs = np.nonzero(masks[i])
        expected = (xs.min(), ys.min(), xs.max(), ys.max()) if len(xs) else (0, 0, w - 1, h - 1)
        assert tuple(boxes[i]) == expected


@FAST
@given(
    data=st.data(),
    size=st.tuples(st.integers(2, 40), st.integers(2, 40)),
    out=st.integers(1, 48),
)
def test_crop_of_any_box_has_the_output_size_and_stays_in_range(data, size, out):
    h, w = size
    images = data.draw(hnp.arrays(np.float32, (2, 1, h, w), elements=st.floats(0, 1, width=32)))
    xs = sorted(data.draw(st.lists(st.integers(0, w - 1), min_size=2, max_size=2)))
    ys = sorted(data.draw(st.lists(st.integers(0, h - 1), min_size=2, max_size=2)))
    boxes = torch.tensor([[xs[0], ys[0], xs[1], ys[1]], [0, 0, w - 1, h - 1]])
    crop = crop_and_resize(torch.from_numpy(images), boxes, out).numpy()
    assert crop.shape == (2, 1, out, out) and np.isfinite(crop).all()
    # Bilinear samples and their averages are convex combinations of pixels; a sample
    # point lies inside the box's continuous extent, so its neighbours are the box's
    # pixels and, between the outer pixel centres and the box edge, the next ones out:
    # the crop stays within the range of the box grown by one pixel (up to float32
    # rounding of roi_align's sums, about n_samples * 6e-8).
    tol = 1e-5
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        inside = images[i, 0, max(y0 - 1, 0) : y1 + 2, max(x0 - 1, 0) : x1 + 2]
        assert crop[i].min() >= inside.min() - tol and crop[i].max() <= inside.max() + tol


# --------------------------------------------------------------------------- the network
VARIANTS = ("baseline", "att", "gauss", "att+gauss", "all")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core CPU two threads are ~20x slower here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nets(one_thread) -> dict[str, MultiBranchAttentionNet]:
    torch.manual_seed(0)
    out = {v: MultiBranchAttentionNet(v, aux_size=64) for v in VARIANTS}
    out["all (intersection)"] = MultiBranchAttentionNet("all", combine="intersection", aux_size=64)
    return out


@st.composite
def batches(draw):
    """(x, y): all-zero maps, constant maps or random maps; one class or mixed; 1 to 4 maps."""
    n = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["zeros", "constant", "random", "spike"]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if kind == "zeros":
        x = torch.zeros(n, 1, 64, 64)
    elif kind == "constant":
        x = torch.full((n, 1, 64, 64), draw(st.floats(0, 1)))
    elif kind == "spike":  # one bright pixel anywhere, e.g. at the border
        x = torch.zeros(n, 1, 64, 64)
        x[:, 0, draw(st.integers(0, 63)), draw(st.integers(0, 63))] = 1.0
    else:
        x = torch.rand(n, 1, 64, 64, generator=gen)
    if draw(st.booleans()):  # a single class
        y = torch.full((n,), draw(st.integers(0, 2)), dtype=torch.long)
    else:
        y = torch.randint(0, 3, (n,), generator=gen)
    return x, y


@SLOW
@given(batch=batches(), variant=st.sampled_from([*VARIANTS, "all (intersection)"]))
def test_losses_finite_and_boxes_inside_for_degenerate_batches(nets, batch, variant):
    x, y = batch
    net = nets[variant].train()
    weight = class_weights(y, num_classes=3)  # absent classes get weight 0
    out = net(x)
    loss, parts = total_loss(out, y, weight, (0.8, 0.1, 0.1, 0.1))
    assert torch.isfinite(loss), (variant, parts)
    net.zero_grad()
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if out.boxes is not None:
        x0, y0, x1, y1 = out.boxes.T
        assert ((0 <= x0) & (x0 <= x1) & (x1 <= 63)).all()
        assert ((0 <= y0) & (y0 <= y1) & (y1 <= 63)).all()
    # the same batch in eval mode (as predicted)
    with torch.no_grad():
        logits = net.eval()(x).logits
    assert torch.isfinite(logits).all()
    p = logits.softmax(1)
    torch.testing.assert_close(p.sum(1), torch.ones(len(x)))


def test_one_class_weights_are_finite():
    """A batch (or fold) holding one class only: weights 1/sqrt(n) for it, 0 for the others."""
    w = class_weights(torch.tensor([2, 2, 2, 2]), num_classes=3)
    torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 0.5]))


@settings(deadline=None)
@given(st.integers(1, 40), st.integers(2, 64), st.integers(1, 8))
def test_last_training_batch_never_holds_a_single_map(n, batch, world):
    """drop_single_last_batch: no process is left with a last batch of one map,
    and at most one map per process and epoch sits out."""
    from coolcore.train.loaders import drop_single_last_batch

    per_process = -(-n // world)  # DistributedSampler pads every process to this
    kept = per_process - (1 if drop_single_last_batch(n, batch, world) else 0)
    sizes = [min(batch, kept - start) for start in range(0, kept, batch)]
    assert 1 not in sizes or sizes == [1] == [per_process]


@settings(deadline=None, max_examples=30)
@given(st.integers(2, 30), st.integers(1, 7), st.data())
def test_loader_over_rows_gives_the_copied_subset(n, batch, data):
    """make_loader(images, labels, rows=R) yields exactly the batches of a loader over
    the copies images[R], labels[R], in the same shuffled order (no copy is made)."""
    from coolcore.train.loaders import make_loader

    rows = np.asarray(
        data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    )
    images = torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 2, 2)
    labels = torch.arange(n) % 3
    seed = data.draw(st.integers(0, 3))
    for shuffle_seed in (None, seed):
        a = make_loader(images, labels, batch, shuffle_seed=shuffle_seed, rows=rows)
        b = make_loader(images[rows], labels[rows], batch, shuffle_seed=shuffle_seed)
        assert len(a.dataset) == len(rows)
        for epoch in (0, 1):
            if shuffle_seed is not None:
                a.sampler.set_epoch(epoch)
                b.sampler.set_epoch(epoch)
            got, want = list(a), list(b)
            assert len(got) == len(want)
            for (xa, ya), (xb, yb) in zip(got, want, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
