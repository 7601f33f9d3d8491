"""Read, validate and write catalogues; find the catalogue named by ``DATA``.

A catalogue is a CSV with one row per map: ``image_id, cluster_id, file`` and
``label`` (CC/WCC/NCC, any case) and/or ``t_cool_gyr``; optional columns such as
``pixel_kpc`` are kept.  :func:`read_catalog` checks it once, at the edge, and
raises :class:`coolcore.errors.CatalogError` with one line naming the file, the
row and the problem:

* required columns present, no empty identifier, no ``image_id`` twice;
* labels known (or derived from ``t_cool_gyr``), and the same for every row of
  a cluster (its projections are one object);
* ``t_cool_gyr`` non-negative, ``pixel_kpc`` positive and finite where given;
* every listed file a regular file (a folder, a missing file and a symbolic-link
  loop are told apart).

Observations (:mod:`coolcore.data.observation`) add optional columns: ``exposure``
and ``background`` (map files, relative to the catalogue like ``file``; resolved
into ``exposure_path`` / ``background_path``, None where empty), ``redshift``
(0 < z < 10) and ``ra``, ``dec`` (degrees; both or neither in a row).

:func:`resolve_data` turns the ``DATA`` argument of the command line into the
catalogue's path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES, T_COOL_CC_GYR, T_COOL_NCC_GYR
from coolcore.data.checks import first_line, missing_file_problem, pixel_kpc_problem
from coolcore.errors import CatalogError, UsageError

__all__ = [
    "CATALOG_NAME",
    "labels_from_t_cool",
    "read_catalog",
    "resolve_data",
    "write_catalog",
]

CATALOG_NAME = "catalog.csv"
"""File name of the catalogue inside a data folder."""

_REQUIRED_COLUMNS = ("image_id", "cluster_id", "file")
_TEXT_COLUMNS = (*_REQUIRED_COLUMNS, "label")
_CHECKED_AS_WRITTEN = ("pixel_kpc",)
OBSERVATION_FILE_COLUMNS = ("exposure", "background")
"""Catalogue columns naming an observation's exposure and background maps."""  # read as text, so that a message quotes the value as written
_NA_MARKERS = ("", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "#N/A")


def labels_from_t_cool(t_cool_gyr: np.ndarray) -> np.ndarray:
    """Class index (0 CC, 1 WCC, 2 NCC) from the central cooling time in Gyr.

    CC if ``t <= T_COOL_CC_GYR`` (1.0), NCC if ``t >= T_COOL_NCC_GYR`` (7.7),
    WCC in between.

    Examples
    --------
    >>> labels_from_t_cool([0.5, 3.0, 9.0]).tolist()
    [0, 1, 2]
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
        Check that every referenced file is a regular file.

    Returns
    -------
    pandas.DataFrame
        The catalogue's columns, with ``image_id``/``cluster_id``/``file`` as
        strings, ``label`` upper-case (None where unknown), ``t_cool_gyr`` and
        ``pixel_kpc`` as floats (NaN where not given), plus ``path`` (absolute
        path of ``file``, resolved against the catalogue's folder) and ``y``
        (int64 index into ``CLASS_NAMES``, -1 where unknown).

    Raises
    ------
    coolcore.errors.CatalogError
        One line naming the file and the problem (see the module docstring).
    """
    path = Path(path)
    df = _read_csv(path)
    _check_identifiers(df, path)
    y = _labels(df, path)
    if require_labels:
        if "label" not in df.columns and "t_cool_gyr" not in df.columns:
            raise CatalogError(f"{path}: missing required column 'label' (or 't_cool_gyr')")
        missing = np.flatnonzero(y < 0)
        if missing.size:
            row = missing[0]
            raise CatalogError(
                f"{path}: no label in row {row + 1} (image_id {df['image_id'].iloc[row]})"
            )
    _check_cluster_labels(df, y, path)
    if "pixel_kpc" in df.columns:
        df["pixel_kpc"] = _pixel_kpc(df, path)
    names = np.array(CLASS_NAMES, dtype=object)
    df["label"] = np.where(y >= 0, names[np.clip(y, 0, 2)], None)
    df["y"] = y
    df["path"] = _resolved_paths(df["file"], path.resolve().parent)
    _observation_columns(df, path)
    if check_files:
        _check_files(df, path)
        for column in OBSERVATION_FILE_COLUMNS:
            if column in df.columns:
                _check_files(df, path, column)
    return df


def _observation_columns(df: pd.DataFrame, path: Path) -> None:
    """Resolve ``exposure``/``background`` paths; check ``redshift``, ``ra``, ``dec``."""
    folder = path.resolve().parent
    for column in OBSERVATION_FILE_COLUMNS:
        if column not in df.columns:
            continue
        given = df[column].notna() & (df[column].astype(str).str.strip() != "")
        files = df[column].where(given, "").astype(str).str.strip()
        resolved = _resolved_paths(files, folder)
        df[f"{column}_path"] = [r if g else None for r, g in zip(resolved, given, strict=True)]
    checks = {
        "redshift": (lambda v: (v > 0) & (v < 10), "must be a redshift between 0 and 10"),
        "ra": (lambda v: (v >= 0) & (v < 360), "must be a right ascension in [0, 360) degrees"),
        "dec": (lambda v: (v >= -90) & (v <= 90), "must be a declination in [-90, 90] degrees"),
    }
    for column, (ok, what) in checks.items():
        if column not in df.columns:
            continue
        raw = df[column]
        value = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(raw.notna().to_numpy() & ~(np.isfinite(value) & ok(value)))
        if bad.size:
            row = bad[0]
            raise CatalogError(
                f"{path}: {column} '{str(raw.iloc[row]).strip()}' in row {row + 1} "
                f"(image_id {df['image_id'].iloc[row]}): {what}"
            )
        df[column] = value
    if ("ra" in df.columns) != ("dec" in df.columns):
        raise CatalogError(f"{path}: a centre needs both columns 'ra' and 'dec'")
    if "ra" in df.columns:
        half = np.flatnonzero(np.isfinite(df["ra"]) != np.isfinite(df["dec"]))
        if half.size:
            row = half[0]
            raise CatalogError(
                f"{path}: row {row + 1} (image_id {df['image_id'].iloc[row]}) gives only one "
                "of ra and dec"
            )


def _read_csv(path: Path) -> pd.DataFrame:
    """The CSV as text identifiers and labels, other columns with the usual NA markers."""
    problem = missing_file_problem(path)
    if problem == "no such file":
        raise CatalogError(f"{path}: no such catalogue file")
    if problem == "is a folder, not a file":
        raise CatalogError(f"{path}: is a folder, not a catalogue CSV")
    if problem is not None:
        raise CatalogError(f"{path}: {problem}")
    try:
        options = {"skipinitialspace": True, "encoding": "utf-8-sig"}
        raw_names = pd.read_csv(path, nrows=0, **options).columns
        # identifiers and labels are text as written ("007", "NA" stay); other
        # columns get the usual missing-value markers
        text_cols = [c for c in raw_names if str(c).strip() in _TEXT_COLUMNS]
        as_written = [c for c in raw_names if str(c).strip() in _CHECKED_AS_WRITTEN]
        df = pd.read_csv(
            path,
            dtype={c: str for c in text_cols + as_written},
            keep_default_na=False,
            na_values={c: [] if c in text_cols else list(_NA_MARKERS) for c in raw_names},
            **options,
        )
    except pd.errors.EmptyDataError:
        raise CatalogError(f"{path}: empty catalogue") from None
    except Exception as exc:
        raise CatalogError(f"{path}: not a readable CSV ({first_line(exc)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for column in _REQUIRED_COLUMNS:
        if column not in df.columns:
            raise CatalogError(f"{path}: missing required column '{column}'")
    if len(df) == 0:
        raise CatalogError(f"{path}: empty catalogue (no rows)")
    return df


def _check_identifiers(df: pd.DataFrame, path: Path) -> None:
    """Strip the identifier columns; refuse an empty one and an ``image_id`` twice."""
    for column in _REQUIRED_COLUMNS:
        df[column] = df[column].astype(str).str.strip()
        empty = np.flatnonzero((df[column] == "").to_numpy())
        if empty.size:
            raise CatalogError(f"{path}: empty '{column}' in row {empty[0] + 1}")
    dup = df["image_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        first = df["image_id"].to_numpy()[np.flatnonzero(dup)[0]]
        raise CatalogError(f"{path}: duplicate image_id '{first}' ({int(dup.sum())} rows)")


def _labels(df: pd.DataFrame, path: Path) -> np.ndarray:
    """Class index per row from ``label``, else from ``t_cool_gyr``; -1 where unknown."""
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
    return y


def _check_cluster_labels(df: pd.DataFrame, y: np.ndarray, path: Path) -> None:
    """Refuse a cluster whose rows carry different labels (rows without a label aside)."""
    known = pd.DataFrame({"cluster": df["cluster_id"].to_numpy(), "y": y})[y >= 0]
    n_labels = known.groupby("cluster", sort=False)["y"].nunique()
    mixed = n_labels.index[n_labels.to_numpy() > 1]
    if len(mixed) == 0:
        return
    cluster = mixed[0]
    rows = known.index[known["cluster"] == cluster].to_numpy()
    first = rows[0]
    other = rows[np.flatnonzero(y[rows] != y[first])[0]]
    raise CatalogError(
        f"{path}: cluster '{cluster}' is labelled {CLASS_NAMES[y[first]]} in row {first + 1} "
        f"and {CLASS_NAMES[y[other]]} in row {other + 1}; all maps of a cluster share its label"
    )


def _pixel_kpc(df: pd.DataFrame, path: Path) -> np.ndarray:
    """The ``pixel_kpc`` column as floats (NaN where not given); refuse a bad value."""
    raw = df["pixel_kpc"]
    value = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    given = raw.notna().to_numpy()
    bad = np.flatnonzero(given & ~(np.isfinite(value) & (value > 0)))
    if bad.size:
        row = bad[0]
        text = str(raw.iloc[row]).strip()
        raise CatalogError(
            f"{path}: pixel_kpc '{text}' in row {row + 1} (image_id {df['image_id'].iloc[row]}): "
            f"{pixel_kpc_problem(text)}"
        )
    return value


def _resolved_paths(files: pd.Series, folder: Path) -> list[str]:
    """Absolute paths of the listed files, symbolic links resolved where they resolve."""
    out = []
    for f in files:
        try:
            out.append(str((folder / f).resolve()))
        except (RuntimeError, OSError):  # a symbolic-link loop: reported by _check_files
            out.append(os.path.abspath(folder / f))
    return out


def _check_files(df: pd.DataFrame, path: Path, column: str = "file") -> None:
    """Every listed file must be a regular file; say which is not, and why."""
    resolved = df["path"] if column == "file" else df[f"{column}_path"]
    kind = "" if column == "file" else f"{column} "
    problems = [None if p is None else missing_file_problem(p) for p in resolved]
    missing = np.array([p == "no such file" for p in problems])
    other = [i for i, p in enumerate(problems) if p is not None and p != "no such file"]
    if other and (not missing.any() or other[0] < np.flatnonzero(missing)[0]):
        row = other[0]
        raise CatalogError(
            f"{path}: the {column} of row {row + 1}, {df[column].iloc[row]} "
            f"({resolved.iloc[row]}): {problems[row]}"
        )
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise CatalogError(
            f"{path}: {int(missing.sum())} listed {kind}file(s) do not exist, first in row "
            f"{row + 1}: {df[column].iloc[row]} ({resolved.iloc[row]})"
        )


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
        ``data`` does not exist (or is a symbolic-link loop), or is a file that
        is not a CSV.
    coolcore.errors.CatalogError
        ``data`` is a folder without ``catalog.csv`` (or whose ``catalog.csv``
        is not a regular file).
    """
    data = Path(data)
    if data.is_dir():
        catalog = data / CATALOG_NAME
        problem = missing_file_problem(catalog)
        if problem == "no such file":
            raise CatalogError(
                f"{data}: folder has no {CATALOG_NAME} (make one with `coolcore simulate {data}` "
                "or pass the catalogue CSV)"
            )
        if problem is not None:
            raise CatalogError(f"{catalog}: {problem}")
        return catalog
    problem = missing_file_problem(data)
    if problem == "no such file":
        raise UsageError(f"{data}: no such file or folder (DATA is a folder or a catalogue CSV)")
    if problem is not None and "symlink" in problem:
        raise UsageError(f"{data}: {problem}")
    if data.suffix.lower() != ".csv":
        raise UsageError(f"{data}: DATA must be a folder holding {CATALOG_NAME} or a .csv file")
    return data
