"""The committed ablations (results/ablation-cpu*) and the README agree with each other.

The README's ablation tables are the output of ``python benchmarks/ablation_readme.py
results/ablation-cpu`` (and ``results/ablation-cpu-observed``, the same on maps
with photon noise); the run folders keep every method's predictions. Here the
numbers are recomputed from those predictions: the run's own ``table.md``, each
network's ``metrics.json`` (with scikit-learn) and the README rows. Retraining is
not part of the test (an hour and more on 2 cores); the command that made the run
is in its ``run.json``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import f1_score

from coolcore import CLASS_NAMES
from coolcore.evaluate.metrics import ablation_table
from coolcore.train.config import load_config
from coolcore.train.experiments import ABLATION_METHODS, _method_dir, load_ablation_results

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "ablation-cpu": list(ABLATION_METHODS),  # every row of the paper's Table I
    "ablation-cpu-observed": ["baseline", "all"],
}


def _readme_script():
    spec = importlib.util.spec_from_file_location(
        "ablation_readme", ROOT / "benchmarks" / "ablation_readme.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=list(RUNS))
def run(request) -> Path:
    path = ROOT / "results" / request.param
    assert (path / "run.json").is_file(), f"{path} is missing: the README quotes it"
    return path


@pytest.fixture(scope="module")
def results(run):
    return load_ablation_results(run)


def test_the_run_is_the_cpu_preset_with_every_method(run, results):
    record = json.loads((run / "run.json").read_text())
    assert record["kind"] == "ablation" and record["sweep"] is None
    assert record["n_images"] == 954 and record["n_clusters"] == 318
    cfg = load_config("cpu")
    assert record["config"]["preprocess"] == cfg["preprocess"]
    assert record["config"]["train"]["epochs"] == cfg["train"]["epochs"]
    assert record["config"]["cv"]["folds"] == cfg["cv"]["folds"]
    for method in RUNS[run.name]:
        assert len(results[method]) >= 1, f"{method}: no finished repeat"
        assert len(results[method][0]) == 954
    # no checkpoint is committed
    assert not list(run.rglob("*.ckpt"))


def test_table_md_is_recomputed_from_the_predictions(run, results):
    assert ablation_table(results) + "\n" == (run / "table.md").read_text()


def test_metrics_json_agree_with_sklearn(run):
    for method in RUNS[run.name]:
        rep = run / _method_dir(method) / "rep_00"
        preds = pd.read_csv(rep / "predictions.csv")
        metrics = json.loads((rep / "metrics.json").read_text())
        expected = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert metrics["macro_f1"] == pytest.approx(expected, abs=1e-12)


def test_readme_quotes_the_run(run):
    table = _readme_script().readme_table(run)
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README's ablation table differs from benchmarks/ablation_readme.py"
