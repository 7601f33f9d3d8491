"""Read X-ray maps and catalogues; validate them once, at the edge.

Maps
----
:func:`read_image` returns the map *as stored* (2-D ``float64``, NaN kept), from

* FITS (``.fits``, ``.fit``, ``.fts``, ``.fz`` and their ``.gz`` forms): the first
  HDU that holds image data, or the one named/numbered by ``hdu``.  Files are opened
  leniently (``ignore_missing_end=True``; a header card astropy cannot parse is
  repaired with ``verify("silentfix+ignore")``); BSCALE/BZERO are applied and
  big-endian data are converted.
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
with a one-line message that starts with the file's path.

Catalogues
----------
:func:`read_catalog` reads the catalogue CSV described in ``ARCHITECTURE.md``
and :func:`resolve_data` turns the ``DATA`` argument of the command line into
the catalogue's path.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES, T_COOL_CC_GYR, T_COOL_NCC_GYR
from coolcore.errors import CatalogError, ImageError, UsageError

__all__ = [
    "CATALOG_NAME",
    "IMAGE_SUFFIXES",
    "image_header_info",
    "labels_from_t_cool",
    "read_catalog",
    "read_image",
    "resolve_data",
    "write_catalog",
]

CATALOG_NAME = "catalog.csv"
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
_TEXT_COLUMNS = (*_REQUIRED_COLUMNS, "label")
_NA_MARKERS = ("", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "#N/A")


# --------------------------------------------------------------------------- maps
def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, with its type when it is bare."""
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _split_hdf5_spec(path: str | Path) -> tuple[Path, str | None]:
    """Split ``file.h5:group/dataset`` into the file and the dataset name."""
    text = os.fspath(path)
    match = _HDF5_SPEC.match(text)
    if match and not Path(text).exists():
        return Path(match["file"]), match["dataset"]
    return Path(text), None


def _format_of(path: Path) -> str:
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
        raise ImageError(f"{path}: cannot open ({_one_line(exc)})") from None
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
def _quiet_astropy() -> Iterator[None]:
    """Silence astropy's warnings about odd headers (the reader repairs them).

    ``warnings.catch_warnings`` changes process-wide state and is not thread-safe,
    so it is only entered on the main thread; code that reads maps on worker
    threads (:func:`coolcore.data.preprocess.load_dataset`) silences them around the
    whole pool instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from astropy.utils.exceptions import AstropyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        yield


def _looks_truncated(exc: BaseException, path: Path) -> bool:
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


def _read_fits(path: Path, hdu: int | str | None) -> np.ndarray:
    from astropy.io import fits

    with _quiet_astropy():
        try:
            with fits.open(
                path, ignore_missing_end=True, memmap=False, lazy_load_hdus=False
            ) as hdul:
                try:
                    chosen = _choose_hdu(hdul, hdu, path)
                    data = chosen.data
                except fits.VerifyError:  # a card astropy cannot parse: repair, retry
                    hdul.verify("silentfix+ignore")
                    chosen = _choose_hdu(hdul, hdu, path)
                    data = chosen.data
                if data is None:
                    raise ImageError(f"{path}: HDU {hdu!r} holds no data")
                return np.array(data)  # copy out of the file before it closes
        except ImageError:
            raise
        except Exception as exc:
            what = (
                "truncated FITS file" if _looks_truncated(exc, path) else "not a readable FITS file"
            )
            raise ImageError(f"{path}: {what} ({_one_line(exc)})") from None


def _choose_hdu(hdul: Any, hdu: int | str | None, path: Path) -> Any:
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


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ImageError(f"{path}: non-numeric (object) array is not an image") from None
        raise ImageError(f"{path}: truncated or unreadable .npy file ({_one_line(exc)})") from None
    except Exception as exc:
        raise ImageError(f"{path}: not a readable .npy file ({_one_line(exc)})") from None


def _read_hdf5(path: Path, dataset: str | None) -> np.ndarray:
    import h5py

    try:
        fh = h5py.File(path, "r")
    except Exception as exc:
        raise ImageError(f"{path}: not a readable HDF5 file ({_one_line(exc)})") from None
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
                f"{path}: cannot read dataset '{dataset}' ({_one_line(exc)})"
            ) from None


def _read_pil(path: Path, plane: int | None) -> tuple[np.ndarray, int | None]:
    """Read with Pillow; returns the array and the plane still to apply (None if done)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                if plane is None:
                    raise ImageError(
                        f"{path}: a 3-D cube of shape ({n_frames}, {img.height}, {img.width}): "
                        "choose a plane with --plane"
                    )
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
        raise ImageError(f"{path}: truncated or unreadable image ({_one_line(exc)})") from None
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
            raise ImageError(
                f"{path}: a 3-D cube of shape {squeezed.shape}: choose a plane with --plane"
            )
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
    file, dataset = _split_hdf5_spec(path)
    if not file.exists():
        raise ImageError(f"{file}: no such file")
    if file.is_dir():
        raise ImageError(f"{file}: is a folder, not an image file")
    fmt = _format_of(file)
    if fmt == "fits":
        arr = _read_fits(file, hdu)
    elif fmt == "npy":
        arr = _read_npy(file)
    elif fmt == "hdf5":
        if dataset is None and hdu is not None:
            dataset = str(hdu)
        arr = _read_hdf5(file, dataset)
    else:
        arr, plane = _read_pil(file, plane)
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
        ``pixel_kpc`` (float or None; header keyword ``PIXKPC``), ``bunit``
        (str or None; ``BUNIT``), and, when present, ``cluster_id``,
        ``projection``, ``label``, ``t_cool_gyr``, ``m500_msun``, ``r500_kpc``,
        ``T_keV``, ``n_e0_cm3`` (read from the keywords in ``_HEADER_ALIASES``).
    """
    file, dataset = _split_hdf5_spec(path)
    if not file.exists():
        raise ImageError(f"{file}: no such file")
    fmt = _format_of(file)
    header: dict[str, Any] = {}
    if fmt == "fits":
        from astropy.io import fits

        with _quiet_astropy():
            try:
                with fits.open(file, ignore_missing_end=True, memmap=False) as hdul:
                    hdul.verify("silentfix+ignore")
                    chosen = _choose_hdu(hdul, hdu, file)
                    for card in chosen.header.cards:
                        try:
                            header[card.keyword.upper()] = card.value
                        except Exception:  # an unparsable card: skip it
                            continue
            except ImageError:
                raise
            except Exception as exc:
                raise ImageError(f"{file}: not a readable FITS file ({_one_line(exc)})") from None
    elif fmt == "hdf5":
        import h5py

        name = dataset or (str(hdu) if hdu is not None else "image")
        try:
            with h5py.File(file, "r") as fh:
                obj = fh.get(name)
                if obj is not None:
                    header = {k.upper(): v for k, v in obj.attrs.items()}
        except Exception as exc:
            raise ImageError(f"{file}: not a readable HDF5 file ({_one_line(exc)})") from None

    def scalar(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        if isinstance(value, np.generic):
            return value.item()
        return value

    def as_float(value: Any) -> float | None:
        try:
            out = float(value)
        except (TypeError, ValueError):
            return None
        return out if np.isfinite(out) else None

    info: dict[str, Any] = {
        "pixel_kpc": as_float(header.get("PIXKPC")),
        "bunit": str(scalar(header["BUNIT"])) if "BUNIT" in header else None,
    }
    for key, aliases in _HEADER_ALIASES.items():
        for alias in aliases:
            if alias in header:
                info[key] = scalar(header[alias])
                break
    return info


# ------------------------------------------------------------------- catalogues
def labels_from_t_cool(t_cool_gyr: np.ndarray) -> np.ndarray:
    """Class index (0 CC, 1 WCC, 2 NCC) from the central cooling time in Gyr.

    CC if ``t <= T_COOL_CC_GYR`` (1.0), NCC if ``t >= T_COOL_NCC_GYR`` (7.7),
    WCC in between.
    """
    t = np.asarray(t_cool_gyr, dtype=np.float64)
    return np.where(t <= T_COOL_CC_GYR, 0, np.where(t >= T_COOL_NCC_GYR, 2, 1)).astype(np.int64)


def read_catalog(
    path: str | Path, *, require_labels: bool = True, check_files: bool = True
) -> pd.DataFrame:
    """Read and validate a catalogue CSV.

    Parameters
    ----------
    path : str or Path
        The CSV: one row per image with ``image_id, cluster_id, file`` and
        ``label`` (CC/WCC/NCC, any case) and/or ``t_cool_gyr``.  A row with an
        empty (or NA/NaN/None) ``label`` takes its label from ``t_cool_gyr`` when
        that is given, else it has none.
    require_labels : bool
        If False (prediction), labels may be absent; unknown labels get ``y = -1``.
    check_files : bool
        Check that every referenced file exists.

    Returns
    -------
    pandas.DataFrame
        The catalogue's columns, with ``image_id``/``cluster_id``/``file`` as
        strings, ``label`` upper-case (None where unknown), plus ``path``
        (absolute path of ``file``, resolved against the catalogue's folder)
        and ``y`` (int64 index into ``CLASS_NAMES``, -1 where unknown).

    Raises
    ------
    coolcore.errors.CatalogError
        One line naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"{path}: no such catalogue file")
    if path.is_dir():
        raise CatalogError(f"{path}: is a folder, not a catalogue CSV")
    try:
        options = {"skipinitialspace": True, "encoding": "utf-8-sig"}
        raw_names = pd.read_csv(path, nrows=0, **options).columns
        # identifiers and labels are text as written ("007", "NA" stay); other
        # columns get the usual missing-value markers
        text_cols = [c for c in raw_names if str(c).strip() in _TEXT_COLUMNS]
        df = pd.read_csv(
            path,
            dtype={c: str for c in text_cols},
            keep_default_na=False,
            na_values={c: [] if c in text_cols else list(_NA_MARKERS) for c in raw_names},
            **options,
        )
    except pd.errors.EmptyDataError:
        raise CatalogError(f"{path}: empty catalogue") from None
    except Exception as exc:
        raise CatalogError(f"{path}: not a readable CSV ({_one_line(exc)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for column in _REQUIRED_COLUMNS:
        if column not in df.columns:
            raise CatalogError(f"{path}: missing required column '{column}'")
    if len(df) == 0:
        raise CatalogError(f"{path}: empty catalogue (no rows)")
    for column in _REQUIRED_COLUMNS:
        df[column] = df[column].astype(str).str.strip()
        empty = np.flatnonzero((df[column] == "").to_numpy())
        if empty.size:
            raise CatalogError(f"{path}: empty '{column}' in row {empty[0] + 1}")

    dup = df["image_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        first = df["image_id"].to_numpy()[np.flatnonzero(dup)[0]]
        raise CatalogError(f"{path}: duplicate image_id '{first}' ({int(dup.sum())} rows)")

    y = np.full(len(df), -1, dtype=np.int64)
    if "label" in df.columns:
        text = df["label"].astype(str).str.strip().str.upper().to_numpy()
        text[np.isin(text, [m.upper() for m in _NA_MARKERS])] = ""  # a missing label
        index = {name: i for i, name in enumerate(CLASS_NAMES)}
        known = np.isin(text, CLASS_NAMES)
        bad = np.flatnonzero(~known & (text != ""))
        if bad.size:
            row = bad[0]
            raise CatalogError(
                f"{path}: unknown label '{df['label'].iloc[row]}' in row {row + 1} "
                f"(image_id {df['image_id'].iloc[row]}); expected one of {', '.join(CLASS_NAMES)}"
            )
        y[known] = [index[t] for t in text[known]]
    if "t_cool_gyr" in df.columns:
        t = pd.to_numeric(df["t_cool_gyr"], errors="coerce").to_numpy(dtype=np.float64)
        given = df["t_cool_gyr"].notna().to_numpy()
        bad = np.flatnonzero((np.isnan(t) & given) | (t < 0))
        if bad.size:
            row = bad[0]
            raise CatalogError(
                f"{path}: invalid t_cool_gyr '{df['t_cool_gyr'].iloc[row]}' in row {row + 1} "
                f"(image_id {df['image_id'].iloc[row]}); expected a non-negative number of Gyr"
            )
        df["t_cool_gyr"] = t
        fill = (y < 0) & np.isfinite(t)
        y[fill] = labels_from_t_cool(t[fill])
    if require_labels:
        if "label" not in df.columns and "t_cool_gyr" not in df.columns:
            raise CatalogError(f"{path}: missing required column 'label' (or 't_cool_gyr')")
        missing = np.flatnonzero(y < 0)
        if missing.size:
            row = missing[0]
            raise CatalogError(
                f"{path}: no label in row {row + 1} (image_id {df['image_id'].iloc[row]})"
            )
    names = np.array(CLASS_NAMES, dtype=object)
    df["label"] = np.where(y >= 0, names[np.clip(y, 0, 2)], None)
    df["y"] = y

    folder = path.resolve().parent
    df["path"] = [str((folder / f).resolve()) for f in df["file"]]
    if check_files:
        exists = np.array([Path(p).is_file() for p in df["path"]], dtype=bool)
        if not exists.all():
            row = int(np.flatnonzero(~exists)[0])
            raise CatalogError(
                f"{path}: {int((~exists).sum())} listed file(s) do not exist, first in row "
                f"{row + 1}: {df['file'].iloc[row]} ({df['path'].iloc[row]})"
            )
    return df


def write_catalog(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a catalogue CSV atomically, without the derived ``path`` and ``y`` columns.

    Parameters
    ----------
    df : pandas.DataFrame
        At least ``image_id, cluster_id, file``; ``file`` relative to ``path``'s folder.
    path : str or Path
        Destination CSV; written to a temporary name, then renamed.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    missing = [c for c in _REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: missing required column '{missing[0]}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.drop(columns=[c for c in ("path", "y") if c in df.columns])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            out.to_csv(fh, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_data(data: str | Path) -> Path:
    """The catalogue named by the ``DATA`` argument: a folder holding ``catalog.csv``, or a CSV.

    Raises
    ------
    coolcore.errors.UsageError
        ``data`` does not exist, or is a file that is not a CSV.
    coolcore.errors.CatalogError
        ``data`` is a folder without ``catalog.csv``.
    """
    data = Path(data)
    if data.is_dir():
        catalog = data / CATALOG_NAME
        if not catalog.is_file():
            raise CatalogError(
                f"{data}: folder has no {CATALOG_NAME} (make one with `coolcore simulate {data}` "
                "or pass the catalogue CSV)"
            )
        return catalog
    if not data.exists():
        raise UsageError(f"{data}: no such file or folder (DATA is a folder or a catalogue CSV)")
    if data.suffix.lower() != ".csv":
        raise UsageError(f"{data}: DATA must be a folder holding {CATALOG_NAME} or a .csv file")
    return data
