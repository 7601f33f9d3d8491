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
    "brightest_pixel",
    "class_activation_map",
    "crop_and_resize",
    "gaussian_heatmap",
    "mask_boxes",
    "minmax_normalise",
    "upsample_cam",
]


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
    # Separable: exp(-(a + b)) = exp(-b) exp(-a) as an outer product per image.
    return torch.exp(-dy2)[:, :, None] * torch.exp(-dx2)[:, None, :]


def minmax_normalise(maps: Tensor) -> Tensor:
    """Scale each map of a batch to [0, 1]: ``(m - min) / (max - min)``.

    Parameters
    ----------
    maps : Tensor
        (B, ...) with any trailing shape; each ``maps[i]`` is normalised alone.

    Returns
    -------
    Tensor
        Same shape and dtype; a constant map becomes all zeros.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    out = torch.where(span > 0, (flat - low) / safe, torch.zeros_like(flat))
    return out.view_as(maps)


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
    height, width = mask.shape[1:]
    cols = mask.any(dim=1).to(torch.uint8)  # (B, W): column holds a True pixel
    rows = mask.any(dim=2).to(torch.uint8)  # (B, H)
    # argmax of a 0/1 vector is its first 1; on the flipped vector, its last 1.
    x0 = cols.argmax(dim=1)
    x1 = width - 1 - cols.flip(1).argmax(dim=1)
    y0 = rows.argmax(dim=1)
    y1 = height - 1 - rows.flip(1).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    whole = torch.tensor([0, 0, width - 1, height - 1], device=mask.device)
    empty = ~cols.bool().any(dim=1)
    return torch.where(empty[:, None], whole, boxes).long()


def crop_and_resize(images: Tensor, boxes: Tensor, out_size: int | tuple[int, int]) -> Tensor:
    """Crop each image to its box and resize the crop, for the whole batch at once.

    Implemented with :func:`torchvision.ops.roi_align`.  An inclusive pixel box
    ``(x0, y0, x1, y1)`` is the continuous rectangle ``[x0, x1 + 1) x [y0, y1 + 1)``
    (it covers those pixels completely); ``aligned=True`` puts pixel ``i``'s
    centre at ``i + 0.5``.  ``sampling_ratio=0`` (adaptive): each output pixel
    averages ``ceil(box_size / out_size)`` bilinear samples per axis, so
    enlarging a crop (the usual case) is plain bilinear interpolation, a crop
    the size of the output is copied exactly, and shrinking a large box
    averages over each output pixel's area instead of aliasing.

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
    index = torch.arange(images.shape[0], device=images.device, dtype=work.dtype)
    rois = torch.cat([index[:, None], corners], dim=1)  # (B, 5): batch index, box
    out = roi_align(
        work, rois, output_size=out_size, spatial_scale=1.0, sampling_ratio=0, aligned=True
    )
    return out.to(dtype)
