"""coolcore: classify galaxy clusters as CC / WCC / NCC from X-ray maps."""

from __future__ import annotations

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, str, str] = ("CC", "WCC", "NCC")
"""The three classes in their physical order (shortest cooling time first)."""

T_COOL_CC_GYR = 1.0
"""Central cooling time at or below which a cluster is a cool core (Gyr)."""

T_COOL_NCC_GYR = 7.7
"""Central cooling time at or above which a cluster is a non-cool core (Gyr)."""

__all__ = ["CLASS_NAMES", "T_COOL_CC_GYR", "T_COOL_NCC_GYR", "__version__"]
