"""``coolcore simulate``: the built-in sample of simulated cluster maps."""

from __future__ import annotations

import os
from pathlib import Path

from coolcore.cli.args import (
    class_mix,
    formatter,
    int_at_least,
    nonneg_int,
    positive_float,
    positive_int,
)
from coolcore.errors import UsageError

MAX_CLUSTERS = 100_000  # as the config's sample.clusters
INSTRUMENTS = ("chandra", "xmm", "erosita")
"""The keys of ``coolcore.sim.instruments.INSTRUMENTS``, named here so that building the
parser imports no NumPy (tests/test_instruments.py checks that they agree)."""


def cmd_simulate(args) -> int:
    from coolcore.sim.simulate import simulate_sample

    out = Path(args.out_dir)
    if args.instrument is not None and args.observed:
        raise UsageError(
            f"--instrument {args.instrument}: not with --observed (flat counts); choose one"
        )
    if args.instrument is not None and args.exposure_ks is not None:
        raise UsageError(
            f"--exposure-ks: only for --observed; --instrument {args.instrument} draws "
            "each exposure from the instrument's range (see docs/simulator.md)"
        )
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(f"{out}: folder exists and is not empty; pass --force to overwrite")
    kwargs = {}
    if args.exposure_ks is not None:
        kwargs["exposure_ks"] = args.exposure_ks
    catalog = simulate_sample(
        out,
        n_clusters=args.clusters,
        size=args.size,
        fov_kpc=args.fov_kpc,
        class_mix=args.class_mix,
        seed=args.seed,
        workers=args.workers,
        observed=args.observed,
        instrument=args.instrument,
        progress=not args.no_progress,
        **kwargs,
    )
    print_sample_summary(catalog, out)
    return 0


def print_sample_summary(catalog, out: Path) -> None:
    counts = catalog["label"].value_counts()
    n = len(catalog)
    mix = ", ".join(
        f"{c} {counts.get(c, 0)} ({100 * counts.get(c, 0) / n:.0f}%)" for c in ("CC", "WCC", "NCC")
    )
    print(f"{out}: {n} maps of {catalog['cluster_id'].nunique()} clusters; {mix}")
    if "m500_msun" in catalog:
        m = catalog["m500_msun"]
        print(
            f"  M500 {m.min():.2e} - {m.max():.2e} Msun; t_cool {catalog['t_cool_gyr'].min():.2f} - "
            f"{catalog['t_cool_gyr'].max():.1f} Gyr; catalogue {out / 'catalog.csv'}"
        )
    if "instrument" in catalog:
        z, t = catalog["redshift"], catalog["exposure_s"] / 1e3
        print(
            f"  {catalog['instrument'].iloc[0]}: z {z.min():.2f} - {z.max():.2f}, exposure "
            f"{t.min():.3g} - {t.max():.3g} ks, {int(catalog['agn'].sum())} maps with a central AGN"
        )


def add_simulate_command(sub) -> None:
    """Add ``simulate`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "simulate",
        help="simulate cluster X-ray emissivity maps (the built-in sample)",
        formatter_class=formatter,
        description="Simulate X-ray emissivity maps of galaxy clusters from a physical gas model,\n"
        "labelled by their computed central cooling time; one FITS file per projection\n"
        "and a catalog.csv in OUT_DIR. With --instrument (chandra, xmm, erosita), mock\n"
        "observations instead: counts, exposure/ and background/ maps with a sky WCS.",
    )
    p.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder to write the FITS maps and catalog.csv"
    )
    p.add_argument(
        "--clusters",
        type=int_at_least(1, MAX_CLUSTERS),
        default=318,
        help=f"number of clusters, at most {MAX_CLUSTERS} (default 318)",
    )
    p.add_argument(
        "--size", type=positive_int, default=256, help="map size in pixels (default 256)"
    )
    p.add_argument(
        "--fov-kpc", type=positive_float, default=1000.0, help="field of view in kpc (default 1000)"
    )
    p.add_argument(
        "--class-mix",
        type=class_mix,
        default=(0.1, 0.6, 0.3),
        metavar="CC,WCC,NCC",
        help="fractions of the three classes (default 0.1,0.6,0.3)",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="processes (default: up to 2); the output does not depend on it",
    )
    p.add_argument(
        "--observed",
        action="store_true",
        help="Poisson photon counts for an exposure plus a flat background",
    )
    p.add_argument(
        "--exposure-ks", type=positive_float, default=None, help="exposure in ks for --observed"
    )
    p.add_argument(
        "--instrument",
        choices=INSTRUMENTS,
        default=None,
        help="mock observations with this instrument: Poisson counts with a celestial WCS,\n"
        "exposure and background maps (default: emissivity maps)",
    )
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)
