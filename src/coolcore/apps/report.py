"""The report of a cv or ablation run: ``RUN/report.md`` and ``RUN/report.html``.

Both hold the same content: the results table, the confusion matrices, the
learning curves, a grid of explained test images (:func:`coolcore.apps.explain.explain_run`,
drawn into ``RUN/explain/`` when the training maps are still there), the config,
the versions, and where the data came from.

``report.md`` links its figures by paths relative to the run folder (it reads
well on GitHub or in an editor next to the PNGs); ``report.html`` is
self-contained: every figure is embedded as a base64 PNG, so the one file can be
mailed or archived on its own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES, __version__
from coolcore.apps.render import render_html, render_markdown
from coolcore.errors import CoolcoreError, DataError, UsageError
from coolcore.runs.atomic import atomic_write_text
from coolcore.runs.folder import RunFolder, read_predictions

__all__ = [
    "report_blocks",
    "summary_table",
    "write_report",
]

# A report is a list of blocks, rendered to Markdown and to HTML:
#   ("h", level, text)   ("p", text)   ("table", header, rows)
#   ("img", relative_path, caption)   ("code", language, text)


# --------------------------------------------------------------------------- helpers
def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | np.floating):
        return "–" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _ci(interval) -> str:
    if not interval:
        return "–"
    lo, hi = interval
    return f"[{lo:.3f}, {hi:.3f}]"


def _pm(mean: float, std: float, n: int, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def _interval(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "–"
    return f"[{low:.3f}, {high:.3f}]"


def summary_table(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an ablation's results (:meth:`RunFolder.ablation_summary`),
    laid out as the run's ``table.md``: one row per method and class."""
    from coolcore.evaluate.tables import difference_text

    header = [
        "Method",
        "Repeats",
        "Macro-F1",
        "95% CI (cluster bootstrap)",
        "Δ vs baseline [95% CI], p",
        "Class",
        "Precision",
        "Recall",
        "F1",
    ]
    rows = []
    for _, row in summary.iterrows():
        n = int(row["n_repeats"])
        for k, name in enumerate(CLASS_NAMES):
            first = [
                str(row["method"]),
                str(n),
                _pm(row["macro_f1_mean"], row["macro_f1_std"], n, 3),
                _interval(row["macro_f1_ci_low"], row["macro_f1_ci_high"]),
                difference_text(row),
            ]
            cells = first if k == 0 else [""] * len(first)
            cells = [*cells, name]
            cells += [
                _pm(row[f"{name}_{key}_mean"], row[f"{name}_{key}_std"], n, 2)
                for key in ("precision", "recall", "f1")
            ]
            rows.append(cells)
    return header, rows


def _class_counts(run: Path) -> str | None:
    folder = RunFolder(run)
    if not folder.folds_path.is_file():
        return None
    labels = folder.read_folds()["label"]
    counts = labels.value_counts()
    n = len(labels)
    return ", ".join(
        f"{c} {counts.get(c, 0)} ({100 * counts.get(c, 0) / n:.0f}%)" for c in CLASS_NAMES
    )


def _data_blocks(run: Path, record: dict) -> list:
    blocks: list = [("h", 2, "Data")]
    data = record.get("data")
    rows = [
        ["data (catalogue or folder)", f"`{data}`"],
        [
            "data checksum (SHA-256 of the maps and preprocessing)",
            f"`{record.get('data_checksum')}`",
        ],
        ["images / clusters", f"{record.get('n_images')} / {record.get('n_clusters')}"],
    ]
    counts = _class_counts(run)
    if counts:
        rows.append(["classes", counts])
    rows += [
        ["training seed / fold seed", f"{record.get('seed')} / {record.get('cv_seed')}"],
        ["command", f"`{record.get('command')}`"],
        ["started", str(record.get("started"))],
    ]
    blocks.append(("table", ["item", "value"], rows))
    folder = Path(data) if data else None
    if folder is not None and folder.is_file():
        folder = folder.parent
    if folder is not None and folder.is_dir():
        for desc in sorted(folder.glob("*.json"))[:1]:
            try:
                info = json.loads(desc.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(info, dict):
                scalars = [[k, f"`{v}`"] for k, v in info.items() if not isinstance(v, dict | list)]
                if scalars:
                    blocks.append(("p", f"Sample description from `{desc}`:"))
                    blocks.append(("table", ["key", "value"], scalars[:30]))
    elif data:
        blocks.append(("p", f"The data folder `{data}` is not on this machine any more."))
    return blocks


def _config_blocks(run: Path, record: dict) -> list:
    import yaml

    path = RunFolder(run).config_path
    text = (
        path.read_text()
        if path.is_file()
        else yaml.safe_dump(record.get("config"), sort_keys=False)
    )
    return [("h", 2, "Configuration"), ("code", "yaml", text.rstrip())]


def _version_blocks(record: dict) -> list:
    versions = record.get("versions") or {}
    rows = [[k, f"`{v}`"] for k, v in versions.items()]
    rows.append(["coolcore (this report)", f"`{__version__}`"])
    return [("h", 2, "Versions"), ("table", ["package", "version"], rows)]


def _explain_blocks(run: Path, explain: bool, progress: bool) -> list:
    from coolcore.apps.explain import explain_run

    blocks: list = [("h", 2, "Explained examples")]
    grid = run / "explain" / "grid.png"
    if not grid.is_file() and explain:
        try:
            explain_run(run, run / "explain", per_class=3, progress=progress)
        except CoolcoreError as exc:
            blocks.append(("p", f"Not drawn: {exc}"))
            return blocks
    if grid.is_file():
        blocks.append(
            (
                "img",
                os.path.relpath(grid, run),
                "Test images per true class (rows), correctly (left) and wrongly (right) "
                "classified, the most confident first; each with the CAM heat map of the "
                "model of the fold that tested it and its crop box. `coolcore explain RUN` "
                "redraws it; `explain/grid.csv` lists the images.",
            )
        )
    else:
        blocks.append(("p", "Not drawn (run `coolcore explain RUN --out RUN/explain`)."))
    return blocks


# --------------------------------------------------------------------------- cv
def _cv_result_blocks(run: Path, metrics: dict) -> list:
    blocks: list = [("h", 2, "Results")]
    n_boot = (metrics.get("bootstrap") or {}).get("n_boot", 0)
    rows = [
        ["macro-F1", _fmt(metrics["macro_f1"]), _ci(metrics.get("macro_f1_ci"))],
        ["accuracy", _fmt(metrics["accuracy"]), _ci(metrics.get("accuracy_ci"))],
    ]
    if "per_fold_macro_f1_mean" in metrics:
        rows.append(
            [
                "macro-F1 per fold (mean ± std)",
                f"{metrics['per_fold_macro_f1_mean']:.3f} ± {metrics['per_fold_macro_f1_std']:.3f}",
                "–",
            ]
        )
    rows.append(["mean absolute class error", _fmt(metrics.get("mean_abs_class_error")), "–"])
    if "cramer_distance" in metrics:
        rows.append(["Cramér distance", _fmt(metrics["cramer_distance"]), "–"])
    blocks.append(
        (
            "p",
            f"On the union of the test folds: {metrics['n_images']} images of "
            f"{metrics['n_clusters']} clusters. Intervals: 95% percentile bootstrap over "
            f"clusters ({n_boot} replicates).",
        )
    )
    blocks.append(("table", ["metric", "value", "95% CI"], rows))
    class_rows = []
    for c in CLASS_NAMES:
        class_rows.append(
            [
                c,
                f"{metrics['precision'][c]:.3f} {_ci((metrics.get('precision_ci') or {}).get(c))}",
                f"{metrics['recall'][c]:.3f} {_ci((metrics.get('recall_ci') or {}).get(c))}",
                f"{metrics['f1'][c]:.3f} {_ci((metrics.get('f1_ci') or {}).get(c))}",
                str(metrics["support"][c]),
            ]
        )
    blocks.append(("table", ["class", "precision", "recall", "F1", "images"], class_rows))
    folds = metrics.get("folds") or {}
    per_fold = metrics.get("per_fold_macro_f1") or {}
    if folds:
        fold_rows = []
        for k, info in folds.items():
            epoch = info.get("best_epoch")
            fold_rows.append(
                [
                    str(k),
                    _fmt(per_fold.get(str(k))),
                    "–" if epoch is None else str(int(epoch) + 1),
                    _fmt(info.get("best_val_macro_f1")),
                    _fmt(info.get("seconds"), 0),
                ]
            )
        blocks.append(
            (
                "table",
                ["fold", "test macro-F1", "best epoch", "validation macro-F1", "seconds"],
                fold_rows,
            )
        )
    return blocks


def _confusion_blocks(run: Path, metrics: dict, title: str = "Confusion matrix") -> list:
    blocks: list = [("h", 2, title)]
    if (run / "confusion_matrix.png").is_file():
        blocks.append(
            (
                "img",
                "confusion_matrix.png",
                "Rows: true class; columns: predicted class; row fractions with counts.",
            )
        )
    cm = metrics["confusion_matrix"]
    rows = [[f"true {c}", *(str(v) for v in cm[i])] for i, c in enumerate(CLASS_NAMES)]
    blocks.append(("table", ["", *(f"predicted {c}" for c in CLASS_NAMES)], rows))
    return blocks


def _cv_blocks(run: Path, record: dict, *, explain: bool, progress: bool) -> list:
    folder = RunFolder(run)
    if not folder.metrics_path.is_file():
        raise DataError(f"{run}: no metrics.json (the run is not finished; --resume it)")
    metrics = folder.read_metrics()
    cfg = record.get("config", {})
    model = cfg.get("model", {})
    n_folds = cfg.get("cv", {}).get("folds")
    blocks: list = [
        ("h", 1, f"coolcore report: cv run `{run.name}`"),
        (
            "p",
            f"Variant **{model.get('variant')}** (masks combined by {model.get('combine')}), "
            f"{n_folds}-fold cluster-grouped cross-validation; macro-F1 "
            f"**{metrics['macro_f1']:.3f}** {_ci(metrics.get('macro_f1_ci'))}. "
            f"Report written {time.strftime('%Y-%m-%d %H:%M')} by coolcore {__version__}.",
        ),
    ]
    blocks += _cv_result_blocks(run, metrics)
    blocks += _confusion_blocks(run, metrics)
    blocks.append(("h", 2, "Learning curves"))
    if (run / "learning_curves.png").is_file():
        blocks.append(
            (
                "img",
                "learning_curves.png",
                "Loss and validation macro-F1 per epoch, one line per fold (history.csv).",
            )
        )
    else:
        blocks.append(("p", "No training log was found."))
    blocks += _explain_blocks(run, explain, progress)
    blocks += _config_blocks(run, record)
    blocks += _data_blocks(run, record)
    blocks += _version_blocks(record)
    return blocks


# --------------------------------------------------------------------------- ablation
def _ablation_blocks(run: Path, record: dict, *, explain: bool, progress: bool) -> list:
    from coolcore.evaluate.metrics import compute_metrics

    folder = RunFolder(run)
    if not folder.table_path.is_file() and not folder.results_path.is_file():
        raise DataError(f"{run}: no table.md (the ablation is not finished; --resume it)")
    header, rows = summary_table(folder.ablation_summary())
    methods = record.get("methods") or []
    repeats = record.get("repeats", 1)
    blocks: list = [
        ("h", 1, f"coolcore report: ablation run `{run.name}`"),
        (
            "p",
            f"Methods {', '.join(f'`{m}`' for m in methods)} and the concentration baselines on "
            f"identical cluster-grouped folds, {repeats} repeat(s). Report written "
            f"{time.strftime('%Y-%m-%d %H:%M')} by coolcore {__version__}.",
        ),
        ("h", 2, "Results"),
        ("table", header, rows),
    ]
    from coolcore.apps.verdict import verdict_lines

    verdict = verdict_lines(run)
    if verdict:
        blocks += [("h", 2, "Which wins on this sample"), *(("p", line) for line in verdict)]
    if folder.figure("ablation.png").is_file():
        blocks.append(
            (
                "img",
                "ablation.png",
                "Macro-F1 per method: mean over repeats, cluster-bootstrap interval, spread over repeats.",
            )
        )

    # confusion matrices of every method (first repeat) and of the baselines
    sources: list[tuple[str, Path, Path | None]] = []
    for m in methods:
        sub = folder.method_run(m, 0)
        if sub.predictions_path.is_file():
            sources.append((m, sub.predictions_path, sub.path))
    # the baselines' files are named by their slug; the results name them
    names = {RunFolder.method_slug(r[0]): r[0] for r in rows if r and r[0]}
    for slug, path in folder.baseline_predictions().items():
        sources.append((names.get(slug, slug), path, None))
    blocks.append(("h", 2, "Confusion matrices"))
    blocks.append(
        ("p", "Counts over the test folds (networks: first repeat); rows true, columns predicted.")
    )
    cm_rows = []
    for name, path, _ in sources:
        m = compute_metrics(read_predictions(path), n_boot=0)
        cm = np.asarray(m["confusion_matrix"])
        cells = ["  ".join(str(v) for v in cm[i]) for i in range(len(CLASS_NAMES))]
        cm_rows.append([f"`{name}`", f"{m['macro_f1']:.3f}", *cells])
    blocks.append(
        (
            "table",
            ["method", "macro-F1", *(f"true {c}: {'/'.join(CLASS_NAMES)}" for c in CLASS_NAMES)],
            cm_rows,
        )
    )
    for name, _, sub in sources:
        if sub is not None and (sub / "confusion_matrix.png").is_file():
            blocks.append(
                ("img", os.path.relpath(sub / "confusion_matrix.png", run), f"`{name}` (repeat 0)")
            )
    blocks.append(("h", 2, "Learning curves"))
    for name, _, sub in sources:
        if sub is not None and (sub / "learning_curves.png").is_file():
            blocks.append(
                ("img", os.path.relpath(sub / "learning_curves.png", run), f"`{name}` (repeat 0)")
            )
    blocks += _explain_blocks(run, explain, progress)
    blocks += _config_blocks(run, record)
    blocks += _data_blocks(run, record)
    blocks += _version_blocks(record)
    return blocks


# --------------------------------------------------------------------------- rendering
def report_blocks(run: str | os.PathLike, *, explain: bool = True, progress: bool = False) -> list:
    """The report's content as blocks (see the module source), for a cv or ablation run."""
    run = Path(run)
    if not run.is_dir():
        raise UsageError(f"{run}: no such run folder")
    folder = RunFolder(run)
    if not folder.has_record():
        raise UsageError(f"{run}: not a run folder (no run.json)")
    record = folder.read_record()
    kind = record.get("kind")
    if kind == "cv":
        return _cv_blocks(run, record, explain=explain, progress=progress)
    if kind == "ablation":
        return _ablation_blocks(run, record, explain=explain, progress=progress)
    raise UsageError(f"{run}: unknown run kind {kind!r} (expected cv or ablation)")


def write_report(run: str | os.PathLike, *, explain: bool = True, progress: bool = False) -> Path:
    """Write ``RUN/report.md`` and ``RUN/report.html`` for a cv or ablation run.

    Parameters
    ----------
    run : path
        A finished run folder (``coolcore cv`` or ``coolcore ablation``).
    explain : bool
        Draw the grid of explained test images (``RUN/explain/grid.png``) when it
        is not there yet; this reads the training maps again.  A failure (maps
        gone) leaves a note in the report instead.
    progress : bool
        Progress bar while the maps are preprocessed for the grid.

    Returns
    -------
    Path
        ``RUN/report.md`` (``report.html`` lies next to it).

    Raises
    ------
    coolcore.errors.UsageError
        ``run`` is not a run folder.
    coolcore.errors.DataError
        The run is unfinished (no ``metrics.json`` / ``table.md``).
    """
    run = Path(run)
    blocks = report_blocks(run, explain=explain, progress=progress)
    md = atomic_write_text(run / "report.md", render_markdown(blocks))
    atomic_write_text(run / "report.html", render_html(blocks, run))
    return md
