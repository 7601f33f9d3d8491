"""Attention masks of the multi-branch network: CAM, Gaussian heat map, boxes, crops.

Everything here is pure PyTorch on batched tensors (no I/O, no Lightning, no
Python loop over the batch), so the same functions serve the network's forward
pass, the ``explain`` figures and the tests.

The pipeline of ``METHOD.md`` for a batch ``x`` of grey images (B, 1, H, W)::

    cam = class_activation_map(M, fc.weight, z_p.argmax(1))      # (B, h, w)
    h1 = minmax_normalise(upsample_cam(cam, (H, W)))             # (B, H, W)
    h2 = gaussian_heatmap(x[:, 0], lam)                          # (B, H, W)
    mask = (h1 >= tau1) | (h2 >= tau2)                           # union (default)
    boxes = mask_boxes(mask)                                     # (B, 4) long
    crop = crop_and_resize(x, boxes, aux_size)                   # (B, 1, s, s)

A flat map has no preferred place: a map whose range ``max - min`` is at most
:data:`FLAT_RTOL` times its largest absolute value (a constant map, or the
rounding noise of a 1 x 1 CAM, which a 32-pixel input gives, after bilinear
upsampling) is normalised to all zeros, never stretched to [0, 1].  Its
threshold mask ``h1 >= tau1`` is therefore empty for ``tau1 > 0`` (the whole
image for ``tau1 = 0``): a variant using only the CAM mask, or the intersection,
then crops the whole image (the empty-mask rule of :func:`mask_boxes`), and the
union reduces to the Gaussian mask.  The boxes, and so the predictions, do not
depend on which other maps share the batch.

Pixel coordinates follow the image-array convention: ``x`` is the column index
(0 .. W-1), ``y`` the row index (0 .. H-1), and pixel ``(x, y)`` covers the
continuous square ``[x, x + 1) x [y, y + 1)`` with its centre at
``(x + 0.5, y + 0.5)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from coolcore.errors import UsageError

__all__ = [
    "FLAT_RTOL",
    "brightest_pixel",
    "class_activation_map",
    "crop_and_resize",
    "gaussian_heatmap",
    "gaussian_profiles",
    "mask_boxes",
    "minmax_normalise",
    "profile_boxes",
    "threshold_profiles",
    "upsample_cam",
]


FLAT_RTOL = 1e-5
"""Relative range below which a map counts as flat (see the module docstring).

Float32 rounding of a constant map through bilinear upsampling is of order
1e-7 of its value; a real activation map varies by far more than 1e-5.
"""


def _flat_aware_span(low: Tensor, high: Tensor) -> Tensor:
    """``high - low``, set to 0 where the map is flat (range <= FLAT_RTOL * magnitude)."""
    span = high - low
    magnitude = torch.maximum(low.abs(), high.abs())
    return torch.where(span > FLAT_RTOL * magnitude, span, torch.zeros_like(span))


def class_activation_map(features: Tensor, fc_weight: Tensor, classes: Tensor) -> Tensor:
    """Class activation maps ``A_c(x, y) = sum_k w[c, k] M[k, y, x]`` (paper eq. 2).

    Parameters
    ----------
    features : Tensor
        Last-block feature maps ``M``, shape (B, K, h, w).
    fc_weight : Tensor
        Weight of the linear classifier that follows global average pooling,
        shape (C, K).  The bias is not used.
    classes : Tensor
        Long tensor (B,): the class whose map is wanted for each sample (the
        network passes the primary head's arg-max, never the label).

    Returns
    -------
    Tensor
        Raw maps (B, h, w): no bias, no ReLU, no normalisation.  Same dtype as
        ``features`` (after type promotion with ``fc_weight``).
    """
    if features.ndim != 4:
        raise ValueError(f"features must be (B, K, h, w), got shape {tuple(features.shape)}")
    if fc_weight.ndim != 2 or fc_weight.shape[1] != features.shape[1]:
        raise ValueError(
            f"fc_weight must be (C, {features.shape[1]}), got shape {tuple(fc_weight.shape)}"
        )
    if classes.shape != (features.shape[0],):
        raise ValueError(f"classes must be ({features.shape[0]},), got {tuple(classes.shape)}")
    w = fc_weight[classes.long()]  # (B, K): each sample's class row
    dtype = torch.promote_types(features.dtype, w.dtype)
    return torch.einsum("bkhw,bk->bhw", features.to(dtype), w.to(dtype))


def _smooth(images: Tensor, size: int) -> Tensor:
    """Box-filter (B, H, W) images with a ``size`` x ``size`` window, same shape out."""
    padded = images.unsqueeze(1)
    out = F.avg_pool2d(
        padded, kernel_size=size, stride=1, padding=size // 2, count_include_pad=False
    )
    return out.squeeze(1)


def brightest_pixel(images: Tensor, smooth: int = 0) -> tuple[Tensor, Tensor]:
    """Column and row index of each image's brightest pixel.

    Parameters
    ----------
    images : Tensor
        (B, H, W).
    smooth : int
        0 (default): the raw arg-max.  An odd size ``k >= 1`` first averages each
        pixel over the ``k`` x ``k`` window around it (a box filter; windows are
        clipped at the border, i.e. edge pixels average only the pixels that
        exist), which keeps a single hot pixel from capturing the centre.

    Returns
    -------
    (Tensor, Tensor)
        Long tensors (B,) with the column ``x`` and row ``y``.  Ties go to the
        first maximum in row-major order.
    """
    if images.ndim != 3:
        raise ValueError(f"images must be (B, H, W), got shape {tuple(images.shape)}")
    if smooth < 0 or (smooth > 0 and smooth % 2 == 0):
        raise UsageError(f"center smoothing must be 0 or an odd window size, got {smooth}")
    if smooth > 1:
        images = _smooth(images.float(), smooth)
    width = images.shape[2]
    # torch.argmax returns the first maximal index of the flattened (row-major) map.
    flat_index = images.flatten(1).argmax(dim=1)
    return flat_index % width, torch.div(flat_index, width, rounding_mode="floor")


def gaussian_profiles(images: Tensor, lam: float, smooth: int = 0) -> tuple[Tensor, Tensor]:
    """The two factors of the separable Gaussian heat map of :func:`gaussian_heatmap`.

    ``gaussian_heatmap(images, lam, smooth)`` is exactly
    ``rows[:, :, None] * cols[:, None, :]``.  Each factor reaches exactly 1 at
    the centre row / column, so the heat map's largest value along row ``y`` is
    exactly ``rows[:, y]`` (and along column ``x``, ``cols[:, x]``): a
    threshold's bounding box needs only these vectors (see
    :func:`profile_boxes`).

    Returns
    -------
    (Tensor, Tensor)
        float32 ``rows`` (B, H) = ``exp(-(y - mu_y)^2 / (2 sigma_y^2))`` and
        ``cols`` (B, W) = ``exp(-(x - mu_x)^2 / (2 sigma_x^2))``.
    """
    if not lam > 0:
        raise UsageError(f"lam (the Gaussian's lambda) must be > 0, got {lam}")
    mu_x, mu_y = brightest_pixel(images, smooth)
    height, width = images.shape[1:]
    sigma_x = width / math.sqrt(lam)
    sigma_y = height / math.sqrt(lam)
    cols = torch.arange(width, device=images.device, dtype=torch.float32)
    rows = torch.arange(height, device=images.device, dtype=torch.float32)
    dx2 = (cols[None, :] - mu_x[:, None].float()).square() / (2.0 * sigma_x**2)  # (B, W)
    dy2 = (rows[None, :] - mu_y[:, None].float()).square() / (2.0 * sigma_y**2)  # (B, H)
    return torch.exp(-dy2), torch.exp(-dx2)


def gaussian_heatmap(images: Tensor, lam: float, smooth: int = 0) -> Tensor:
    """Gaussian heat map ``H2`` centred on each image's brightest pixel (paper eqs. 5-6).

    ``H2(x, y) = exp(-((x - mu_x)^2 / (2 sigma_x^2) + (y - mu_y)^2 / (2 sigma_y^2)))``
    with ``sigma_x = W / sqrt(lam)`` and ``sigma_y = H / sqrt(lam)`` in pixels: the
    paper's bivariate normal density scaled to peak 1 (its normalisation to [0, 1]).

    Parameters
    ----------
    images : Tensor
        Preprocessed grey images (B, H, W).
    lam : float
        The paper's lambda (> 0); lambda = 25 gives sigma = W / 5.
    smooth : int
        Window of the box filter applied before the arg-max (0: none); see
        :func:`brightest_pixel`.  The heat map itself is never smoothed.

    Returns
    -------
    Tensor
        (B, H, W) float32 in (0, 1], exactly 1 at the centre pixel.
    """
    rows, cols = gaussian_profiles(images, lam, smooth)
    # Separable: exp(-(a + b)) = exp(-b) exp(-a) as an outer product per image.
    return rows[:, :, None] * cols[:, None, :]


def minmax_normalise(maps: Tensor) -> Tensor:
    """Scale each map of a batch to [0, 1]: ``(m - min) / (max - min)``.

    Parameters
    ----------
    maps : Tensor
        (B, ...) with any trailing shape; each ``maps[i]`` is normalised alone.

    Returns
    -------
    Tensor
        Same shape and dtype; a flat map (constant, or with a range of at most
        :data:`FLAT_RTOL` times its largest absolute value) becomes all zeros.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = _flat_aware_span(low, flat.max(dim=1, keepdim=True).values)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    out = torch.where(span > 0, (flat - low) / safe, torch.zeros_like(flat))
    return out.view_as(maps)


def threshold_profiles(maps: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """Which rows and columns of ``minmax_normalise(maps) >= tau`` hold a True pixel.

    The same as ``mask = minmax_normalise(maps) >= tau; mask.any(2), mask.any(1)``,
    without building the normalised map or the mask: the normalisation
    ``(m - min) / span`` is non-decreasing in ``m`` (also in floating point,
    where rounding is monotone), so a row holds a pixel at or above ``tau``
    exactly when its largest value, normalised the same way, does.

    Parameters
    ----------
    maps : Tensor
        (B, H, W).
    tau : float
        Threshold on the normalised map.

    Returns
    -------
    (Tensor, Tensor)
        Bool ``rows`` (B, H) and ``cols`` (B, W).
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    # Two passes over the maps: per-row minimum and maximum, per-column maximum;
    # the image's extremes are the extremes of the row extremes (exact).
    row_min, row_max = torch.aminmax(maps, dim=2)  # (B, H)
    col_max = maps.amax(dim=1)  # (B, W)
    low = row_min.amin(dim=1, keepdim=True)
    span = _flat_aware_span(low, row_max.amax(dim=1, keepdim=True))
    safe = torch.where(span > 0, span, torch.ones_like(span))

    def normalised(values: Tensor) -> Tensor:  # minmax_normalise's arithmetic, on (B, n)
        return torch.where(span > 0, (values - low) / safe, torch.zeros_like(values))

    return normalised(row_max) >= tau, normalised(col_max) >= tau


def upsample_cam(cam: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear resize of (B, h, w) maps to ``size`` (an int or (H, W)).

    Uses ``align_corners=False`` (pixel-area convention, the same as
    ``torch.nn.functional.interpolate``'s default and PIL): the map's corner
    pixel centres do not land on the output's corner pixel centres, so an 8 x 8
    map covers the 256 x 256 image the way its receptive grid does.
    """
    if isinstance(size, int):
        size = (size, size)
    return F.interpolate(cam.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


def mask_boxes(mask: Tensor) -> Tensor:
    """Bounding box of each binary mask: inclusive min/max column and row.

    Parameters
    ----------
    mask : Tensor
        Bool (B, H, W).

    Returns
    -------
    Tensor
        Long (B, 4) rows ``(x0, y0, x1, y1)``: ``x`` are columns, ``y`` rows,
        both ends inclusive.  An empty mask gives the whole image
        ``(0, 0, W - 1, H - 1)``.
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, H, W), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    return profile_boxes(mask.any(dim=2), mask.any(dim=1))


def profile_boxes(rows: Tensor, cols: Tensor) -> Tensor:
    """Bounding boxes from a mask's row and column profiles.

    ``profile_boxes(mask.any(2), mask.any(1)) == mask_boxes(mask)``.  The
    profile of a union of masks is the union (``|``) of their profiles, so the
    box of ``B1 | B2`` needs no (B, H, W) mask at all.

    Parameters
    ----------
    rows : Tensor
        Bool (B, H): row ``y`` holds a True pixel.
    cols : Tensor
        Bool (B, W): column ``x`` holds a True pixel.

    Returns
    -------
    Tensor
        Long (B, 4) ``(x0, y0, x1, y1)`` inclusive; the whole image where
        ``cols`` has no True (an empty mask).
    """
    if rows.ndim != 2 or cols.ndim != 2 or rows.shape[0] != cols.shape[0]:
        raise ValueError(
            f"rows and cols must be (B, H) and (B, W), got {tuple(rows.shape)}, {tuple(cols.shape)}"
        )
    height, width = rows.shape[1], cols.shape[1]
    cols = cols.to(torch.uint8)  # (B, W): column holds a True pixel
    rows = rows.to(torch.uint8)  # (B, H)
    # argmax of a 0/1 vector is its first 1; on the flipped vector, its last 1.
    x0 = cols.argmax(dim=1)
    x1 = width - 1 - cols.flip(1).argmax(dim=1)
    y0 = rows.argmax(dim=1)
    y1 = height - 1 - rows.flip(1).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    whole = torch.tensor([0, 0, width - 1, height - 1], device=cols.device)
    empty = ~cols.bool().any(dim=1)
    return torch.where(empty[:, None], whole, boxes).long()


def crop_and_resize(images: Tensor, boxes: Tensor, out_size: int | tuple[int, int]) -> Tensor:
    """Crop each image to its box and resize the crop, for the whole batch at once.

    The result is that of :func:`torchvision.ops.roi_align`.  An inclusive
    pixel box ``(x0, y0, x1, y1)`` is the continuous rectangle
    ``[x0, x1 + 1) x [y0, y1 + 1)`` (it covers those pixels completely);
    ``aligned=True`` puts pixel ``i``'s centre at ``i + 0.5``.
    ``sampling_ratio=0`` (adaptive): each output pixel averages
    ``ceil(box_size / out_size)`` bilinear samples per axis, so enlarging a
    crop (the usual case) is plain bilinear interpolation, a crop the size of
    the output is copied exactly, and shrinking a large box averages over each
    output pixel's area instead of aliasing.

    On the CPU, when every box lies inside its image and none is larger than
    the output (one sample per output pixel), the same bilinear samples are taken with
    :func:`torch.nn.functional.grid_sample` (border clamping, as
    ``roi_align``), which is vectorised and multi-threaded where the CPU
    ``roi_align`` is neither; the two agree to float rounding.

    Parameters
    ----------
    images : Tensor
        (B, C, H, W) float.
    boxes : Tensor
        (B, 4) inclusive pixel boxes as from :func:`mask_boxes`.  Not
        differentiated (detached).
    out_size : int or (int, int)
        Output height and width.

    Returns
    -------
    Tensor
        (B, C, out_h, out_w), differentiable with respect to ``images``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if boxes.shape != (images.shape[0], 4):
        raise ValueError(f"boxes must be ({images.shape[0]}, 4), got {tuple(boxes.shape)}")
    if isinstance(out_size, int):
        out_size = (out_size, out_size)
    # roi_align needs boxes and images in one dtype; half-precision boxes would
    # round pixel coordinates above 256, so reduced-precision images are cropped
    # in float32 and cast back.
    dtype = images.dtype
    work = images.float() if dtype in (torch.float16, torch.bfloat16) else images
    boxes = boxes.detach().to(device=images.device, dtype=work.dtype)
    # Inclusive pixel indices -> continuous corners (x0, y0) and (x1 + 1, y1 + 1).
    corners = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device, dtype=boxes.dtype)
    if images.device.type == "cpu" and len(boxes) > 0:
        extent = corners[:, 2:] - corners[:, :2]  # (B, 2): box width, height
        limit = torch.tensor([out_size[1], out_size[0]], dtype=extent.dtype)
        image_wh = torch.tensor([images.shape[3], images.shape[2]], dtype=extent.dtype)
        inside = (corners[:, :2] >= 0).all() and (corners[:, 2:] <= image_wh).all()
        if bool(inside) and bool((extent <= limit).all()):
            return _bilinear_crop(work, corners, out_size).to(dtype)
    index = torch.arange(images.shape[0], device=images.device, dtype=work.dtype)
    rois = torch.cat([index[:, None], corners], dim=1)  # (B, 5): batch index, box
    out = roi_align(
        work, rois, output_size=out_size, spatial_scale=1.0, sampling_ratio=0, aligned=True
    )
    return out.to(dtype)


def _bilinear_crop(images: Tensor, corners: Tensor, out_size: tuple[int, int]) -> Tensor:
    """``roi_align`` with one sample per output pixel, through ``grid_sample``.

    Output pixel ``(i, j)`` of a box with corners ``(x0, y0)``, ``(x1, y1)``
    samples the point ``x = x0 + (j + 0.5) (x1 - x0) / out_w - 0.5`` (pixel
    index units, centres at integers), likewise ``y``; coordinates outside
    ``[0, size - 1]`` are clamped to the border, as ``roi_align`` does for the
    points a box of real pixels can reach.
    """
    out_h, out_w = out_size
    height, width = images.shape[2:]
    dtype, device = images.dtype, images.device
    x0, y0, x1, y1 = corners.unbind(dim=1)
    j = torch.arange(out_w, device=device, dtype=dtype) + 0.5
    i = torch.arange(out_h, device=device, dtype=dtype) + 0.5
    xs = x0[:, None] + j[None, :] * ((x1 - x0) / out_w)[:, None] - 0.5  # (B, out_w)
    ys = y0[:, None] + i[None, :] * ((y1 - y0) / out_h)[:, None] - 0.5  # (B, out_h)
    # grid_sample (align_corners=False) reads g in [-1, 1] as the pixel index ((g + 1) size - 1) / 2.
    gx = (2.0 * xs + 1.0) / width - 1.0
    gy = (2.0 * ys + 1.0) / height - 1.0
    grid = torch.stack(
        (
            gx[:, None, :].expand(-1, out_h, -1),
            gy[:, :, None].expand(-1, -1, out_w),
        ),
        dim=-1,
    )  # (B, out_h, out_w, 2): (x, y)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
