"""Readers of the map file formats: one function per format, each returning the array as stored.

:func:`coolcore.data.images.read_image` picks the reader with :func:`format_of`
(the file name's ending, else its first bytes) and turns what it returns into a
2-D map.  Every problem raises :class:`coolcore.errors.ImageError` with a one-line
message that starts with the file's path.
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
    "format_of",
    "looks_truncated",
    "quiet_astropy",
    "read_fits_array",
    "read_hdf5_array",
    "read_npy_array",
    "read_pil_array",
    "split_hdf5_spec",
]

"""File name of the catalogue inside a data folder."""

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

_REQUIRED_COLUMNS = ("image_id", "cluster_id", "file")


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
    if head.startswith(b"SIMPLE  ="):
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
    return start == b"SIMPLE  =" and size % 2880 != 0


def read_fits_array(path: Path, hdu: int | str | None) -> np.ndarray:
    from astropy.io import fits

    with quiet_astropy():
        try:
            with fits.open(
                path, ignore_missing_end=True, memmap=False, lazy_load_hdus=False
            ) as hdul:
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


def choose_hdu(hdul: Any, hdu: int | str | None, path: Path) -> Any:
    """The HDU named or numbered by ``hdu``, else the first that holds an image."""
    if hdu is None:
        for candidate in hdul:
            if candidate.is_image and candidate.header.get("NAXIS", 0) >= 1:
                return candidate
        raise ImageError(f"{path}: no HDU holds image data ({len(hdul)} HDUs)")
    try:
        chosen = hdul[hdu]
    except (KeyError, IndexError):
        names = ", ".join(f"{i}:{h.name}" for i, h in enumerate(hdul))
        raise ImageError(f"{path}: no HDU {hdu!r} (HDUs: {names})") from None
    if not chosen.is_image:
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
