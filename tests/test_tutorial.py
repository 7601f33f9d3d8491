"""docs/tutorial.md runs as written: its bash blocks through the CLI, its python blocks by exec."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from test_explain import light_copy
from test_inference import beta_map, run_cli, trained_run

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(TUTORIAL.read_text())


def _maps(folder: Path) -> None:
    """The tutorial's maps: a 640 x 640 FITS with NaN borders, a 1024 x 1024 FITS with WCS, a NumPy map."""
    folder.mkdir()
    big = np.full((640, 640), np.nan, np.float32)
    big[40:600, 40:600] = beta_map(15.0, size=560, seed=1)
    fits.writeto(folder / "a1795.fits", big, fits.Header({"PIXKPC": 2.0, "BUNIT": "counts"}))
    h = fits.Header()
    h.update(
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRPIX1=512.5,
        CRPIX2=512.5,
        CRVAL1=206.88,
        CRVAL2=-11.75,
        CDELT1=-1.366e-4,
        CDELT2=1.366e-4,
        REDSHIFT=0.451,
        BUNIT="erg/s/cm2",
    )
    fits.writeto(
        folder / "rxj1347.fits", (beta_map(25.0, size=1024, seed=2) * 1e-15).astype(">f4"), h
    )
    np.save(folder / "abell2029.npy", beta_map(30.0, size=256, seed=3))
    pd.DataFrame(
        {
            "image_id": ["a1795", "rxj1347", "a2029"],
            "cluster_id": ["A1795", "RXJ1347", "A2029"],
            "file": ["a1795.fits", "rxj1347.fits", "abell2029.npy"],
            "label": ["CC", "CC", "WCC"],
            "pixel_kpc": [2.0, None, 5.0],
        }
    ).to_csv(folder / "catalog.csv", index=False)


def test_tutorial_blocks_are_the_expected_kinds():
    kinds = [k for k, _ in blocks()]
    assert kinds.count("bash") >= 6 and kinds.count("python") == 2 and "console" in kinds


def test_console_commands_parse():
    from coolcore.cli.main import build_parser

    for kind, text in blocks():
        if kind == "console":
            for line in text.splitlines():
                argv = shlex.split(line)
                assert argv[0] == "coolcore"
                build_parser().parse_args(argv[1:])  # exits (fails the test) on a bad option


@pytest.mark.filterwarnings("ignore:.*pixel scale:UserWarning")
def test_tutorial_runs(tmp_path_factory, monkeypatch, capsys):
    built = trained_run(tmp_path_factory.mktemp("inference"))
    work = tmp_path_factory.mktemp("tutorial")
    light_copy(built["run"], work / "runs" / "cv")
    _maps(work / "maps")
    shutil.copytree(TUTORIAL.parents[1] / "examples", work / "examples")
    monkeypatch.chdir(work)
    namespace: dict = {}
    for kind, text in blocks():
        if kind == "bash":
            for line in text.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                argv = shlex.split(line)
                assert argv[0] == "coolcore", line
                rc = run_cli(argv[1:])
                assert rc == 0, f"{line}: exit {rc}\n{capsys.readouterr().err}"
        elif kind == "python":
            exec(compile(text, str(TUTORIAL), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr()
    assert (work / "model" / "model.json").is_file()
    preds = pd.read_csv(work / "preds.csv", keep_default_na=False)
    assert preds["image_id"].tolist() == ["a1795", "abell2029", "rxj1347"]
    assert (preds["error"] == "").all()
    assert "macro-F1" in out.out  # the catalogue has labels
    assert "rxj1347.fits: pixel scale" in out.err  # WCS + redshift gives ~2.9 kpc, not 10
    assert sorted(p.name for p in (work / "explain").glob("*.png")) == ["a1795.png", "rxj1347.png"]
    assert (work / "runs" / "cv" / "explain" / "grid.png").is_file()
    report = (work / "runs" / "cv" / "report.md").read_text()
    assert "explain/grid.png" in report and (work / "runs" / "cv" / "report.html").is_file()
    assert (work / "explain_py" / "a1795.png").is_file()
    a1835 = pd.read_csv(work / "a1835.csv", keep_default_na=False).iloc[0]
    assert a1835["error"] == "" and abs(float(a1835["pixel_kpc"]) - 16.3) < 0.1
    assert "trained on" in a1835["warning"]  # the tutorial's model saw 10 kpc emissivity maps
    assert (work / "explain_a1835" / "a1835_xmm_img.png").is_file()
    assert namespace["records"][0]["predicted"] in ("CC", "WCC", "NCC")
    # the batch loop printed the three maps of maps/ in order, with the model's CAM size
    shown = [line.split() for line in out.out.splitlines() if line.endswith("(64, 64)")]
    assert [r[:2] for r in shown] == [["0", "a1795"], ["1", "abell2029"], ["2", "rxj1347"]]
