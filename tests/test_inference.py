"""Export, load and predict: model folders, real-map formats, crop rules, error paths.

The fixture is a small cv run built the way ``coolcore cv`` lays it out (run.json
by the real record writer, Lightning-style checkpoints, per-fold predictions from
``coolcore.train.module.predict_probs``, merged by ``finalise_cv``) with untrained
64-pixel networks, so it takes seconds.  Other test files import
:func:`trained_run` and :func:`run_cli` from here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, ImageError, UsageError

RNG = np.random.default_rng(7)
MAP_PX = 128
PIXEL_KPC = 10.0
CROP = 96
SIZE = 64
OVERRIDES = [
    f"preprocess.crop={CROP}",
    f"preprocess.size={SIZE}",
    "model.aux_size=32",
    "cv.folds=3",
    "train.epochs=1",
]
_CACHE: dict[str, dict] = {}


# --------------------------------------------------------------------------- fixture builders
def beta_map(core_px: float, size: int = MAP_PX, seed: int = 0, centre=None) -> np.ndarray:
    """A beta-model surface brightness (beta = 2/3) with a little noise; positive."""
    rng = np.random.default_rng(seed)
    c = (size - 1) / 2 if centre is None else centre
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - c, xx - c)
    img = (1 + (r / core_px) ** 2) ** -1.5
    return img * rng.uniform(0.5, 2.0) + rng.uniform(0, 2e-3, size=img.shape) + 1e-4


def _write_data(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for c in range(12):
        label = CLASS_NAMES[c % 3]
        core = (3.0, 8.0, 20.0)[c % 3]
        for p in range(2):
            img = beta_map(core * (1 + 0.1 * p), seed=10 * c + p).astype(np.float32)
            header = fits.Header()
            header["PIXKPC"] = (PIXEL_KPC, "pixel scale in kpc")
            header["BUNIT"] = "erg s-1 cm-2"
            name = f"c{c:02d}_{p}.fits"
            fits.writeto(folder / name, img, header)
            rows.append(
                dict(
                    image_id=f"c{c:02d}_{p}",
                    cluster_id=f"c{c:02d}",
                    file=name,
                    label=label,
                    pixel_kpc=PIXEL_KPC,
                )
            )
    pd.DataFrame(rows).to_csv(folder / "catalog.csv", index=False)
    return folder


def _write_run(data: Path, run: Path) -> None:
    """A finished cv run folder with untrained (but input-sensitive) fold networks."""
    from coolcore.runs.atomic import atomic_write_csv, atomic_write_json
    from coolcore.runs.folder import RunFolder
    from coolcore.runs.record import make_run_record
    from coolcore.train.config import load_config
    from coolcore.train.fit import predictions_frame
    from coolcore.train.loaders import as_tensor_images
    from coolcore.train.module import ClusterClassifier, predict_probs
    from coolcore.train.protocol import (
        catalog_checksum,
        finalise_cv,
        folds_frame,
        load_data,
        make_folds,
    )

    cfg = load_config("demo", OVERRIDES)
    dataset = load_data(data, cfg, progress=False)
    folds = make_folds(dataset, cfg, data)
    partial = run.with_name(run.name + ".partial")
    partial.mkdir(parents=True)
    record = make_run_record(cfg, dataset, data, kind="cv", catalog_checksum=catalog_checksum(data))
    RunFolder(partial).write_record(record)
    atomic_write_csv(partial / "folds.csv", folds_frame(dataset, folds))
    images = as_tensor_images(dataset.images)
    for k, (_, _, test_idx) in enumerate(folds):
        torch.manual_seed(100 + k)
        module = ClusterClassifier(cfg, [1.0, 1.0, 1.0]).eval()
        with torch.no_grad():  # untrained heads are nearly uniform: make them decisive
            for head in (module.net.head_primary, module.net.head_fusion):
                head.weight.mul_(40.0)
        fold_dir = partial / f"fold_{k:02d}"
        (fold_dir / "checkpoints").mkdir(parents=True)
        torch.save(
            {
                "epoch": 1,
                "global_step": 4,
                "state_dict": module.state_dict(),
                "hyper_parameters": {"cfg": cfg, "class_weight": [1.0, 1.0, 1.0]},
            },
            fold_dir / "checkpoints" / "best.ckpt",
        )
        probs = predict_probs(module.net, images[test_idx])
        atomic_write_csv(
            fold_dir / "predictions.csv", predictions_frame(dataset.catalog, test_idx, probs, k)
        )
        atomic_write_json(
            fold_dir / "fold.json",
            {
                "best_checkpoint": "checkpoints/best.ckpt",
                "best_val_macro_f1": 0.5,
                "best_epoch": 1,
                "epochs": 2,
                "seconds": 1.0,
            },
        )
        log = pd.DataFrame(
            {
                "epoch": [0, 0, 1, 1],
                "step": [1, 1, 3, 3],
                "train_loss": [1.1, None, 0.9, None],
                "val_loss": [None, 1.0, None, 0.95],
                "val_macro_f1": [None, 0.3, None, 0.5],
            }
        )
        log.to_csv(fold_dir / "metrics.csv", index=False)
    finalise_cv(partial, len(folds))
    partial.rename(run)


def trained_run(base: Path) -> dict:
    """Build (once per process) the data folder, the cv run and its exported model."""
    if "run" not in _CACHE:
        from coolcore.apps.export import export_model

        data = _write_data(base / "data")
        run = base / "run"
        _write_run(data, run)
        model = export_model(run, base / "model")
        _CACHE["run"] = {"data": data, "run": run, "model": model, "base": base}
    return _CACHE["run"]


def run_cli(argv: list[str]) -> int:
    """``coolcore.cli.main.main`` in this process (arguments turned into text); the exit status."""
    from coolcore.cli.main import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("inference"))


@pytest.fixture(scope="session")
def model(built):
    from coolcore.apps.inference import load_model

    return load_model(built["model"], device="cpu")


@pytest.fixture(scope="session")
def fold_nets(built):
    """The fold networks read straight from the Lightning checkpoints (the training path)."""
    from coolcore.train.module import load_module

    return [
        load_module(built["run"] / f"fold_{k:02d}" / "checkpoints" / "best.ckpt").net.eval()
        for k in range(3)
    ]


def reference_predict(nets, image: np.ndarray, window: int):
    """Independent pipeline: centre crop + preprocess_image + each fold net, by hand."""
    from coolcore.data.transforms import PreprocessConfig, preprocess_image

    x = preprocess_image(image, PreprocessConfig(crop=window, size=SIZE))
    t = torch.from_numpy(x)[None, None]
    probs, boxes = [], []
    with torch.no_grad():
        for net in nets:
            out = net(t)
            probs.append(out.logits.softmax(1)[0].double().numpy())
            boxes.append(out.boxes[0].double().numpy())
    return np.array(probs), np.array(boxes)


def _raw_fits(cards: list[str], data: bytes) -> bytes:
    header = "".join(c.ljust(80) for c in [*cards, "END"]).encode("ascii")
    header += b" " * (-len(header) % 2880)
    return header + data + b"\0" * (-len(data) % 2880)


# --------------------------------------------------------------------------- export
def test_export_writes_model_folder_with_hashes_and_metadata(built):
    model_dir = built["model"]
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["format_version"] == 1 and meta["class_names"] == list(CLASS_NAMES)
    assert meta["variant"] == "all" and meta["combine"] == "union" and meta["folds"] == [0, 1, 2]
    assert meta["preprocess"]["crop"] == CROP and meta["preprocess"]["input_size"] == SIZE
    assert meta["preprocess"]["scaling"] == "image" and meta["preprocess"]["log_range"] is None
    assert meta["training_data"]["pixel_kpc"] == PIXEL_KPC
    assert meta["training_data"]["fov_kpc"] == CROP * PIXEL_KPC
    assert meta["training_data"]["bunit"] == "erg s-1 cm-2"
    assert meta["versions"]["training"]["torch"] == torch.__version__
    assert meta["source_run"] == str(built["run"].resolve())
    files = sorted(p.name for p in model_dir.iterdir())
    assert files == [
        "fold_00.safetensors",
        "fold_01.safetensors",
        "fold_02.safetensors",
        "model.json",
    ]
    for name, sha in meta["weights"].items():
        assert hashlib.sha256((model_dir / name).read_bytes()).hexdigest() == sha


def test_exported_tensors_equal_the_checkpoint(built):
    from safetensors.torch import load_file

    ckpt = torch.load(built["run"] / "fold_01" / "checkpoints" / "best.ckpt", weights_only=True)
    net_state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    exported = load_file(str(built["model"] / "fold_01.safetensors"))
    assert set(exported) == set(net_state)
    for key, value in net_state.items():
        assert torch.equal(exported[key], value), key


def test_export_one_fold_and_refusals(built, tmp_path):
    from coolcore.apps.export import export_model
    from coolcore.apps.inference import load_model

    one = export_model(built["run"], tmp_path / "m1", fold=2)
    assert json.loads((one / "model.json").read_text())["folds"] == [2]
    assert len(load_model(one, device="cpu").nets) == 1
    with pytest.raises(UsageError, match="already exists; pass --force"):
        export_model(built["run"], one)
    export_model(built["run"], one, fold=0, force=True)
    assert json.loads((one / "model.json").read_text())["folds"] == [0]
    with pytest.raises(UsageError, match="--fold 7: .* has folds 0, 1, 2"):
        export_model(built["run"], tmp_path / "m7", fold=7)
    with pytest.raises(UsageError, match="not a run folder"):
        export_model(tmp_path, tmp_path / "m8")
    ablation = tmp_path / "abl"
    ablation.mkdir()
    (ablation / "run.json").write_text(json.dumps({"kind": "ablation"}))
    with pytest.raises(UsageError, match="ablation run .* export one of them"):
        export_model(ablation, tmp_path / "m9")
    assert not (tmp_path / "m7").exists() and not (tmp_path / "m9").exists()


def test_dataset_scaling_records_the_training_log_range(built, tmp_path):
    """log_range = min and max of the floored log of every training map's central crop."""
    from coolcore.apps.export import export_model
    from coolcore.apps.inference import load_model
    from coolcore.train.config import load_config
    from coolcore.train.protocol import load_data

    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("fold_0[12]", "checkpoints"))
    (run / "fold_00" / "checkpoints").symlink_to(built["run"] / "fold_00" / "checkpoints")
    cfg = load_config("demo", [*OVERRIDES, "preprocess.scaling=dataset"])
    record = json.loads((run / "run.json").read_text())
    record["config"] = cfg
    record["data_checksum"] = load_data(built["data"], cfg, progress=False).cache_key
    (run / "run.json").write_text(json.dumps(record))
    meta = json.loads((export_model(run, tmp_path / "m", fold=0) / "model.json").read_text())
    lows, highs = [], []
    for f in sorted(built["data"].glob("*.fits")):
        crop = fits.getdata(f).astype(np.float64)[16:112, 16:112]
        logs = np.log(np.maximum(crop, crop[crop > 0].min()))
        lows.append(logs.min())
        highs.append(logs.max())
    np.testing.assert_allclose(meta["preprocess"]["log_range"], [min(lows), max(highs)], rtol=1e-12)
    m = load_model(tmp_path / "m", device="cpu")
    notes = []
    img = beta_map(5.0, seed=4)
    path = tmp_path / "counts.fits"
    fits.writeto(path, img, fits.Header({"BUNIT": "counts", "PIXKPC": PIXEL_KPC}))
    assert m.predict(path, on_warning=notes.append)["error"].eq("").all()
    assert (
        len(notes) == 1
        and "unit 'counts' differs from the training maps' 'erg s-1 cm-2'" in notes[0]
    )


# --------------------------------------------------------------------------- loading safely
def test_loading_never_unpickles(built, monkeypatch):
    from coolcore.apps import inference

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be called for a model folder")

    monkeypatch.setattr(torch, "load", refuse)
    inference.load_model(built["model"], device="cpu")  # safetensors only
    monkeypatch.undo()

    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    inference.load_model(built["run"], device="cpu")  # a cv run: checkpoints
    assert calls and all(flag is True for flag in calls)


def _copy_model(built, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(built["model"], dst)
    return dst


def write_meta(model_dir: Path, meta: dict, *, reseal: bool = True) -> None:
    """Write ``model.json``; with ``reseal`` its ``meta_sha256`` is recomputed (by hand) as
    the exporter does, so that only the other checks can refuse it."""
    meta = dict(meta)
    if reseal and "meta_sha256" in meta:
        rest = {k: v for k, v in meta.items() if k != "meta_sha256"}
        text = json.dumps(rest, sort_keys=True, separators=(",", ":"))
        meta["meta_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (model_dir / "model.json").write_text(json.dumps(meta, indent=2))


def test_tampered_truncated_missing_weights_are_refused(built, tmp_path):
    from coolcore.apps.inference import load_model

    m = _copy_model(built, tmp_path)
    f = m / "fold_01.safetensors"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the tensor data
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"fold_01.safetensors: SHA-256 .* does not match") as info:
        load_model(m)
    assert "\n" not in str(info.value)

    f.write_bytes(bytes(raw[:1000]))  # truncated
    with pytest.raises(DataError, match="fold_01.safetensors: SHA-256"):
        load_model(m)

    f.unlink()
    with pytest.raises(DataError, match="fold_01.safetensors: weight file missing"):
        load_model(m)


def test_corrupt_safetensors_with_matching_hash_is_refused(built, tmp_path):
    """Someone rewrote model.json to match a broken file: the reader still refuses it."""
    from safetensors.torch import save_file

    from coolcore.apps.inference import load_model

    m = _copy_model(built, tmp_path)
    meta = json.loads((m / "model.json").read_text())
    f = m / "fold_00.safetensors"
    f.write_bytes(f.read_bytes()[:5000])
    meta["weights"]["fold_00.safetensors"] = hashlib.sha256(f.read_bytes()).hexdigest()
    write_meta(m, meta)
    with pytest.raises(DataError, match="fold_00.safetensors: not a readable safetensors file"):
        load_model(m)

    save_file({"something.else": torch.zeros(3)}, str(f))  # valid file, wrong network
    meta["weights"]["fold_00.safetensors"] = hashlib.sha256(f.read_bytes()).hexdigest()
    write_meta(m, meta)
    with pytest.raises(DataError, match="fold_00.safetensors: weights do not fit the network"):
        load_model(m)


def test_bad_model_json(built, tmp_path):
    from coolcore.apps.inference import load_model

    m = _copy_model(built, tmp_path)
    meta = json.loads((m / "model.json").read_text())
    (m / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(DataError, match="model format version 99 is not supported"):
        load_model(m)
    (m / "model.json").write_text("{not json")
    with pytest.raises(DataError, match="model.json: not a readable JSON file"):
        load_model(m)
    (m / "model.json").unlink()
    with pytest.raises(UsageError, match="not a model folder .*coolcore export"):
        load_model(m)
    with pytest.raises(UsageError, match="no such model folder"):
        load_model(tmp_path / "nowhere")


# --------------------------------------------------------------------------- predictions
def test_fold_model_reproduces_the_runs_test_predictions(built, tmp_path):
    """Inference path (files -> window -> safetensors) == training path (cache -> checkpoint)."""
    from coolcore.apps.export import export_model
    from coolcore.apps.inference import load_model
    from coolcore.data.inputs import collect_inputs

    run_preds = pd.read_csv(built["run"] / "predictions.csv", dtype={"image_id": str})
    catalog = built["data"] / "catalog.csv"
    for k in (0, 2):
        m = load_model(export_model(built["run"], tmp_path / f"f{k}", fold=k), device="cpu")
        expected = run_preds[run_preds["fold"] == k].set_index("image_id")
        items = [it for it in collect_inputs(catalog=catalog) if it.image_id in expected.index]
        got = m.predict(items).set_index("image_id").loc[expected.index]
        for c in CLASS_NAMES:
            np.testing.assert_allclose(got[f"p_{c}"], expected[f"p_{c}"], atol=2e-6)
        assert (got["predicted"] == expected["predicted"]).all()
        assert (got["spread"] == 0).all()


def test_ensemble_mean_spread_ordinal_and_box(model, fold_nets, built):
    files = sorted(built["data"].glob("c0[0-5]_0.fits"))
    df = model.predict(files)
    assert list(df.columns) == [
        "file",
        "image_id",
        "p_CC",
        "p_WCC",
        "p_NCC",
        "predicted",
        "ordinal_score",
        "spread",
        "box_x0",
        "box_y0",
        "box_x1",
        "box_y1",
        "center_ra",
        "center_dec",
        "pixel_kpc",
        "field_kpc",
        "counts",
        "masked_fraction",
        "warning",
        "log10_tcool",
        "log10_tcool_sigma",
        "predicted_from_tcool",
        "t_cool_gyr",
        "error",
    ]
    assert (df["error"] == "").all()
    for row, f in zip(df.itertuples(index=False), files, strict=True):
        probs, boxes = reference_predict(fold_nets, fits.getdata(f).astype(np.float64), CROP)
        mean = probs.mean(axis=0)
        got = np.array([row.p_CC, row.p_WCC, row.p_NCC])
        np.testing.assert_allclose(got, mean, atol=1e-6)
        k = int(np.argmax(mean))
        assert row.predicted == CLASS_NAMES[k]
        np.testing.assert_allclose(row.spread, np.std(probs[:, k]), atol=1e-6)
        np.testing.assert_allclose(row.ordinal_score, row.p_WCC + 2 * row.p_NCC, atol=1e-12)
        np.testing.assert_allclose(
            [row.box_x0, row.box_y0, row.box_x1, row.box_y1], boxes.mean(axis=0), atol=1e-9
        )
    assert df["p_CC"].add(df["p_WCC"]).add(df["p_NCC"]).sub(1).abs().max() < 1e-6
    assert df["spread"].gt(0).all()  # three different networks disagree a little


# --------------------------------------------------------------------------- real maps
def test_every_format_of_one_map_gives_the_same_prediction(model, tmp_path):
    """FITS (big-endian, WCS, lenient header, other units, NaN border), NPY, HDF5."""
    img = beta_map(5.0, seed=3)
    ref = model.predict(img[None], pixel_kpc=PIXEL_KPC).iloc[0]
    files = {}
    # FITS, big-endian float32 on disk, with a celestial WCS
    h = fits.Header()
    h.update(
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRPIX1=64.5,
        CRPIX2=64.5,
        CRVAL1=207.2,
        CRVAL2=26.6,
        CDELT1=-1e-4,
        CDELT2=1e-4,
        CUNIT1="deg",
        CUNIT2="deg",
        PIXKPC=PIXEL_KPC,
        BUNIT="counts",
    )
    files["wcs"] = tmp_path / "wcs.fits"
    fits.writeto(files["wcs"], img.astype(">f4"), h)
    # other units: the same map in erg/s/cm2 (x 1e-14): log + min-max removes the factor
    files["units"] = tmp_path / "units.fits"
    fits.writeto(
        files["units"], (img * 1e-14).astype(np.float64), fits.Header({"BUNIT": "erg/s/cm2"})
    )
    # a header only lenient readers accept: unparsable value, unquoted string, bad keyword
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                  -64",
        "NAXIS   =                    2",
        f"NAXIS1  = {MAP_PX:20d}",
        f"NAXIS2  = {MAP_PX:20d}",
        "FOO     = 1.0.0 / bad value",
        "DATE-OBS= 2020-01-01 / unquoted",
        "my key  = 'lower case keyword'",
    ]
    files["lenient"] = tmp_path / "lenient.fits"
    files["lenient"].write_bytes(_raw_fits(cards, img.astype(">f8").tobytes()))
    with pytest.raises(Exception):  # noqa: B017 - a strict reader refuses it
        with fits.open(files["lenient"]) as hdul:
            hdul.verify("exception")
    # a 640 x 640 map with NaN borders holding the same central field
    big = np.full((640, 640), np.nan)
    big[256:384, 256:384] = img  # central 96-px windows coincide: 272 = 256 + 16
    files["nan640"] = tmp_path / "nan640.fits"
    fits.writeto(files["nan640"], big.astype(np.float32))
    # NumPy, big-endian doubles; HDF5
    files["npy"] = tmp_path / "be.npy"
    np.save(files["npy"], img.astype(">f8"))
    files["h5"] = tmp_path / "m.h5"
    with h5py.File(files["h5"], "w") as fh:
        fh["image"] = img
    df = model.predict(list(files.values()), pixel_kpc=PIXEL_KPC)
    assert (df["error"] == "").all(), df["error"].tolist()
    for name, row in zip(files, df.itertuples(index=False), strict=True):
        tol = 1e-6 if name in ("npy", "h5", "lenient") else 2e-4  # float32 storage rounds
        for c in CLASS_NAMES:
            assert abs(getattr(row, f"p_{c}") - ref[f"p_{c}"]) < tol, (name, c)


def test_window_rules_by_hand():
    from coolcore.data.inputs import input_window_px

    kw = {"model_crop_px": 96, "model_pixel_kpc": 10.0}
    assert input_window_px((1024, 1024), 5.0, **kw) == 192  # 960 kpc / 5 kpc
    assert input_window_px((1024, 1024), None, **kw) == 96  # scale unknown: training pixels
    assert input_window_px((1024, 1024), 5.0, model_crop_px=96, model_pixel_kpc=None) == 96
    assert input_window_px((640, 640), 2.5, **kw, crop_px=300) == 300
    assert input_window_px((640, 640), 2.5, **kw, crop_kpc=1000.0) == 400
    with pytest.raises(ImageError, match="a.fits: --crop-kpc needs the map's pixel scale"):
        input_window_px((640, 640), None, **kw, crop_kpc=1000.0, name="a.fits")
    with pytest.raises(
        ImageError, match="smaller than the 384 px window .*--crop-px N with N <= 200"
    ):
        input_window_px((200, 300), 2.5, **kw)
    with pytest.raises(UsageError, match="exclude each other"):
        input_window_px((640, 640), 2.5, **kw, crop_px=10, crop_kpc=5.0)


def test_1024_map_at_another_pixel_scale_uses_the_training_field(model, fold_nets, tmp_path):
    img = beta_map(9.0, size=1024, seed=5)
    path = tmp_path / "big.fits"
    fits.writeto(path, img.astype(np.float32), fits.Header({"PIXKPC": 5.0}))
    notes = []
    df = model.predict(path, on_warning=notes.append)
    probs, boxes = reference_predict(fold_nets, fits.getdata(path).astype(np.float64), 192)
    np.testing.assert_allclose(
        df.loc[0, ["p_CC", "p_WCC", "p_NCC"]].to_numpy(float), probs.mean(0), atol=1e-6
    )
    assert len(notes) == 1 and "pixel scale 5 kpc differs" in notes[0] and "50%" in notes[0]
    # the same window asked for in pixels and in kpc
    for kwargs in ({"crop_px": 192}, {"crop_kpc": 960.0}):
        again = model.predict(path, on_warning=lambda s: None, **kwargs)
        np.testing.assert_allclose(again.loc[0, "p_CC"], df.loc[0, "p_CC"], atol=1e-9)
    # a pixel scale within 20% of the training one: no warning
    quiet = []
    model.predict(img[:200, :200], pixel_kpc=11.5, on_warning=quiet.append)
    assert quiet == []


def test_pixel_scale_from_wcs_and_redshift(tmp_path):
    from astropy import units as u
    from astropy.cosmology import Planck18

    from coolcore.data.scale import map_pixel_kpc

    h = fits.Header()
    h.update(
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRPIX1=32,
        CRPIX2=32,
        CRVAL1=10.0,
        CRVAL2=-5.0,
        CDELT1=-2e-4,
        CDELT2=2e-4,
        REDSHIFT=0.1,
    )
    fits.writeto(tmp_path / "w.fits", np.ones((64, 64), np.float32), h)
    # independent: angular-diameter distance times the angle in radians
    expected = (Planck18.angular_diameter_distance(0.1) * np.deg2rad(2e-4)).to(u.kpc).value
    assert map_pixel_kpc(tmp_path / "w.fits") == pytest.approx(expected, rel=1e-6)
    fits.writeto(tmp_path / "p.fits", np.ones((4, 4), np.float32), fits.Header({"PIXKPC": 3.5}))
    assert map_pixel_kpc(tmp_path / "p.fits") == 3.5
    del h["REDSHIFT"]
    fits.writeto(tmp_path / "noz.fits", np.ones((64, 64), np.float32), h)
    assert map_pixel_kpc(tmp_path / "noz.fits") is None


def test_unreadable_maps_get_error_rows_and_the_rest_is_predicted(model, built, tmp_path):
    good = sorted(built["data"].glob("*.fits"))[:3]
    truncated = tmp_path / "cut.fits"
    truncated.write_bytes(good[0].read_bytes()[:4000])
    text = tmp_path / "notes.fits"
    text.write_text("hello")
    small = tmp_path / "small.npy"
    np.save(small, np.ones((50, 50)) + RNG.random((50, 50)))
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros((128, 128)))
    inputs = [good[0], truncated, good[1], text, tmp_path / "absent.fits", small, zeros, good[2]]
    errors = []
    df = model.predict(inputs, on_error=errors.append)
    ok = df["error"] == ""
    assert ok.tolist() == [True, False, True, False, False, False, False, True]
    assert df.loc[ok, "predicted"].isin(CLASS_NAMES).all() and df.loc[~ok, "predicted"].eq("").all()
    assert df.loc[~ok, "p_CC"].isna().all()
    msgs = df.loc[~ok, "error"].tolist()
    assert "truncated" in msgs[0] and msgs[0].startswith(str(truncated))
    assert "no such file" in msgs[2]
    assert "smaller than the 96 px window" in msgs[3]
    assert "no finite positive pixel" in msgs[4]
    assert len(errors) == 5 and all("\n" not in e for e in errors)
    with pytest.raises(ImageError, match="truncated"):
        model.predict(inputs[:2], errors="raise")


def test_python_api_arrays_records_and_lazy_import(model, built):
    import coolcore

    stack = np.stack([beta_map(4.0, seed=1), beta_map(15.0, seed=2)])
    recs = model.predict(stack, output="records")
    assert [r["image_id"] for r in recs] == ["image_0", "image_1"]
    mixed = model.predict([stack[0], str(sorted(built["data"].glob("*.fits"))[0])])
    assert mixed["p_CC"].notna().all()
    np.testing.assert_allclose(mixed.loc[0, "p_CC"], recs[0]["p_CC"], atol=1e-12)
    loaded = coolcore.load_model(built["model"], device="cpu")
    assert loaded.folds == [0, 1, 2] and loaded.pixel_kpc == PIXEL_KPC
    folder = loaded.predict(built["data"])  # a folder: every map in it
    assert len(folder) == 24 and (folder["error"] == "").all()
    # a labelled catalogue through the API: the metrics agree with scikit-learn
    from sklearn.metrics import f1_score

    frame, metrics = loaded.evaluate(built["data"] / "catalog.csv")
    cat = pd.read_csv(built["data"] / "catalog.csv", dtype={"image_id": str})
    assert frame["image_id"].tolist() == cat["image_id"].tolist()
    expected = f1_score(
        cat["label"], frame["predicted"], average="macro", labels=list(CLASS_NAMES), zero_division=0
    )
    assert metrics["macro_f1"] == pytest.approx(expected, abs=1e-12) and metrics["n_images"] == 24
    same = loaded.predict(catalog=built["data"] / "catalog.csv")
    np.testing.assert_allclose(same["p_NCC"], frame["p_NCC"], atol=1e-12)
    with pytest.raises(UsageError, match="no maps given"):
        loaded.predict([])
    code = "import sys, coolcore; assert 'torch' not in sys.modules; print(coolcore.load_model.__doc__ is not None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# --------------------------------------------------------------------------- command line
def test_cli_export_predict_with_catalogue_metrics(built, tmp_path, capsys):
    from sklearn.metrics import f1_score

    assert run_cli(["export", built["run"], "--out", tmp_path / "m", "--fold", "1"]) == 0
    assert "1 fold model(s)" in capsys.readouterr().out
    out = tmp_path / "preds.csv"
    rc = run_cli(
        [
            "predict",
            tmp_path / "m",
            "--catalog",
            built["data"] / "catalog.csv",
            "--out",
            out,
            "--no-progress",
            "--batch-size",
            "5",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    df = pd.read_csv(out, dtype={"image_id": str}, keep_default_na=False)
    assert len(df) == 24 and (df["error"] == "").all()
    cat = pd.read_csv(built["data"] / "catalog.csv", dtype={"image_id": str}).set_index("image_id")
    macro = f1_score(
        cat.loc[df["image_id"], "label"],
        df["predicted"],
        average="macro",
        labels=list(CLASS_NAMES),
        zero_division=0,
    )
    assert f"macro-F1 {macro:.3f}" in captured.out
    # an existing --out needs --force and stays untouched
    before = out.read_bytes()
    assert run_cli(["predict", tmp_path / "m", built["data"], "--out", out, "--no-progress"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_cli_predict_failures_exit_1_with_summary(built, tmp_path, capsys):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 100)
    maps = tmp_path / "maps"
    maps.mkdir()
    for f in sorted(built["data"].glob("*.fits"))[:2]:
        shutil.copy(f, maps / f.name)
    out = tmp_path / "p.csv"
    rc = run_cli(
        [
            "predict",
            built["model"],
            maps,
            bad,
            tmp_path / "gone.fits",
            "--out",
            out,
            "--no-progress",
            "--crop-kpc",
            "500",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "2 of 4 maps failed" in err
    assert err.count("coolcore predict: error: ") == 2
    df = pd.read_csv(out, keep_default_na=False)
    assert df["error"].ne("").tolist() == [False, False, True, True]
    assert (
        run_cli(
            [
                "predict",
                built["model"],
                maps,
                "--out",
                tmp_path / "q.csv",
                "--crop-px",
                "10",
                "--crop-kpc",
                "5",
            ]
        )
        == 2
    )
    assert "exclude each other" in capsys.readouterr().err
    assert run_cli(["predict", built["model"], "--out", tmp_path / "r.csv"]) == 2
    assert "no maps given" in capsys.readouterr().err
    apart = tmp_path.parent / f"{tmp_path.name}-s.csv"  # not inside the (bad) model folder
    assert run_cli(["predict", tmp_path, maps, "--out", apart]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_predict_help_from_the_installed_command():
    exe = Path(sys.executable).with_name("coolcore")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "coolcore.cli.main"]
    out = subprocess.run([*cmd, "predict", "--help"], capture_output=True, text=True, check=True)
    assert "--crop-kpc" in out.stdout and "ordinal_score" in out.stdout


@pytest.mark.slow
def test_real_cv_run_exports_and_predicts(tmp_path):
    """The whole path with real training: coolcore cv (1 epoch) -> export -> predict."""
    from coolcore.apps.export import export_model
    from coolcore.apps.inference import load_model
    from coolcore.data.inputs import collect_inputs
    from coolcore.train.config import load_config
    from coolcore.train.protocol import run_cv

    data = _write_data(tmp_path / "data")
    run = run_cv(data, load_config("demo", OVERRIDES), tmp_path / "run", progress=False, quiet=True)
    m = load_model(export_model(run, tmp_path / "model", fold=1), device="cpu")
    expected = pd.read_csv(run / "fold_01" / "predictions.csv", dtype={"image_id": str}).set_index(
        "image_id"
    )
    items = [
        it for it in collect_inputs(catalog=data / "catalog.csv") if it.image_id in expected.index
    ]
    got = m.predict(items).set_index("image_id").loc[expected.index]
    np.testing.assert_allclose(
        got[["p_CC", "p_WCC", "p_NCC"]], expected[["p_CC", "p_WCC", "p_NCC"]], atol=2e-6
    )


# --------------------------------------------------------------------------- the batch API
def test_predict_batches_yields_inputs_fold_numbers_and_explanations(model, built, tmp_path):
    files = [*sorted(built["data"].glob("*.fits"))[:5], tmp_path / "absent.fits"]
    whole = model.predict(files)
    with pytest.raises(UsageError, match="--fold 7: the model holds folds 0, 1, 2"):
        model.predict_batches(files, explain_fold=7)  # refused at once, before any batch
    with pytest.raises(UsageError, match="batch size 0"):
        model.predict_batches(files, batch_size=0)
    batches = list(model.predict_batches(files, batch_size=2, explain_fold=1))
    assert [b.start for b in batches] == [0, 2, 4]
    assert batches[-1].ok == [0] and "no such file" in batches[-1].errors[1]
    for b in batches:
        assert b.fold_probs.shape == (3, len(b.ok), 3) and b.images.shape == (len(b.ok), SIZE, SIZE)
        got = whole.loc[b.rows]
        np.testing.assert_allclose(b.probs, got[["p_CC", "p_WCC", "p_NCC"]], atol=1e-6)
        np.testing.assert_allclose(b.boxes, got[["box_x0", "box_y0", "box_x1", "box_y1"]])
        np.testing.assert_allclose(b.spread, got["spread"], atol=1e-6)
        # the explanation is fold 1's network (the model's second) on the same inputs
        ex = b.explanation
        np.testing.assert_allclose(
            ex.output.logits.softmax(1).double().numpy(), b.fold_probs[1], atol=1e-5
        )
        np.testing.assert_array_equal(ex.boxes.numpy(), b.fold_boxes[1])
        assert not np.allclose(b.fold_probs[1], b.fold_probs[0], atol=1e-3)


def _tiny_model(model, seed: int = 3):
    """Two untrained ``all`` networks on 32-pixel inputs: their CAM is 1 x 1."""
    from coolcore.apps.trained import TrainedModel
    from coolcore.nn.model import MultiBranchAttentionNet

    torch.manual_seed(seed)
    nets = []
    for _ in range(2):
        net = MultiBranchAttentionNet("all", aux_size=32)  # lam 25, tau 0.7, no smoothing
        with torch.no_grad():
            for head in (net.head_primary, net.head_fusion):
                head.weight.mul_(40.0)
        nets.append(net)
    meta = json.loads(json.dumps(model.meta))
    meta["preprocess"].update(size=32, input_size=32)
    meta["folds"] = [0, 1]
    return TrainedModel(nets, meta, Path("."), device="cpu")


def _gaussian_box(image: np.ndarray, lam: float = 25.0, tau: float = 0.7) -> list[int]:
    """The box of ``H2 >= tau`` by hand: H2 is separable, so a row (column) holds a pixel
    above tau where its own factor, which peaks at 1 at the brightest pixel, is."""
    s = image.shape[0]
    y, x = np.unravel_index(np.argmax(image), image.shape)  # first maximum, row-major
    sigma = s / np.sqrt(lam)
    idx = np.arange(s)
    cols = np.flatnonzero(np.exp(-((idx - x) ** 2) / (2 * sigma**2)) >= tau)
    rows = np.flatnonzero(np.exp(-((idx - y) ** 2) / (2 * sigma**2)) >= tau)
    return [cols[0], rows[0], cols[-1], rows[-1]]


def test_32px_predictions_do_not_depend_on_the_batch(model):
    """A 32-px input gives a 1 x 1 CAM: flat, so no CAM mask, and the union is the Gaussian's.

    Before, min-max normalisation stretched its upsampling noise (1e-7) to [0, 1]
    and the box, hence the probabilities, changed with the batch size."""
    from coolcore.data.inputs import as_inputs

    tiny = _tiny_model(model)
    rng = np.random.default_rng(11)
    images = np.stack(
        [beta_map(rng.uniform(2, 30), seed=50 + i, centre=rng.uniform(48, 80)) for i in range(32)]
    )
    one = tiny.predict(images, batch_size=1, pixel_kpc=PIXEL_KPC)
    many = tiny.predict(images, batch_size=32, pixel_kpc=PIXEL_KPC)
    probs = ["p_CC", "p_WCC", "p_NCC"]
    boxes = ["box_x0", "box_y0", "box_x1", "box_y1"]
    assert np.abs(one[probs].to_numpy() - many[probs].to_numpy()).max() < 1e-5
    assert (one[boxes].to_numpy() == many[boxes].to_numpy()).all()
    inputs = tiny.prepare(as_inputs(images, PIXEL_KPC)).images
    expected = np.array([_gaussian_box(x) for x in inputs], dtype=float)
    np.testing.assert_array_equal(many[boxes].to_numpy(), expected)
    assert len(np.unique(expected, axis=0)) > 3  # the boxes follow the maps


# --------------------------------------------------------------------------- model.json checks
def test_model_json_is_sealed_complete_and_consistent(built, tmp_path):
    from coolcore.apps.inference import load_model

    m = _copy_model(built, tmp_path)
    meta = json.loads((m / "model.json").read_text())
    assert "meta_sha256" in meta  # the exporter seals it

    def refused(new: dict, pattern: str, *, reseal: bool = True) -> None:
        write_meta(m, new, reseal=reseal)
        with pytest.raises(DataError, match=pattern) as info:
            load_model(m, device="cpu")
        assert "\n" not in str(info.value) and str(info.value).startswith(str(m / "model.json"))

    edited = json.loads(json.dumps(meta))
    edited["preprocess"]["input_size"] = 48  # by hand: changes every prediction
    refused(edited, "does not match its meta_sha256", reseal=False)
    # a model folder exported before the seal existed: accepted, and checked all the same
    old = {k: v for k, v in meta.items() if k != "meta_sha256"}
    write_meta(m, old)
    x = beta_map(6.0, seed=21)
    sealed = load_model(built["model"], device="cpu").predict(x, pixel_kpc=PIXEL_KPC)
    unsealed = load_model(m, device="cpu").predict(x, pixel_kpc=PIXEL_KPC)
    assert sealed.drop(columns="file").equals(unsealed.drop(columns="file"))
    edited = json.loads(json.dumps(old))
    edited["preprocess"]["input_size"] = 48
    refused(edited, r"input_size 48 does not follow from its crop 96 and size 64")
    edited["preprocess"]["size"] = 48
    refused(edited, r"preprocess size=48 differs from the run config's 64")
    edited = json.loads(json.dumps(old))
    edited["network"]["tau1"] = 0.2
    refused(edited, r"network tau1=0.2 differs from the run config's 0.7")
    # incomplete or inconsistent, even when sealed again
    refused({k: v for k, v in meta.items() if k != "variant"}, "missing key 'variant'")
    refused({**meta, "folds": []}, "'folds' is empty")
    refused({**meta, "folds": [0, 0]}, "lists a fold twice")
    refused({**meta, "variant": "att"}, "variant 'att' differs from the network's 'all'")
    refused({**meta, "variant": "huge"}, "variant 'huge' is not one of")
    refused({**meta, "folds": [0, 1]}, "'weights' lists fold_02.safetensors, which is not one")
    refused({**meta, "folds": [0, 1, 2, 3]}, "no SHA-256 listed for fold_03.safetensors")
    refused({**meta, "training_data": {"pixel_kpc": -5}}, "must be positive numbers")
    refused({**meta, "preprocess": {**meta["preprocess"], "scaling": "dataset"}}, "log_range")


def test_cli_refuses_a_bad_model_or_device_before_writing(built, tmp_path, capsys):
    m = _copy_model(built, tmp_path)
    meta = json.loads((m / "model.json").read_text())
    f = sorted(built["data"].glob("*.fits"))[0]
    out = tmp_path / "p.csv"

    def fails(argv: list, code: int, text: str) -> None:
        assert run_cli(argv) == code
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1 and "Traceback" not in err, err
        assert not out.exists() and not (tmp_path / "ex").exists()

    for bad, text in (
        ({k: v for k, v in meta.items() if k != "variant"}, "missing key 'variant'"),
        ({**meta, "folds": []}, "'folds' is empty"),
    ):
        write_meta(m, bad)
        fails(["predict", m, f, "--out", out, "--no-progress"], 1, text)
        fails(["explain", m, f, "--out", tmp_path / "ex", "--no-progress"], 1, text)
    model = built["model"]
    for cmd in (
        ["predict", model, f, "--out", out],
        ["explain", model, f, "--out", tmp_path / "ex"],
    ):
        fails([*cmd, "--device", "nonsense"], 2, "--device nonsense: not a device name")
        gpu = "cuda:99" if torch.cuda.is_available() else "cuda"
        fails([*cmd, "--device", gpu], 2, f"--device {gpu}: ")
