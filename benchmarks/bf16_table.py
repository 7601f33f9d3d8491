"""bf16 against fp32 on a small cross-validation (issue 13): the table of docs/performance.md.

Usage::

    python benchmarks/bf16_table.py results/bf16-cpu

reads the finished cv run folders that ``benchmarks/bf16_cv.sh`` writes there
(``fp32-sK`` and ``bf16-sK`` for seeds K, and ``bf16-s0-again``) and prints:

- per run: the precision each fold recorded (``fold_XX/fold.json``), the test macro-F1
  (``metrics.json``) and the cross-validation's wall time (its folds' ``seconds``
  summed);
- per precision: the macro-F1's mean and standard deviation over seeds, the mean
  minutes; the difference of the means beside the seeds' spread; the speed-up (fp32
  minutes over bf16 minutes, per seed, and their median);
- whether the deterministic repeat of seed 0 in bf16 gave the same predictions as the
  first run, bit for bit (every probability of ``predictions.csv``).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import pandas as pd

PROBS = ["p_CC", "p_WCC", "p_NCC"]


def run_summary(run: Path) -> dict:
    """Precision, macro-F1 and minutes of one finished cv run folder."""
    folds = sorted(run.glob("fold_*/fold.json"))
    if not folds:
        raise SystemExit(f"bf16_table.py: {run}: no fold_*/fold.json (not a finished cv run)")
    infos = [json.loads(f.read_text()) for f in folds]
    precisions = sorted({i["precision"] for i in infos})
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "run": run.name,
        "precision": "/".join(precisions),
        "macro_f1": float(metrics["macro_f1"]),
        "minutes": sum(float(i["seconds"]) for i in infos) / 60,
    }


def same_predictions(a: Path, b: Path) -> tuple[bool, float]:
    """Whether two runs' test probabilities are identical, and their largest difference."""
    pa = pd.read_csv(a / "predictions.csv").sort_values("image_id").reset_index(drop=True)
    pb = pd.read_csv(b / "predictions.csv").sort_values("image_id").reset_index(drop=True)
    if list(pa["image_id"]) != list(pb["image_id"]):
        return False, float("inf")
    diff = (pa[PROBS] - pb[PROBS]).abs().to_numpy().max()
    return bool(diff == 0.0), float(diff)


def summarise(folder: Path) -> dict:
    """Everything the table shows, from the run folders in ``folder``."""
    runs = {}
    for run in sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".partial")
    ):
        m = re.fullmatch(r"(fp32|bf16)-s(\d+)", run.name)
        if m:
            runs[(m.group(1), int(m.group(2)))] = run_summary(run)
    seeds = sorted({s for _, s in runs})
    per = {}
    for kind in ("fp32", "bf16"):
        f1 = [runs[(kind, s)]["macro_f1"] for s in seeds if (kind, s) in runs]
        minutes = [runs[(kind, s)]["minutes"] for s in seeds if (kind, s) in runs]
        per[kind] = {
            "seeds": len(f1),
            "macro_f1_mean": statistics.fmean(f1) if f1 else None,
            "macro_f1_std": statistics.stdev(f1) if len(f1) > 1 else None,
            "minutes_mean": statistics.fmean(minutes) if minutes else None,
        }
    paired = [s for s in seeds if ("fp32", s) in runs and ("bf16", s) in runs]
    ratios = [runs[("fp32", s)]["minutes"] / runs[("bf16", s)]["minutes"] for s in paired]
    out = {"runs": runs, "per_precision": per, "speedup_per_seed": ratios}
    out["speedup_median"] = statistics.median(ratios) if ratios else None
    again = folder / "bf16-s0-again"
    if again.is_dir() and (folder / "bf16-s0").is_dir():
        out["repeat_identical"], out["repeat_max_abs_diff"] = same_predictions(
            folder / "bf16-s0", again
        )
    return out


def format_table(s: dict) -> str:
    lines = ["| run | precision | macro-F1 | cv minutes |", "|---|---|---|---|"]
    for (_kind, _seed), r in sorted(s["runs"].items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(
            f"| {r['run']} | {r['precision']} | {r['macro_f1']:.3f} | {r['minutes']:.1f} |"
        )
    lines += [
        "",
        "| precision | seeds | macro-F1 mean +- std | mean cv minutes |",
        "|---|---|---|---|",
    ]
    for kind, p in s["per_precision"].items():
        if p["seeds"]:
            std = "" if p["macro_f1_std"] is None else f" +- {p['macro_f1_std']:.3f}"
            lines.append(
                f"| {kind} | {p['seeds']} | {p['macro_f1_mean']:.3f}{std} | {p['minutes_mean']:.1f} |"
            )
    f, b = s["per_precision"]["fp32"], s["per_precision"]["bf16"]
    if f["seeds"] and b["seeds"]:
        diff = b["macro_f1_mean"] - f["macro_f1_mean"]
        spread = max(x for x in (f["macro_f1_std"], b["macro_f1_std"], 0.0) if x is not None)
        lines += [
            "",
            f"bf16 - fp32 macro-F1: {diff:+.3f}; largest seed standard deviation: {spread:.3f}"
            f" ({'within' if abs(diff) <= spread else 'OUTSIDE'} the spread between seeds)",
        ]
    if s["speedup_per_seed"]:
        per_seed = ", ".join(f"{r:.2f}x" for r in s["speedup_per_seed"])
        lines.append(
            f"cv speed-up, fp32 minutes over bf16 minutes: median {s['speedup_median']:.2f}x "
            f"(per seed {per_seed})"
        )
    if "repeat_identical" in s:
        same = "identical" if s["repeat_identical"] else "DIFFERENT"
        lines.append(
            f"deterministic repeat of bf16 seed 0: predictions {same} "
            f"(largest difference {s['repeat_max_abs_diff']:.3g})"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python benchmarks/bf16_table.py RESULTS_FOLDER", file=sys.stderr)
        return 2
    print(format_table(summarise(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
