"""Training on mock observations: cv reads them through the observation path, the
exported model knows its field and instrument, and predict warns across instruments."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_cli_here, tiny_args

ROOT = Path(__file__).resolve().parents[1]
A1835 = ROOT / "examples" / "a1835"


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    from coolcore.sim.simulate import simulate_sample

    base = tmp_path_factory.mktemp("mockcv")
    data = base / "xmm"
    simulate_sample(
        data, n_clusters=9, instrument="xmm", class_mix=(0.34, 0.33, 0.33), seed=5,
        progress=False,
    )  # fmt: skip
    res = run_cli_here("cv", str(data), *tiny_args(), "--out", str(base / "run"), cwd=base)
    assert res.returncode == 0, res.stderr
    res = run_cli_here("export", str(base / "run"), "--out", str(base / "model"), cwd=base)
    assert res.returncode == 0, res.stderr
    return base


def test_cv_on_mock_observations_and_the_model_it_exports(mock_run):
    preds = pd.read_csv(mock_run / "run" / "predictions.csv")
    assert len(preds) == 27 and preds[["p_CC", "p_WCC", "p_NCC"]].notna().all().all()
    meta = json.loads((mock_run / "model" / "model.json").read_text())
    training = meta["training_data"]
    assert training["kind"] == "observations" and training["instrument"] == "EPN"
    assert training["fov_kpc"] == pytest.approx(1000.0)
    assert training["pixel_kpc"] == pytest.approx(1000.0 / 64)  # the field on the crop grid


def test_predict_warns_across_instruments(mock_run, tmp_path):
    out = tmp_path / "a.csv"
    res = run_cli_here(
        "predict", str(mock_run / "model"), str(A1835 / "a1835_xmm_img.fits.gz"),
        "--exposure", str(A1835 / "a1835_xmm_exp.fits.gz"), "--redshift", "0.2532",
        "--out", str(out), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    row = pd.read_csv(out, keep_default_na=False).iloc[0]
    assert "observed with EMOS2, but the model was trained on EPN" in row["warning"]
    # a mock of the model's own instrument, from its catalogue: no instrument warning
    out2 = tmp_path / "b.csv"
    res = run_cli_here(
        "predict", str(mock_run / "model"), "--catalog", str(mock_run / "xmm" / "catalog.csv"),
        "--out", str(out2), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    frame = pd.read_csv(out2, keep_default_na=False)
    assert not frame["warning"].str.contains("trained on").any()
    assert (frame["field_kpc"] == 1000.0).all() and frame["counts"].gt(0).all()


def test_profile_baseline_on_observations_is_put_on_one_distance_scale(mock_run):
    """The profile baseline of mock observations: measured on the field the network sees
    (background-subtracted, exposure-corrected) and multiplied by 4 pi D_L^2 (Planck18,
    evaluated here with astropy)."""
    import numpy as np
    from astropy import units as u
    from astropy.cosmology import Planck18

    from coolcore.data.inputs import catalog_inputs, observation_field
    from coolcore.evaluate.indicators import dataset_features
    from coolcore.evaluate.profiles import radial_profile
    from coolcore.train.config import load_config
    from coolcore.train.protocol import load_data

    cfg = load_config("demo", ["preprocess.crop=64", "preprocess.size=32"])
    dataset = load_data(mock_run / "xmm", cfg, progress=False)
    features = dataset_features(dataset.catalog, dataset.cfg)
    items = catalog_inputs(dataset.catalog)
    fields = np.stack([observation_field(it, field_kpc=1000.0, grid=64).image for it in items])
    plain = radial_profile(fields, 1000.0 / 64)
    z = dataset.catalog["redshift"].to_numpy(dtype=float)
    d_mpc = Planck18.luminosity_distance(z).to_value(u.Mpc)
    np.testing.assert_allclose(
        features["profile"], plain + np.log10(4 * np.pi * d_mpc**2)[:, None], rtol=1e-10
    )
    assert len(np.unique(z)) > 1  # the correction differs between the clusters


def test_dataset_scaling_of_observations_uses_the_distance_free_brightness(mock_run):
    """Under data-set scaling, training (the cache) and predict (apps.batches) both take an
    observation's surface luminosity; the data set's log range is that of those fields."""
    import numpy as np

    from coolcore.apps.batches import _observation
    from coolcore.data.inputs import catalog_inputs, observation_field
    from coolcore.train.config import load_config
    from coolcore.train.protocol import load_data

    overrides = ["preprocess.crop=64", "preprocess.size=32", "preprocess.scaling=dataset"]
    dataset = load_data(mock_run / "xmm", load_config("demo", overrides), progress=False)
    items = catalog_inputs(dataset.catalog)
    fields = [observation_field(it, field_kpc=1000.0, grid=64) for it in items]
    lows, highs = [], []
    for f in fields:
        lum = f.surface_luminosity()
        logs = np.log(np.maximum(lum, lum[lum > 0].min()))
        lows.append(logs.min())
        highs.append(logs.max())
    np.testing.assert_allclose(dataset.log_range, [min(lows), max(highs)], rtol=1e-9)
    meta = {
        "preprocess": {"crop": 64, "scaling": "dataset"},
        "training_data": {"pixel_kpc": 1000.0 / 64, "kind": "observations"},
    }
    image, prepared, _ = _observation(items[0], meta, None, None, None)
    np.testing.assert_allclose(image, fields[0].surface_luminosity(), rtol=1e-12)
    meta["preprocess"]["scaling"] = "image"
    np.testing.assert_allclose(_observation(items[0], meta, None, None, None)[0], fields[0].image)


def test_cooling_time_baselines_on_observations(mock_run):
    """The cooling-time regressions of a cv run on mock observations: measured on the
    prepared fields as the ablation's classifiers are (no ``pixel_kpc`` needed), and the
    line on log10 c_SB equal to a least-squares fit written here."""
    import numpy as np

    from coolcore.evaluate.indicators import dataset_features
    from coolcore.evaluate.tcool_report import baseline_regressions
    from coolcore.train.config import load_config
    from coolcore.train.protocol import load_data, make_folds

    cfg = load_config("demo", ["preprocess.crop=64", "preprocess.size=32"])
    dataset = load_data(mock_run / "xmm", cfg, progress=False)
    assert "pixel_kpc" not in dataset.catalog  # observations: the scale comes from the WCS
    folds = make_folds(dataset, cfg, mock_run / "xmm")
    preds = pd.DataFrame({"image_id": np.asarray(dataset.image_ids).astype(str)})
    frame = baseline_regressions(preds, dataset, folds, notice=lambda _m: None)
    assert frame is not None and np.isfinite(frame.drop(columns="image_id").to_numpy()).all()
    c_sb = dataset_features(dataset.catalog, dataset.cfg)["c_SB"]
    y = np.log10(dataset.catalog["t_cool_gyr"].to_numpy(float))
    for train_idx, val_idx, test_idx in folds:
        train = np.concatenate([train_idx, val_idx])
        design = np.stack([np.ones(train.size), np.log10(c_sb[train])], axis=1)
        coef = np.linalg.lstsq(design, y[train], rcond=None)[0]
        want = coef[0] + coef[1] * np.log10(c_sb[test_idx])
        np.testing.assert_allclose(frame["concentration_mu"].to_numpy()[test_idx], want, rtol=1e-9)
