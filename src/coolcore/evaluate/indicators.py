"""The astronomers' indicators of every map of a data set, measured once for all baselines.

:func:`dataset_features` gives ``c_SB`` (:func:`coolcore.evaluate.baselines.concentration`),
the 12-annulus profile (:func:`coolcore.evaluate.profiles.radial_profile`) and, where
the catalogue has ``r500_kpc``, ``c_scaled``: the features of the ablation's
classifiers (``c_SB (fit)``, ``profile (fit)``, ...) and of the cooling-time
regressions (:mod:`coolcore.evaluate.tcool_report`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["dataset_features"]


def dataset_features(
    catalog: pd.DataFrame, cfg: Any, notice: Callable[[str], None] = print
) -> dict[str, np.ndarray] | None:
    """``c_SB``, the radial profile (:mod:`coolcore.evaluate.profiles`) and ``c_scaled``
    (where ``r500_kpc`` is given) of every map of a catalogue.

    The indicators are measured on the maps as stored (linear flux), which needs
    the pixel scale (``pixel_kpc``) and, for the scaled one, ``r500_kpc`` (the
    catalogue's true R500: not estimated from the data).  Observations
    (:mod:`coolcore.data.observation`) are measured on the field the network sees
    before its log: background-subtracted, exposure-corrected, masked pixels
    filled, at ``cfg.field_kpc / cfg.crop`` kpc per pixel.  None (with a notice)
    where they cannot be measured (``notice`` says why).
    """
    from coolcore.data.brightness import sphere_area_mpc2
    from coolcore.data.images import read_image
    from coolcore.data.inputs import catalog_inputs, observation_field
    from coolcore.evaluate.baselines import concentration, scaled_concentration
    from coolcore.evaluate.profiles import radial_profile

    items = catalog_inputs(catalog)
    observed = [it.is_observation for it in items]
    if any(observed):  # the same background-subtracted, exposure-corrected field as the network
        if not all(observed):
            notice("concentration baselines skipped: the catalogue mixes observations and maps")
            return None
        fields = [observation_field(it, field_kpc=cfg.field_kpc, grid=cfg.crop) for it in items]
        raw = np.stack([f.image for f in fields])
        pix = np.full(len(catalog), cfg.field_kpc / cfg.crop)
        redshifts = [f.redshift for f in fields]
    elif "pixel_kpc" not in catalog:
        notice("concentration baselines skipped: the catalogue has no pixel_kpc column")
        return None
    else:
        raw = np.stack([read_image(p) for p in catalog["path"]])
        pix = catalog["pixel_kpc"].to_numpy(dtype=float)
    luminous = raw
    if any(observed):  # count rates fall as 1 / D_L^2: the profile is put on one scale
        if None in redshifts:
            notice("profile baseline: a map without redshift; count rates left at their distances")
        else:  # the profile of the surface luminosity (rate per kpc^2 x 4 pi D_L^2 / Mpc^2)
            area = [sphere_area_mpc2(f.redshift, f.cosmology, f.name) for f in fields]
            luminous = raw * np.asarray(area)[:, None, None]
    features = {
        "c_SB": concentration(raw, pix),
        "profile": radial_profile(luminous, pix),
    }
    if "r500_kpc" in catalog:
        r500 = catalog["r500_kpc"].to_numpy(dtype=float)
        features["c_scaled"] = scaled_concentration(raw, pix, r500)
    return features
