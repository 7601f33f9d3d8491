"""The committed ablations (results/ablation-cpu*), recomputed independently.

The run folders keep every method's predictions. Here the stored numbers
(each network's ``metrics.json`` and the run's ``table.md``) are checked against
scikit-learn's macro-F1 of those predictions and against a cluster bootstrap
written out in this file with NumPy (not coolcore's), within the Monte-Carlo
error of 1000 replicates. Retraining is not part of the test (an hour and more
on 2 cores); the command that made the run is in its ``run.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from coolcore import CLASS_NAMES
from coolcore.runs.folder import RunFolder
from coolcore.train.config import load_config
from coolcore.train.methods import ABLATION_METHODS

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "ablation-cpu": list(ABLATION_METHODS),  # every row of the paper's Table I
    "ablation-cpu-observed": ["baseline", "all"],
}
BASELINE_FILES = {
    "c_SB (literature)": "c_SB_literature_predictions.csv",
    "c_SB (fit)": "c_SB_fit_predictions.csv",
    "c_scaled (fit)": "c_scaled_fit_predictions.csv",
}
CI_TOLERANCE = 0.012  # Monte-Carlo error of a 2.5% quantile over 1000 replicates, and more


@pytest.fixture(scope="module", params=list(RUNS))
def run(request) -> Path:
    path = ROOT / "results" / request.param
    assert (path / "run.json").is_file(), f"{path} is missing: the README quotes it"
    return path


def _predictions(run: Path) -> dict[str, pd.DataFrame]:
    """Every method's first-repeat predictions, read with pandas from the known paths."""
    out = {}
    for name, file in BASELINE_FILES.items():
        if (run / file).is_file():
            out[name] = pd.read_csv(run / file, dtype={"image_id": str, "cluster_id": str})
    for method in RUNS[run.name]:
        slug = method.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")
        path = run / slug / "rep_00" / "predictions.csv"
        out[method] = pd.read_csv(path, dtype={"image_id": str, "cluster_id": str})
    return out


def _table_rows(run: Path) -> dict[str, list[str]]:
    """Method -> cells of its first row in the committed table.md."""
    rows = {}
    for line in (run / "table.md").read_text().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0]:
            rows[cells[0]] = cells
    return rows


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Macro-F1 of integer labels (0..2) from a confusion matrix, zero division -> 0."""
    cm = np.bincount(3 * y + p, minlength=9).reshape(3, 3).astype(float)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(3), where=denom > 0)
    return float(f1.mean())


def _cluster_bootstrap(preds: pd.DataFrame, n_boot: int = 1000, seed: int = 12345):
    """95% percentile interval of macro-F1, resampling clusters with replacement."""
    index = {c: i for i, c in enumerate(CLASS_NAMES)}
    y = preds["label"].map(index).to_numpy()
    p = preds["predicted"].map(index).to_numpy()
    clusters, inverse = np.unique(preds["cluster_id"].to_numpy(), return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(clusters))]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        chosen = rng.integers(0, len(clusters), len(clusters))
        rows = np.concatenate([members[c] for c in chosen])
        values[b] = _macro_f1(y[rows], p[rows])
    return np.quantile(values, [0.025, 0.975])


def test_the_run_is_the_cpu_preset_with_every_method(run):
    record = json.loads((run / "run.json").read_text())
    assert record["kind"] == "ablation" and record["sweep"] is None
    assert record["n_images"] == 954 and record["n_clusters"] == 318
    cfg = load_config("cpu")
    recorded = record["config"]["preprocess"]
    # field_kpc (observations only) came after these runs; every key they recorded agrees
    assert set(cfg["preprocess"]) - set(recorded) <= {"field_kpc"}
    assert all(recorded[k] == cfg["preprocess"][k] for k in recorded)
    assert record["config"]["train"]["epochs"] == cfg["train"]["epochs"]
    assert record["config"]["cv"]["folds"] == cfg["cv"]["folds"]
    for method, preds in _predictions(run).items():
        assert len(preds) == 954 and preds["image_id"].is_unique, method
    assert not list(run.rglob("*.ckpt"))  # no checkpoint is committed


def test_metrics_json_agree_with_sklearn(run):
    for method in RUNS[run.name]:
        rep = RunFolder(run).method_run(method, 0)
        preds = pd.read_csv(rep.predictions_path)
        metrics = json.loads(rep.metrics_path.read_text())
        expected = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert metrics["macro_f1"] == pytest.approx(expected, abs=1e-12)


def test_table_numbers_recomputed_independently(run):
    rows = _table_rows(run)
    predictions = _predictions(run)
    assert set(rows) == set(predictions)
    for method, preds in predictions.items():
        cells = rows[method]
        assert cells[1] == "1"  # one repeat
        macro = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert float(cells[2]) == pytest.approx(macro, abs=5e-4), method
        low, high = (float(v) for v in cells[3].strip("[]").split(","))
        ref_low, ref_high = _cluster_bootstrap(preds)
        assert low == pytest.approx(ref_low, abs=CI_TOLERANCE), method
        assert high == pytest.approx(ref_high, abs=CI_TOLERANCE), method
        assert low < macro < high


def test_an_old_run_is_summarised_from_its_predictions(run):
    """Runs made before results.csv existed: the summary comes from their predictions."""
    folder = RunFolder(run)
    assert not folder.results_path.is_file()
    summary = folder.ablation_summary().set_index("method")
    for method, preds in _predictions(run).items():
        macro = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert summary.loc[method, "macro_f1_mean"] == pytest.approx(macro, abs=1e-12)


# --------------------------------------------------------------------------- domain shift
SHIFT = ROOT / "results" / "shift-cpu"
# 106 test clusters: the bootstrap's standard deviation reaches 0.06, so a 2.5% quantile
# of the table's 1000 replicates has a Monte-Carlo error of about 0.005; 4 times that
SHIFT_CI_TOLERANCE = 0.02


@pytest.mark.skipif(
    not (SHIFT / "domain_shift.csv").is_file(), reason="the domain-shift table is not committed"
)
def test_domain_shift_table_recomputed_from_its_predictions():
    """benchmarks/domain_shift.py's table against scikit-learn and the bootstrap above,
    from the predictions it saved; the README quotes this table."""
    from sklearn.metrics import balanced_accuracy_score

    table = pd.read_csv(SHIFT / "domain_shift.csv")
    assert {"emissivity", "xmm"} <= set(table["train"])
    assert {"emissivity", "xmm", "chandra", "erosita"} <= set(table["test"])
    for row in table.itertuples(index=False):
        kind = "network" if row.method.startswith("network") else "c_SB"
        preds = pd.read_csv(
            SHIFT / "predictions" / f"{row.train}__{row.test}__{kind}.csv",
            dtype={"image_id": str, "cluster_id": str},
        )
        assert len(preds) == row.n_maps and preds["image_id"].is_unique
        macro = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert row.macro_f1 == pytest.approx(macro, abs=1e-4)
        balanced = balanced_accuracy_score(preds["label"], preds["predicted"])
        assert row.balanced_accuracy == pytest.approx(balanced, abs=1e-4)
        low, high = _cluster_bootstrap(preds, n_boot=4000)
        assert row.ci_low == pytest.approx(low, abs=SHIFT_CI_TOLERANCE)
        assert row.ci_high == pytest.approx(high, abs=SHIFT_CI_TOLERANCE)
    for name in ("emissivity", "xmm"):  # the models: the cpu preset on 954 maps
        record = json.loads((SHIFT / name / "run.json").read_text())
        assert record["kind"] == "cv" and record["n_images"] == 954
    assert not list(SHIFT.rglob("*.ckpt"))
