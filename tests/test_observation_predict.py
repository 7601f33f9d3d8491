"""Observations through ``coolcore predict``: the A1835 example, the one-map options,
catalogue columns, and the bad inputs of issue 11 as one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli_here
from test_inference import CROP, PIXEL_KPC, trained_run

ROOT = Path(__file__).resolve().parents[1]
A1835 = ROOT / "examples" / "a1835"
IMG = A1835 / "a1835_xmm_img.fits.gz"
EXP = A1835 / "a1835_xmm_exp.fits.gz"
Z = 0.2532
RA, DEC = 210.2581, 2.8787


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("observations"))


def _predict(built, tmp_path, *args: str):
    out = tmp_path / "p.csv"
    out.unlink(missing_ok=True)
    res = run_cli_here(
        "predict", str(built["model"]), *args, "--out", str(out), "--no-progress", cwd=tmp_path
    )
    frame = pd.read_csv(out, keep_default_na=False) if out.exists() else None
    return res, frame


def _hand_pixel_kpc(path: Path, z: float) -> float:
    """CDELT (deg -> rad) times the angular-diameter distance (Planck18), by hand."""
    from astropy.cosmology import Planck18
    from astropy.io import fits

    header = fits.getheader(path)
    cdelt = abs(float(header["CDELT1"])) if "CDELT1" in header else abs(float(header["CD1_1"]))
    d_a_kpc = Planck18.angular_diameter_distance(z).to("kpc").value
    return np.deg2rad(cdelt) * d_a_kpc


def test_a1835_example(built, tmp_path):
    res, frame = _predict(built, tmp_path, str(IMG), "--exposure", str(EXP), "--redshift", str(Z))
    assert res.returncode == 0, res.stderr
    row = frame.iloc[0]
    assert row["error"] == ""
    # centre within 20 arcsec of the published position
    dra = (float(row["center_ra"]) - RA) * np.cos(np.deg2rad(DEC)) * 3600
    ddec = (float(row["center_dec"]) - DEC) * 3600
    assert np.hypot(dra, ddec) < 20.0
    assert float(row["pixel_kpc"]) == pytest.approx(_hand_pixel_kpc(IMG, Z), rel=1e-4)
    assert float(row["pixel_kpc"]) == pytest.approx(16.3, abs=0.1)  # the README's figure
    assert float(row["field_kpc"]) == pytest.approx(CROP * PIXEL_KPC)  # the training field
    probs = [float(row[f"p_{c}"]) for c in ("CC", "WCC", "NCC")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert float(row["counts"]) > 1000
    assert 0.0 <= float(row["masked_fraction"]) < 0.5


def test_a1835_given_centre_and_another_cosmology(built, tmp_path):
    res, frame = _predict(
        built,
        tmp_path,
        str(IMG),
        "--exposure",
        str(EXP),
        "--redshift",
        str(Z),
        "--center",
        str(RA),
        str(DEC),
        "--cosmology",
        "WMAP9",
    )
    assert res.returncode == 0, res.stderr
    row = frame.iloc[0]
    assert float(row["center_ra"]) == pytest.approx(RA, abs=1e-6)
    from astropy.cosmology import WMAP9

    d_a = WMAP9.angular_diameter_distance(Z).to("kpc").value
    from astropy.io import fits

    cdelt = abs(float(fits.getheader(IMG)["CDELT1"]))
    assert float(row["pixel_kpc"]) == pytest.approx(np.deg2rad(cdelt) * d_a, rel=1e-4)


def test_observation_catalogue_columns(built, tmp_path):
    folder = tmp_path / "obs"
    folder.mkdir()
    shutil.copy(IMG, folder / "img.fits.gz")
    shutil.copy(EXP, folder / "exp.fits.gz")
    pd.DataFrame(
        {
            "image_id": ["a1835"],
            "cluster_id": ["A1835"],
            "file": ["img.fits.gz"],
            "exposure": ["exp.fits.gz"],
            "redshift": [Z],
            "label": ["CC"],
            "t_cool_gyr": [0.54],
        }
    ).to_csv(folder / "catalog.csv", index=False)
    res, frame = _predict(built, tmp_path, "--catalog", str(folder / "catalog.csv"))
    assert res.returncode == 0, res.stderr
    row = frame.iloc[0]
    assert row["error"] == ""
    assert float(row["t_cool_gyr"]) == pytest.approx(0.54)
    assert float(row["pixel_kpc"]) == pytest.approx(_hand_pixel_kpc(IMG, Z), rel=1e-4)


def _one_line(res, code: int, *needles: str) -> None:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def test_one_map_options_with_several_maps(built, tmp_path):
    res, _ = _predict(built, tmp_path, str(IMG), str(IMG), "--exposure", str(EXP))
    _one_line(res, 2, "--exposure describes one observation")


def test_bad_option_values(built, tmp_path):
    res, _ = _predict(built, tmp_path, str(IMG), "--exposure", str(EXP), "--redshift", "-1")
    _one_line(res, 2, "--redshift")
    res, _ = _predict(built, tmp_path, str(IMG), "--exposure", str(EXP), "--cosmology", "Nope")
    _one_line(res, 2, "--cosmology Nope: unknown")
    res, _ = _predict(built, tmp_path, str(IMG), "--exposure", str(tmp_path / "gone.fits"))
    _one_line(res, 2, "--exposure", "no such file")
    res, _ = _predict(built, tmp_path, str(IMG), "--exposure", str(EXP), "--center", "400", "0")
    _one_line(res, 2, "--center")


def _error_row(built, tmp_path, *args: str) -> str:
    res, frame = _predict(built, tmp_path, *args)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert frame is not None and len(frame) == 1
    return str(frame.iloc[0]["error"])


def test_bad_observations_are_error_rows(built, tmp_path):
    from astropy.io import fits

    with fits.open(IMG) as hdul:
        header, counts = hdul[0].header.copy(), hdul[0].data.astype(np.float64)
    exposure = fits.getdata(EXP).astype(np.float64)
    # no redshift anywhere
    text = _error_row(built, tmp_path, str(IMG), "--exposure", str(EXP))
    assert "redshift" in text
    # exposure of another shape
    small = tmp_path / "small_exp.fits"
    fits.PrimaryHDU(exposure[:100, :100], header=header).writeto(small)
    text = _error_row(built, tmp_path, str(IMG), "--exposure", str(small), "--redshift", str(Z))
    assert "shape" in text
    # zero exposure across the field
    zero = tmp_path / "zero_exp.fits"
    fits.PrimaryHDU(np.zeros_like(exposure), header=header).writeto(zero)
    text = _error_row(built, tmp_path, str(IMG), "--exposure", str(zero), "--redshift", str(Z))
    assert "exposure" in text
    # a centre off the image
    text = _error_row(
        built,
        tmp_path,
        str(IMG),
        "--exposure",
        str(EXP),
        "--redshift",
        str(Z),
        "--center",
        str(RA + 5),
        str(DEC),
    )
    assert "off the image" in text
    # negative counts
    neg = tmp_path / "neg.fits"
    bad = counts.copy()
    bad[300, 300] = -3
    fits.PrimaryHDU(bad, header=header).writeto(neg)
    text = _error_row(built, tmp_path, str(neg), "--exposure", str(EXP), "--redshift", str(Z))
    assert "negative counts" in text
    # a core cut-out smaller than the training field: refused, not stretched
    cut = tmp_path / "cut.fits"
    h2 = header.copy()
    h2["CRPIX1"] -= 300
    h2["CRPIX2"] -= 300
    fits.PrimaryHDU(counts[300:340, 300:340], header=h2).writeto(cut)
    cut_exp = tmp_path / "cut_exp.fits"
    fits.PrimaryHDU(exposure[300:340, 300:340], header=h2).writeto(cut_exp)
    text = _error_row(built, tmp_path, str(cut), "--exposure", str(cut_exp), "--redshift", str(Z))
    assert "smaller than" in text
    # too few counts
    few = tmp_path / "few.fits"
    sparse = np.zeros_like(counts)
    sparse[320, 320] = 3
    fits.PrimaryHDU(sparse, header=header).writeto(few)
    text = _error_row(built, tmp_path, str(few), "--exposure", str(EXP), "--redshift", str(Z))
    assert "too few counts" in text


def test_no_wcs_needs_a_pixel_scale(built, tmp_path):
    from astropy.io import fits

    counts = fits.getdata(IMG).astype(np.float64)
    exposure = fits.getdata(EXP).astype(np.float64)
    bare, bare_exp = tmp_path / "bare.fits", tmp_path / "bare_exp.fits"
    fits.PrimaryHDU(counts).writeto(bare)
    fits.PrimaryHDU(exposure).writeto(bare_exp)
    text = _error_row(built, tmp_path, str(bare), "--exposure", str(bare_exp))
    assert "WCS" in text and "--pixel-kpc" in text
    res, frame = _predict(
        built, tmp_path, str(bare), "--exposure", str(bare_exp), "--pixel-kpc", "16.3"
    )
    assert res.returncode == 0, res.stderr
    assert float(frame.iloc[0]["pixel_kpc"]) == pytest.approx(16.3)


def test_catalogue_observation_columns_are_checked(tmp_path):
    from coolcore.data.catalog import read_catalog
    from coolcore.errors import CatalogError

    (tmp_path / "m.fits").write_bytes(b"")
    base = {"image_id": ["a"], "cluster_id": ["a"], "file": ["m.fits"]}
    cases = [
        ({"redshift": ["-0.1"]}, "redshift '-0.1' in row 1"),
        ({"ra": ["400"], "dec": ["0"]}, "ra '400' in row 1"),
        ({"ra": ["10"]}, "needs both columns 'ra' and 'dec'"),
        ({"exposure": ["gone.fits"]}, "listed exposure file(s) do not exist"),
    ]
    for extra, needle in cases:
        pd.DataFrame({**base, **extra}).to_csv(tmp_path / "c.csv", index=False)
        with pytest.raises(CatalogError, match=None) as info:
            read_catalog(tmp_path / "c.csv", require_labels=False)
        assert needle in str(info.value), str(info.value)
        assert "\n" not in str(info.value)


def _event_list(path: Path, counts: np.ndarray, header, sub: int = 4) -> None:
    """The counts image as an event list on a sky grid ``sub`` times finer (TC* keywords)."""
    from astropy.io import fits

    rng = np.random.default_rng(5)
    rows, cols = np.nonzero(counts > 0)
    n = counts[rows, cols].astype(int)
    # 1-based image pixel -> sky pixel: x_sky = (x_img - 0.5) * sub + 0.5, jittered within the pixel
    x = np.repeat(cols + 1.0, n) + rng.uniform(-0.5, 0.5, n.sum())
    y = np.repeat(rows + 1.0, n) + rng.uniform(-0.5, 0.5, n.sum())
    xs, ys = (x - 0.5) * sub + 0.5, (y - 0.5) * sub + 0.5
    energy = rng.uniform(600.0, 1900.0, n.sum())  # eV, inside 0.5-2 keV
    cols_ = fits.ColDefs(
        [
            fits.Column(name="X", format="E", array=xs),
            fits.Column(name="Y", format="E", array=ys),
            fits.Column(name="ENERGY", format="E", array=energy, unit="eV"),
        ]
    )
    table = fits.BinTableHDU.from_columns(cols_, name="EVENTS")
    for i, axis in ((1, "1"), (2, "2")):
        table.header[f"TCTYP{i}"] = header[f"CTYPE{axis}"]
        table.header[f"TCRVL{i}"] = header[f"CRVAL{axis}"]
        table.header[f"TCDLT{i}"] = header[f"CDELT{axis}"] / sub
        table.header[f"TCRPX{i}"] = (header[f"CRPIX{axis}"] - 0.5) * sub + 0.5
    table.header["REDSHIFT"] = Z
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)


def test_event_list_needs_bin_and_then_is_binned(built, tmp_path):
    from astropy.io import fits

    with fits.open(IMG) as hdul:
        header, counts = hdul[0].header.copy(), hdul[0].data.astype(np.float64)
    events = tmp_path / "events.fits"
    _event_list(events, counts, header)
    text = _error_row(built, tmp_path, str(events))
    assert "event list" in text and "--bin" in text
    res, frame = _predict(built, tmp_path, str(events), "--bin", "4")
    assert res.returncode == 0, res.stderr
    row = frame.iloc[0]
    # binned 4 x 4 sky pixels = the 4" image: the same pixel scale, the centre near A1835's
    assert float(row["pixel_kpc"]) == pytest.approx(_hand_pixel_kpc(IMG, Z), rel=1e-4)
    dra = (float(row["center_ra"]) - RA) * np.cos(np.deg2rad(DEC)) * 3600
    assert np.hypot(dra, (float(row["center_dec"]) - DEC) * 3600) < 20.0
    assert float(row["counts"]) > 1000


def test_explain_draws_the_observation_row(built, tmp_path):
    from PIL import Image

    out = tmp_path / "ex"
    res = run_cli_here(
        "explain",
        str(built["model"]),
        str(IMG),
        "--exposure",
        str(EXP),
        "--redshift",
        str(Z),
        "--out",
        str(out),
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    with Image.open(out / "a1835_xmm_img.png") as obs_png:
        tall = obs_png.size
    plain = tmp_path / "plain"
    res = run_cli_here(
        "explain",
        str(built["model"]),
        *map(str, sorted(built["data"].glob("*.fits"))[:1]),
        "--out",
        str(plain),
        "--no-progress",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    with Image.open(next(plain.glob("*.png"))) as png:
        short = png.size
    assert tall[0] == short[0] and tall[1] > 1.3 * short[1]  # three rows of panels, not two
    frame = pd.read_csv(out / "explanations.csv", keep_default_na=False)
    assert float(frame.iloc[0]["field_kpc"]) == pytest.approx(CROP * PIXEL_KPC)
