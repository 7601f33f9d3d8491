"""Simulated X-ray emissivity maps of galaxy clusters: the built-in sample.

Each cluster is one 3-D object: a triaxial, ellipsoidally stratified gas halo
(Vikhlinin et al. 2006 density and temperature, Tozzi & Norman 2001 cooling
function, normalised to a gas fraction inside R500) plus disturbances, seen along
the three axes of the simulation box.  Its label comes from the central cooling
time of the 3-D gas model at 0.012 R500, never from the picture.  The physics and
the numerical design are described in ``docs/simulator.md``.

The one entry point is :func:`simulate_sample`.  The population of clusters is
:mod:`coolcore.sim.population` (:func:`~coolcore.sim.population.draw_cluster`), the
projection onto a map :mod:`coolcore.sim.projection`
(:func:`~coolcore.sim.projection.render_projection`); this module observes the maps
(:func:`observe_counts`, or an X-ray instrument of :mod:`coolcore.sim.observe`) and
writes the sample.
"""

from __future__ import annotations

import multiprocessing as mp
import numbers
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from coolcore import CLASS_NAMES, __version__
from coolcore.errors import UsageError
from coolcore.sim.flat import expected_counts
from coolcore.sim.instruments import INSTRUMENTS
from coolcore.sim.observe import (
    draw_placement,
    draw_pointing,
    observe_projection,
    write_observation,
)
from coolcore.sim.population import ClusterModel, draw_cluster
from coolcore.sim.projection import AXES, projected_profile, render_projection

__all__ = [
    "BYTES_PER_PIXEL",
    "MAX_SEED",
    "MIN_EXPECTED_COUNTS",
    "class_counts",
    "map_memory_bytes",
    "observe_counts",
    "simulate_sample",
]

MAX_SEED = 2**32 - 1
"""Largest master seed (seeds are 0 .. 2**32 - 1, as NumPy's and Lightning's)."""

BYTES_PER_PIXEL = 256
"""Working memory of one worker per map pixel (measured peak: about 225 bytes; the
map is rendered on a 2x2-subsampled float64 grid)."""

MIN_EXPECTED_COUNTS = 1.0
"""A mock observation must expect at least this many photon counts in a map."""

BUNIT_EMISSIVITY = "erg s-1 cm-2"
"""Unit of a pixel: emissivity n_e n_H Lambda(T) integrated along the line of sight."""

# -------------------------------------------------------------------- observations


def observe_counts(
    image: NDArray[np.float64],
    pixel_kpc: float,
    exposure_ks: float,
    background: float,
    rng: np.random.Generator,
    *,
    name: str = "map",
) -> NDArray[np.float64]:
    """Poisson photon counts for a map of line-of-sight emissivity (erg s^-1 cm^-2).

    The means are :func:`coolcore.sim.flat.expected_counts`.  A map that expects fewer than
    :data:`MIN_EXPECTED_COUNTS` counts in all is no observation: it raises
    :class:`~coolcore.errors.UsageError` naming ``name`` and the exposure that
    would give that many.
    """
    expected = expected_counts(image, pixel_kpc, exposure_ks, background)
    total = float(expected.sum())
    if not total >= MIN_EXPECTED_COUNTS:
        need = exposure_ks * MIN_EXPECTED_COUNTS / total if total > 0 else float("inf")
        raise UsageError(
            f"exposure_ks={exposure_ks:g}: the mock observation of {name} expects "
            f"{total:.3g} photon counts in the whole map, i.e. no counts; "
            f"use an exposure of at least {need:.3g} ks"
        )
    return rng.poisson(expected).astype(np.float64)


# ----------------------------------------------------------------------- the sample


def class_counts(n: int, mix: Sequence[float]) -> NDArray[np.int64]:
    """Largest-remainder rounding of ``n * mix`` (exact total, ties to the earlier class)."""
    raw = np.asarray(mix, dtype=np.float64) * n
    counts = np.floor(raw).astype(np.int64)
    rest = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _header_cards(model: ClusterModel, axis: str, pixel_kpc: float, size: int) -> list:
    c = size // 2 + 1  # FITS pixels are 1-based; the cluster centre is pixel size // 2
    linear = [
        ("CTYPE1", "LINEAR", "image u axis: box coordinate, see AXIS"),
        ("CTYPE2", "LINEAR", "image v axis: box coordinate, see AXIS"),
        ("CUNIT1", "kpc", "unit of CDELT1 and CRVAL1"),
        ("CUNIT2", "kpc", "unit of CDELT2 and CRVAL2"),
        ("CRPIX1", float(c), "reference pixel: the cluster centre"),
        ("CRPIX2", float(c), "reference pixel: the cluster centre"),
        ("CRVAL1", 0.0, "[kpc] offset of the cluster centre"),
        ("CRVAL2", 0.0, "[kpc] offset of the cluster centre"),
        ("CDELT1", pixel_kpc, "[kpc] pixel size"),
        ("CDELT2", pixel_kpc, "[kpc] pixel size"),
        ("PIXKPC", pixel_kpc, "[kpc] pixel size"),
    ]
    return linear + _physics_cards(model, axis)


def _physics_cards(model: ClusterModel, axis: str) -> list:
    return [
        ("CLUSTID", model.cluster_id, "cluster id (3 projections per cluster)"),
        ("AXIS", axis, "projection axis of the simulation box"),
        ("M500", model.m500_msun, "[Msun] M500"),
        ("R500", model.r500_kpc, "[kpc] R500"),
        ("TKEV", model.T_keV, "[keV] mean temperature, 0.15-1 R500"),
        ("TCENKEV", model.T_center_keV, "[keV] temperature at RTCOOL"),
        ("NE0", model.ne0_cm3, "[cm-3] electron density at RTCOOL"),
        ("RTCOOL", model.r_tcool_kpc, "[kpc] radius of t_cool: 0.012 R500"),
        ("TCOOL", model.t_cool_gyr, "[Gyr] central cooling time"),
        ("LABEL", model.label, "CC: TCOOL<=1.0, NCC: TCOOL>=7.7 Gyr, else WCC"),
        ("ORIGIN", "coolcore", "coolcore.sim.simulate"),
        ("CCVERS", __version__, "coolcore version"),
    ]


@dataclass(frozen=True)
class _Job:
    index: int
    label: str
    seed: np.random.SeedSequence
    out_dir: str
    size: int
    fov_kpc: float
    observed: bool
    exposure_ks: float
    background: float
    instrument: str | None = None


def simulate_cluster(job: _Job) -> list[dict]:
    """Draw one cluster, write its three FITS files, return its catalogue rows."""
    from astropy.io import fits

    rng = np.random.default_rng(job.seed)
    model = draw_cluster(rng, job.label, job.index)
    profile = projected_profile(model)
    if job.instrument is not None:
        return _observe_cluster(job, model, profile, rng)
    pixel_kpc = job.fov_kpc / job.size
    rows = []
    for axis in AXES:
        image_id = f"c{job.index:04d}_{axis}"
        image = render_projection(model, axis, job.size, job.fov_kpc, profile=profile)
        cards = _header_cards(model, axis, pixel_kpc, job.size)
        if job.observed:
            obs_rng = np.random.default_rng([model.noise_seed, AXES.index(axis), 1])
            image = observe_counts(image, pixel_kpc, job.exposure_ks, job.background, obs_rng,
                                   name=image_id)  # fmt: skip
            cards += [
                ("BUNIT", "count", "photon counts (observed mode)"),
                ("EXPOSURE", job.exposure_ks * 1e3, "[s] exposure time"),
                ("BKGRATE", job.background, "[count / pixel / ks] flat background"),
            ]
        else:
            cards.append(("BUNIT", BUNIT_EMISSIVITY, "line-of-sight integral of n_e n_H Lambda"))
        rel = f"images/{image_id}.fits"
        header = fits.Header(cards)
        fits.PrimaryHDU(image.astype(np.float32), header=header).writeto(
            Path(job.out_dir) / rel, overwrite=True
        )
        rows.append(_catalog_row(model, axis, image_id, rel, pixel_kpc))
    return rows


def _catalog_row(model: ClusterModel, axis: str, image_id: str, rel: str, pixel_kpc: float):
    """One projection's catalogue row: the 3-D model's physics and the map's pixel scale."""
    kinds = [c.kind for c in model.clumps]
    physics = ("m500_msun", "r500_kpc", "T_keV", "T_center_keV", "ne0_cm3", "r_tcool_kpc",
               "t_cool_gyr")  # fmt: skip
    return {
        "image_id": image_id, "cluster_id": model.cluster_id, "file": rel, "label": model.label,
        "axis": axis, **{key: getattr(model, key) for key in physics},
        "pixel_kpc": pixel_kpc, "fgas": model.fgas,
        "n_subclumps": kinds.count("subclump"), "n_satellites": kinds.count("satellite"),
        "corona": "corona" in kinds, "n_cavities": len(model.cavities),
        "sloshing": model.sloshing is not None, "fluct_rms": model.fluct_rms,
        "relaxedness": model.relaxedness,
    }  # fmt: skip


def _observe_cluster(job: _Job, model: ClusterModel, profile, rng) -> list[dict]:
    """Observe the three projections with ``job.instrument``: the cluster's placement, then
    a pointing per projection, all drawn from the cluster's generator after the cluster."""
    inst = INSTRUMENTS[job.instrument]
    place = draw_placement(inst, model, rng)
    rows = []
    for axis in AXES:
        image_id = f"c{job.index:04d}_{axis}"
        obs = observe_projection(model, axis, inst, place, draw_pointing(inst, rng), rng,
                                 profile=profile, size=job.size, fov_kpc=job.fov_kpc)  # fmt: skip
        files = write_observation(obs, job.out_dir, image_id, _physics_cards(model, axis))
        row = _catalog_row(model, axis, image_id, files.pop("file"), 0.0)
        del row["pixel_kpc"]  # the scale comes from the WCS and the redshift, as for real data
        rows.append({**row, **files})
    return rows


def _check_args(
    n_clusters, size, fov_kpc, class_mix, seed, workers, exposure_ks, background
) -> tuple[float, ...]:
    """Validate :func:`simulate_sample`'s arguments; return the class mix as floats."""

    def is_int(v) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    def is_real(v) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and bool(np.isfinite(v))

    if not is_int(n_clusters) or n_clusters < 1:
        raise UsageError(f"n_clusters: must be a positive integer, got {n_clusters!r}")
    if not is_int(size) or size < 16:
        raise UsageError(f"size: must be an integer >= 16 pixels, got {size!r}")
    if not (is_real(fov_kpc) and fov_kpc > 0):
        raise UsageError(f"fov_kpc: must be a positive number of kpc, got {fov_kpc!r}")
    try:
        mix = tuple(float(v) for v in class_mix)
    except (TypeError, ValueError):
        raise UsageError(
            f"class_mix: must be three numbers (CC, WCC, NCC), got {class_mix!r}"
        ) from None
    if len(mix) != 3 or not all(np.isfinite(v) and v >= 0 for v in mix):
        raise UsageError(f"class_mix: must be three non-negative numbers, got {class_mix!r}")
    if abs(sum(mix) - 1.0) > 1e-6:
        raise UsageError(f"class_mix: must sum to 1, got {sum(mix):g}")
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed: must be an integer in 0..{MAX_SEED}, got {seed!r}")
    if not is_int(workers) or workers < 1:
        raise UsageError(f"workers: must be a positive integer, got {workers!r}")
    if not (is_real(exposure_ks) and exposure_ks > 0):
        raise UsageError(f"exposure_ks: must be a positive number of ks, got {exposure_ks!r}")
    if not (is_real(background) and background >= 0):
        raise UsageError(f"background: must be a non-negative count rate, got {background!r}")
    return mix


def map_memory_bytes(size: int) -> int:
    """Working memory (bytes) one worker needs to render a ``size`` x ``size`` map.

    Examples
    --------
    >>> map_memory_bytes(256) / 2**20
    16.0
    """
    return BYTES_PER_PIXEL * int(size) ** 2


def _available_memory_bytes() -> int | None:
    """Memory the system can still give (``MemAvailable``), else its physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _check_memory(size: int, workers: int) -> None:
    """Refuse a map size whose rendering would not fit in memory (with the estimate)."""
    available = _available_memory_bytes()
    need = workers * map_memory_bytes(size)
    if available is None or need <= available:
        return
    gib = 2.0**30
    per_worker = f"{map_memory_bytes(size) / gib:.3g} GiB per worker"
    total = f"{workers} workers: {need / gib:.3g} GiB, " if workers > 1 else ""
    raise UsageError(
        f"size={size}: rendering a {size} x {size} map needs about {per_worker} "
        f"({total}{BYTES_PER_PIXEL} bytes per pixel), more than the {available / gib:.3g} GiB "
        "of memory available; use a smaller size" + (" or fewer workers" if workers > 1 else "")
    )


def _check_observation(job: _Job) -> None:
    """Observe the first cluster's first map before anything is written (no counts: an error)."""
    model = draw_cluster(np.random.default_rng(job.seed), job.label, job.index)
    image = render_projection(model, AXES[0], job.size, job.fov_kpc)
    observe_counts(
        image, job.fov_kpc / job.size, job.exposure_ks, job.background, np.random.default_rng(0),
        name=f"c{job.index:04d}_{AXES[0]}",
    )  # fmt: skip


def simulate_sample(
    out_dir: str | Path,
    *,
    n_clusters: int = 318,
    size: int = 256,
    fov_kpc: float = 1000.0,
    class_mix: Sequence[float] = (0.1, 0.6, 0.3),
    seed: int = 0,
    workers: int = 1,
    observed: bool = False,
    exposure_ks: float = 100.0,
    background: float = 0.05,
    instrument: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Simulate a sample of clusters and write FITS maps plus ``catalog.csv``.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (created); maps go to ``out_dir/images/``.
    n_clusters : int
        Number of clusters; each gives three projections (x, y, z).
    size : int
        Map size in pixels (>= 16).
    fov_kpc : float
        Side of the map in kpc (default 1 Mpc, as Su et al. 2020).
    class_mix : three floats
        Fractions of CC, WCC, NCC clusters (rounded to exact counts by largest
        remainder; every label is the computed one).
    seed : int
        Master seed in ``0 .. MAX_SEED``; cluster ``i`` uses ``SeedSequence(seed).spawn(n)[i]``, so the
        files do not depend on ``workers``.
    workers : int
        Processes (1: no pool).  Each needs about :func:`map_memory_bytes` of
        memory; a size that would not fit in the memory available is refused.
    observed : bool
        Write Poisson counts (see :func:`observe_counts`) instead of emissivity;
        an exposure that leaves a map without counts is refused.
    exposure_ks, background : float
        Exposure in ks and flat background in counts / pixel / ks (observed mode).
    instrument : {None, "chandra", "xmm", "erosita"}
        Mock observations (:mod:`coolcore.sim.observe`, not with ``observed``): counts,
        ``exposure/`` and ``background/`` maps; ``size, fov_kpc`` set the finest render grid.
    progress : bool
        Show a tqdm progress bar over clusters.

    Returns
    -------
    pandas.DataFrame
        The catalogue, one row per map, also written to ``out_dir/catalog.csv``.

    Raises
    ------
    coolcore.errors.UsageError
        An argument out of range, ``out_dir`` an existing file, a size that
        does not fit in memory, or an observation without counts; all but the
        last before anything is written. The maps are drawn into a staging
        folder and moved into place when every cluster succeeded, so a failure
        found while drawing (or an interrupt) leaves no map behind.

    Examples
    --------
    >>> cat = simulate_sample("data/", n_clusters=4, size=64, progress=False)  # doctest: +SKIP
    """
    mix = _check_args(n_clusters, size, fov_kpc, class_mix, seed, workers, exposure_ks, background)
    unknown = instrument is not None and str(instrument) not in INSTRUMENTS
    if unknown or (instrument is not None and observed):
        why = f"not one of {', '.join(INSTRUMENTS)}" if unknown else "not with observed=True"
        raise UsageError(f"instrument={instrument!r}: {why}")
    _check_memory(size, min(workers, n_clusters))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder (the maps are written into a folder)")

    counts = class_counts(n_clusters, mix)
    labels = np.repeat(np.asarray(CLASS_NAMES), counts)
    root = np.random.SeedSequence(seed)
    order_seed, cluster_seeds = root.spawn(2)
    labels = np.random.default_rng(order_seed).permutation(labels)
    seeds = cluster_seeds.spawn(n_clusters)
    # the maps are drawn into a staging folder and moved into place only when all
    # succeeded, so a failure (or an interrupt) leaves no half-written sample behind
    staging = out / f".simulate-{os.getpid()}.partial"
    jobs = [
        _Job(i, str(labels[i]), seeds[i], str(staging), size, float(fov_kpc), bool(observed),
             float(exposure_ks), float(background), None if instrument is None else str(instrument))
        for i in range(n_clusters)
    ]  # fmt: skip
    if observed:
        _check_observation(jobs[0])
    created = not out.exists()
    folders = {"file": "images"} | ({"exposure": "exposure", "background": "background"}
                                    if instrument is not None else {})  # fmt: skip
    for folder in folders.values():
        (staging / folder).mkdir(parents=True, exist_ok=True)
    try:
        rows = _draw_all(jobs, workers, progress)
        for key, folder in folders.items():
            (out / folder).mkdir(exist_ok=True)
            for row in rows:
                os.replace(staging / row[key], out / row[key])
    except BaseException:
        shutil.rmtree(out if created else staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    catalog = pd.DataFrame(rows)
    catalog.to_csv(out / "catalog.csv", index=False, float_format="%.8g")
    return catalog


def _draw_all(jobs: list, workers: int, progress: bool) -> list[dict]:
    """Every job's catalogue rows, in job order (maps written by the jobs)."""
    n_clusters = len(jobs)
    from tqdm.auto import tqdm

    rows: list[dict] = []
    with tqdm(
        total=n_clusters, desc="simulate", unit="cluster", disable=None if progress else True
    ) as bar:
        if workers == 1:
            for job in jobs:
                rows.extend(simulate_cluster(job))
                bar.update()
        else:
            ctx = mp.get_context()
            with ctx.Pool(min(workers, n_clusters)) as pool:
                for r in pool.imap(simulate_cluster, jobs, chunksize=1):
                    rows.extend(r)
                    bar.update()
    return rows
