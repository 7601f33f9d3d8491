"""``coolcore compare``: methods gathered from runs and CSVs, scored against scikit-learn."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score
from test_evaluation import make_predictions

from coolcore.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _rows(text):
    out = {}
    for line in text.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        out[cells[0]] = cells
    return out


def test_compare_seeds_names_and_reference(tmp_path, capsys):
    a0 = make_predictions(n_clusters=30, accuracy=0.8, seed=1)
    a1 = a0.assign(predicted=make_predictions(n_clusters=30, accuracy=0.7, seed=2)["predicted"])
    b = a0.assign(predicted=make_predictions(n_clusters=30, accuracy=0.5, seed=3)["predicted"])
    a0.to_csv(tmp_path / "a0.csv", index=False)
    a1.to_csv(tmp_path / "a1.csv", index=False)
    cv = tmp_path / "cvrun"
    cv.mkdir()
    (cv / "run.json").write_text(json.dumps({"kind": "cv"}))
    b.sample(frac=1.0, random_state=0).to_csv(cv / "predictions.csv", index=False)  # any order
    out = tmp_path / "table.md"
    code = main(
        ["compare", f"a={tmp_path / 'a0.csv'}", f"a={tmp_path / 'a1.csv'}", str(cv),
         "--reference", "cvrun", "--boot", "200", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    rows = _rows(printed)
    scores = [f1_score(f["label"], f["predicted"], average="macro") for f in (a0, a1)]
    ref = f1_score(b["label"], b["predicted"], average="macro")
    assert rows["a"][1] == "2"
    assert rows["a"][2] == f"{np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f}"
    assert rows["cvrun"][2] == f"{ref:.3f}" and rows["cvrun"][4] == "–"
    assert float(rows["a"][4].split(" ")[0]) == pytest.approx(np.mean(scores) - ref, abs=6e-4)


def test_compare_committed_ablations_keeps_baselines_once(capsys):
    runs = sorted((ROOT / "results" / "recipe-cpu").glob("default-s[0-9]"))[:2]
    assert len(runs) == 2
    assert main(["compare", *map(str, runs), "--boot", "50"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["baseline"][1] == "2" and rows["c_SB (fit)"][1] == "1"


@pytest.mark.parametrize(
    "args, message",
    [
        (["nothing.csv"], "nothing.csv: no such file or run folder"),
        ([f"x={ROOT / 'results' / 'recipe-cpu' / 'default-s0'}"], "an ablation holds several"),
        ([str(ROOT / "README.md")], "not a readable predictions table"),
    ],
)
def test_compare_bad_sources(args, message, capsys):
    assert main(["compare", *args]) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_compare_unknown_reference_and_other_maps(tmp_path, capsys):
    a = make_predictions(n_clusters=10, seed=1)
    a.to_csv(tmp_path / "a.csv", index=False)
    a.iloc[:-3].to_csv(tmp_path / "b.csv", index=False)
    assert main(["compare", str(tmp_path / "a.csv"), "--reference", "zzz"]) == 2
    assert "--reference 'zzz'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 1
    assert "do not cover the same images" in capsys.readouterr().err
