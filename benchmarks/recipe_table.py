"""Markdown table comparing training recipes: one row per finished cv run folder.

Usage::

    python benchmarks/recipe_table.py RUN [RUN ...]

Per run: the recipe (epochs, schedule, warm-up, augmentation, crop source, from its
``config.yaml``), the test macro-F1 with its 95% cluster-bootstrap interval
(``metrics.json``), and from ``history.csv``: the best epoch of each fold, how many
epochs after the first two had a validation macro-F1 below 0.25 (one class predicted
for nearly every map: a collapse), and the relative change of the validation loss over
each fold's last three epochs (near 0: the curve has flattened), and the range (max -
min) of the validation macro-F1 over each fold's last four epochs and over the epochs
between the second and those (small: the score has settled), averaged over folds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml


def row(run: Path) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    hist = pd.read_csv(run / "history.csv")
    train, model = cfg["train"], cfg["model"]
    best, collapses, tail, settled, middle = [], 0, [], [], []
    for _, fold in hist.groupby("fold"):
        fold = fold.sort_values("epoch")
        best.append(int(fold.loc[fold["val_macro_f1"].idxmax(), "epoch"]) + 1)
        collapses += int((fold["val_macro_f1"].iloc[2:] < 0.25).sum())
        f1 = fold["val_macro_f1"].to_numpy()
        settled.append(f1[-4:].max() - f1[-4:].min())
        middle.append(f1[2:-4].max() - f1[2:-4].min() if len(f1) > 6 else float("nan"))
        last = fold["val_loss"].to_numpy()[-3:]
        tail.append((last[-1] - last[0]) / last[0])
    lo, hi = metrics["macro_f1_ci"]
    return {
        # an ablation's network run is SAMPLE-sK/METHOD/rep_XX: name it by the first two
        "run": f"{run.parents[1].name} {run.parent.name}"
        if run.name.startswith("rep_")
        else run.name,
        "epochs": train["epochs"],
        "schedule": f"{train.get('schedule', 'step')} (warm-up {train.get('warmup_epochs', 0)})",
        "augment": train.get("augment", "none"),
        "crop from": model.get("crop_source", "input"),
        "macro-F1 [95% CI]": f"{metrics['macro_f1']:.3f} [{lo:.3f}, {hi:.3f}]",
        "best epochs": "/".join(map(str, best)),
        "collapsed epochs": collapses,
        "val loss, last 3 epochs": f"{100 * sum(tail) / len(tail):+.0f}%",
        "val F1 range, last 4 / middle epochs": (
            f"{sum(settled) / len(settled):.2f} / {sum(middle) / len(middle):.2f}"
        ),
    }


def main(argv: list[str]) -> int:
    rows = [row(Path(a)) for a in argv]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
