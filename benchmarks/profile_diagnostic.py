"""Why the networks lose to a logistic regression on the profile: what the profile carries.

Usage::

    python benchmarks/profile_diagnostic.py DATA RUN [RUN ...] [--out FILE.md]

On the folds of the first ablation RUN (its data checksum and folds are checked as
``benchmarks/add_baselines.py`` checks them), the same logistic regression as
``profile (fit)`` (:class:`coolcore.evaluate.profiles.ProfileClassifier`, fitted
on each fold's training part) on:

* ``profile (fit)``: the 12-annulus log surface-brightness profile, absolute;
* ``profile shape``: the same profile less its own mean, i.e. without the
  brightness level, which is what a per-map min-max normalised image still carries;
* ``c_SB + S(<40 kpc)``: the concentration and the mean central surface
  brightness (the two numbers an astronomer would quote).

Each is scored with the networks of every RUN (one per training seed) by
:func:`coolcore.evaluate.compare.compare_methods` against ``profile (fit)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.apps.comparison import collect_methods
from coolcore.errors import CoolcoreError
from coolcore.evaluate.compare import compare_methods, comparison_markdown
from coolcore.evaluate.indicators import dataset_features
from coolcore.evaluate.profiles import PROFILE_EDGES_KPC, ProfileClassifier
from coolcore.runs.folder import RunFolder
from coolcore.train.fit import predictions_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_baselines import same_data_and_folds  # noqa: E402


def feature_sets(dataset) -> dict[str, np.ndarray]:
    """The three feature sets of the module docstring, one row per map."""
    f = dataset_features(dataset.catalog, dataset.cfg)
    if f is None:
        raise CoolcoreError("the concentration features cannot be measured on these maps")
    profile = f["profile"]
    inner = int(np.searchsorted(PROFILE_EDGES_KPC, 40.0))  # annuli within 40 kpc
    central = np.log10(np.mean(10 ** profile[:, :inner], axis=1))
    return {
        "profile (fit)": profile,
        "profile shape": profile - profile.mean(axis=1, keepdims=True),
        "c_SB + S(<40 kpc)": np.stack([np.log10(f["c_SB"]), central], axis=1),
    }


def diagnostic(data: Path, runs: list[Path]) -> str:
    first = RunFolder(runs[0])
    dataset, folds = same_data_and_folds(data, first, first.read_record())
    y = dataset.labels
    results: dict[str, list[pd.DataFrame]] = {}
    for name, x in feature_sets(dataset).items():
        probs = np.zeros((len(y), len(CLASS_NAMES)))
        for train_idx, _, test_idx in folds:
            clf = ProfileClassifier().fit(x[train_idx], y[train_idx])
            probs[test_idx] = clf.predict_proba(x[test_idx])
        frames = [
            predictions_frame(dataset.catalog, f[2], probs[f[2]], k) for k, f in enumerate(folds)
        ]
        results[name] = [pd.concat(frames, ignore_index=True)]
    for method, frames in collect_methods([str(r) for r in runs]).items():
        if method in ("baseline", "all"):
            results[method] = frames
    table = compare_methods(results, reference="profile (fit)", n_boot=1000, seed=0)
    return comparison_markdown(table, reference="profile (fit)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the data the runs were made on")
    parser.add_argument("runs", type=Path, nargs="+", help="ablation folders (one per seed)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        text = diagnostic(args.data, args.runs)
    except CoolcoreError as exc:
        print(f"profile_diagnostic: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
