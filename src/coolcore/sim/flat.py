"""The flat observed mode of the emissivity sample (``coolcore simulate --observed``).

One exposure at one distance with a flat background: the map of line-of-sight
emissivity becomes expected photon counts per pixel (:func:`expected_counts`); the
Poisson draw is :func:`coolcore.sim.simulate.observe_counts`.  The instrument mocks
are :mod:`coolcore.sim.observe`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from coolcore.sim import physics as ph
from coolcore.sim.instruments import KEV_ERG

__all__ = [
    "OBSERVED_DISTANCE_MPC",
    "OBSERVED_EFFECTIVE_AREA_CM2",
    "OBSERVED_PHOTON_KEV",
    "expected_counts",
]

OBSERVED_EFFECTIVE_AREA_CM2 = 400.0
OBSERVED_DISTANCE_MPC = 230.0
OBSERVED_PHOTON_KEV = 2.0
"""The flat observed mode (``simulate_sample(observed=True)``) puts the cluster at
230 Mpc (z ~ 0.05), collects with 400 cm^2 and counts photons of 2 keV."""

_MPC_CM = 3.0857e24


def expected_counts(
    image: NDArray[np.float64], pixel_kpc: float, exposure_ks: float, background: float
) -> NDArray[np.float64]:
    """Expected photon counts per pixel for a map of line-of-sight emissivity (erg s^-1 cm^-2).

    ``S A_pix t A_eff / (4 pi D^2 E_ph) + background t_ks`` with ``A_pix`` the pixel
    area in cm^2, ``t`` the exposure in s, ``A_eff = 400 cm^2``, ``D = 230 Mpc`` and
    ``E_ph = 2 keV`` (see the ``OBSERVED_*`` constants); ``background`` is in counts
    per pixel per ks.
    """
    area_pix_cm2 = (pixel_kpc * ph.KPC_CM) ** 2
    dist_cm = OBSERVED_DISTANCE_MPC * _MPC_CM
    t_s = exposure_ks * 1e3
    rate_per_sb = (area_pix_cm2 * OBSERVED_EFFECTIVE_AREA_CM2 / (4 * math.pi * dist_cm**2)) / (
        OBSERVED_PHOTON_KEV * KEV_ERG
    )
    return image * rate_per_sb * t_s + background * exposure_ks
