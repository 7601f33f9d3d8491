"""End to end: simulate a tiny sample, cross-validate, resume, ablate; check the numbers."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_args
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from coolcore import CLASS_NAMES
from coolcore.cli.main import main

TINY = tiny_args(epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def sample(tiny_sample):
    return tiny_sample


@pytest.fixture(scope="module")
def cv_run(sample, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cv"
    # fold 1 alone, as a separate job would, then the rest with --resume
    assert (
        main(["cv", str(sample), *TINY, "--variant", "all", "--fold", "1", "--out", str(run)]) == 0
    )
    partial = run.with_name("cv.partial")
    assert partial.is_dir() and not run.exists()
    fold1 = (partial / "fold_01" / "predictions.csv").read_bytes()
    assert not (partial / "fold_00").exists()
    assert main(["cv", str(sample), *TINY, "--variant", "all", "--resume", "--out", str(run)]) == 0
    assert run.is_dir() and not partial.exists()
    assert (run / "fold_01" / "predictions.csv").read_bytes() == fold1  # not recomputed
    return run


def test_run_folder_contents(cv_run, sample):
    for name in (
        "predictions.csv",
        "metrics.json",
        "confusion_matrix.png",
        "learning_curves.png",
        "run.json",
        "config.yaml",
        "folds.csv",
    ):
        assert (cv_run / name).is_file(), name
    pred = pd.read_csv(cv_run / "predictions.csv", dtype={"image_id": str, "cluster_id": str})
    assert list(pred.columns[:8]) == [
        "image_id",
        "cluster_id",
        "fold",
        "label",
        "p_CC",
        "p_WCC",
        "p_NCC",
        "predicted",
    ]
    catalog = pd.read_csv(sample / "catalog.csv", dtype={"image_id": str, "cluster_id": str})
    assert sorted(pred["image_id"]) == sorted(catalog["image_id"])  # every image tested once
    assert pred.groupby("cluster_id")["fold"].nunique().max() == 1  # a cluster in one fold
    probs = pred[["p_CC", "p_WCC", "p_NCC"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (pred["predicted"] == np.asarray(CLASS_NAMES)[probs.argmax(axis=1)]).all()
    record = json.loads((cv_run / "run.json").read_text())
    assert record["seed"] == 0 and record["data_checksum"] and record["versions"]["torch"]
    # the full checkpoints are gone, the best weights stay for export
    for k in range(3):
        ckpts = sorted(p.name for p in (cv_run / f"fold_{k:02d}" / "checkpoints").iterdir())
        assert ckpts == ["best.ckpt"]


def test_metrics_recomputed_with_sklearn(cv_run):
    pred = pd.read_csv(cv_run / "predictions.csv")
    metrics = json.loads((cv_run / "metrics.json").read_text())
    y, p = pred["label"], pred["predicted"]
    labels = list(CLASS_NAMES)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(y, p, labels=labels, average="macro", zero_division=0)
    )
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    for i, c in enumerate(labels):
        assert metrics["precision"][c] == pytest.approx(prec[i])
        assert metrics["recall"][c] == pytest.approx(rec[i])
        assert metrics["f1"][c] == pytest.approx(f1[i])
    assert metrics["confusion_matrix"] == confusion_matrix(y, p, labels=labels).tolist()
    lo, hi = metrics["macro_f1_ci"]
    assert lo <= metrics["macro_f1"] <= hi
    for k in range(3):
        sub = pred[pred["fold"] == k]
        expected = f1_score(
            sub["label"], sub["predicted"], labels=labels, average="macro", zero_division=0
        )
        assert metrics["per_fold_macro_f1"][str(k)] == pytest.approx(expected)


def test_existing_run_is_not_overwritten(cv_run, sample, capsys):
    before = (cv_run / "predictions.csv").read_bytes()
    code = main(["cv", str(sample), *TINY, "--out", str(cv_run)])
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (cv_run / "predictions.csv").read_bytes() == before


def test_ablation_table(sample, tmp_path, capsys):
    run = tmp_path / "abl"
    assert main(["ablation", str(sample), *TINY, "--methods", "gauss", "--out", str(run)]) == 0
    table = (run / "table.md").read_text()
    for name in ("baseline", "gauss", "c_SB (literature)", "c_SB (fit)"):
        assert name in table
    assert (run / "ablation.png").is_file()
    # the networks ran on the same folds as recorded for the ablation
    folds = pd.read_csv(run / "folds.csv", dtype={"image_id": str}).set_index("image_id")["fold"]
    for method in ("baseline", "gauss"):
        pred = pd.read_csv(run / method / "rep_00" / "predictions.csv", dtype={"image_id": str})
        assert (pred.set_index("image_id")["fold"] == folds.loc[pred["image_id"]].to_numpy()).all()
    assert "baseline" in capsys.readouterr().out
    # the table is recomputed from the files the run folder keeps
    from coolcore.evaluate.metrics import ablation_table
    from coolcore.train.experiments import load_ablation_results

    results = load_ablation_results(run)
    assert list(results)[:2] == ["c_SB (literature)", "c_SB (fit)"]
    assert list(results)[-2:] == ["baseline", "gauss"]
    assert ablation_table(results) + "\n" == table
