"""The README's ablation table: an ablation run beside the paper's Table I.

Usage::

    python benchmarks/ablation_readme.py results/ablation-cpu

Reads the run folder's results (finished or ``.partial``; every repeat whose
cross-validation finished): ``results.csv``, or for a run made before that file
existed :func:`coolcore.evaluate.tables.ablation_summary` of its predictions (the
same numbers as the run's ``table.md``), and prints one Markdown row per method: the paper's macro-F1 (Zhang et al. 2020,
Table I: TNG300 maps, ImageNet initialisation, 10 folds), ours with its 95%
cluster-bootstrap interval, the paired difference to ``baseline`` with its
interval, per-class F1, the number of repeats behind the figure, and the wall
time of the first repeat's cross-validation (the sum of its folds' ``seconds``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coolcore import CLASS_NAMES
from coolcore.evaluate.tables import difference_text
from coolcore.runs.folder import RunFolder

PAPER_TABLE_I = {
    "baseline": 0.803,
    "att": 0.823,
    "gauss": 0.813,
    "att+gauss": 0.827,
    "all": 0.830,
}
"""Macro-F1 of the paper's Table I (Zhang, Liang, Su & Jacobs 2020)."""


def _mean_std(mean: float, std: float, n: int) -> str:
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def cv_minutes(run: Path, method: str) -> float | None:
    """Wall time of ``method``'s first repeat: its folds' seconds summed, in minutes."""
    rep = RunFolder(run).method_run(method, 0)
    infos = [rep.read_fold_info(k) for k in sorted(rep.fold_dirs())]
    seconds = [info["seconds"] for info in infos if info is not None]
    return sum(seconds) / 60 if seconds else None


def readme_table(run: Path) -> str:
    summary = RunFolder(run).ablation_summary()
    header = [
        "method",
        "paper (TNG300)",
        "macro-F1 here",
        "95% CI",
        "Δ vs baseline [95% CI]",
        *(f"F1 {c}" for c in CLASS_NAMES),
        "repeats",
        "cv time",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in summary.iterrows():
        n = int(row["n_repeats"])
        paper = PAPER_TABLE_I.get(row["method"])
        minutes = cv_minutes(run, row["method"])
        cells = [
            str(row["method"]),
            "–" if paper is None else f"{paper:.3f}",
            _mean_std(row["macro_f1_mean"], row["macro_f1_std"], n),
            f"{row['macro_f1_ci_low']:.3f}-{row['macro_f1_ci_high']:.3f}",
            difference_text(row, p_value=False),
            *(_mean_std(row[f"{c}_f1_mean"], row[f"{c}_f1_std"], n) for c in CLASS_NAMES),
            str(n),
            "–" if minutes is None else f"{minutes:.0f} min",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an ablation run folder")
    args = parser.parse_args(argv)
    run = args.run
    if not (run / "run.json").is_file() and Path(f"{run}.partial").is_dir():
        run = Path(f"{run}.partial")
    if not (run / "run.json").is_file():
        print(f"ablation_readme: {args.run}: not an ablation run folder", file=sys.stderr)
        return 2
    print(readme_table(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
