"""Markdown table of the concentration baselines on a sample folder.

Usage::

    python benchmarks/baseline_table.py DATA

``DATA`` holds ``catalog.csv`` (columns ``file``, ``label``, ``pixel_kpc`` and, for
the scaled concentration, ``r500_kpc``) and the FITS maps it names.  Prints macro-F1
and per-class F1 of c_SB with the Santos et al. (2008) thresholds, of c_SB with
thresholds fitted on the same sample, and of the scaled concentration with fitted
thresholds (fitted thresholds are in-sample, an optimistic upper bound; `coolcore
ablation` fits them on each training fold instead). The interval is a 95%
bootstrap interval resampling clusters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from sklearn.metrics import f1_score

from coolcore import CLASS_NAMES
from coolcore.evaluate.baselines import ConcentrationClassifier, concentration, scaled_concentration
from coolcore.evaluate.metrics import compute_metrics


def load_sample(data: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The catalogue and the stacked maps (N, H, W) as float64."""
    catalog = pd.read_csv(data / "catalog.csv")
    images = np.stack([fits.getdata(data / f).astype(np.float64) for f in catalog["file"]])
    return catalog, images


def baseline_rows(catalog: pd.DataFrame, images: np.ndarray) -> list[dict]:
    """One row per baseline: name, thresholds, macro-F1, per-class F1."""
    y = catalog["label"].to_numpy()
    pix = catalog["pixel_kpc"].to_numpy()
    c_sb = concentration(images, pix)
    rows = []
    cases = [("c_SB, Santos et al. 2008 thresholds", "c_sb", "literature", c_sb)]
    cases.append(("c_SB, fitted thresholds (in-sample)", "c_sb", "fit", c_sb))
    if "r500_kpc" in catalog:
        c_sc = scaled_concentration(images, pix, catalog["r500_kpc"].to_numpy())
        cases.append(("c_scaled, fitted thresholds (in-sample)", "c_scaled", "fit", c_sc))
    for name, indicator, mode, values in cases:
        clf = ConcentrationClassifier(indicator, mode).fit(values, y)
        pred = clf.predict(values)
        per_class = f1_score(y, pred, labels=list(CLASS_NAMES), average=None, zero_division=0)
        frame = pd.DataFrame(
            {
                "image_id": catalog["image_id"],
                "cluster_id": catalog["cluster_id"],
                "label": y,
                "predicted": pred,
            }
        )
        lo, hi = compute_metrics(frame, n_boot=1000, seed=0)["macro_f1_ci"]
        rows.append(
            {
                "baseline": name,
                "thresholds": f"{clf.thresholds_[0]:.3f} / {clf.thresholds_[1]:.3f}",
                "macro-F1": f1_score(y, pred, average="macro", zero_division=0),
                "95% interval": f"{lo:.3f}-{hi:.3f}",
                **{f"F1 {k}": v for k, v in zip(CLASS_NAMES, per_class, strict=True)},
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Format rows (dicts with the same keys) as a Markdown table."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with catalog.csv and the maps")
    args = parser.parse_args(argv)
    catalog, images = load_sample(args.data)
    counts = catalog["label"].value_counts()
    mix = ", ".join(f"{k} {counts.get(k, 0)}" for k in CLASS_NAMES)
    print(f"{len(catalog)} maps of {catalog['cluster_id'].nunique()} clusters ({mix})\n")
    print(markdown_table(baseline_rows(catalog, images)))


if __name__ == "__main__":
    main()
