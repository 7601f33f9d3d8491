"""The multi-branch attention network (paper section III-A to III-C, ``METHOD.md``).

Reading order: the ResNet-18 trunk (:mod:`coolcore.nn.backbone`), the output
records (:mod:`coolcore.nn.outputs`), the cooling-time head
(:mod:`coolcore.nn.tcool`), the options and their ranges
(:mod:`coolcore.nn.options`), then the network (:class:`MultiBranchAttentionNet`)
and the one way from a run config to it (:func:`build_network`).

Data flow for a batch ``x`` of preprocessed grey images (B, 1, H, W) in [0, 1]::

    primary trunk(x) -> M (B, 512, H/32, W/32) -> mean -> V1 -> Linear -> z_p
    no_grad: CAM of argmax(z_p) -> upsample -> min-max -> H1 >= tau1 -> B1
             Gaussian at the brightest pixel of x -> H2 >= tau2      -> B2
             B = B1 | B2 (or & , or one of them) -> box (x0, y0, x1, y1)
    crop x to the box, resize to aux_size -> auxiliary trunk -> V2 -> Linear -> z_a
        (crop_source="full": crop the full-resolution map, the box scaled to it)
    Linear(1024 -> C)(concat(V1, V2)) -> z_f   (the final prediction)
    regression: Linear(1024 -> 2)(concat(V1, V2)) -> (mu, softplus + 1e-3 -> sigma)
                (from V1 alone for ``baseline``): log10 t_cool / Gyr ~ N(mu, sigma^2)

Grey input goes to the 3-channel ResNet repeated three times.  With pretrained
trunks (``weights="imagenet"`` or a file) it is also standardised with the ImageNet
mean and standard deviation; with ``weights="none"`` the [0, 1] image goes in as it
is.  Both are buffers of the state dict, so a trained network reloads with
``weights="none"`` and still normalises its input the way it was trained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.nn.backbone import ResNetTrunk, build_resnet18
from coolcore.nn.masks import (
    class_activation_map,
    crop_and_resize,
    gaussian_heatmap,
    gaussian_profiles,
    mask_boxes,
    minmax_normalise,
    profile_boxes,
    threshold_profiles,
    upsample_cam,
)
from coolcore.nn.options import NETWORK_KEYS, check_network_options
from coolcore.nn.outputs import Explanation, NetOutput
from coolcore.nn.tcool import CoolingTimeHead

__all__ = [
    "MultiBranchAttentionNet",
    "build_network",
    "network_config",
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- #
# The network
# --------------------------------------------------------------------------- #
class MultiBranchAttentionNet(nn.Module):
    """Primary ResNet-18 + attention-guided crop + auxiliary ResNet-18 + fusion head.

    Parameters
    ----------
    variant : str
        One of :data:`VARIANTS`: ``baseline`` (plain ResNet-18, one head),
        ``att`` (crop box from the CAM mask B1), ``gauss`` (from the Gaussian
        mask B2), ``att+gauss`` (from B1 and B2 combined), ``all`` (as
        ``att+gauss``, plus the Cramer regression loss).
    combine : str
        ``"union"`` (default, the paper's text) or ``"intersection"`` (its
        eq. 8), for the two-mask variants.  An empty mask (possible with
        ``intersection`` or a constant CAM) falls back to the whole image.
    weights : str or path
        What the trunks start from, as recorded: ``"none"`` (random) or a pretrained
        source (``"imagenet"`` or a ResNet-18 state-dict file): only a label here, plus
        the input standardisation.  The heads are always initialised at random.
    trunk_state : mapping of str to Tensor, optional
        The pretrained tensors (torchvision's key names without ``fc.*``;
        :func:`coolcore.train.weights.read_trunk_state`), loaded into both trunks;
        required when ``weights`` is not ``"none"``, refused when it is.
    num_classes : int
        Number of ordered classes (3: CC, WCC, NCC).
    aux_size : int or None
        Side of the square crop fed to the auxiliary branch; None: the input's
        own (H, W).
    tau1, tau2 : float
        Thresholds in [0, 1] on the normalised CAM and Gaussian heat maps.
    lam : float
        The Gaussian's lambda: ``sigma = side / sqrt(lam)``.
    center_smoothing : int
        Box-filter window (0 or odd) applied before locating the brightest
        pixel (see :func:`coolcore.nn.masks.brightest_pixel`).
    regression : bool
        Add ``head_tcool``: a linear layer on the class head's features (the fusion
        head's ``concat(V1, V2)``; V1 for ``baseline``) giving ``mu`` and ``sigma =
        softplus(s) + 1e-3`` of a Gaussian for log10 t_cool / Gyr.  Off: the paper's network.
    crop_source : str
        ``"input"`` (default): the auxiliary crop is cut from ``x``.  ``"full"``:
        from the full-resolution map ``x`` was resized from, passed as the second
        argument of :meth:`forward` (the box, found on ``x``, scaled by its size
        over ``x``'s); no parameter changes.

    Examples
    --------
    >>> import torch
    >>> net = MultiBranchAttentionNet("all")
    >>> out = net(torch.rand(2, 1, 64, 64))
    >>> out.logits.shape, out.boxes.shape
    (torch.Size([2, 3]), torch.Size([2, 4]))
    """

    def __init__(
        self,
        variant: str = "all",
        *,
        combine: str = "union",
        weights: str | os.PathLike[str] = "none",
        trunk_state: Mapping[str, Tensor] | None = None,
        num_classes: int = 3,
        aux_size: int | None = None,
        tau1: float = 0.7,
        tau2: float = 0.7,
        lam: float = 25.0,
        center_smoothing: int = 0,
        regression: bool = False,
        crop_source: str = "input",
    ) -> None:
        super().__init__()
        check_network_options({k: v for k, v in locals().items() if k in NETWORK_KEYS})
        pretrained = str(weights) != "none"
        if pretrained != (trunk_state is not None):
            raise ValueError(
                f"weights={str(weights)!r} with trunk_state "
                f"{'missing' if pretrained else 'given'}: a pretrained source needs its "
                "tensors (coolcore.train.weights.read_trunk_state), 'none' takes none"
            )

        self.variant = variant
        self.combine = combine
        self.weights = str(weights)
        self.num_classes = num_classes
        self.aux_size = aux_size
        self.tau1 = float(tau1)
        self.tau2 = float(tau2)
        self.lam = float(lam)
        self.center_smoothing = int(center_smoothing)
        self.regression = regression
        self.crop_source = str(crop_source)
        self.has_aux = variant != "baseline"
        self.uses_regression = variant == "all"
        self.uses_cam_mask = variant in ("att", "att+gauss", "all")
        self.uses_gauss_mask = variant in ("gauss", "att+gauss", "all")

        mean = _IMAGENET_MEAN if pretrained else (0.0, 0.0, 0.0)
        std = _IMAGENET_STD if pretrained else (1.0, 1.0, 1.0)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1))

        width = ResNetTrunk.out_channels
        self.primary = ResNetTrunk(build_resnet18(), trunk_state)
        self.head_primary = nn.Linear(width, num_classes)
        if self.has_aux:
            self.auxiliary = ResNetTrunk(build_resnet18(), trunk_state)
            self.head_aux = nn.Linear(width, num_classes)
            self.head_fusion = nn.Linear(2 * width, num_classes)
        if regression:  # created last: the other parameters start as without it
            self.head_tcool = CoolingTimeHead(2 * width if self.has_aux else width)

    # ------------------------------------------------------------------ config
    CONFIG_KEYS = NETWORK_KEYS

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, trunk_state: Mapping[str, Tensor] | None = None
    ) -> MultiBranchAttentionNet:
        """Build from a mapping with the constructor's argument names.

        To rebuild a trained network before ``load_state_dict``, pass ``{**config,
        "weights": "none"}``: the weights and input normalisation come from the state dict.
        """
        unknown = sorted(set(config) - set(cls.CONFIG_KEYS))
        if unknown:
            raise UsageError(
                f"unknown model option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(cls.CONFIG_KEYS)}"
            )
        return cls(**dict(config), trunk_state=trunk_state)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (inverse of :meth:`from_config`)."""
        return {key: getattr(self, key) for key in self.CONFIG_KEYS}

    def describe(self) -> str:
        """A one-line summary: variant, mask settings, initialisation, size."""
        n_params = sum(p.numel() for p in self.parameters())
        masks = {
            "baseline": "no auxiliary branch",
            "att": f"CAM mask (tau1={self.tau1:g})",
            "gauss": f"Gaussian mask (tau2={self.tau2:g}, lambda={self.lam:g})",
        }.get(
            self.variant,
            f"{self.combine} of CAM (tau1={self.tau1:g}) and Gaussian "
            f"(tau2={self.tau2:g}, lambda={self.lam:g}) masks",
        )
        aux = "input size" if self.aux_size is None else f"{self.aux_size} px"
        parts = [f"variant {self.variant}", masks]
        if self.has_aux:
            full = " from the full-resolution map" if self.crop_source == "full" else ""
            parts.append(f"crop{full} to {aux}")
        if self.uses_regression:
            parts.append("Cramer regression loss")
        if self.regression:
            parts.append("log10 t_cool head")
        parts += [f"weights {self.weights}", f"{n_params / 1e6:.1f}M parameters"]
        return "MultiBranchAttentionNet: " + ", ".join(parts)

    def to_channels_last(self) -> MultiBranchAttentionNet:
        """Store convolution weights channels-last (faster on CPU and tensor cores);
        ``forward`` converts its input to match (as after ``.to(memory_format=...)``)."""
        return self.to(memory_format=torch.channels_last)

    # ----------------------------------------------------------------- forward
    def _backbone_input(self, grey: Tensor) -> Tensor:
        """(B, 1, H, W) grey -> (B, 3, H, W) standardised, in the trunk's memory layout."""
        expanded = grey.expand(-1, 3, -1, -1)
        if not self.primary.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            return (expanded - self.input_mean) / self.input_std
        if grey.requires_grad and torch.is_grad_enabled():  # out= does not record gradients
            x = (expanded - self.input_mean) / self.input_std
            return x.contiguous(memory_format=torch.channels_last)
        # One fused pass into a channels-last tensor: x / std - mean / std, the
        # standardisation above up to rounding (a few 1e-7).
        dtype = torch.result_type(grey, self.input_mean)
        x = torch.empty(
            expanded.shape, dtype=dtype, device=grey.device, memory_format=torch.channels_last
        )
        scale = self.input_std.reciprocal()
        return torch.addcmul(-self.input_mean * scale, expanded, scale, out=x)

    def _primary(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Primary branch: feature map M, pooled V1 and logits z_p."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected grey images (B, 1, H, W), got shape {tuple(x.shape)}")
        features = self.primary(self._backbone_input(x))
        pooled = features.mean(dim=(2, 3))
        return features, pooled, self.head_primary(pooled)

    def _cam(self, features: Tensor, logits: Tensor) -> Tensor:
        """Raw CAM of the predicted class (float32, no gradient)."""
        weight = self.head_primary.weight.detach().float()
        return class_activation_map(features.detach().float(), weight, logits.argmax(dim=1))

    def _combine(self, mask_cam: Tensor | None, mask_gauss: Tensor | None) -> Tensor:
        """The variant's mask B from B1 (CAM) and B2 (Gaussian); unused ones may be None."""
        if not self.uses_gauss_mask:
            return mask_cam
        if not self.uses_cam_mask:
            return mask_gauss
        if self.combine == "union":
            return mask_cam | mask_gauss
        return mask_cam & mask_gauss

    def _boxes(self, grey: Tensor, cam: Tensor) -> Tensor:
        """The crop boxes of the variant's mask B, for grey (B, H, W) and the raw CAM.

        B1, B2 or their union need only each mask's row and column profiles
        (:func:`coolcore.nn.masks.threshold_profiles`, ``gaussian_profiles``); the
        intersection builds both masks.  The boxes are exactly those :meth:`explain` finds.
        """
        size = tuple(grey.shape[1:])
        if self.uses_cam_mask and self.uses_gauss_mask and self.combine == "intersection":
            mask_cam = minmax_normalise(upsample_cam(cam, size)) >= self.tau1
            heat_gauss = gaussian_heatmap(grey, self.lam, smooth=self.center_smoothing)
            return mask_boxes(mask_cam & (heat_gauss >= self.tau2))
        rows = cols = None
        if self.uses_cam_mask:
            rows, cols = threshold_profiles(upsample_cam(cam, size), self.tau1)
        if self.uses_gauss_mask:
            # Each factor peaks at exactly 1, so the heat map's maximum along a
            # row (column) is the row (column) factor itself.
            heat_rows, heat_cols = gaussian_profiles(grey, self.lam, smooth=self.center_smoothing)
            rows_g, cols_g = heat_rows >= self.tau2, heat_cols >= self.tau2
            rows = rows_g if rows is None else rows | rows_g
            cols = cols_g if cols is None else cols | cols_g
        return profile_boxes(rows, cols)

    def _crop_size(self, x: Tensor) -> tuple[int, int]:
        if self.aux_size is None:
            return (x.shape[2], x.shape[3])
        return (self.aux_size, self.aux_size)

    def _aux_crop(self, x: Tensor, full: Tensor | None, boxes: Tensor) -> Tensor:
        """The auxiliary branch's input: ``x`` (or ``full``, ``crop_source="full"``) cut to the boxes.

        The inclusive box ``(x0, y0, x1, y1)`` on ``x`` is the rectangle
        ``[x0, x1 + 1) x [y0, y1 + 1)``; on ``full`` (side ``F``, ``x``'s side ``S``)
        it is that rectangle times ``F / S``, resampled by ``roi_align``
        (:func:`coolcore.nn.masks.crop_and_resize`) to ``aux_size``.
        """
        if self.crop_source == "input":
            return crop_and_resize(x, boxes, self._crop_size(x))
        if full is None or full.ndim != 4 or full.shape[:2] != x.shape[:2]:
            got = "none" if full is None else f"shape {tuple(full.shape)}"
            raise ValueError(f"crop_source='full' needs net(x, full), full (B, 1, F, F); got {got}")
        scale = full.shape[-1] / x.shape[-1]
        ends = torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device)
        scaled = (boxes.float() + ends) * scale - ends  # inclusive form of the scaled rectangle
        return crop_and_resize(full.to(x.dtype), scaled, self._crop_size(x))

    def _auxiliary(self, crop: Tensor, pooled_primary: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Auxiliary branch and fusion head: logits z_a, z_f and the fused features."""
        pooled = self.auxiliary(self._backbone_input(crop)).mean(dim=(2, 3))
        fused = torch.cat([pooled_primary, pooled.to(pooled_primary.dtype)], dim=1)
        return self.head_aux(pooled), self.head_fusion(fused), fused

    def _tcool(self, features: Tensor) -> dict[str, Tensor]:
        """The cooling-time head's ``tcool_mu``, ``tcool_sigma`` (:mod:`coolcore.nn.tcool`)."""
        return self.head_tcool.gaussian(features) if self.regression else {}

    def forward(self, x: Tensor, full: Tensor | None = None) -> NetOutput:
        """Classify a batch of preprocessed grey images.

        Parameters
        ----------
        x : Tensor
            (B, 1, H, W) float in [0, 1].
        full : Tensor, optional
            (B, 1, F, F): the maps ``x`` was resized from, before the resize;
            required with ``crop_source="full"`` (for a variant with the
            auxiliary branch), ignored otherwise.

        Returns
        -------
        NetOutput
        """
        features, pooled, logits_p = self._primary(x)
        if not self.has_aux:
            return NetOutput(logits=logits_p, logits_primary=logits_p, **self._tcool(pooled))
        with torch.no_grad():  # the box is not differentiated
            grey = x[:, 0].detach().float()
            cam = self._cam(features, logits_p)
            boxes = self._boxes(grey, cam)
        crop = self._aux_crop(x, full, boxes)
        logits_a, logits_f, fused = self._auxiliary(crop, pooled)
        return NetOutput(
            logits=logits_f,
            logits_primary=logits_p,
            logits_aux=logits_a,
            boxes=boxes,
            cam=cam,
            uses_regression=self.uses_regression,
            **self._tcool(fused),
        )

    @torch.no_grad()
    def explain(self, x: Tensor, full: Tensor | None = None) -> Explanation:
        """Forward pass plus every intermediate map, for figures (``full``: see :meth:`forward`).

        All maps are computed whatever the variant (``baseline`` crops nothing);
        ``mask`` and ``boxes`` are the variant's (the whole image for ``baseline``).
        """
        features, pooled, logits_p = self._primary(x)
        grey = x[:, 0].float()
        cam = self._cam(features, logits_p)
        heat_cam = minmax_normalise(upsample_cam(cam, tuple(grey.shape[1:])))
        heat_gauss = gaussian_heatmap(grey, self.lam, smooth=self.center_smoothing)
        mask_cam = heat_cam >= self.tau1
        mask_gauss = heat_gauss >= self.tau2
        if self.has_aux:
            mask = self._combine(mask_cam, mask_gauss)
            boxes = mask_boxes(mask)
            crop = self._aux_crop(x, full, boxes)
            logits_a, logits_f, fused = self._auxiliary(crop, pooled)
            output = NetOutput(
                logits_f, logits_p, logits_a, boxes, cam, self.uses_regression, **self._tcool(fused)
            )
        else:
            mask = torch.ones_like(mask_cam)
            boxes = mask_boxes(mask)
            crop = None
            output = NetOutput(logits=logits_p, logits_primary=logits_p, **self._tcool(pooled))
        # Explanation's fields in order
        return Explanation(
            output, cam, heat_cam, heat_gauss, mask_cam, mask_gauss, mask, boxes, crop
        )


def network_config(run_cfg: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """The network's constructor arguments in a run config (its ``model`` section).

    ``changes`` override entries (e.g. ``weights="none"`` to rebuild a trained
    network before loading its state dict).  This mapping is what
    :func:`build_network` builds and what ``model.json`` records.
    """
    model = {**run_cfg["model"], "num_classes": len(CLASS_NAMES), **changes}
    return {key: model[key] for key in MultiBranchAttentionNet.CONFIG_KEYS if key in model}


def build_network(
    run_cfg: Mapping[str, Any],
    *,
    trunk_state: Mapping[str, Tensor] | None = None,
    **changes: Any,
) -> MultiBranchAttentionNet:
    """The network a run config describes: the one way from a config to a network.

    Parameters
    ----------
    run_cfg : mapping
        A run config (:func:`coolcore.train.config.load_config`); only its
        ``model`` section is read (see :func:`network_config`).
    trunk_state : mapping of str to Tensor, optional
        The pretrained trunk tensors when ``model.weights`` is not ``"none"``:
        ``coolcore.train.weights.read_trunk_state(run_cfg["model"]["weights"])``
        (this package reads no file).
    **changes
        Override ``model`` entries, e.g. ``weights="none"`` to rebuild a trained
        network before ``load_state_dict`` (no trunk state needed then).

    Returns
    -------
    MultiBranchAttentionNet
    """
    return MultiBranchAttentionNet.from_config(
        network_config(run_cfg, **changes), trunk_state=trunk_state
    )
