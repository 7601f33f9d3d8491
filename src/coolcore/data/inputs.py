"""Maps to classify (files, folders, catalogues, arrays) and their pixel scale.

Bringing a map to the model
---------------------------
The network was trained on ``crop`` x ``crop``-pixel central windows of maps
with pixel scale ``p_train`` kpc (field of view ``F = crop * p_train`` kpc),
resized to ``input_size``.  For a new map of pixel scale ``p`` the central
window of ``N`` x ``N`` map pixels is cut out, preprocessed like the training
maps (log, min-max) and resized to ``input_size``:

1. ``crop_px=N`` (``--crop-px``): ``N`` as given.
2. ``crop_kpc=X`` (``--crop-kpc``): ``N = round(X / p)``; needs ``p``.
3. Otherwise, when both ``p`` and ``p_train`` are known: ``N = round(F / p)``,
   the training field of view; else ``N = crop`` (the training window in pixels).

``p`` comes from, in this order: ``pixel_kpc=`` (``--pixel-kpc``), the
catalogue's ``pixel_kpc`` column, the header keyword ``PIXKPC``, or a FITS
celestial WCS together with a ``REDSHIFT`` (or ``Z``) header keyword, converted
with astropy's Planck18 cosmology.  A map whose ``p`` differs from ``p_train``
by more than 20 % gets a one-line warning: the resize matches the field of view,
not the resolution the network learned from.  A window larger than the map is
an error for that map.

Observations
------------
A map that comes with an exposure map, a background map or a centre
(``--exposure``/``--background``/``--center``, or the catalogue columns
``exposure``, ``background``, ``ra``/``dec``) is an *observation*: it goes
through :func:`coolcore.data.observation.prepare_observation` instead (pixel
scale from WCS + redshift, centre, background, exposure correction, masked
pixels filled, the training field cut and rebinned conserving flux), the path
that simulated mock observations take too (:func:`observation_field`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolcore.errors import ImageError, UsageError

__all__ = [
    "MapInput",
    "as_inputs",
    "catalog_inputs",
    "observation_field",
    "collect_inputs",
    "input_window_px",
]


# --------------------------------------------------------------------------- inputs
@dataclass
class MapInput:
    """One map to classify: a file, or an array already in memory.

    Attributes
    ----------
    file : str
        The path as given ("" for an array).
    image_id : str
        Identifier in the output (catalogue ``image_id``, else the file name without
        its extension, else ``image_<i>``).
    array : numpy.ndarray or None
        The map, when it is not read from ``file``.
    pixel_kpc : float or None
        Pixel scale from a catalogue column or the caller.
    cluster_id, label : str or None
        From a catalogue, for metrics.
    exposure, background : str or None
        Paths of the observation's exposure map (s) and background map (counts).
    redshift : float or None
        The cluster's redshift (else the header's ``REDSHIFT``).
    center : (float, float) or None
        The cluster centre (RA, Dec) in degrees (else found on the map).
    t_cool_gyr : float or None
        The true central cooling time, where a catalogue gives it.
    bin_size : float or None
        An event list given as the map is binned on its sky X/Y in bins of this
        many sky pixels (``--bin``); the result is an observation.
    """

    file: str
    image_id: str
    array: np.ndarray | None = None
    pixel_kpc: float | None = None
    cluster_id: str | None = None
    label: str | None = None
    exposure: str | None = None
    background: str | None = None
    redshift: float | None = None
    center: tuple[float, float] | None = None
    t_cool_gyr: float | None = None
    bin_size: float | None = None

    @property
    def name(self) -> str:
        return self.file or self.image_id

    @property
    def is_observation(self) -> bool:
        """True when the map comes with an exposure, a background, a centre or ``--bin``."""
        return any(
            v is not None for v in (self.exposure, self.background, self.center, self.bin_size)
        )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".fz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return Path(name).stem if "." in name else name


def _folder_maps(folder: Path) -> list[Path]:
    from coolcore.data.formats import IMAGE_SUFFIXES

    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(root) / f)
    return found


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def catalog_inputs(df: pd.DataFrame) -> list[MapInput]:
    """One :class:`MapInput` per row of a catalogue read by :func:`~coolcore.data.catalog.read_catalog`."""
    items = []
    for rec in df.to_dict("records"):
        pix = _finite(rec.get("pixel_kpc"))
        ra, dec = _finite(rec.get("ra")), _finite(rec.get("dec"))
        items.append(
            MapInput(
                file=str(rec["path"]),
                image_id=str(rec["image_id"]),
                pixel_kpc=pix if pix and pix > 0 else None,
                cluster_id=str(rec["cluster_id"]),
                label=rec["label"] if isinstance(rec.get("label"), str) else None,
                exposure=rec.get("exposure_path") or None,
                background=rec.get("background_path") or None,
                redshift=_finite(rec.get("redshift")),
                center=(ra, dec) if ra is not None and dec is not None else None,
                t_cool_gyr=_finite(rec.get("t_cool_gyr")),
            )
        )
    return items


def collect_inputs(
    paths: Sequence[str | os.PathLike] = (),
    catalog: str | os.PathLike | None = None,
    *,
    exposure: str | None = None,
    background: str | None = None,
    redshift: float | None = None,
    center: tuple[float, float] | None = None,
    bin_size: float | None = None,
) -> list[MapInput]:
    """The maps named on the command line: files, folders (searched recursively) and a catalogue.

    A path that does not exist is kept: it becomes an error row when predicted.
    A folder contributes every file with a known image extension
    (:data:`coolcore.data.images.IMAGE_SUFFIXES`), sorted; hidden files and folders are skipped.
    ``exposure``, ``background``, ``redshift`` and ``center`` describe one
    observation given as the only map (many maps take them from catalogue columns);
    ``bin_size`` (``--bin``) applies to every map: event lists are binned, and every
    map goes through the observation path.

    Raises
    ------
    coolcore.errors.UsageError
        Nothing to predict, a folder without maps, or one-map options with several maps.
    coolcore.errors.CatalogError
        An unreadable catalogue.
    """
    from coolcore.data.catalog import read_catalog

    items: list[MapInput] = []
    if catalog is not None:
        items.extend(catalog_inputs(read_catalog(catalog, require_labels=False, check_files=False)))
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            maps = _folder_maps(p)
            if not maps:
                raise UsageError(
                    f"{p}: folder holds no maps (known extensions: .fits, .npy, .h5, .png ...)"
                )
            items.extend(MapInput(file=str(m), image_id=_stem(m)) for m in maps)
        else:
            items.append(MapInput(file=str(p), image_id=_stem(p)))
    if not items:
        raise UsageError("no maps given: pass files, folders or --catalog CSV")
    one_map = {
        "--exposure": exposure,
        "--background": background,
        "--redshift": redshift,
        "--center": center,
    }
    given = [k for k, v in one_map.items() if v is not None]
    if given:
        if len(items) != 1 or catalog is not None:
            raise UsageError(
                f"{given[0]} describes one observation: give exactly one map (for many maps, "
                "use catalogue columns exposure, background, redshift, ra, dec)"
            )
        item = items[0]
        item.exposure, item.background = exposure, background
        item.redshift = redshift
        item.center = tuple(center) if center is not None else None
    if bin_size is not None:
        for item in items:
            item.bin_size = float(bin_size)
    return items


def as_inputs(images_or_paths: Any, pixel_kpc: float | None = None) -> list[MapInput]:
    """The maps of the Python API's argument, as :class:`MapInput` records.

    Parameters
    ----------
    images_or_paths
        A path (a file, or a folder searched as by :func:`collect_inputs`), a
        2-D array, an (N, H, W) stack, a :class:`MapInput`, or a sequence of these.
    pixel_kpc : float, optional
        Pixel scale in kpc given to the arrays (files keep theirs).

    Returns
    -------
    list of MapInput
        Arrays are named ``image_<i>`` by their position.
    """
    if isinstance(images_or_paths, MapInput):
        return [images_or_paths]
    if isinstance(images_or_paths, str | os.PathLike):
        p = Path(images_or_paths)
        return collect_inputs([p]) if p.is_dir() else [MapInput(str(p), _stem(p))]
    if isinstance(images_or_paths, np.ndarray):
        arr = images_or_paths
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise UsageError(
                f"images: expected a 2-D map or an (N, H, W) stack, got shape {arr.shape}"
            )
        return [MapInput("", f"image_{i}", array=a, pixel_kpc=pixel_kpc) for i, a in enumerate(arr)]
    out: list[MapInput] = []
    for i, item in enumerate(images_or_paths):
        if isinstance(item, MapInput):
            out.append(item)
        elif isinstance(item, str | os.PathLike):
            p = Path(item)
            out.extend(collect_inputs([p]) if p.is_dir() else [MapInput(str(p), _stem(p))])
        else:
            arr = np.asarray(item)
            out.append(MapInput("", f"image_{i}", array=arr, pixel_kpc=pixel_kpc))
    return out


def observation_field(
    item: MapInput,
    *,
    field_kpc: float,
    grid: int,
    pixel_kpc: float | None = None,
    cosmology: str | None = None,
) -> Any:
    """Bring one observation to a ``grid`` x ``grid`` field of ``field_kpc`` kpc.

    Reads the counts (``item.file`` or ``item.array``), the exposure and background
    maps, and runs :func:`coolcore.data.observation.prepare_observation`.

    Returns
    -------
    coolcore.data.observation.PreparedField

    Raises
    ------
    coolcore.errors.ImageError
        The observation cannot be used (one line naming the file).
    """
    from coolcore.data.observation import (
        DEFAULT_COSMOLOGY,
        prepare_observation,
        read_observation,
    )

    obs = read_observation(
        item.array if item.array is not None else item.file,
        exposure=item.exposure,
        background=item.background,
        redshift=item.redshift,
        center=item.center,
        pixel_kpc=pixel_kpc or item.pixel_kpc,
        name=item.name,
        bin_size=item.bin_size,
    )
    return prepare_observation(
        obs, field_kpc=field_kpc, grid=grid, cosmology=cosmology or DEFAULT_COSMOLOGY
    )


# ------------------------------------------------------------------ pixel scale
def window_options(
    crop_px: int | None = None,
    crop_kpc: float | None = None,
    pixel_kpc: float | None = None,
    cosmology: str | None = None,
) -> dict:
    """The user's window options, checked: ``{"crop_px", "crop_kpc", "pixel_kpc", "cosmology"}``.

    Raises
    ------
    coolcore.errors.UsageError
        ``crop_px`` below 2, or ``crop_kpc`` / ``pixel_kpc`` not a positive number.
    """
    if crop_px is not None and crop_px < 2:
        raise UsageError(f"--crop-px {crop_px}: must be at least 2")
    if crop_kpc is not None and not crop_kpc > 0:
        raise UsageError(f"--crop-kpc {crop_kpc}: must be a positive number of kpc")
    if pixel_kpc is not None and not pixel_kpc > 0:
        raise UsageError(f"--pixel-kpc {pixel_kpc}: must be a positive number of kpc")
    return {
        "crop_px": crop_px,
        "crop_kpc": crop_kpc,
        "pixel_kpc": pixel_kpc,
        "cosmology": cosmology,
    }


def input_window_px(
    shape: tuple[int, int],
    map_pixel_kpc: float | None,
    *,
    model_crop_px: int,
    model_pixel_kpc: float | None,
    crop_px: int | None = None,
    crop_kpc: float | None = None,
    name: str = "",
) -> int:
    """Side ``N`` of the central window of a map that is brought to the model input.

    See the module docstring for the rules.

    Parameters
    ----------
    shape : (int, int)
        The map's (rows, columns).
    map_pixel_kpc : float or None
        The map's pixel scale in kpc.
    model_crop_px, model_pixel_kpc
        The training window in pixels and the training pixel scale (kpc, or None).
    crop_px, crop_kpc
        The user's choice (at most one).

    Raises
    ------
    coolcore.errors.ImageError
        ``crop_kpc`` without a pixel scale, or a window larger than the map.
    """
    prefix = f"{name}: " if name else ""
    if crop_px is not None and crop_kpc is not None:
        raise UsageError("--crop-px and --crop-kpc exclude each other: pick one")
    if crop_px is not None:
        n, how = int(crop_px), f"--crop-px {crop_px}"
    elif crop_kpc is not None:
        if not map_pixel_kpc:
            raise ImageError(
                f"{prefix}--crop-kpc needs the map's pixel scale: give --pixel-kpc, a catalogue "
                "pixel_kpc column or the header keyword PIXKPC"
            )
        n, how = int(round(crop_kpc / map_pixel_kpc)), f"--crop-kpc {crop_kpc:g}"
    elif map_pixel_kpc and model_pixel_kpc:
        fov = model_crop_px * model_pixel_kpc
        n = int(round(fov / map_pixel_kpc))
        how = f"the training field of view {fov:g} kpc at {map_pixel_kpc:g} kpc/pixel"
    else:
        n, how = int(model_crop_px), "the training window in pixels"
    if n < 2:
        raise ImageError(f"{prefix}the window of {n} px ({how}) is too small")
    if n > min(shape):
        raise ImageError(
            f"{prefix}map of {shape[0]} x {shape[1]} px is smaller than the {n} px window "
            f"({how}); pass --crop-px N with N <= {min(shape)}"
        )
    return n
