"""Distributed training (issue 6, item 5): two CPU processes under DDP (gloo).

``coolcore cv ... --accelerator cpu --devices 2 --strategy ddp`` must give a run
folder like a single process's, and results that match a single-process run
with the same seed within a tolerance explained below.

What is equal, what is not
--------------------------
The two runs start from the same weights (same seed; DDP also broadcasts rank
0's) and take the same optimiser steps with the same effective batch: each of
the 2 processes trains on 4 maps per step (gradients averaged by DDP) against 8
maps per step in one process, and the losses are means over the batch, so the
averaged gradient is that of the 8 maps. They are not bit-identical because

* BatchNorm normalises each process's 4 maps on their own statistics, not the
  8 together (PyTorch's SyncBatchNorm only runs on GPUs), and the running
  statistics kept are rank 0's;
* the DDP sampler deals the epoch's shuffled maps to the processes in its own
  order, so the 8 maps of a step are not those of the single-process step;
* a process's last batch of a single map is dropped (BatchNorm cannot train on
  it), so with 9 maps per process one sits out each epoch.

Measured on this sample (2 epochs, 4 maps per process against 8): the class
probabilities of DDP and of one process with the same seed differ by 0.016 on
average (at most 0.042); one process with another seed differs from the first
by 0.047 on average (at most 0.17). The tolerance (mean 0.03, at most 0.1) sits
between the two, and the slow test also runs the other seed and asks DDP to be
less than half as far from the same-seed run as the other seed is. (With 3
maps per process against 6 the BatchNorm noise alone is as large as a change of
seed: 0.036 against 0.039, so the comparison needs batches of a few maps.)
The tiny network hardly learns in 2 epochs, so the predicted classes of
near-uniform probabilities are not compared.

The validation macro-F1 that picks the best epoch is computed over the whole
validation set gathered from both processes; with 21 validation maps (this
sample's odd fold) the distributed sampler pads one process with a repeat,
which must not count. The test recomputes it from the saved best checkpoint in
one process, with scikit-learn: it must be the logged value.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli, simulate_tiny, tiny_args
from sklearn.metrics import f1_score

COMMON = [*tiny_args(epochs=2, batch_size=None), "--deterministic"]
PROBS = ["p_CC", "p_WCC", "p_NCC"]


def coolcore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    res = run_cli(*args, cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 19 clusters: cross-validation parts of 18, 18 and 21 maps (one odd part)
    return simulate_tiny(tmp_path_factory.mktemp("ddp") / "data", n_clusters=19)


@pytest.fixture(scope="module")
def ddp(data) -> Path:
    """``coolcore cv`` in 2 CPU processes under DDP, 4 maps per process and step."""
    run = data.parent / "ddp"
    hardware = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    batch = ["--set", "train.batch_size=4"]
    coolcore(
        "cv",
        str(data),
        *COMMON,
        *batch,
        "--seed",
        "1",
        *hardware,
        "--out",
        str(run),
        cwd=data.parent,
    )
    return run


def single(data: Path, seed: int) -> Path:
    """The same run in one process, 8 maps per step."""
    run = data.parent / f"single_seed{seed}"
    if not run.exists():
        batch = ["--set", "train.batch_size=8"]
        coolcore(
            "cv",
            str(data),
            *COMMON,
            *batch,
            "--seed",
            str(seed),
            "--out",
            str(run),
            cwd=data.parent,
        )
    return run


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


@pytest.mark.slow  # two DDP processes: about a minute on 2 cores
def test_ddp_writes_a_valid_run_folder(data, ddp):
    assert not ddp.with_name("ddp.partial").exists()
    names = _files(ddp)
    for name in (
        "predictions.csv",
        "metrics.json",
        "run.json",
        "config.yaml",
        "folds.csv",
        "history.csv",
        "confusion_matrix.png",
        "learning_curves.png",
    ):
        assert name in names
    for k in range(3):  # each fold written once, by rank 0, and its full checkpoint removed
        assert [n for n in names if n.startswith(f"fold_{k:02d}/checkpoints/")] == [
            f"fold_{k:02d}/checkpoints/best.ckpt"
        ]
    assert not list(data.parent.rglob("lightning_logs"))
    pred = pd.read_csv(ddp / "predictions.csv", dtype={"image_id": str, "cluster_id": str})
    catalog = pd.read_csv(data / "catalog.csv", dtype={"image_id": str})
    assert sorted(pred["image_id"]) == sorted(catalog["image_id"])  # each map tested once
    assert pred.groupby("cluster_id")["fold"].nunique().max() == 1
    np.testing.assert_allclose(pred[PROBS].sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((ddp / "metrics.json").read_text())
    labels = ["CC", "WCC", "NCC"]
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(pred["label"], pred["predicted"], labels=labels, average="macro", zero_division=0)
    )
    history = pd.read_csv(ddp / "history.csv")
    assert sorted(zip(history["fold"], history["epoch"], strict=True)) == [
        (k, e) for k in range(3) for e in range(2)
    ]
    record = json.loads((ddp / "run.json").read_text())
    assert record["seed"] == 1 and record["n_images"] == len(catalog)


@pytest.mark.slow
def test_ddp_validation_score_counts_every_map_once(data, ddp):
    """The logged best validation macro-F1 is that of the best checkpoint on the whole
    validation part (recomputed in one process with scikit-learn)."""
    from coolcore.train.loaders import as_tensor_images
    from coolcore.train.module import load_module, predict_probs
    from coolcore.train.protocol import load_data

    cfg = json.loads((ddp / "run.json").read_text())["config"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = load_data(data, cfg, progress=False)
        folds = pd.read_csv(ddp / "folds.csv", dtype={"image_id": str}).set_index("image_id")
        fold_of = folds.loc[dataset.image_ids, "fold"].to_numpy()
        images = as_tensor_images(dataset.images)
        sizes = []
        for k in range(3):
            val = np.flatnonzero(fold_of == (k + 1) % 3)  # fold k validates on part k + 1
            sizes.append(len(val))
            info = json.loads((ddp / f"fold_{k:02d}" / "fold.json").read_text())
            module = load_module(ddp / f"fold_{k:02d}" / "checkpoints" / "best.ckpt")
            pred = predict_probs(module.net, images[val]).argmax(axis=1)
            expected = f1_score(
                dataset.labels[val], pred, labels=[0, 1, 2], average="macro", zero_division=0
            )
            assert info["best_val_macro_f1"] == pytest.approx(expected, abs=1e-6), k
    finally:
        torch.set_num_threads(before)
    assert 21 in sizes  # the odd part, padded by the distributed sampler, was checked


def _distance(a: Path, b: Path) -> tuple[float, float]:
    """Mean and largest |difference| of the class probabilities of two runs, map by map."""
    pa = pd.read_csv(a / "predictions.csv", dtype={"image_id": str}).set_index("image_id")
    pb = pd.read_csv(b / "predictions.csv", dtype={"image_id": str}).set_index("image_id")
    pb = pb.loc[pa.index]
    assert (pa["fold"] == pb["fold"]).all()  # the same folds
    diff = np.abs(pa[PROBS].to_numpy() - pb[PROBS].to_numpy())
    return float(diff.mean()), float(diff.max())


@pytest.mark.slow
def test_ddp_matches_one_process_within_tolerance(data, ddp):
    same = single(data, seed=1)
    mean, largest = _distance(ddp, same)
    assert mean <= 0.03 and largest <= 0.1, (mean, largest)
    for k in range(3):
        fa = json.loads((ddp / f"fold_{k:02d}" / "fold.json").read_text())
        fb = json.loads((same / f"fold_{k:02d}" / "fold.json").read_text())
        assert fa["class_weight"] == pytest.approx(fb["class_weight"])
    # calibration: another seed in one process moves the probabilities more than DDP does
    other_mean, _ = _distance(single(data, seed=2), same)
    assert mean < 0.5 * other_mean, (mean, other_mean)
