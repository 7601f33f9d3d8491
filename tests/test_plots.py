"""Tests of coolcore.evaluate.plots: every figure is a readable PNG of a sensible size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from coolcore import CLASS_NAMES
from coolcore.errors import DataError
from coolcore.evaluate.metrics import compute_metrics
from coolcore.evaluate.plots import plot_ablation, plot_confusion_matrix, plot_learning_curves
from coolcore.evaluate.tables import ablation_summary


def _check_png(path, min_side: int = 200) -> np.ndarray:
    assert path.exists()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side and max(image.size) <= 4000
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5  # not a blank canvas
    return pixels


def _predictions(seed: int, accuracy: float, n_clusters: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(n_clusters), 3)
    y = np.random.default_rng(0).integers(0, 3, n_clusters)[cluster]
    pred = np.where(rng.random(y.size) < accuracy, y, rng.integers(0, 3, y.size))
    names = np.asarray(CLASS_NAMES)
    return pd.DataFrame(
        {
            "image_id": np.arange(y.size),
            "cluster_id": cluster,
            "label": names[y],
            "predicted": names[pred],
        }
    )


def test_confusion_matrix_from_metrics_and_array(tmp_path):
    metrics = compute_metrics(_predictions(0, 0.8), n_boot=0)
    out = plot_confusion_matrix(metrics, tmp_path / "sub" / "cm.png")
    assert out == tmp_path / "sub" / "cm.png"
    _check_png(out)
    # A row without samples and raw counts do not break the drawing.
    counts = np.array([[5, 1, 0], [0, 0, 0], [2, 3, 9]])
    _check_png(plot_confusion_matrix(counts, tmp_path / "cm_counts.png", normalised=False))
    _check_png(plot_confusion_matrix(counts, tmp_path / "cm_norm.png", title="x"))
    with pytest.raises(DataError, match="square"):
        plot_confusion_matrix(np.ones((2, 3)), tmp_path / "bad.png")


def test_learning_curves_with_lightning_style_nans(tmp_path):
    rows = []
    for fold in range(3):
        for epoch in range(6):
            # Lightning writes training and validation values on separate rows.
            rows.append(
                {"fold": fold, "epoch": epoch, "step": 10 * epoch, "train_loss": 1.0 / (epoch + 1)}
            )
            rows.append(
                {
                    "fold": fold,
                    "epoch": epoch,
                    "step": 10 * epoch + 9,
                    "val_loss": 1.2 / (epoch + 1),
                    "val_macro_f1": 0.5 + 0.05 * epoch,
                }
            )
    history = pd.DataFrame(rows)
    assert history.isna().any().any()
    _check_png(plot_learning_curves(history, tmp_path / "curves.png"))
    # One fold, no fold column, only validation metrics, some epochs all-NaN.
    one = history[history["fold"] == 0].drop(columns=["fold", "train_loss"])
    one.loc[one.index[:2], ["val_loss", "val_macro_f1"]] = np.nan
    _check_png(plot_learning_curves(one, tmp_path / "curves_one.png"))
    with pytest.raises(DataError, match="epoch"):
        plot_learning_curves(history.drop(columns="epoch"), tmp_path / "x.png")
    with pytest.raises(DataError, match="no train_loss"):
        plot_learning_curves(history[["fold", "epoch", "step"]], tmp_path / "x.png")


def test_ablation_plot_from_results_and_summary(tmp_path):
    results = {
        "baseline": [_predictions(1, 0.7), _predictions(2, 0.7)],
        "att": [_predictions(3, 0.8), _predictions(4, 0.75), _predictions(5, 0.8)],
        "concentration": _predictions(6, 0.6),
    }
    _check_png(plot_ablation(results, tmp_path / "abl.png", n_boot=100), min_side=150)
    summary = ablation_summary(results, n_boot=0)  # no intervals: NaN columns
    out = plot_ablation(summary, tmp_path / "abl2.png", reference={"baseline": 0.803, "att": 0.823})
    _check_png(out, min_side=150)
    with pytest.raises(DataError, match="lacks"):
        plot_ablation(pd.DataFrame({"method": ["a"]}), tmp_path / "x.png")
