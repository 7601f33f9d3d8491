"""How far the found centre of mock observations lies from the true cluster centre.

Usage::

    python benchmarks/centre_check.py INSTRUMENT N_CLUSTERS [--seed 11]

Simulates ``N_CLUSTERS`` clusters (3 projections each) observed with ``INSTRUMENT``
(chandra, xmm, erosita) into a temporary folder, brings every map through
:func:`coolcore.data.inputs.observation_field` (1000 kpc field, centre found on the
data) and prints, per map, the distance of the found centre from the catalogue's
``true_ra``/``true_dec`` in arcsec, the source counts in the field, the masked
fraction and the first warning; then the median distance and the fraction beyond 60".
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore.data.catalog import read_catalog
from coolcore.data.inputs import catalog_inputs, observation_field
from coolcore.sim.simulate import simulate_sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("instrument", choices=("chandra", "xmm", "erosita"))
    parser.add_argument("clusters", type=int)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="coolcore-centres-") as tmp:
        out = Path(tmp) / "mock"
        simulate_sample(
            out, n_clusters=args.clusters, instrument=args.instrument, seed=args.seed,
            progress=False,
        )  # fmt: skip
        cat = read_catalog(out / "catalog.csv")
        rows = []
        for item, row in zip(catalog_inputs(cat), cat.itertuples(), strict=True):
            field = observation_field(item, field_kpc=1000.0, grid=256)
            dra = (field.center_ra - row.true_ra) * np.cos(np.deg2rad(row.true_dec))
            dist = float(np.hypot(dra, field.center_dec - row.true_dec) * 3600)
            rows.append(
                {
                    "image_id": row.image_id,
                    "label": row.label,
                    "z": row.redshift,
                    "offset_arcsec": dist,
                    "counts": field.counts,
                    "masked_fraction": field.masked_fraction,
                    "warning": (field.warnings or [""])[0].removeprefix(f"{item.name}: "),
                }
            )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(
        f"{args.instrument}: median offset {table['offset_arcsec'].median():.1f} arcsec over "
        f"{len(table)} maps; {int((table['offset_arcsec'] > 60).sum())} beyond 60 arcsec"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
