"""What a forward pass of the network returns: :class:`NetOutput`, and
:class:`Explanation` (every intermediate map, for figures)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["Explanation", "NetOutput"]


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
        the Cramer-distance term (an ordinal loss on the classes; not the
        cooling-time head below).
    tcool_mu, tcool_sigma : Tensor or None
        (B,) float32 mean and standard deviation (dex, > 0) of the Gaussian the
        cooling-time head predicts for log10 of the central cooling time in Gyr;
        None for a network built without ``regression``.
    """

    logits: Tensor
    logits_primary: Tensor
    logits_aux: Tensor | None = None
    boxes: Tensor | None = None
    cam: Tensor | None = None
    uses_regression: bool = False
    tcool_mu: Tensor | None = None
    tcool_sigma: Tensor | None = None


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
