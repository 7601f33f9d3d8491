"""Array helpers of :mod:`coolcore.data.observation`: windows that may reach off an
array, exact area-weighted rebinning weights, and the ring-median fill of masked pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["overlap_weights", "ring_fill", "window"]


def window(a: np.ndarray, ky: np.ndarray, kx: np.ndarray, fill: Any) -> np.ndarray:
    """``a[ky][:, kx]`` for consecutive indices, with ``fill`` where they lie off the array."""
    out = np.full((ky.size, kx.size), fill, dtype=a.dtype)
    y0, y1 = max(0, -ky[0]), min(ky.size, a.shape[0] - ky[0])
    x0, x1 = max(0, -kx[0]), min(kx.size, a.shape[1] - kx[0])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = a[ky[0] + y0 : ky[0] + y1, kx[0] + x0 : kx[0] + x1]
    return out


def overlap_weights(c: float, side: float, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Input pixels ``k`` that a square of side ``side`` centred at ``c`` (pixel centres at
    integers) touches, and ``W[i, k]``: the overlap length of output pixel ``i`` of ``grid``
    with input pixel ``k``, so that ``W @ a`` rebins conserving flux."""
    lo = c - side / 2
    k = np.arange(math.floor(lo + 0.5), math.ceil(lo + side - 0.5) + 1)
    edges = lo + side * np.arange(grid + 1) / grid
    w = np.minimum(edges[1:, None], k[None, :] + 0.5) - np.maximum(edges[:-1, None], k - 0.5)
    return k, np.clip(w, 0.0, None)


def ring_fill(rate: np.ndarray, ok: np.ndarray, r: np.ndarray, width: float) -> np.ndarray:
    """``rate`` with ``~ok`` pixels set to the interpolated ring-median profile (step 5)."""
    values, bins = rate[ok], (r[ok] / width).astype(np.int16)  # < 100 annuli
    values, n = values[np.argsort(bins, kind="stable")], np.bincount(bins)
    start, has = np.cumsum(n) - n, np.flatnonzero(n)
    median = np.array([np.median(values[start[i] : start[i] + n[i]]) for i in has])
    positive = values[values > 0]
    floor = float(positive.min()) if positive.size else float(np.finfo(float).tiny)
    out = rate.copy()
    out[~ok] = np.maximum(np.interp(r[~ok], (has + 0.5) * width, median), floor)
    return out
