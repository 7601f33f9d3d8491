"""coolcore: classify galaxy clusters as CC / WCC / NCC from X-ray maps."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from coolcore.apps.trained import TrainedModel

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, str, str] = ("CC", "WCC", "NCC")
"""The three classes in their physical order (shortest cooling time first)."""

T_COOL_CC_GYR = 1.0
"""Central cooling time at or below which a cluster is a cool core (Gyr)."""

T_COOL_NCC_GYR = 7.7
"""Central cooling time at or above which a cluster is a non-cool core (Gyr)."""


def load_model(path: str | os.PathLike, *, device: str | None = None) -> TrainedModel:
    """Load a trained model folder (``coolcore export``) or a cv run for prediction.

    A lazy wrapper of :func:`coolcore.apps.inference.load_model` (importing
    ``coolcore`` does not import torch).  ``model.predict(images_or_paths)``
    returns a :class:`pandas.DataFrame` of class probabilities.
    """
    from coolcore.apps.inference import load_model as _load_model

    return _load_model(path, device=device)


__all__ = ["CLASS_NAMES", "T_COOL_CC_GYR", "T_COOL_NCC_GYR", "__version__", "load_model"]
