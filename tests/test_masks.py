"""Masks: each function against an independent reference (loops, NumPy, SciPy, hand values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from torchvision.models import resnet18

from coolcore.errors import UsageError
from coolcore.nn.masks import (
    FLAT_RTOL,
    brightest_pixel,
    class_activation_map,
    crop_and_resize,
    gaussian_heatmap,
    mask_boxes,
    minmax_normalise,
    threshold_profiles,
    upsample_cam,
)


# --------------------------------------------------------------------------- CAM
def test_cam_matches_loops_over_torchvision_resnet18_layer4() -> None:
    torch.manual_seed(0)
    net = resnet18(weights=None).eval()
    captured: dict[str, torch.Tensor] = {}
    net.layer4.register_forward_hook(lambda _m, _i, out: captured.__setitem__("M", out))
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        logits = net(x)
    features = captured["M"]  # (3, 512, 3, 3)
    classes = torch.tensor([5, 999, 0])

    cam = class_activation_map(features, net.fc.weight.detach(), classes)

    m = features.double().numpy()
    w = net.fc.weight.detach().double().numpy()
    expected = np.zeros((3, 3, 3))
    for b in range(3):
        for y in range(3):
            for x_ in range(3):
                expected[b, y, x_] = sum(w[classes[b], k] * m[b, k, y, x_] for k in range(512))
    assert cam.shape == (3, 3, 3)
    np.testing.assert_allclose(cam.double().numpy(), expected, rtol=1e-5, atol=1e-5)

    # Paper eq. 1: the spatial mean of A_c plus the bias is the class score S_c.
    score = cam.mean(dim=(1, 2)) + net.fc.bias.detach()[classes]
    np.testing.assert_allclose(score.numpy(), logits[torch.arange(3), classes].numpy(), atol=1e-4)


def test_cam_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="fc_weight"):
        class_activation_map(torch.rand(2, 8, 2, 2), torch.rand(3, 7), torch.tensor([0, 1]))


# ---------------------------------------------------------------------- Gaussian
def test_gaussian_one_sigma_peak_and_scipy_density() -> None:
    height, width, lam = 40, 50, 25.0  # sigma_x = 50 / 5 = 10, sigma_y = 40 / 5 = 8
    images = torch.rand(1, height, width) * 0.5
    images[0, 20, 10] = 1.0  # brightest pixel: row 20, column 10
    heat = gaussian_heatmap(images, lam)[0]

    assert heat[20, 10].item() == 1.0
    assert heat.max().item() == 1.0
    assert heat[20, 20].item() == pytest.approx(math.exp(-0.5), rel=1e-6)  # x + sigma_x
    assert heat[20, 0].item() == pytest.approx(math.exp(-0.5), rel=1e-6)  # x - sigma_x
    assert heat[28, 10].item() == pytest.approx(math.exp(-0.5), rel=1e-6)  # y + sigma_y
    assert heat[28, 20].item() == pytest.approx(math.exp(-1.0), rel=1e-6)  # both

    # The paper's density (eq. 5) divided by its peak, from SciPy.
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    density = multivariate_normal(mean=[10, 20], cov=np.diag([10.0**2, 8.0**2])).pdf(
        np.stack([cols, rows], axis=-1)
    )
    np.testing.assert_allclose(heat.numpy(), density / density.max(), rtol=1e-5, atol=1e-7)


def test_gaussian_ties_go_to_first_pixel_in_row_major_order() -> None:
    images = torch.zeros(2, 8, 8)
    images[0, 5, 1] = images[0, 2, 6] = images[0, 2, 7] = 3.0  # first row-major: (row 2, col 6)
    images[1] = 1.0  # all tied: (0, 0)
    x, y = brightest_pixel(images)
    assert x.tolist() == [6, 0] and y.tolist() == [2, 0]
    heat = gaussian_heatmap(images, 25.0)
    assert heat[0, 2, 6] == 1.0 and heat[1, 0, 0] == 1.0
    assert heat[0, 5, 1] < 1.0


def test_gaussian_is_batched_and_smoothing_ignores_a_hot_pixel() -> None:
    images = torch.zeros(2, 32, 32)
    images[:, 10:15, 20:25] = 1.0  # broad blob centred at (row 12, col 22)
    images[:, 3, 3] = 2.0  # single hot pixel
    images[1, 3, 3] = 0.0
    assert brightest_pixel(images)[0].tolist() == [3, 20]
    x, y = brightest_pixel(images, smooth=5)
    assert x.tolist() == [22, 22] and y.tolist() == [12, 12]
    heat = gaussian_heatmap(images, 25.0, smooth=5)
    assert heat[0, 12, 22] == 1.0 and heat[1, 12, 22] == 1.0
    with pytest.raises(UsageError):
        brightest_pixel(images, smooth=4)
    with pytest.raises(UsageError):
        gaussian_heatmap(images, 0.0)


# ------------------------------------------------------------ normalise, upsample
def test_minmax_normalise_against_numpy_and_constant_map() -> None:
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(3, 5, 4))
    maps[2] = 7.0
    out = minmax_normalise(torch.from_numpy(maps)).numpy()
    for i in range(2):
        ref = (maps[i] - maps[i].min()) / (maps[i].max() - maps[i].min())
        np.testing.assert_allclose(out[i], ref, rtol=1e-12)
    assert np.all(out[2] == 0.0)


def test_nearly_flat_maps_normalise_to_zero_and_give_no_mask() -> None:
    """Rounding noise (relative 1e-9 .. 1e-6) is not stretched to [0, 1]; a real range is."""
    rng = np.random.default_rng(4)
    base = np.array([1.5373, -0.02, 250.0])[:, None, None]
    noise = np.array([1e-9, 1e-7, 1e-6])[:, None, None]
    flat = base * (1 + noise * rng.uniform(-1, 1, size=(3, 6, 5)))
    assert np.all(np.ptp(flat, axis=(1, 2)) > 0)  # not constant: min-max alone would stretch it
    for dtype in (torch.float64, torch.float32):
        maps = torch.from_numpy(flat).to(dtype)
        assert torch.all(minmax_normalise(maps) == 0)
        rows, cols = threshold_profiles(maps, 0.7)
        assert not rows.any() and not cols.any()  # an empty mask: the whole-image box
        assert mask_boxes(minmax_normalise(maps) >= 0.7).tolist() == [[0, 0, 4, 5]] * 3
        rows, cols = threshold_profiles(maps, 0.0)
        assert rows.all() and cols.all()
    # a range of 100 FLAT_RTOL is a map: normalised exactly as NumPy does
    real = 1.5 * (1 + 100 * FLAT_RTOL * rng.uniform(-1, 1, size=(1, 6, 5)))
    ref = (real - real.min()) / (real.max() - real.min())
    np.testing.assert_allclose(minmax_normalise(torch.from_numpy(real)).numpy(), ref, rtol=1e-12)


def test_32px_input_gives_a_flat_cam_and_boxes_independent_of_the_batch() -> None:
    """A 1 x 1 CAM upsampled is flat: ``att`` crops the whole image, alone or in a batch."""
    from coolcore.nn.model import MultiBranchAttentionNet

    torch.manual_seed(0)
    net = MultiBranchAttentionNet("att").eval()
    x = torch.rand(8, 1, 32, 32)
    with torch.no_grad():
        together = net(x)
        alone = [net(x[i : i + 1]) for i in range(8)]
        ex = net.explain(x)
    assert together.cam.shape == (8, 1, 1)
    assert together.boxes.tolist() == [[0, 0, 31, 31]] * 8
    assert torch.equal(torch.cat([o.boxes for o in alone]), together.boxes)
    assert torch.all(ex.heat_cam == 0) and not ex.mask.any()
    assert ex.boxes.tolist() == [[0, 0, 31, 31]] * 8
    np.testing.assert_allclose(
        torch.cat([o.logits for o in alone]).numpy(), together.logits.numpy(), atol=1e-5
    )


def test_upsample_cam_bilinear_half_pixel_by_hand() -> None:
    # align_corners=False: output pixel i of 4 samples the 2-pixel source at
    # (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1].
    cam = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    out = upsample_cam(cam, 4)[0]
    t = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected = 2.0 * t[:, None] + t[None, :]  # the map is 2 * row + col
    torch.testing.assert_close(out, expected)
    assert upsample_cam(cam, (4, 6)).shape == (1, 4, 6)


# -------------------------------------------------------------------------- boxes
def test_mask_boxes_against_numpy_where() -> None:
    rng = np.random.default_rng(2)
    for height, width, density in [(7, 9, 0.05), (16, 16, 0.01), (5, 3, 0.5), (30, 20, 0.002)]:
        masks = rng.random((6, height, width)) < density
        masks[0] = False  # an empty mask
        boxes = mask_boxes(torch.from_numpy(masks)).numpy()
        for mask, box in zip(masks, boxes, strict=True):
            rows, cols = np.where(mask)
            if rows.size == 0:
                expected = [0, 0, width - 1, height - 1]
            else:
                expected = [cols.min(), rows.min(), cols.max(), rows.max()]
            assert box.tolist() == expected
    assert mask_boxes(torch.zeros(1, 4, 4, dtype=torch.bool)).dtype == torch.long


# --------------------------------------------------------------------------- crop
def _roi_reference(image: np.ndarray, box: tuple[int, int, int, int], out: int) -> np.ndarray:
    """Brute-force crop: average of bilinear samples on a regular grid in each output pixel.

    Box (x0, y0, x1, y1) inclusive covers [x0, x1 + 1) x [y0, y1 + 1); pixel i's
    centre is at i + 0.5; ceil(box / out) samples per axis; coordinates clamped.
    """
    x0, y0, x1, y1 = box
    height, width = image.shape
    bw, bh = (x1 + 1 - x0) / out, (y1 + 1 - y0) / out
    nx, ny = math.ceil(bw), math.ceil(bh)

    def sample(yc: float, xc: float) -> float:
        yc = min(max(yc, 0.0), height - 1.0)
        xc = min(max(xc, 0.0), width - 1.0)
        ya, xa = int(math.floor(yc)), int(math.floor(xc))
        yb, xb = min(ya + 1, height - 1), min(xa + 1, width - 1)
        fy, fx = yc - ya, xc - xa
        top = image[ya, xa] * (1 - fx) + image[ya, xb] * fx
        bottom = image[yb, xa] * (1 - fx) + image[yb, xb] * fx
        return top * (1 - fy) + bottom * fy

    result = np.zeros((out, out))
    for i in range(out):
        for j in range(out):
            values = [
                sample(y0 + (i + (a + 0.5) / ny) * bh - 0.5, x0 + (j + (b + 0.5) / nx) * bw - 0.5)
                for a in range(ny)
                for b in range(nx)
            ]
            result[i, j] = np.mean(values)
    return result


def test_crop_whole_image_box_is_identity() -> None:
    images = torch.rand(2, 3, 16, 16)
    boxes = torch.tensor([[0, 0, 15, 15]] * 2)
    torch.testing.assert_close(crop_and_resize(images, boxes, 16), images)


def test_crop_same_size_box_is_the_slice_batched() -> None:
    images = torch.rand(3, 2, 20, 24)
    boxes = torch.tensor([[3, 5, 10, 12], [16, 0, 23, 7], [0, 12, 7, 19]])  # all 8 x 8
    crops = crop_and_resize(images, boxes, 8)
    assert crops.shape == (3, 2, 8, 8)
    for b, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        torch.testing.assert_close(crops[b], images[b, :, y0 : y1 + 1, x0 : x1 + 1])


@pytest.mark.parametrize(
    ("box", "out"),
    [((2, 3, 5, 6), 8), ((1, 0, 10, 9), 4), ((0, 0, 11, 11), 5), ((4, 2, 8, 11), 6)],
)
def test_crop_resize_matches_brute_force_sampler(box: tuple[int, ...], out: int) -> None:
    rng = np.random.default_rng(3)
    image = rng.random((12, 12))
    crop = crop_and_resize(torch.from_numpy(image)[None, None], torch.tensor([box]), out)
    np.testing.assert_allclose(crop[0, 0].numpy(), _roi_reference(image, box, out), atol=1e-10)


def test_crop_gradient_reaches_images_not_boxes() -> None:
    images = torch.rand(2, 1, 10, 10, requires_grad=True)
    boxes = torch.tensor([[1, 1, 6, 6], [0, 2, 9, 9]], dtype=torch.float32, requires_grad=True)
    crop_and_resize(images, boxes, 7).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert boxes.grad is None
    # Pixels far outside box 0 get no gradient from it.
    assert images.grad[0, 0, 9, 9] == 0.0


def test_crop_keeps_reduced_precision_dtype() -> None:
    images = torch.rand(1, 1, 300, 300).to(torch.bfloat16)
    boxes = torch.tensor([[257, 257, 264, 264]])
    crop = crop_and_resize(images, boxes, 8)
    assert crop.dtype == torch.bfloat16
    torch.testing.assert_close(crop[0, 0], images[0, 0, 257:265, 257:265])
