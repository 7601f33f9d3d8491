"""The network's options, declared once: variants, mask combinations and valid ranges.

Everything that names a variant (the run config, the command line, the
ablation) reads :data:`VARIANTS` and :data:`COMBINE_MODES` from here, and both
the run config (at the edge) and :class:`coolcore.nn.model.MultiBranchAttentionNet`
check their values with :func:`check_network_options`.  No torch import: the
command line can list the choices without loading the network.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from coolcore.errors import UsageError

__all__ = ["COMBINE_MODES", "CROP_SOURCES", "NETWORK_KEYS", "VARIANTS", "check_network_options"]

VARIANTS: tuple[str, ...] = ("baseline", "att", "gauss", "att+gauss", "all")
"""The rows of the paper's Table I."""

COMBINE_MODES: tuple[str, ...] = ("union", "intersection")
"""How the CAM mask B1 and the Gaussian mask B2 are combined (two-mask variants)."""

CROP_SOURCES: tuple[str, ...] = ("input", "full")
"""What the auxiliary branch's crop is cut from: the network input (the default), or
the full-resolution map the input was resized from (the box scaled to it)."""

NETWORK_KEYS: tuple[str, ...] = (
    "variant",
    "combine",
    "weights",
    "num_classes",
    "aux_size",
    "tau1",
    "tau2",
    "lam",
    "center_smoothing",
    "regression",
    "crop_source",
)
"""The network's constructor options, as a run config's ``model`` section and
``model.json`` record them (``num_classes`` comes from the class names).
``regression`` (true or false) adds the head of log10 of the central cooling time;
``crop_source`` is one of :data:`CROP_SOURCES`."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "variant": VARIANTS,
    "combine": COMBINE_MODES,
    "crop_source": CROP_SOURCES,
}

_RANGES: dict[str, tuple[float, float]] = {
    "num_classes": (2, 1000),
    "aux_size": (32, 4096),  # pixels; None: the input's own size
    "tau1": (0.0, 1.0),
    "tau2": (0.0, 1.0),
    "lam": (1e-6, 1e6),
    "center_smoothing": (0, 63),  # pixels, 0 (off) or odd
}


def _problem(key: str, value: Any) -> str | None:
    """What is wrong with one option's value, or None."""
    if key in _CHOICES:
        if str(value) not in _CHOICES[key]:
            return f"must be one of {', '.join(_CHOICES[key])}"
        return None
    if key == "weights":
        if not isinstance(value, str | os.PathLike) or not str(value):
            return "must be none, imagenet or a file path"
        return None
    if key == "regression":
        return None if isinstance(value, bool) else "must be true or false"
    if key not in _RANGES or (key == "aux_size" and value is None):
        return None
    low, high = _RANGES[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return "must be a number"
    if not low <= value <= high:
        return f"must lie in [{low}, {high}]"
    if isinstance(low, int) and isinstance(high, int) and value != int(value):
        return "must be an integer"
    if key == "center_smoothing" and value % 2 == 0 and value != 0:
        return "must be 0 or odd"
    return None


def check_network_options(options: Mapping[str, Any], *, prefix: str = "") -> None:
    """Check the network options present in ``options``; raise on the first bad one.

    The one place the ranges are written: the run config's validation calls it
    with ``prefix="config model."``, the network's constructor with no prefix.

    Parameters
    ----------
    options : mapping
        Any of :data:`NETWORK_KEYS` (absent ones are not checked; other keys are
        ignored): ``variant`` in :data:`VARIANTS`, ``combine`` in
        :data:`COMBINE_MODES`, ``weights`` a non-empty string or path,
        ``num_classes`` an integer in [2, 1000], ``aux_size`` None or an integer
        in [32, 4096] pixels, ``tau1`` and ``tau2`` in [0, 1], ``lam`` in
        [1e-6, 1e6], ``center_smoothing`` 0 or an odd integer up to 63 pixels,
        ``regression`` true or false, ``crop_source`` in :data:`CROP_SOURCES`.
    prefix : str
        Put before the key in the message, e.g. ``"config model."``.

    Raises
    ------
    coolcore.errors.UsageError
        ``PREFIXKEY=VALUE: PROBLEM``, e.g. ``config model.tau1=1.5: must lie in [0.0, 1.0]``.

    Examples
    --------
    >>> check_network_options({"variant": "all", "tau1": 0.7})
    >>> check_network_options({"lam": 0})
    Traceback (most recent call last):
    ...
    coolcore.errors.UsageError: lam=0: must lie in [1e-06, 1000000.0]
    """
    for key in NETWORK_KEYS:
        if key not in options:
            continue
        value = options[key]
        problem = _problem(key, value)
        if problem is not None:
            shown = value if isinstance(value, int | float) else repr(value)
            raise UsageError(f"{prefix}{key}={shown}: {problem}")
