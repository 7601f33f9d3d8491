"""Readers of the map file formats: one function per format, each returning the array as stored.

:func:`coolcore.data.images.read_image` picks the reader with :func:`format_of`
(the file name's ending, else its first bytes) and turns what it returns into a
2-D map.  Every problem raises :class:`coolcore.errors.ImageError` with a one-line
message that starts with the file's path.

FITS files are opened by :func:`open_fits`, leniently: a missing ``END`` card is
tolerated, and a file astropy refuses for its ``SIMPLE`` card (a string ``'T'``
instead of the logical ``T``, or no ``SIMPLE`` card at all, e.g. a file that starts
with ``XTENSION``) is opened again with ``ignore_missing_simple=True``.
:func:`choose_hdu` takes the first HDU holding an image of two or more axes (a
primary array, an image extension or a tile-compressed image, after any tables),
and recognises an X-ray event list given in place of a map (:func:`event_table`),
which :mod:`coolcore.data.events` can bin into one.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from coolcore.data.checks import first_line
from coolcore.errors import ImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "choose_hdu",
    "cube_message",
    "event_list_message",
    "event_table",
    "first_image_hdu",
    "format_of",
    "looks_truncated",
    "open_fits",
    "quiet_astropy",
    "read_fits_array",
    "read_hdf5_array",
    "read_npy_array",
    "read_pil_array",
    "split_hdf5_spec",
]

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fz")
_NPY_SUFFIXES = (".npy",)
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_PIL_SUFFIXES = (".png", ".tif", ".tiff")
IMAGE_SUFFIXES: tuple[str, ...] = (
    _FITS_SUFFIXES
    + tuple(s + ".gz" for s in _FITS_SUFFIXES if s != ".fz")
    + _NPY_SUFFIXES
    + _HDF5_SUFFIXES
    + _PIL_SUFFIXES
)
"""File name endings :func:`read_image` understands (case-insensitive)."""

_HDF5_SPEC = re.compile(r"^(?P<file>.*\.(?:h5|hdf5|hdf)):(?P<dataset>[^:\\]+)$", re.IGNORECASE)

_FITS_STARTS = (b"SIMPLE  =", b"XTENSION=")


def cube_message(path: str | Path, shape: tuple[int, ...]) -> str:
    """The one-line message for a 3-D cube read without a plane.

    No command has an option that picks a plane, so the message says what to do
    instead: save the plane as a map of its own (in Python, ``read_image`` takes
    ``plane=``).
    """
    shape_text = "(" + ", ".join(str(int(n)) for n in shape) + ")"
    return (
        f"{path}: a 3-D cube of shape {shape_text}, not a 2-D map; "
        "save the plane to use as a 2-D map file of its own"
    )


def split_hdf5_spec(path: str | Path) -> tuple[Path, str | None]:
    """Split ``file.h5:group/dataset`` into the file and the dataset name."""
    text = os.fspath(path)
    match = _HDF5_SPEC.match(text)
    if match and not Path(text).exists():
        return Path(match["file"]), match["dataset"]
    return Path(text), None


def format_of(path: Path) -> str:
    """``fits``, ``npy``, ``hdf5`` or ``pil`` from the name, else from the first bytes."""
    name = path.name.lower()
    if name.endswith(tuple(s + ".gz" for s in _FITS_SUFFIXES)) or name.endswith(_FITS_SUFFIXES):
        return "fits"
    for fmt, suffixes in (("npy", _NPY_SUFFIXES), ("hdf5", _HDF5_SUFFIXES), ("pil", _PIL_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ImageError(f"{path}: cannot open ({first_line(exc)})") from None
    if head.startswith(b"\x1f\x8b"):  # gzip (e.g. an XMM ``.FTZ``): look inside
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(16)
        except Exception:
            head = b""
        if not head.startswith(_FITS_STARTS):
            known = ", ".join(IMAGE_SUFFIXES)
            raise ImageError(f"{path}: a gzip file that holds no FITS file (known: {known})")
    if head.startswith(_FITS_STARTS):
        return "fits"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")):
        return "pil"
    known = ", ".join(IMAGE_SUFFIXES)
    raise ImageError(f"{path}: unknown image format '{path.suffix}' (known: {known})")


@contextlib.contextmanager
def quiet_astropy() -> Iterator[None]:
    """Silence astropy's warnings about odd headers (the reader repairs them).

    ``warnings.catch_warnings`` changes process-wide state and is not thread-safe,
    so it is only entered on the main thread; code that reads maps on worker
    threads (:func:`coolcore.data.cache.load_dataset`) silences them around the
    whole pool instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from astropy.utils.exceptions import AstropyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        yield


def looks_truncated(exc: BaseException, path: Path) -> bool:
    """Whether a FITS file that failed to read looks cut short (only on the error path)."""
    text = str(exc).lower()
    if isinstance(exc, EOFError) or "truncated" in text or "buffer is too small" in text:
        return True
    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as fh:
            start = fh.read(9)
            size = len(start)
            while block := fh.read(1 << 22):  # a truncated gzip stream raises EOFError
                size += len(block)
    except EOFError:
        return True
    except Exception:
        return False
    # a FITS file is a whole number of 2880-byte blocks
    return start in _FITS_STARTS and size % 2880 != 0


@contextlib.contextmanager
def open_fits(path: Path, **kwargs: Any) -> Iterator[Any]:
    """``astropy.io.fits.open`` leniently; yields the HDU list and closes it.

    The file is opened with ``ignore_missing_end=True`` and ``memmap=False`` (and
    ``kwargs``).  astropy refuses a file whose first card is not a standard
    ``SIMPLE = T`` (``OSError: No SIMPLE card found``): a ``SIMPLE`` whose value is
    the string ``'T'``, a file that starts with ``XTENSION``, or one with no
    ``SIMPLE`` card.  Such a file is opened again with ``ignore_missing_simple=True``
    and kept if astropy then finds a standard first HDU (first card ``SIMPLE`` or
    ``XTENSION``); otherwise ``OSError("no SIMPLE card, ...")`` is raised, or the
    retry's own error when the file looks truncated.
    """
    from astropy.io import fits

    options = {"ignore_missing_end": True, "memmap": False, **kwargs}
    try:
        hdul = fits.open(path, **options)
    except OSError as exc:
        if "simple" not in str(exc).lower():
            raise
        hdul = _open_without_simple(path, options)
    with hdul:
        yield hdul


def _open_without_simple(path: Path, options: dict[str, Any]) -> Any:
    """The retry of :func:`open_fits` with ``ignore_missing_simple=True``."""
    from astropy.io import fits

    refused = OSError("no SIMPLE card, and astropy finds no FITS header without one")
    try:
        hdul = fits.open(path, ignore_missing_simple=True, **options)
    except Exception as exc:
        if looks_truncated(exc, path):
            raise
        raise refused from None
    try:
        first = hdul[0].header.cards[0].keyword if len(hdul) else ""
    except Exception:
        first = ""
    if first not in ("SIMPLE", "XTENSION"):
        hdul.close()
        raise refused
    return hdul


def read_fits_array(path: Path, hdu: int | str | None) -> np.ndarray:
    """The data of the HDU :func:`choose_hdu` picks, as stored (BSCALE/BZERO applied)."""
    from astropy.io import fits

    with quiet_astropy():
        try:
            with open_fits(path, lazy_load_hdus=False) as hdul:
                try:
                    chosen = choose_hdu(hdul, hdu, path)
                    data = chosen.data
                except fits.VerifyError:  # a card astropy cannot parse: repair, retry
                    hdul.verify("silentfix+ignore")
                    chosen = choose_hdu(hdul, hdu, path)
                    data = chosen.data
                if data is None:
                    raise ImageError(f"{path}: HDU {hdu!r} holds no data")
                return np.array(data)  # copy out of the file before it closes
        except ImageError:
            raise
        except Exception as exc:
            what = (
                "truncated FITS file" if looks_truncated(exc, path) else "not a readable FITS file"
            )
            raise ImageError(f"{path}: {what} ({first_line(exc)})") from None


def _axes(header: Any) -> list[int]:
    """The lengths NAXIS1..NAXISn of an HDU's header ([] when NAXIS or one of them is bad)."""
    try:
        naxis = int(header.get("NAXIS", 0))
        return [int(header.get(f"NAXIS{k}", 0)) for k in range(1, naxis + 1)]
    except (TypeError, ValueError):
        return []


def first_image_hdu(hdul: Any) -> Any | None:
    """The first HDU holding an image of two or more non-empty axes, else of one, else None.

    Image HDUs are the primary array, ``IMAGE`` extensions and tile-compressed
    images (``CompImageHDU``); tables are skipped wherever they stand.
    """
    images = [h for h in hdul if h.is_image and _axes(h.header) and min(_axes(h.header)) > 0]
    for candidate in images:
        if len(_axes(candidate.header)) >= 2:
            return candidate
    return images[0] if images else None


def _column_names(header: Any) -> list[str]:
    """Upper-case TTYPEn names of a table HDU's columns (from the header only)."""
    try:
        n = int(header.get("TFIELDS", 0))
    except (TypeError, ValueError):
        return []
    return [str(header.get(f"TTYPE{k}", "")).strip().upper() for k in range(1, n + 1)]


def event_table(hdul: Any) -> tuple[int, Any] | None:
    """The event list in an HDU list: its index and HDU, or None.

    The table named ``EVENTS``, else the first table with ``X`` and ``Y`` columns.
    Only headers are read.
    """
    tables = [
        (i, h)
        for i, h in enumerate(hdul)
        if not h.is_image and str(h.header.get("XTENSION", "")).strip() in ("BINTABLE", "TABLE")
    ]
    for i, h in tables:
        if h.name.strip().upper() == "EVENTS":
            return i, h
    for i, h in tables:
        if {"X", "Y"} <= set(_column_names(h.header)):
            return i, h
    return None


def event_list_message(path: str | Path, index: int, table: Any) -> str:
    """The one-line message for an event list given where a map is expected."""
    name = table.name.strip()
    label = f"{name} table" if name else f"table in HDU {index}"
    try:
        n_events = int(table.header.get("NAXIS2", 0))
    except (TypeError, ValueError):
        n_events = 0
    return (
        f"{path}: an event list ({label}, {n_events} events), not an image; bin it first "
        "(coolcore predict ... --bin 4 bins it on sky X/Y in 4-pixel bins)"
    )


def choose_hdu(hdul: Any, hdu: int | str | None, path: Path) -> Any:
    """The HDU named or numbered by ``hdu``, else the first that holds an image.

    Raises
    ------
    coolcore.errors.ImageError
        No such HDU, a table where an image is wanted, or no image at all; when
        the table or the file is an event list, the message says so
        (:func:`event_list_message`).
    """
    if hdu is None:
        chosen = first_image_hdu(hdul)
        if chosen is not None:
            return chosen
        found = event_table(hdul)
        if found is not None:
            raise ImageError(event_list_message(path, *found))
        raise ImageError(f"{path}: no HDU holds image data ({len(hdul)} HDUs)")
    try:
        chosen = hdul[hdu]
    except (KeyError, IndexError):
        names = ", ".join(f"{i}:{h.name}" for i, h in enumerate(hdul))
        raise ImageError(f"{path}: no HDU {hdu!r} (HDUs: {names})") from None
    if not chosen.is_image:
        found = event_table(hdul)
        if found is not None and found[1] is chosen:
            raise ImageError(event_list_message(path, *found))
        raise ImageError(f"{path}: HDU {hdu!r} is a table, not an image")
    return chosen


def read_npy_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ImageError(f"{path}: non-numeric (object) array is not an image") from None
        raise ImageError(f"{path}: truncated or unreadable .npy file ({first_line(exc)})") from None
    except Exception as exc:
        raise ImageError(f"{path}: not a readable .npy file ({first_line(exc)})") from None


def read_hdf5_array(path: Path, dataset: str | None) -> np.ndarray:
    import h5py

    try:
        fh = h5py.File(path, "r")
    except Exception as exc:
        raise ImageError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    with fh:
        if dataset is None:
            found: list[tuple[str, tuple[int, ...]]] = []
            fh.visititems(
                lambda name, obj: (
                    found.append((name, obj.shape)) if isinstance(obj, h5py.Dataset) else None
                )
            )

            def ndim(shape: tuple[int, ...] | None) -> int:
                return 0 if shape is None else sum(n != 1 for n in shape)

            flat = [name for name, shape in found if ndim(shape) == 2]
            deep = [name for name, shape in found if ndim(shape) >= 2]
            if isinstance(fh.get("image"), h5py.Dataset):
                dataset = "image"
            elif len(flat) == 1:
                dataset = flat[0]
            elif len(deep) == 1:
                dataset = deep[0]
            else:
                listed = ", ".join(name for name, _ in found[:8]) or "none"
                raise ImageError(
                    f"{path}: cannot tell which dataset is the image (datasets: {listed}); "
                    f"name one as {path}:DATASET"
                )
        obj = fh.get(dataset)
        if not isinstance(obj, h5py.Dataset):
            raise ImageError(f"{path}: no dataset '{dataset}'")
        try:
            return obj[()]
        except Exception as exc:
            raise ImageError(
                f"{path}: cannot read dataset '{dataset}' ({first_line(exc)})"
            ) from None


def read_pil_array(path: Path, plane: int | None) -> tuple[np.ndarray, int | None]:
    """Read with Pillow; returns the array and the plane still to apply (None if done)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                if plane is None:
                    raise ImageError(cube_message(path, (n_frames, img.height, img.width)))
                if not 0 <= plane < n_frames:
                    raise ImageError(f"{path}: plane {plane} is out of range (0..{n_frames - 1})")
                img.seek(plane)
                plane = None
            mode = img.mode
            if mode in ("1", "P", "PA"):
                img = img.convert("L" if mode == "1" else "RGBA")
                mode = img.mode
            arr = np.asarray(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Exception as exc:
        raise ImageError(f"{path}: truncated or unreadable image ({first_line(exc)})") from None
    if mode in ("LA", "La"):
        arr = arr[..., 0]
    elif arr.ndim == 3 and mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        rgb = arr[..., :3].astype(np.float64)
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            arr = rgb[..., 0]
        else:
            warnings.warn(
                f"{path}: colour image converted to luminance 0.299 R + 0.587 G + 0.114 B; "
                "a colour map does not invert to the measured values",
                stacklevel=3,
            )
            arr = rgb @ np.array([0.299, 0.587, 0.114])
    elif arr.ndim == 3:
        raise ImageError(f"{path}: unsupported colour mode {mode}")
    return arr, plane
