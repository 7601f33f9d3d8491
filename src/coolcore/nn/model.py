"""The multi-branch attention network (paper section III-A to III-C, ``METHOD.md``).

Reading order: the ResNet-18 factory (:func:`build_resnet18`), the trunk it is
cut to (:class:`ResNetTrunk`), the output record (:class:`NetOutput`), then the
network (:class:`MultiBranchAttentionNet`).

Data flow for a batch ``x`` of preprocessed grey images (B, 1, H, W) in [0, 1]::

    primary trunk(x) -> M (B, 512, H/32, W/32) -> mean -> V1 -> Linear -> z_p
    no_grad: CAM of argmax(z_p) -> upsample -> min-max -> H1 >= tau1 -> B1
             Gaussian at the brightest pixel of x -> H2 >= tau2      -> B2
             B = B1 | B2 (or & , or one of them) -> box (x0, y0, x1, y1)
    crop x to the box, resize to aux_size -> auxiliary trunk -> V2 -> Linear -> z_a
    Linear(1024 -> C)(concat(V1, V2)) -> z_f   (the final prediction)

Grey input goes to the 3-channel ResNet by repeating the channel three times
(the pretrained first-layer filters stay untouched).  When the trunks start
from pretrained weights (``weights="imagenet"`` or a file), the repeated image
is also standardised with the ImageNet mean and standard deviation, the input
statistics those filters were trained on; with ``weights="none"`` the [0, 1]
image goes in as it is.  The mean and standard deviation are buffers saved in
the state dict, so a trained network reloads with ``weights="none"`` and still
normalises its input the way it was trained.
"""

from __future__ import annotations

import math
import os
import socket
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from torch import Tensor
from torchvision.models import ResNet18_Weights, resnet18

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
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

__all__ = [
    "COMBINE_MODES",
    "VARIANTS",
    "Explanation",
    "MultiBranchAttentionNet",
    "NetOutput",
    "ResNetTrunk",
    "build_resnet18",
]

VARIANTS: tuple[str, ...] = ("baseline", "att", "gauss", "att+gauss", "all")
"""The rows of the paper's Table I."""

COMBINE_MODES: tuple[str, ...] = ("union", "intersection")
"""How the CAM mask B1 and the Gaussian mask B2 are combined (two-mask variants)."""

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_DOWNLOAD_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------- #
# ResNet-18 factory
# --------------------------------------------------------------------------- #
def _imagenet_checkpoint() -> Path:
    """Path of torchvision's cached ImageNet ResNet-18 file, downloading it if absent."""
    url = ResNet18_Weights.IMAGENET1K_V1.url
    filename = url.rsplit("/", 1)[-1]  # resnet18-f37072fd.pth
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    message = (
        f"ImageNet weights for ResNet-18 are not available offline: put {filename} in "
        f"{cached.parent} (or set $TORCH_HOME) or pass --weights none / a file path"
    )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # no long hang on a dead network
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # The file name's hash part is the SHA-256 prefix torchvision checks.
        hash_prefix = filename.rsplit("-", 1)[-1].split(".")[0]
        torch.hub.download_url_to_file(url, str(cached), hash_prefix=hash_prefix, progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise UsageError(f"{message} (download failed: {exc})") from exc
    finally:
        socket.setdefaulttimeout(previous)
    return cached


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``'d state dict (no pickled code)."""
    if not path.is_file():
        raise UsageError(
            f"weights file {path} does not exist (use 'none', 'imagenet' or a path to a "
            "ResNet-18 state dict)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: corrupt, wrong format, pickled code
        raise UsageError(f"cannot read weights file {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UsageError(f"weights file {path} does not hold a state dict of tensors")
    return state


def _load_trunk_weights(net: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load a torchvision ResNet-18 state dict into ``net``, ignoring the ``fc`` head."""
    trunk_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(trunk_state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        first_line = str(exc).strip().splitlines()[-1].strip()
        raise UsageError(f"weights {source} do not fit ResNet-18: {first_line}") from exc
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise UsageError(
            f"weights {source} are not a torchvision ResNet-18 state dict: "
            f"{len(missing)} missing and {len(unexpected)} unexpected keys (e.g. {example!r})"
        )


def build_resnet18(weights: str | os.PathLike[str] = "none") -> nn.Module:
    """A torchvision ResNet-18 (with its 1000-class ``fc``, which the network drops).

    Parameters
    ----------
    weights : str or path
        ``"none"``: random initialisation (torchvision's).  ``"imagenet"``:
        ``ResNet18_Weights.IMAGENET1K_V1``, read from the torch hub cache
        (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``) or downloaded
        if absent; offline this raises at once, never falls back silently.
        Otherwise a path to a ResNet-18 state dict in torchvision's key names:
        ``.safetensors``, or ``.pt``/``.pth`` read with ``weights_only=True``;
        ``fc.*`` keys are ignored.

    Returns
    -------
    torchvision.models.ResNet

    Raises
    ------
    coolcore.errors.UsageError
        ImageNet weights unavailable, or a file that is missing, unreadable or
        not a ResNet-18 state dict (the message names it).
    """
    net = resnet18(weights=None)
    if isinstance(weights, str) and weights == "none":
        return net
    if isinstance(weights, str) and weights == "imagenet":
        path = _imagenet_checkpoint()
        _load_trunk_weights(net, _read_state_dict(path), f"file {path}")
        return net
    path = Path(weights)
    _load_trunk_weights(net, _read_state_dict(path), f"file {path}")
    return net


class ResNetTrunk(nn.Module):
    """A ResNet-18 cut after its last residual block: (B, 3, H, W) -> M (B, 512, H/32, W/32).

    Keeps torchvision's module names (``conv1``, ``layer1`` ...), so state-dict
    keys read ``primary.layer4.1.conv2.weight``.
    """

    out_channels = 512

    def __init__(self, resnet: nn.Module) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# --------------------------------------------------------------------------- #
# Outputs
# --------------------------------------------------------------------------- #
class NetOutput(NamedTuple):
    """One forward pass.

    Attributes
    ----------
    logits : Tensor
        (B, C) the final prediction: the fusion head ``z_f`` for two-branch
        variants, the primary head for ``baseline``.
    logits_primary : Tensor
        (B, C) primary head ``z_p``.
    logits_aux : Tensor or None
        (B, C) auxiliary head ``z_a``; None for ``baseline``.
    boxes : Tensor or None
        Long (B, 4) crop boxes ``(x0, y0, x1, y1)``, inclusive, in input pixels.
    cam : Tensor or None
        (B, h, w) float32 raw class activation map of the predicted class.
    uses_regression : bool
        True for the ``all`` variant: :func:`coolcore.nn.losses.total_loss` adds
        the Cramer-distance term.
    """

    logits: Tensor
    logits_primary: Tensor
    logits_aux: Tensor | None = None
    boxes: Tensor | None = None
    cam: Tensor | None = None
    uses_regression: bool = False


class Explanation(NamedTuple):
    """Everything the network looked at, for figures (:meth:`MultiBranchAttentionNet.explain`).

    Maps are (B, H, W) at input resolution; ``crop`` is the auxiliary input
    (B, 1, s, s), None for ``baseline``.  ``mask`` is the one the variant uses.
    """

    output: NetOutput
    cam: Tensor
    heat_cam: Tensor
    heat_gauss: Tensor
    mask_cam: Tensor
    mask_gauss: Tensor
    mask: Tensor
    boxes: Tensor
    crop: Tensor | None


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
        Initialisation of both trunks (see :func:`build_resnet18`): ``"none"``,
        ``"imagenet"`` or a ResNet-18 state-dict file.  The heads are always
        initialised at random.
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
        num_classes: int = 3,
        aux_size: int | None = None,
        tau1: float = 0.7,
        tau2: float = 0.7,
        lam: float = 25.0,
        center_smoothing: int = 0,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise UsageError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        if combine not in COMBINE_MODES:
            raise UsageError(f"combine must be one of {', '.join(COMBINE_MODES)}; got {combine!r}")
        for name, tau in (("tau1", tau1), ("tau2", tau2)):
            if not 0.0 <= tau <= 1.0:
                raise UsageError(f"{name} must lie in [0, 1], got {tau}")
        if not (lam > 0 and math.isfinite(lam)):
            raise UsageError(f"lam must be a positive number, got {lam}")
        if center_smoothing < 0 or (center_smoothing > 0 and center_smoothing % 2 == 0):
            raise UsageError(f"center_smoothing must be 0 or odd, got {center_smoothing}")
        if num_classes < 2:
            raise UsageError(f"num_classes must be at least 2, got {num_classes}")
        if aux_size is not None and aux_size < 32:
            raise UsageError(f"aux_size must be None or at least 32 pixels, got {aux_size}")

        self.variant = variant
        self.combine = combine
        self.weights = str(weights)
        self.num_classes = num_classes
        self.aux_size = aux_size
        self.tau1 = float(tau1)
        self.tau2 = float(tau2)
        self.lam = float(lam)
        self.center_smoothing = int(center_smoothing)
        self.has_aux = variant != "baseline"
        self.uses_regression = variant == "all"
        self.uses_cam_mask = variant in ("att", "att+gauss", "all")
        self.uses_gauss_mask = variant in ("gauss", "att+gauss", "all")

        pretrained = self.weights != "none"
        mean = _IMAGENET_MEAN if pretrained else (0.0, 0.0, 0.0)
        std = _IMAGENET_STD if pretrained else (1.0, 1.0, 1.0)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1))

        width = ResNetTrunk.out_channels
        self.primary = ResNetTrunk(build_resnet18(weights))
        self.head_primary = nn.Linear(width, num_classes)
        if self.has_aux:
            self.auxiliary = ResNetTrunk(build_resnet18(weights))
            self.head_aux = nn.Linear(width, num_classes)
            self.head_fusion = nn.Linear(2 * width, num_classes)

    # ------------------------------------------------------------------ config
    CONFIG_KEYS = (
        "variant",
        "combine",
        "weights",
        "num_classes",
        "aux_size",
        "tau1",
        "tau2",
        "lam",
        "center_smoothing",
    )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MultiBranchAttentionNet:
        """Build from a mapping with the constructor's argument names.

        To rebuild a trained network before ``load_state_dict``, pass
        ``{**config, "weights": "none"}``: the trained weights (and the input
        normalisation buffers) come from the state dict.
        """
        unknown = sorted(set(config) - set(cls.CONFIG_KEYS))
        if unknown:
            raise UsageError(
                f"unknown model option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(cls.CONFIG_KEYS)}"
            )
        return cls(**dict(config))

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
            parts.append(f"crop to {aux}")
        if self.uses_regression:
            parts.append("Cramer regression loss")
        parts += [f"weights {self.weights}", f"{n_params / 1e6:.1f}M parameters"]
        return "MultiBranchAttentionNet: " + ", ".join(parts)

    def to_channels_last(self) -> MultiBranchAttentionNet:
        """Store convolution weights channels-last (faster on CPU and tensor cores).

        ``forward`` notices the layout and converts its input to match, so
        ``model.to(memory_format=torch.channels_last)`` works the same.
        """
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
        # Write the difference straight into a channels-last tensor and divide in
        # place: the same arithmetic as above in two passes instead of three.
        dtype = torch.result_type(grey, self.input_mean)
        x = torch.empty(
            expanded.shape, dtype=dtype, device=grey.device, memory_format=torch.channels_last
        )
        torch.sub(expanded, self.input_mean, out=x)
        return x.div_(self.input_std)

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

        The box of B1, B2 or their union only needs each mask's row and column
        profiles (:func:`coolcore.nn.masks.threshold_profiles`,
        :func:`coolcore.nn.masks.gaussian_profiles`), never a (B, H, W) mask; the
        intersection builds both masks.  The boxes are exactly those of
        ``mask_boxes(self._combine(mask_cam, mask_gauss))``, as :meth:`explain`
        computes them.
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

    def _auxiliary(self, crop: Tensor, pooled_primary: Tensor) -> tuple[Tensor, Tensor]:
        """Auxiliary branch and fusion head: logits z_a and z_f."""
        pooled = self.auxiliary(self._backbone_input(crop)).mean(dim=(2, 3))
        fused = torch.cat([pooled_primary, pooled.to(pooled_primary.dtype)], dim=1)
        return self.head_aux(pooled), self.head_fusion(fused)

    def forward(self, x: Tensor) -> NetOutput:
        """Classify a batch of preprocessed grey images.

        Parameters
        ----------
        x : Tensor
            (B, 1, H, W) float in [0, 1].

        Returns
        -------
        NetOutput
        """
        features, pooled, logits_p = self._primary(x)
        if not self.has_aux:
            return NetOutput(logits=logits_p, logits_primary=logits_p)
        with torch.no_grad():  # the box is not differentiated
            grey = x[:, 0].detach().float()
            cam = self._cam(features, logits_p)
            boxes = self._boxes(grey, cam)
        crop = crop_and_resize(x, boxes, self._crop_size(x))
        logits_a, logits_f = self._auxiliary(crop, pooled)
        return NetOutput(
            logits=logits_f,
            logits_primary=logits_p,
            logits_aux=logits_a,
            boxes=boxes,
            cam=cam,
            uses_regression=self.uses_regression,
        )

    @torch.no_grad()
    def explain(self, x: Tensor) -> Explanation:
        """Forward pass plus every intermediate map, for figures.

        All maps are computed whatever the variant (the ``baseline`` still
        has a CAM and a Gaussian, though it crops nothing); ``mask`` and
        ``boxes`` are the ones the variant uses (the whole image for
        ``baseline``).
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
            crop = crop_and_resize(x, boxes, self._crop_size(x))
            logits_a, logits_f = self._auxiliary(crop, pooled)
            output = NetOutput(logits_f, logits_p, logits_a, boxes, cam, self.uses_regression)
        else:
            mask = torch.ones_like(mask_cam)
            boxes = mask_boxes(mask)
            crop = None
            output = NetOutput(logits=logits_p, logits_primary=logits_p)
        return Explanation(
            output=output,
            cam=cam,
            heat_cam=heat_cam,
            heat_gauss=heat_gauss,
            mask_cam=mask_cam,
            mask_gauss=mask_gauss,
            mask=mask,
            boxes=boxes,
            crop=crop,
        )


def network_config(run_cfg: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """The network's constructor arguments in a run config (its ``model`` section).

    The one way from a config to a network: ``MultiBranchAttentionNet.from_config``
    of this mapping; ``changes`` override entries (e.g. ``weights="none"`` to
    rebuild a trained network before loading its state dict).
    """
    model = {**run_cfg["model"], "num_classes": len(CLASS_NAMES), **changes}
    return {key: model[key] for key in MultiBranchAttentionNet.CONFIG_KEYS if key in model}


def build_network(run_cfg: Mapping[str, Any], **changes: Any) -> MultiBranchAttentionNet:
    """The network a run config describes (see :func:`network_config`)."""
    return MultiBranchAttentionNet.from_config(network_config(run_cfg, **changes))
