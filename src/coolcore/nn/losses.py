"""Losses of the multi-branch network (paper section III-D, ``METHOD.md``).

``L = a_p L_p + a_a L_a + a_f L_f + a_r L_r``:

* ``L_p, L_a, L_f``: class-weighted cross-entropy of the primary, auxiliary and
  fusion heads, ``-(1/N) sum_i w_{t_i} log softmax(z_i)[t_i]`` with
  ``w_t = 1 / sqrt(count(t))`` over the training fold, divided by the batch
  size ``N`` (paper eqs. 10-13; PyTorch's ``cross_entropy(weight=...)`` would
  divide by ``sum_i w_{t_i}`` instead).
* ``L_r``: Cramer distance between the primary head's softmax and the one-hot
  target, ``mean_i sum_k (F_pred,i(k) - F_true,i(k))^2`` with ``F`` the cumulative
  sum over the ordered classes CC < WCC < NCC (paper eq. 14).

With the cooling-time head (``model.regression``) the total gains
``w_t L_t``: ``L_t`` the mean Gaussian negative log-likelihood of
``y = log10(t_cool / Gyr)`` under the head's ``N(mu, sigma^2)``,
``mean_i [0.5 ((y_i - mu_i) / sigma_i)^2 + log sigma_i]`` (the constant
``0.5 log 2 pi`` left out), and ``w_t`` = ``loss.regression_weight``.

Pure PyTorch: no I/O, no Lightning.  All losses are computed in float32 even
under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PAPER_ALPHAS",
    "class_weights",
    "cramer_distance",
    "gaussian_nll",
    "total_loss",
    "weighted_cross_entropy",
]

PAPER_ALPHAS: tuple[float, float, float, float] = (0.8, 0.1, 0.1, 0.1)
"""The paper's best (alpha_p, alpha_a, alpha_f, alpha_r)."""


class HeadOutputs(Protocol):
    """What :func:`total_loss` reads from a forward pass (``coolcore.nn.model.NetOutput``)."""

    logits: Tensor
    logits_primary: Tensor
    logits_aux: Tensor | None
    uses_regression: bool
    tcool_mu: Tensor | None
    tcool_sigma: Tensor | None


def class_weights(labels: Tensor | np.ndarray | Sequence[int], num_classes: int = 3) -> Tensor:
    """Per-class weights ``w_t = 1 / sqrt(count(t))`` (paper eq. 13).

    Parameters
    ----------
    labels : Tensor, ndarray or sequence of int
        Integer class indices of the training fold, each in ``0 .. num_classes - 1``.
    num_classes : int
        Number of classes (3: CC, WCC, NCC).

    Returns
    -------
    Tensor
        float32 (num_classes,), on the device of ``labels`` if it is a tensor.
        A class absent from ``labels`` gets weight 0: no training sample
        carries it, so the weight never enters the loss (raising would only
        stop a tiny fold from training).

    Examples
    --------
    >>> class_weights([0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    tensor([0.5000, 1.0000, 0.3333])
    """
    labels_t = torch.as_tensor(labels)
    if labels_t.dtype.is_floating_point or labels_t.dtype == torch.bool:
        if labels_t.numel() and not torch.equal(labels_t, labels_t.round()):
            raise ValueError("labels must be integer class indices")
    labels_t = labels_t.long().flatten()
    if labels_t.numel() and (labels_t.min() < 0 or labels_t.max() >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}, got values "
            f"{int(labels_t.min())}..{int(labels_t.max())}"
        )
    counts = torch.bincount(labels_t, minlength=num_classes).float()
    return torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))


def weighted_cross_entropy(logits: Tensor, targets: Tensor, class_weight: Tensor) -> Tensor:
    """Class-weighted cross-entropy divided by the batch size (paper eqs. 10-12).

    ``-(1/N) sum_i w[t_i] log softmax(logits_i)[t_i]``.

    Parameters
    ----------
    logits : Tensor
        (N, C) unnormalised scores.
    targets : Tensor
        Long (N,) class indices.
    class_weight : Tensor
        (C,) weights, e.g. from :func:`class_weights`.

    Returns
    -------
    Tensor
        Scalar float32.
    """
    nll = F.cross_entropy(logits.float(), targets.long(), reduction="none")  # (N,)
    w = class_weight.to(device=nll.device, dtype=nll.dtype)[targets.long()]
    return (w * nll).mean()


def cramer_distance(probs: Tensor, targets: Tensor) -> Tensor:
    """Squared Cramer (CDF L2) distance to one-hot targets, averaged over the batch.

    ``mean_i sum_k (cumsum(p_i)_k - cumsum(onehot(t_i))_k)^2`` (paper eq. 14).
    The last term of the sum is always 0 (both CDFs end at 1 for normalised
    ``probs``); it is kept so that the formula is the paper's.

    Parameters
    ----------
    probs : Tensor
        (B, C) predicted distributions over the ordered classes.
    targets : Tensor
        Long (B,) class indices.

    Returns
    -------
    Tensor
        Scalar float32.
    """
    probs = probs.float()
    onehot = F.one_hot(targets.long(), num_classes=probs.shape[1]).to(probs.dtype)
    diff = probs.cumsum(dim=1) - onehot.cumsum(dim=1)
    return diff.square().sum(dim=1).mean()


def gaussian_nll(mu: Tensor, sigma: Tensor, y: Tensor) -> Tensor:
    """Mean Gaussian negative log-likelihood, without its constant ``0.5 log(2 pi)``.

    ``mean_i [0.5 ((y_i - mu_i) / sigma_i)^2 + log sigma_i]``, in float32 whatever
    the inputs' precision (bf16 under autocast).

    Parameters
    ----------
    mu, sigma : Tensor
        (B,) predicted mean and standard deviation (``sigma > 0``).
    y : Tensor
        (B,) targets, e.g. log10 of the central cooling time in Gyr.

    Returns
    -------
    Tensor
        Scalar float32.

    Examples
    --------
    >>> round(gaussian_nll(torch.zeros(1), torch.ones(1), torch.ones(1)).item(), 6)
    0.5
    """
    mu, sigma, y = mu.float(), sigma.float(), y.to(device=mu.device, dtype=torch.float32)
    return (0.5 * ((y - mu) / sigma).square() + sigma.log()).mean()


def total_loss(
    outputs: HeadOutputs | Any,
    targets: Tensor,
    class_weight: Tensor,
    alphas: Sequence[float] = PAPER_ALPHAS,
    *,
    tcool: Tensor | None = None,
    regression_weight: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The paper's total loss ``a_p L_p + a_a L_a + a_f L_f + a_r L_r`` (eq. 9).

    Parameters
    ----------
    outputs : NetOutput
        A forward pass of :class:`coolcore.nn.model.MultiBranchAttentionNet`.  It
        says which terms apply: ``logits_aux is None`` means the plain
        ResNet-18 ``baseline``, whose loss is the weighted CE of its single
        head alone, unscaled (a constant factor such as ``a_p`` changes
        nothing for Adam, which is invariant to the loss's scale up to its
        epsilon); otherwise ``L_a`` and ``L_f`` (``logits``, the fusion head)
        are added, and ``L_r`` (Cramer distance of the primary head's softmax)
        only when ``outputs.uses_regression`` (variant ``all``).
    targets : Tensor
        Long (B,) class indices.
    class_weight : Tensor
        (C,) per-class weights (:func:`class_weights` of the training fold).
    alphas : sequence of 4 floats
        ``(a_p, a_a, a_f, a_r)``; the paper's best is (0.8, 0.1, 0.1, 0.1).
    tcool : Tensor, optional
        (B,) log10 of the central cooling time in Gyr: required when the
        network has the cooling-time head (``outputs.tcool_mu`` not None), whose
        :func:`gaussian_nll` is then added times ``regression_weight``.
    regression_weight : float
        ``loss.regression_weight``.

    Returns
    -------
    loss : Tensor
        Scalar float32 with gradient.
    parts : dict of str to Tensor
        Detached scalar tensors (no host sync, cheap to log): ``loss`` and the
        terms that apply among ``loss_primary``, ``loss_aux``, ``loss_fusion``,
        ``loss_regression`` (the Cramer term), ``loss_tcool`` (unweighted values).

    Raises
    ------
    ValueError
        A network with the cooling-time head and no ``tcool``.
    """
    if len(alphas) != 4:
        raise ValueError(f"alphas must be 4 numbers (a_p, a_a, a_f, a_r), got {tuple(alphas)}")
    a_p, a_a, a_f, a_r = (float(a) for a in alphas)
    loss_p = weighted_cross_entropy(outputs.logits_primary, targets, class_weight)
    parts: dict[str, Tensor] = {"loss_primary": loss_p}
    if outputs.logits_aux is None:
        loss = loss_p
    else:
        loss_a = weighted_cross_entropy(outputs.logits_aux, targets, class_weight)
        loss_f = weighted_cross_entropy(outputs.logits, targets, class_weight)
        parts.update(loss_aux=loss_a, loss_fusion=loss_f)
        loss = a_p * loss_p + a_a * loss_a + a_f * loss_f
        if getattr(outputs, "uses_regression", False):
            probs = torch.softmax(outputs.logits_primary.float(), dim=1)
            loss_r = cramer_distance(probs, targets)
            parts["loss_regression"] = loss_r
            loss = loss + a_r * loss_r
    mu = getattr(outputs, "tcool_mu", None)
    if mu is not None:
        if tcool is None:
            raise ValueError("the network has the cooling-time head: pass tcool (log10 Gyr)")
        loss_t = gaussian_nll(mu, outputs.tcool_sigma, tcool)
        parts["loss_tcool"] = loss_t
        loss = loss + float(regression_weight) * loss_t
    parts["loss"] = loss
    return loss, {name: value.detach() for name, value in parts.items()}
