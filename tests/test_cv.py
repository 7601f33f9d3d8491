"""End to end: simulate a tiny sample, cross-validate, resume, ablate; check the numbers."""

import json
from pathlib import Path

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
    for name in ("baseline", "gauss", "c_SB (literature)", "c_SB (fit)", "profile (fit)"):
        assert name in table
    assert (run / "ablation.png").is_file()
    # the networks ran on the same folds as recorded for the ablation
    folds = pd.read_csv(run / "folds.csv", dtype={"image_id": str}).set_index("image_id")["fold"]
    for method in ("baseline", "gauss"):
        pred = pd.read_csv(run / method / "rep_00" / "predictions.csv", dtype={"image_id": str})
        assert (pred.set_index("image_id")["fold"] == folds.loc[pred["image_id"]].to_numpy()).all()
    assert "baseline" in capsys.readouterr().out
    # the table is recomputed from the files the run folder keeps
    from coolcore.evaluate.tables import ablation_table
    from coolcore.train.ablation import load_ablation_results

    results = load_ablation_results(run)
    assert list(results)[:2] == ["c_SB (literature)", "c_SB (fit)"]
    assert list(results)[-2:] == ["baseline", "gauss"]
    assert ablation_table(results) + "\n" == table
    # benchmarks/add_baselines.py gives a run that lacks a baseline the same file and table
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "add_baselines.py"
    spec = importlib.util.spec_from_file_location("add_baselines", path)
    add = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(add)
    profile = run / "profile_fit_predictions.csv"
    before = profile.read_bytes()
    profile.unlink()
    assert add.main([str(sample), str(run)]) == 0
    assert profile.read_bytes() == before
    assert (run / "table.md").read_text() == table
    assert add.main([str(sample), str(run)]) == 0
    assert "nothing (all present)" in capsys.readouterr().out


# --------------------------------------------------------------------------- integrity
def _tree(path):
    import hashlib

    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def data_copy(sample, tmp_path):
    import shutil

    return shutil.copytree(sample, tmp_path / "data", ignore=shutil.ignore_patterns(".coolcore*"))


def test_run_records_its_inputs_and_code(cv_run, sample):
    import hashlib
    import subprocess

    record = json.loads((cv_run / "run.json").read_text())
    catalog = (sample / "catalog.csv").read_bytes()
    assert record["catalog_checksum"] == hashlib.sha256(catalog).hexdigest()
    assert len(record["data_checksum"]) == 64
    head = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    )
    if head.returncode == 0:
        assert record["git_commit"] == head.stdout.strip()
        assert isinstance(record["git_dirty"], bool)
    else:
        assert record["git_commit"] is None and record["git_dirty"] is None
    assert not (cv_run / ".lock").exists()


@pytest.mark.parametrize("out", ["{data}", "{data}/run", "{data}/images/run"])
@pytest.mark.parametrize("force", [False, True])
def test_out_inside_data_refused_and_data_unchanged(data_copy, out, force, capsys):
    before = _tree(data_copy)
    argv = ["cv", str(data_copy), *TINY, "--out", out.format(data=data_copy)]
    assert main(argv + (["--force"] if force else [])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "outputs never go into inputs" in err
    assert _tree(data_copy) == before


def _resumable(cv_run, tmp_path):
    """A copy of the finished run, renamed RUN.partial (every fold done, not finalised)."""
    import shutil

    partial = tmp_path / "again.partial"
    shutil.copytree(cv_run, partial, ignore=shutil.ignore_patterns("checkpoints"))
    return partial, tmp_path / "again"


@pytest.mark.parametrize(
    "change, what",
    [
        ("catalogue", "another catalogue"),
        ("map", "other maps"),
        ("config", "another config (keys train.epochs)"),
    ],
)
def test_resume_with_changed_inputs_refused(cv_run, data_copy, tmp_path, change, what, capsys):
    partial, run = _resumable(cv_run, tmp_path)
    args = [*TINY, "--variant", "all"]
    if change == "catalogue":  # drop the last row
        lines = (data_copy / "catalog.csv").read_text().splitlines(keepends=True)
        (data_copy / "catalog.csv").write_text("".join(lines[:-3]))
    elif change == "map":
        victim = sorted((data_copy / "images").glob("*.fits"))[4]
        raw = bytearray(victim.read_bytes())
        raw[-1] ^= 1
        victim.write_bytes(bytes(raw))
    else:
        args += ["--epochs", "2"]
    before = _tree(partial)
    assert main(["cv", str(data_copy), *args, "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"was started with {what};" in err[0] and "--force" in err[0]
    assert _tree(partial) == before and not run.exists()


def test_resume_same_inputs_takes_over_a_stale_lock(cv_run, sample, tmp_path, capsys):
    import socket
    import subprocess
    import sys

    partial, run = _resumable(cv_run, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = {"pid": dead.pid, "host": socket.gethostname()}
    (partial / ".lock").write_text(json.dumps(lock))
    assert main(["cv", str(sample), *TINY, "--variant", "all", "--resume", "--out", str(run)]) == 0
    assert f"stale lock of process {dead.pid}" in capsys.readouterr().err
    assert run.is_dir() and not partial.exists() and not (run / ".lock").exists()


def test_second_writer_refused(cv_run, sample, tmp_path, capsys):
    import socket
    import subprocess
    import sys

    partial, run = _resumable(cv_run, tmp_path)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": owner.pid, "host": socket.gethostname()}
        (partial / ".lock").write_text(json.dumps(lock))
        before = _tree(partial)
        for extra in (["--resume"], ["--force"]):
            argv = ["cv", str(sample), *TINY, "--variant", "all", *extra, "--out", str(run)]
            assert main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"another coolcore process (pid {owner.pid}" in err[0]
        assert _tree(partial) == before
    finally:
        owner.kill()
        owner.wait()


def test_export_refuses_an_unfinished_run(cv_run, tmp_path):
    import shutil

    from coolcore.apps.export import export_model
    from coolcore.errors import UsageError

    partial = tmp_path / "cv.partial"
    shutil.copytree(cv_run, partial)
    shutil.rmtree(partial / "fold_02")
    with pytest.raises(UsageError, match=r"unfinished run \(2 of 3 folds done\); finish it with"):
        export_model(partial, tmp_path / "model")
    with pytest.raises(UsageError, match=r"--resume`$"):
        export_model(partial, tmp_path / "model")
    assert not (tmp_path / "model").exists()
    with pytest.raises(UsageError, match="the output lies inside the input"):
        export_model(cv_run, cv_run / "model")


def test_export_modes_and_meta_checksum(cv_run, tmp_path):
    import hashlib
    import os
    import stat

    from coolcore.apps.export import export_model
    from coolcore.errors import UsageError

    old = os.umask(0o022)
    try:
        model = export_model(cv_run, tmp_path / "model")
    finally:
        os.umask(old)
    for path in model.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
    meta = json.loads((model / "model.json").read_text())
    rest = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    assert meta["meta_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    # --force replaces a model folder, never a folder export did not write
    export_model(cv_run, model, fold=0, force=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not a model folder"):
        export_model(cv_run, other, force=True)
    assert (other / "keep.txt").read_text() == "x"


def test_validation_predictions_are_the_fold_models_own(cv_run):
    """fold_k/val_predictions.csv: fold k's best model on exactly its validation fold
    (k + 1 mod K in folds.csv), recomputed here from best.ckpt and the preprocessed maps."""
    import yaml

    from coolcore.train.loaders import as_tensor_images
    from coolcore.train.module import load_module, predict_outputs
    from coolcore.train.protocol import load_data

    folds = pd.read_csv(cv_run / "folds.csv", dtype={"image_id": str})
    test_fold = dict(zip(folds["image_id"], folds["fold"].astype(int), strict=True))
    cfg = yaml.safe_load((cv_run / "config.yaml").read_text())
    record = json.loads((cv_run / "run.json").read_text())
    dataset = load_data(record["data"], cfg, progress=False)
    images = as_tensor_images(dataset.images)
    row = {str(i): n for n, i in enumerate(dataset.catalog["image_id"].astype(str))}
    for k in range(3):
        val = pd.read_csv(cv_run / f"fold_{k:02d}" / "val_predictions.csv", dtype={"image_id": str})
        assert {test_fold[i] for i in val["image_id"]} == {(k + 1) % 3}
        assert len(val) == sum(f == (k + 1) % 3 for f in test_fold.values())
        net = load_module(cv_run / f"fold_{k:02d}" / "checkpoints" / "best.ckpt").net
        again = predict_outputs(net, images[[row[i] for i in val["image_id"]]], batch_size=64)
        np.testing.assert_allclose(val[["p_CC", "p_WCC", "p_NCC"]], again[:, :3], atol=2e-5)


def test_calibration_block_and_temperatures_used_by_predict(cv_run):
    """Each fold's temperature is fitted on its validation predictions; metrics.json
    reports ECE before and after; the loaded model divides each fold's logits by it."""
    import torch

    from coolcore.apps.inference import load_model
    from coolcore.evaluate.calibration import fit_temperature, probs_labels

    metrics = json.loads((cv_run / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert (cv_run / "reliability.png").is_file()
    temps = []
    for k in range(3):
        info = json.loads((cv_run / f"fold_{k:02d}" / "fold.json").read_text())
        val = pd.read_csv(cv_run / f"fold_{k:02d}" / "val_predictions.csv")
        # the CSV keeps 6 significant digits: the same fit, to that precision
        assert info["temperature"] == pytest.approx(fit_temperature(*probs_labels(val)), rel=2e-3)
        temps.append(info["temperature"])
    assert cal["temperature"] == pytest.approx(temps, rel=2e-3)
    assert 0 <= cal["ece"] <= 1 and cal["ece_ci"][0] <= cal["ece"] <= cal["ece_ci"][1]
    model = load_model(cv_run, device="cpu")
    assert model.temperatures == pytest.approx(temps)
    x = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    probs, _, _ = model.forward(x)
    with torch.inference_mode():
        for k, net in enumerate(model.nets):
            logits = net(torch.from_numpy(x)[:, None]).logits.float()
            expected = (logits / temps[k]).softmax(1).double().numpy()
            np.testing.assert_allclose(probs[k], expected, atol=1e-5)
