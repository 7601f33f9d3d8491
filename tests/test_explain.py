"""Explanation figures: the six-panel PNG per map and the grid of a cv run's test images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from test_inference import (
    CROP,
    PIXEL_KPC,
    SIZE,
    beta_map,
    reference_predict,
    run_cli,
    trained_run,
)

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("inference"))


@pytest.fixture(scope="module")
def model(built):
    from coolcore.apps.inference import load_model

    return load_model(built["model"], device="cpu")


def light_copy(run: Path, dst: Path) -> Path:
    """Copy a run folder, linking the (large) checkpoint folders instead of copying them."""
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("checkpoints", "explain", "report.*"))
    for ckpt in run.glob("fold_*/checkpoints"):
        (dst / ckpt.parent.name / "checkpoints").symlink_to(ckpt.resolve())
    return dst


def test_one_png_per_map_and_error_rows(model, built, tmp_path):
    from coolcore.apps.explain import explain_maps

    good = sorted(built["data"].glob("*.fits"))[:2]
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    errors = []
    frame = explain_maps(model, [good[0], bad, good[1]], tmp_path / "out", on_error=errors.append)
    assert frame["error"].ne("").tolist() == [False, True, False] and len(errors) == 1
    pngs = frame.loc[frame["error"] == "", "png"].tolist()
    assert [Path(p).name for p in pngs] == [good[0].stem + ".png", good[1].stem + ".png"]
    for p in pngs:
        pixels = mpimg.imread(p)
        assert pixels.ndim == 3 and pixels.shape[1] > pixels.shape[0] > 400  # a 2 x 3 panel
    # the probabilities drawn are the ensemble's, as predict reports them
    preds = model.predict(good)
    written = pd.read_csv(tmp_path / "out" / "explanations.csv")
    ok = written[written["error"].isna()].reset_index(drop=True)
    for c in CLASS_NAMES:
        np.testing.assert_allclose(ok[f"p_{c}"], preds[f"p_{c}"], atol=1e-6)
    assert (ok[["box_x0", "box_y0"]].to_numpy() >= 0).all()
    assert (ok[["box_x1", "box_y1"]].to_numpy() <= SIZE - 1).all()


@pytest.fixture(scope="module")
def fold_nets(built):
    """The fold networks read straight from the Lightning checkpoints (the training path)."""
    from coolcore.train.module import load_module

    return [
        load_module(built["run"] / f"fold_{k:02d}" / "checkpoints" / "best.ckpt").net.eval()
        for k in range(3)
    ]


def test_explain_chooses_the_fold_model(model, built, fold_nets, tmp_path):
    """The maps drawn are fold K's: its probabilities and box, computed here from its checkpoint."""
    from coolcore.apps.explain import explain_maps

    f = sorted(built["data"].glob("*.fits"))[:2]
    probs = {k: [] for k in range(3)}
    for path in f:
        p, b = reference_predict(fold_nets, fits.getdata(path).astype(np.float64), CROP)
        for k in range(3):
            probs[k].append((p[k], b[k]))
    for k in (2, 0):
        frame = explain_maps(model, f, tmp_path / f"k{k}", fold=k)
        assert (frame["fold"] == k).all()
        fold_p = frame[[f"fold_p_{c}" for c in CLASS_NAMES]].to_numpy()
        fold_box = frame[["fold_box_x0", "fold_box_y0", "fold_box_x1", "fold_box_y1"]].to_numpy()
        np.testing.assert_allclose(fold_p, [p for p, _ in probs[k]], atol=1e-5)
        np.testing.assert_array_equal(fold_box, [b for _, b in probs[k]])
        other = 0 if k == 2 else 2  # the folds disagree, so the check tells them apart
        assert np.abs(fold_p - [p for p, _ in probs[other]]).max() > 1e-3
        written = pd.read_csv(tmp_path / f"k{k}" / "explanations.csv")
        np.testing.assert_allclose(written[[f"fold_p_{c}" for c in CLASS_NAMES]], fold_p, atol=1e-6)
    with pytest.raises(UsageError, match="--fold 5: the model holds folds 0, 1, 2"):
        explain_maps(model, f, tmp_path / "k5", fold=5)
    assert not (tmp_path / "k5").exists()


def test_baseline_model_has_no_crop_and_whole_box(model, tmp_path):
    from coolcore.apps.explain import explain_maps
    from coolcore.apps.trained import TrainedModel
    from coolcore.nn.model import MultiBranchAttentionNet

    meta = json.loads(json.dumps(model.meta))
    meta["variant"] = "baseline"
    base = TrainedModel([MultiBranchAttentionNet("baseline")], meta, tmp_path, device="cpu")
    img = beta_map(6.0, seed=9)
    frame = explain_maps(base, img, tmp_path / "b", pixel_kpc=PIXEL_KPC)
    assert frame.loc[0, ["box_x0", "box_y0", "box_x1", "box_y1"]].tolist() == [
        0,
        0,
        SIZE - 1,
        SIZE - 1,
    ]
    assert Path(frame.loc[0, "png"]).is_file()


def test_plot_explanation_draws_given_arrays(tmp_path):
    from coolcore.apps.explain_figures import plot_explanation

    s = 32
    yy, xx = np.mgrid[:s, :s]
    img = np.exp(-((xx - 10) ** 2 + (yy - 20) ** 2) / 30.0)
    path = plot_explanation(
        img,
        img,
        img,
        img > 0.5,
        (5, 15, 15, 25),
        None,
        np.array([0.2, 0.5, 0.3]),
        tmp_path / "sub" / "p.png",
        fold_probs=np.array([[0.2, 0.5, 0.3], [0.3, 0.4, 0.3]]),
    )
    assert path.is_file() and mpimg.imread(path).shape[2] in (3, 4)


def test_run_grid_uses_the_fold_that_tested_each_image(built, tmp_path):
    from coolcore.apps.explain import explain_run

    run = light_copy(built["run"], tmp_path / "run")
    png = explain_run(run, per_class=2)
    assert png == run / "explain" / "grid.png" and png.is_file()
    grid = pd.read_csv(run / "explain" / "grid.csv", dtype={"image_id": str})
    preds = pd.read_csv(run / "predictions.csv", dtype={"image_id": str}).set_index("image_id")
    for c in CLASS_NAMES:
        for correct in (True, False):
            pool = preds[(preds["label"] == c) & ((preds["predicted"] == c) == correct)]
            shown = grid[(grid["label"] == c) & (grid["correct"] == correct)]
            assert len(shown) == min(2, len(pool))
            conf = pool[[f"p_{k}" for k in CLASS_NAMES]].max(axis=1).sort_values(ascending=False)
            assert set(shown["image_id"]) <= set(pool.index)
            if len(shown):  # the most confident first
                assert shown[[f"p_{k}" for k in CLASS_NAMES]].max(axis=1).iloc[0] == pytest.approx(
                    conf.iloc[0]
                )
    # recomputed with the right fold's model, the probabilities are the run's own
    assert (grid["fold"] == preds.loc[grid["image_id"], "fold"].to_numpy()).all()
    for c in CLASS_NAMES:
        np.testing.assert_allclose(grid[f"p_{c}_now"], grid[f"p_{c}"], atol=2e-6)


def test_run_grid_errors(built, tmp_path):
    from coolcore.apps.explain import explain_run

    with pytest.raises(UsageError, match="not a run folder"):
        explain_run(tmp_path)
    run = light_copy(built["run"], tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    record["data"] = str(tmp_path / "moved")
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="training data .* are not there"):
        explain_run(run)


def test_ablation_grid_draws_its_all_method(built, tmp_path):
    from coolcore.apps.explain import explain_run

    abl = tmp_path / "abl"
    abl.mkdir()
    (abl / "run.json").write_text(json.dumps({"kind": "ablation", "methods": ["baseline", "all"]}))
    light_copy(built["run"], abl / "all" / "rep_00")
    png = explain_run(abl, tmp_path / "g", per_class=1)
    assert png.is_file()
    grid = pd.read_csv(tmp_path / "g" / "grid.csv", dtype={"image_id": str})
    preds = pd.read_csv(abl / "all" / "rep_00" / "predictions.csv", dtype={"image_id": str})
    assert len(grid) and set(grid["image_id"]) <= set(preds["image_id"])


def test_cli_explain_maps_and_run(built, tmp_path, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    f = sorted(built["data"].glob("*.fits"))[0]
    big = np.full((640, 640), np.nan, np.float32)
    big[160:480, 160:480] = beta_map(12.0, size=320, seed=4)
    fits.writeto(maps / "a2029.fits", big, fits.Header({"PIXKPC": 3.0}))
    rc = run_cli(["explain", built["model"], f, maps, "--out", tmp_path / "ex", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "differs from the training maps' 10 kpc" in captured.err  # 3 kpc pixels: warned
    assert sorted(p.name for p in (tmp_path / "ex").glob("*.png")) == ["a2029.png", f.stem + ".png"]
    assert run_cli(["explain", built["model"], f, "--out", tmp_path / "ex"]) == 2
    assert "not empty; pass --force" in capsys.readouterr().err
    run = light_copy(built["run"], tmp_path / "run")
    assert (
        run_cli(["explain", run, "--out", tmp_path / "grid", "--per-class", "1", "--no-progress"])
        == 0
    )
    assert (tmp_path / "grid" / "grid.png").is_file()


def test_run_grid_refuses_a_truncated_predictions_table(built, tmp_path, capsys):
    from coolcore.apps.explain import explain_run

    run = light_copy(built["run"], tmp_path / "run")
    path = run / "predictions.csv"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    mid_row = sum(len(line) for line in lines[:10]) + 9  # nine characters into row 10
    for cut, pattern in (
        (mid_row, r"row 11 \(image_id .*\) has a missing or invalid value"),
        (text.index(",p_CC") + 3, "no column '"),
        (len(lines[0]), "no rows"),
        (0, "not a readable predictions table"),
    ):
        path.write_text(text[:cut])
        with pytest.raises(DataError, match=pattern) as info:
            explain_run(run, tmp_path / "g")
        assert "\n" not in str(info.value) and not (tmp_path / "g").exists()
    path.write_text(text[:mid_row])
    assert run_cli(["explain", run, "--out", tmp_path / "g", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "predictions.csv: row 11" in err
