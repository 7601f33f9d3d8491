"""The cooling-time head: log10 of the central cooling time with an uncertainty per map.

An option of every variant (``model.regression``, docs/method.md): a linear layer
on the features the class head reads (the fused ``concat(V1, V2)``, or ``V1`` for
``baseline``) gives ``(mu, s)``; ``sigma = softplus(s) + TCOOL_SIGMA_FLOOR_DEX``, so
that ``log10(t_cool / Gyr) ~ N(mu, sigma^2)``. It runs in float32 outside autocast
(the Gaussian likelihood is sensitive to rounding), and starts at a stated prior
for every map (zero weights): a randomly initialised head gave a likelihood of
hundreds in the first epoch and wrecked the trunks (results/regression-demo).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TCOOL_INIT_MU_DEX", "TCOOL_INIT_SIGMA_DEX", "TCOOL_SIGMA_FLOOR_DEX", "CoolingTimeHead"]

TCOOL_SIGMA_FLOOR_DEX = 1e-3
"""Smallest standard deviation (dex) the head can give: sigma = softplus(s) + this."""
TCOOL_INIT_MU_DEX, TCOOL_INIT_SIGMA_DEX = 0.5, 0.5
"""Where the head starts for every map: log10 t_cool / Gyr and its sigma (dex)."""


class CoolingTimeHead(nn.Linear):
    """``Linear(in_features -> 2)`` started at the prior; :meth:`gaussian` gives mu, sigma.

    A subclass of :class:`torch.nn.Linear`, so its parameters are ``weight`` and
    ``bias`` as a plain linear layer's (the state dict of a trained network is the
    same as before this class existed).
    """

    def __init__(self, in_features: int) -> None:
        super().__init__(in_features, 2)
        nn.init.zeros_(self.weight)
        raw_sigma = math.log(math.expm1(TCOOL_INIT_SIGMA_DEX - TCOOL_SIGMA_FLOOR_DEX))
        with torch.no_grad():
            self.bias.copy_(torch.tensor([TCOOL_INIT_MU_DEX, raw_sigma]))

    def gaussian(self, features: Tensor) -> dict[str, Tensor]:
        """``tcool_mu`` and ``tcool_sigma`` (B,) in float32, computed outside autocast."""
        with torch.autocast(features.device.type, enabled=False):
            out = self(features.float())
        return {"tcool_mu": out[:, 0], "tcool_sigma": F.softplus(out[:, 1]) + TCOOL_SIGMA_FLOOR_DEX}
