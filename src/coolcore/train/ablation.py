"""The ablation: the paper's Table I variants, the ``intersection`` mask and the
astronomers' concentration baselines on identical folds and seeds, over repeats.

Its results are stored as data (``results.csv`` in the run folder, see
:class:`coolcore.runs.folder.RunFolder`) and ``table.md`` is made from them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.errors import UsageError
from coolcore.runs.folder import RunFolder
from coolcore.runs.lifecycle import check_resume, finish_run_dir, open_run_dir, prepare_run_dir
from coolcore.runs.outputs import check_output_apart
from coolcore.runs.record import make_run_record
from coolcore.train.config import DEFAULTS
from coolcore.train.methods import (
    ablation_plan,
)
from coolcore.train.protocol import (
    catalog_checksum,
    check_model_and_hardware,
    data_inputs,
    folds_frame,
    load_data,
    make_folds,
    run_cv,
    say,
)

__all__ = [
    "concentration_predictions",
    "load_ablation_results",
    "run_ablation",
]


def _select(plan: dict[str, dict], methods: list[str] | None) -> dict[str, dict]:
    if not methods:
        return plan
    unknown = [m for m in methods if m not in plan]
    if unknown:
        raise UsageError(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(plan)})")
    return {m: c for m, c in plan.items() if m in methods or m == "baseline"}


def run_ablation(
    data: str | Path,
    cfg: dict,
    out: str | Path,
    *,
    repeats: int = 1,
    methods: list[str] | None = None,
    sweep: str | None = None,
    resume: bool = False,
    force: bool = False,
    hardware=None,
    progress: bool = True,
    keep_checkpoints: bool = False,
) -> Path:
    """Every method on identical folds and seeds, ``repeats`` times; the table.

    Repeat ``r`` uses ``train.seed + r`` for every method (the folds stay those of
    ``cv.seed``), so differences between methods are paired. The fold models are
    not kept unless ``keep_checkpoints`` (an ablation is about scores; keep
    models of the variant you want to use with ``coolcore cv``).
    """
    from coolcore.evaluate.plots import plot_ablation
    from coolcore.evaluate.tables import ablation_summary

    if repeats < 1:
        raise UsageError(f"--repeats {repeats}: must be at least 1")
    plan = _select(ablation_plan(cfg, sweep), methods)
    for path in (Path(out), Path(f"{out}.partial")):  # before anything else: inputs stay apart
        check_output_apart(path, data_inputs(data))
    final, partial, done = prepare_run_dir(out, resume=resume, force=force)
    if done:
        say(f"{final}: already complete, nothing to do")
        if RunFolder(final).table_path.is_file():
            print(RunFolder(final).table_path.read_text().rstrip())
        return final
    dataset = load_data(data, cfg, progress=progress)
    folds = make_folds(dataset, cfg, data)
    check_model_and_hardware(cfg, hardware)
    check_output_apart(final, data_inputs(data, dataset))
    extra = {"repeats": repeats, "methods": list(plan), "sweep": sweep}
    record = make_run_record(
        cfg, dataset, data, kind="ablation", catalog_checksum=catalog_checksum(data), extra=extra
    )
    if not force:
        check_resume(partial, record, DEFAULTS)
    run = RunFolder(open_run_dir(final, partial, force=force))
    with run.lock() as lock:
        run.write_record(record)
        run.write_folds(folds_frame(dataset, folds))
        results: dict[str, list[pd.DataFrame]] = {}
        if sweep is None:
            for name, frame in concentration_predictions(dataset, folds).items():
                run.write_baseline_predictions(name, frame)
                results[name] = [frame]
        for r in range(repeats):
            for name, mcfg in plan.items():
                c = copy.deepcopy(mcfg)
                c["train"]["seed"] = int(cfg["train"]["seed"]) + r
                sub = run.method_run(name, r)
                sub.path.parent.mkdir(exist_ok=True)
                say(f"[repeat {r + 1}/{repeats}] {name}")
                opts = dict(hardware=hardware, progress=progress, keep_checkpoints=keep_checkpoints)
                if run_cv(data, c, sub.path, resume=True, dataset=dataset, **opts) != sub.path:
                    return partial
                results.setdefault(name, []).append(sub.read_predictions())
        table = run.write_ablation_summary(ablation_summary(results))
        plot_ablation(results, partial / "ablation.png")
        lock.release()
    finish_run_dir(partial, final)
    print(table)
    say(f"{final}: table in {RunFolder(final).table_path}")
    return final


def load_ablation_results(run: str | Path) -> dict[str, list[pd.DataFrame]]:
    """``{method: [predictions per repeat]}`` read back from an ablation run folder
    (finished or ``.partial``): see :meth:`coolcore.runs.folder.RunFolder.ablation_results`.
    :func:`coolcore.evaluate.tables.ablation_table` of it gives the run's ``table.md``."""
    return RunFolder(run).ablation_results()


def concentration_predictions(dataset, folds) -> dict[str, pd.DataFrame]:
    """The concentration classifiers on the same folds as the networks.

    ``c_SB (literature)`` uses Santos et al. (2008)'s thresholds; ``c_SB (fit)`` and
    ``c_scaled (fit)`` choose their two thresholds on each fold's training images;
    ``profile (fit)`` is a logistic regression on the surface-brightness profile fitted
    on them (:mod:`coolcore.evaluate.profiles`); the features are those of
    :func:`coolcore.evaluate.indicators.dataset_features`.
    """
    from coolcore.evaluate.baselines import ConcentrationClassifier
    from coolcore.evaluate.indicators import dataset_features
    from coolcore.evaluate.profiles import ProfileClassifier
    from coolcore.train.fit import predictions_frame

    cat = dataset.catalog
    features = dataset_features(cat, dataset.cfg, say)
    if features is None:
        return {}
    y = dataset.labels
    out: dict[str, pd.DataFrame] = {}
    specs = [
        ("c_SB (literature)", "c_SB", lambda: ConcentrationClassifier("c_sb", "literature")),
        ("c_SB (fit)", "c_SB", lambda: ConcentrationClassifier("c_sb", "fit")),
    ]
    if "c_scaled" in features:
        specs.append(
            ("c_scaled (fit)", "c_scaled", lambda: ConcentrationClassifier("c_scaled", "fit"))
        )
    specs.append(("profile (fit)", "profile", ProfileClassifier))  # CONCENTRATION_METHODS' order
    for name, key, make in specs:
        probs = np.zeros((len(y), len(CLASS_NAMES)))
        for train_idx, _, test_idx in folds:
            clf = make().fit(features[key][train_idx], y[train_idx])
            probs[test_idx] = clf.predict_proba(features[key][test_idx])
        frame = pd.concat(
            [predictions_frame(cat, f[2], probs[f[2]], k) for k, f in enumerate(folds)],
            ignore_index=True,
        )
        out[name] = frame
    return out
