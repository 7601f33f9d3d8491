"""Time the simulator on the default sample (318 clusters x 3 projections, 256 px).

Usage::

    python benchmarks/bench_simulate.py [--clusters 318] [--workers 2] [--out DIR]

Without ``--out`` the maps go to a temporary folder that is deleted afterwards.
SIMULATOR.md asks for the default sample in at most 120 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coolcore.sim.simulate import simulate_sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time coolcore.sim.simulate.simulate_sample.")
    parser.add_argument("--clusters", type=int, default=318, help="number of clusters (318)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--size", type=int, default=256, help="map size in pixels (256)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="coolcore-bench-") as tmp:
        out = args.out if args.out is not None else Path(tmp)
        start = time.perf_counter()
        catalog = simulate_sample(
            out,
            n_clusters=args.clusters,
            size=args.size,
            seed=args.seed,
            workers=args.workers,
            progress=False,
        )
        elapsed = time.perf_counter() - start
    n = len(catalog)
    mix = catalog.drop_duplicates("cluster_id")["label"].value_counts().to_dict()
    print(
        f"{args.clusters} clusters, {n} maps of {args.size} px, {args.workers} workers: "
        f"{elapsed:.1f} s ({n / elapsed:.1f} images/s); clusters per class {mix}"
    )


if __name__ == "__main__":
    main()
