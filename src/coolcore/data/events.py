"""X-ray event lists: recognise them and bin them into counts maps.

An event list is a FITS table of photons (one row per event) with sky pixel
coordinates in columns ``X`` and ``Y`` and, usually, an energy column; it is the
``EVENTS`` table of Chandra, XMM-Newton or eROSITA files.  :func:`bin_events`
turns it into the counts image :func:`coolcore.data.images.read_image` would read
from a map file, with the celestial WCS the event list's column keywords give.

Sky coordinates
---------------
``X`` and ``Y`` are FITS pixel coordinates (pixel centres at integers, pixel ``n``
covering ``[n - 0.5, n + 0.5]``) on a tangent plane described by the column
keywords ``TCTYPn``, ``TCRVLn``, ``TCDLTn``, ``TCRPXn`` (and ``TCUNIn``) of the
``X`` and ``Y`` columns ``n`` (FITS WCS paper I, section 3.3: the table form of
``CTYPE``, ``CRVAL``, ``CDELT``, ``CRPIX``).  Binning by ``b`` sky pixels on a grid
whose first bin starts at ``x0`` puts event ``X`` in binned pixel
``p = (X - x0) / b + 0.5`` (1-based, so its centre is ``X = x0 + (p - 0.5) b``);
so the binned image has

    ``CDELT = TCDLT * b``, ``CRPIX = (TCRPX - x0) / b + 0.5``, ``CRVAL = TCRVL``,

``CTYPE = TCTYP`` (``RA---TAN`` / ``DEC--TAN`` when missing).  The grid's bin edges
lie at ``0.5 + k b`` (``k`` an integer: the edges of the unbinned sky pixels, where
Chandra's ``TLMIN`` of 0.5 puts them) and cover every kept event.

Energies
--------
The ``ENERGY`` column, else ``PI``.  Its unit is read from ``TUNITn``: ``eV`` or
``keV`` (any unit astropy converts to keV); no ``TUNITn`` means eV (the unit of
Chandra's ``ENERGY`` and of XMM-Newton's and eROSITA's ``PI``).  A column in
another unit (Chandra's ``PI`` is in ``chan``) cannot be filtered by energy.
Events with ``lo <= E < hi`` keV are kept.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from coolcore.data.checks import first_line, missing_file_problem
from coolcore.data.formats import event_table, first_image_hdu, format_of, open_fits, quiet_astropy
from coolcore.errors import ImageError, UsageError

__all__ = ["MAX_BINNED_SIDE", "bin_events", "is_event_list"]

MAX_BINNED_SIDE = 8192
"""Most pixels a side of a binned image (a larger one asks for a larger bin)."""

_COPIED_KEYWORDS = (
    "OBJECT",
    "REDSHIFT",
    "TELESCOP",
    "INSTRUME",
    "EXPOSURE",
    "DATE-OBS",
    "MJD-OBS",
    "EQUINOX",
    "RADESYS",
)


def is_event_list(path: str | Path) -> bool:
    """Whether ``path`` is a FITS event list with no image in it.

    True for a readable FITS file none of whose HDUs holds an image and which has
    a table named ``EVENTS`` or a table with ``X`` and ``Y`` columns.  False for
    anything else, including missing or unreadable files (reading them says why).
    """
    file = Path(path)
    if missing_file_problem(file) is not None:
        return False
    try:
        if format_of(file) != "fits":
            return False
        with quiet_astropy(), open_fits(file) as hdul:
            return first_image_hdu(hdul) is None and event_table(hdul) is not None
    except Exception:
        return False


def bin_events(
    path: str | Path,
    bin_size: float,
    *,
    energy_kev: tuple[float, float] | None = (0.5, 2.0),
) -> tuple[np.ndarray, Any]:
    """Bin an event list's sky ``X``/``Y`` into a counts image with a celestial WCS.

    Parameters
    ----------
    path : str or Path
        A FITS file with an ``EVENTS`` table (else the first table with ``X`` and
        ``Y`` columns).
    bin_size : float
        Sky pixels per binned pixel, along each axis (> 0; need not be whole).
    energy_kev : (float, float) or None
        Keep events with ``lo <= E < hi`` keV (see the module docstring for how
        the energy column and its unit are read); None keeps every event.  With
        no energy column every event is kept, and the header says so.

    Returns
    -------
    counts : numpy.ndarray
        2-D ``float64`` counts, ``counts[j, i]`` for ``Y`` bin ``j`` and ``X`` bin ``i``
        (row 0 at the lowest ``Y``, as FITS stores images).
    header : astropy.io.fits.Header
        The WCS of the binned grid (when the ``X``/``Y`` columns carry ``TCRVL``,
        ``TCDLT`` and ``TCRPX``), ``BUNIT = 'count'``, the bin and band used, and
        ``OBJECT``, ``REDSHIFT``, ``TELESCOP``, ``INSTRUME``, ``EXPOSURE``,
        ``DATE-OBS``, ``MJD-OBS``, ``EQUINOX``, ``RADESYS`` when the event header
        (else the primary header) has them.

    Raises
    ------
    coolcore.errors.UsageError
        ``bin_size`` not a positive finite number, or a bad energy band.
    coolcore.errors.ImageError
        One line starting with the path: no such file, not FITS, no event table,
        no ``X``/``Y`` columns, an energy column in a non-energy unit, no event in
        the band, or a binned image over :data:`MAX_BINNED_SIDE` pixels a side.
    """
    bin_size = _check_bin(bin_size)
    band = _check_band(energy_kev)
    file = Path(path)
    problem = missing_file_problem(file)
    if problem is not None:
        raise ImageError(f"{file}: {problem}")
    if format_of(file) != "fits":
        raise ImageError(f"{file}: not a FITS file, so not an event list")
    with quiet_astropy():
        try:
            with open_fits(file) as hdul:
                table, x, y, energy, source = _read_events(hdul, file, band is not None)
                header = _event_header(hdul, table)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"{file}: not a readable event list ({first_line(exc)})") from None
    keep = np.isfinite(x) & np.isfinite(y)
    if band is not None and energy is not None:
        keep &= (energy >= band[0]) & (energy < band[1])
    if not keep.any():
        within = f" in {band[0]:g}-{band[1]:g} keV" if band and energy is not None else ""
        raise ImageError(f"{file}: no events{within} (of {x.size} events in the {source})")
    counts, x0, y0 = _histogram(x[keep], y[keep], bin_size, file)
    out = _image_header(table, header, x0, y0, bin_size)
    _record_band(out, band, energy is not None, int(keep.sum()))
    return counts, out


def _check_bin(bin_size: Any) -> float:
    """``bin_size`` as a positive finite float, else UsageError."""
    try:
        value = float(bin_size)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(
            f"bin size {bin_size!r} (--bin): must be a positive number of sky pixels (e.g. 4)"
        )
    return value


def _check_band(energy_kev: Any) -> tuple[float, float] | None:
    """``energy_kev`` as ``(lo, hi)`` with ``0 <= lo < hi`` finite, or None; else UsageError."""
    if energy_kev is None:
        return None
    try:
        lo, hi = (float(v) for v in energy_kev)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise UsageError(
            f"energy band {energy_kev!r}: must be (lo, hi) in keV with 0 <= lo < hi, e.g. (0.5, 2.0)"
        )
    return lo, hi


def _read_events(
    hdul: Any, file: Path, filtered: bool
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray | None, str]:
    """The event table, its X and Y, its energies in keV (or None) and a word for the table.

    The energies are read only when ``filtered`` (an energy band is asked for).
    """
    found = event_table(hdul)
    if found is None:
        raise ImageError(
            f"{file}: no event list (no EVENTS table and no table with X and Y columns)"
        )
    index, table = found
    names = [n.upper() for n in table.columns.names]
    source = f"{table.name.strip() or f'HDU {index}'} table"
    if "X" not in names or "Y" not in names:
        listed = ", ".join(table.columns.names[:12]) or "none"
        raise ImageError(f"{file}: the {source} has no X and Y columns (columns: {listed})")
    data = table.data
    x = np.asarray(data.field(names.index("X")), dtype=np.float64).ravel()
    y = np.asarray(data.field(names.index("Y")), dtype=np.float64).ravel()
    energy = None
    for column in ("ENERGY", "PI") if filtered else ():
        if column in names:
            k = names.index(column)
            scale = _kev_per_unit(table.header.get(f"TUNIT{k + 1}"))
            if scale is None:
                unit = table.header.get(f"TUNIT{k + 1}")
                raise ImageError(
                    f"{file}: the {column} column is in {unit!r}, not an energy unit, so no "
                    "energy band can be chosen (bin with energy_kev=None to keep every event)"
                )
            energy = np.asarray(data.field(k), dtype=np.float64).ravel() * scale
            break
    return table, x, y, energy, source


def _kev_per_unit(unit: Any) -> float | None:
    """keV per unit of an energy column's ``TUNITn`` (none: eV), or None if not an energy."""
    text = "" if unit is None else str(unit).strip()
    if not text:
        return 1e-3
    simple = {"ev": 1e-3, "kev": 1.0}
    if text.lower() in simple:
        return simple[text.lower()]
    import astropy.units as u

    parsed = u.Unit(text, parse_strict="silent")
    if isinstance(parsed, u.UnrecognizedUnit) or not parsed.is_equivalent(u.keV):
        return None
    return float(parsed.to(u.keV))


def _histogram(
    x: np.ndarray, y: np.ndarray, bin_size: float, file: Path
) -> tuple[np.ndarray, float, float]:
    """Counts on the grid with edges at ``0.5 + k * bin_size``; also the first edges x0, y0."""
    x0 = 0.5 + bin_size * math.floor((x.min() - 0.5) / bin_size)
    y0 = 0.5 + bin_size * math.floor((y.min() - 0.5) / bin_size)
    nx = math.floor((x.max() - x0) / bin_size) + 1
    ny = math.floor((y.max() - y0) / bin_size) + 1
    if max(nx, ny) > MAX_BINNED_SIDE:
        raise ImageError(
            f"{file}: --bin {bin_size:g} makes a {ny} x {nx} image (over {MAX_BINNED_SIDE} "
            "pixels a side); use a larger bin"
        )
    x_edges = x0 + bin_size * np.arange(nx + 1)
    y_edges = y0 + bin_size * np.arange(ny + 1)
    i = np.clip(np.searchsorted(x_edges, x, side="right") - 1, 0, nx - 1)
    j = np.clip(np.searchsorted(y_edges, y, side="right") - 1, 0, ny - 1)
    counts = np.bincount(j * nx + i, minlength=nx * ny).reshape(ny, nx)
    return counts.astype(np.float64), float(x0), float(y0)


def _event_header(hdul: Any, table: Any) -> dict[str, Any]:
    """The keywords to copy, from the event table's header, else the primary header."""
    copied: dict[str, Any] = {}
    for source in (hdul[0].header, table.header):  # the table's own value wins
        for key in _COPIED_KEYWORDS:
            value = source.get(key, source.get("RADECSYS") if key == "RADESYS" else None)
            if value is not None and str(value).strip() != "":
                copied[key] = value
    return copied


def _image_header(table: Any, copied: dict[str, Any], x0: float, y0: float, bin_size: float) -> Any:
    """The binned image's header: its celestial WCS (when the columns give one) and ``copied``."""
    from astropy.io import fits

    names = [n.upper() for n in table.columns.names]
    columns = table.header
    header = fits.Header()
    wcs: list[tuple[str, Any]] = [("WCSAXES", 2)]
    for axis, (name, start, default) in enumerate(
        (("X", x0, "RA---TAN"), ("Y", y0, "DEC--TAN")), start=1
    ):
        n = names.index(name) + 1
        crval, cdelt, crpix = (columns.get(f"{key}{n}") for key in ("TCRVL", "TCDLT", "TCRPX"))
        if crval is None or cdelt is None or crpix is None:
            wcs = []
            break
        wcs += [
            (f"CTYPE{axis}", str(columns.get(f"TCTYP{n}", default)).strip() or default),
            (f"CRVAL{axis}", float(crval)),
            (f"CDELT{axis}", float(cdelt) * bin_size),
            (f"CRPIX{axis}", (float(crpix) - start) / bin_size + 0.5),
            (f"CUNIT{axis}", str(columns.get(f"TCUNI{n}", "deg")).strip() or "deg"),
        ]
    for key, value in wcs:
        header[key] = value
    header["BUNIT"] = ("count", "events per binned pixel")
    header["BINSKY"] = (bin_size, "[sky pixel] bin size of the event list's X/Y")
    for key, value in copied.items():
        header[key] = value
    return header


def _record_band(header: Any, band: tuple[float, float] | None, has_energy: bool, n: int) -> None:
    """Write the energy band used (or why none was) and the number of binned events."""
    if band is None:
        header["HISTORY"] = "coolcore bin_events: no energy band asked; every event kept"
    elif not has_energy:
        header["HISTORY"] = "coolcore bin_events: no ENERGY or PI column; every event kept"
    else:
        header["EMINKEV"] = (band[0], "[keV] events kept: EMINKEV <= E < EMAXKEV")
        header["EMAXKEV"] = (band[1], "[keV] upper end of the band (excluded)")
    header["NEVENTS"] = (n, "events binned")
