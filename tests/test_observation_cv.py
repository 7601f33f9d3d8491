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
