"""Read X-ray maps in any supported format; validate them once, at the edge.

Maps
----
:func:`read_image` returns the map *as stored* (2-D ``float64``, NaN kept), from

* FITS (``.fits``, ``.fit``, ``.fts``, ``.fz`` and their ``.gz`` forms): the first
  HDU that holds an image of two or more axes (the primary array, an image
  extension or a tile-compressed ``CompImageHDU``, wherever tables stand before
  it), or the one named/numbered by ``hdu``.  Files are opened leniently
  (``ignore_missing_end=True``; a ``SIMPLE`` card that is the string ``'T'``, or no
  ``SIMPLE`` card, is read with ``ignore_missing_simple=True``; a header card
  astropy cannot parse is repaired with ``verify("silentfix+ignore")``);
  BSCALE/BZERO are applied and big-endian data are converted.  An event list
  (an ``EVENTS`` table, or a table with ``X``/``Y`` columns, and no image) is
  refused with a message saying to bin it (:func:`coolcore.data.events.bin_events`).
* NumPy ``.npy`` (never unpickled).
* HDF5 (``.h5``, ``.hdf5``, ``.hdf``): ``file.h5:group/dataset`` names a dataset
  (so does a string ``hdu``); otherwise a root dataset named ``image``, else the
  only 2-D dataset, else the only dataset of two or more dimensions.
* PNG / TIFF (``.png``, ``.tif``, ``.tiff``) via Pillow: grey images as stored
  (8, 16, 32-bit integer or float); multi-page TIFFs are cubes (one page per
  plane); an RGB(A) image whose three channels are equal is read as grey, any
  other RGB(A) image is converted to luminance ``0.299 R + 0.587 G + 0.114 B``
  (ITU-R 601, alpha ignored) with a warning, because a colour map does not
  invert to the measured values.

A file whose extension is none of these is recognised by its first bytes.
An array with size-1 axes is squeezed.  A true 3-D cube needs ``plane``, an index
along its first NumPy axis (FITS ``NAXIS3``, the HDF5/NPY leading axis, the TIFF
page).  Everything a user can get wrong raises :class:`coolcore.errors.ImageError`
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from coolcore.data.checks import first_line, missing_file_problem, pixel_kpc_problem
from coolcore.data.formats import (
    choose_hdu,
    cube_message,
    format_of,
    open_fits,
    quiet_astropy,
    read_fits_array,
    read_hdf5_array,
    read_npy_array,
    read_pil_array,
    split_hdf5_spec,
)
from coolcore.errors import ImageError

__all__ = [
    "image_header_info",
    "read_image",
]


def _as_2d(arr: np.ndarray, path: Path, plane: int | None) -> np.ndarray:
    """Validate dtype and shape, pick the plane of a cube, return 2-D float64."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "c":
        raise ImageError(f"{path}: complex data ({arr.dtype}) is not an image")
    if arr.dtype.kind not in "iuf":
        raise ImageError(f"{path}: non-numeric data (dtype {arr.dtype}) is not an image")
    if arr.size == 0:
        raise ImageError(f"{path}: empty array of shape {arr.shape}")
    squeezed = arr.squeeze() if arr.ndim > 2 else arr
    if squeezed.ndim == 3:
        if plane is None:
            raise ImageError(cube_message(path, squeezed.shape))
        if not -squeezed.shape[0] <= plane < squeezed.shape[0]:
            raise ImageError(
                f"{path}: plane {plane} is out of range for a cube of shape {squeezed.shape}"
            )
        squeezed = squeezed[plane]
    elif plane not in (None, 0) and squeezed.ndim == 2:
        raise ImageError(f"{path}: plane {plane} asked of a 2-D image of shape {squeezed.shape}")
    if squeezed.ndim != 2:
        raise ImageError(f"{path}: not a 2-D image (array of shape {arr.shape})")
    out = np.asarray(squeezed, dtype=np.float64)  # also converts any byte order to native
    if not (np.isfinite(out) & (out > 0)).any():
        raise ImageError(f"{path}: no finite positive pixel")
    return np.ascontiguousarray(out)


def read_image(
    path: str | Path, *, hdu: int | str | None = None, plane: int | None = None
) -> np.ndarray:
    """Read one X-ray map as stored.

    Parameters
    ----------
    path : str or Path
        The file (see the module docstring for formats).  For HDF5,
        ``file.h5:group/dataset`` names the dataset.
    hdu : int or str, optional
        FITS: the HDU index or EXTNAME (default: the first HDU holding an image).
        HDF5: the dataset path (same as the ``:dataset`` suffix).
    plane : int, optional
        Index along the first axis of a 3-D cube (or TIFF page).  Required for a
        cube, not allowed (unless 0) for a 2-D image.

    Returns
    -------
    numpy.ndarray
        2-D ``float64`` array, C-contiguous, native byte order; non-finite
        pixels are kept (preprocessing replaces them).

    Raises
    ------
    coolcore.errors.ImageError
        One-line message starting with the path: missing, unreadable or
        truncated file, unknown format, a cube without ``plane``, complex or
        non-numeric or empty data, no finite positive pixel.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "m.npy")
    >>> np.save(f, np.arange(1, 7, dtype=np.int16).reshape(2, 3))
    >>> read_image(f).dtype, read_image(f).shape
    (dtype('float64'), (2, 3))
    """
    file, dataset = split_hdf5_spec(path)
    problem = missing_file_problem(file)
    if problem is not None:
        raise ImageError(f"{file}: {problem}")
    fmt = format_of(file)
    if fmt == "fits":
        arr = read_fits_array(file, hdu)
    elif fmt == "npy":
        arr = read_npy_array(file)
    elif fmt == "hdf5":
        if dataset is None and hdu is not None:
            dataset = str(hdu)
        arr = read_hdf5_array(file, dataset)
    else:
        arr, plane = read_pil_array(file, plane)
    return _as_2d(arr, Path(os.fspath(path)), plane)


_HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "cluster_id": ("CLUSTID", "CLUSTER", "CLUSTERID"),
    "projection": ("PROJ", "PROJAXIS", "AXIS"),
    "label": ("LABEL", "CCLABEL", "CLASS"),
    "t_cool_gyr": ("TCOOL", "TCOOLGYR", "T_COOL"),
    "m500_msun": ("M500", "M500MSUN"),
    "r500_kpc": ("R500", "R500KPC"),
    "T_keV": ("TKEV", "T_KEV", "TX"),
    "n_e0_cm3": ("NE0", "NE0CM3"),
    "instrument": ("INSTRUME",),
    "redshift": ("REDSHIFT", "Z", "Z_CL", "ZCLUST"),
}


def image_header_info(path: str | Path, *, hdu: int | str | None = None) -> dict[str, Any]:
    """What a map's header says about it.

    Parameters
    ----------
    path : str or Path
        A FITS file (its image HDU's header) or an HDF5 dataset (its attributes).
        Other formats carry no header and give all-``None`` values.
    hdu : int or str, optional
        As in :func:`read_image`.

    Returns
    -------
    dict
        ``pixel_kpc`` (float or None; header keyword ``PIXKPC``, which must be
        a positive finite number when present), ``bunit``
        (str or None; ``BUNIT``), and, when present, ``cluster_id``,
        ``projection``, ``label``, ``t_cool_gyr``, ``m500_msun``, ``r500_kpc``,
        ``T_keV``, ``n_e0_cm3``, ``instrument``, ``redshift`` (read from the keywords in ``_HEADER_ALIASES``).

    Raises
    ------
    coolcore.errors.ImageError
        An unreadable file, or a ``PIXKPC`` that is not a positive finite number.
    """
    file, dataset = split_hdf5_spec(path)
    problem = missing_file_problem(file)
    if problem is not None:
        raise ImageError(f"{file}: {problem}")
    header = _header_of(file, format_of(file), dataset, hdu)
    info: dict[str, Any] = {"pixel_kpc": None, "bunit": None}
    if "PIXKPC" in header:
        value = _scalar(header["PIXKPC"])
        problem = pixel_kpc_problem(value)
        if problem is not None:
            raise ImageError(f"{file}: header keyword PIXKPC = {value!r}: {problem}")
        info["pixel_kpc"] = float(value)
    if "BUNIT" in header:
        info["bunit"] = str(_scalar(header["BUNIT"]))
    for key, aliases in _HEADER_ALIASES.items():
        for alias in aliases:
            if alias in header:
                info[key] = _scalar(header[alias])
                break
    return info


def _scalar(value: Any) -> Any:
    """A header value as a plain Python scalar (bytes decoded)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _header_of(file: Path, fmt: str, dataset: str | None, hdu: int | str | None) -> dict:
    """Upper-case keyword -> value of a FITS HDU's header or an HDF5 dataset's attributes."""
    header: dict[str, Any] = {}
    if fmt == "fits":
        with quiet_astropy():
            try:
                with open_fits(file) as hdul:
                    hdul.verify("silentfix+ignore")
                    chosen = choose_hdu(hdul, hdu, file)
                    for card in chosen.header.cards:
                        try:
                            header[card.keyword.upper()] = card.value
                        except Exception:  # an unparsable card: skip it
                            continue
            except ImageError:
                raise
            except Exception as exc:
                raise ImageError(f"{file}: not a readable FITS file ({first_line(exc)})") from None
    elif fmt == "hdf5":
        import h5py

        name = dataset or (str(hdu) if hdu is not None else "image")
        try:
            with h5py.File(file, "r") as fh:
                obj = fh.get(name)
                if obj is not None:
                    header = {k.upper(): v for k, v in obj.attrs.items()}
        except Exception as exc:
            raise ImageError(f"{file}: not a readable HDF5 file ({first_line(exc)})") from None
    return header
