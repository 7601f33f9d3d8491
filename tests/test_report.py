"""Reports of cv and ablation runs: Markdown with relative links, self-contained HTML."""

from __future__ import annotations

import base64
import json
import re

import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score
from test_explain import light_copy
from test_inference import run_cli, trained_run

from coolcore import CLASS_NAMES
from coolcore.errors import DataError, UsageError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("inference"))


def _embedded_images(html_text: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html_text)
    ]


def test_cv_report_numbers_figures_and_sections(built, tmp_path):
    from coolcore.apps.report import write_report

    run = light_copy(built["run"], tmp_path / "run")
    md_path = write_report(run)
    assert md_path == run / "report.md"
    md = md_path.read_text()
    html_text = (run / "report.html").read_text()
    preds = pd.read_csv(run / "predictions.csv", dtype={"image_id": str})
    # independent: scikit-learn on predictions.csv
    macro = f1_score(
        preds["label"],
        preds["predicted"],
        average="macro",
        labels=list(CLASS_NAMES),
        zero_division=0,
    )
    assert f"| macro-F1 | {macro:.3f} |" in md
    cm = confusion_matrix(preds["label"], preds["predicted"], labels=list(CLASS_NAMES))
    for c, row in zip(CLASS_NAMES, cm, strict=True):
        assert f"| true {c} | " + " | ".join(str(v) for v in row) + " |" in md
    for heading in (
        "## Results",
        "## Confusion matrix",
        "## Learning curves",
        "## Explained examples",
        "## Configuration",
        "## Data",
        "## Versions",
    ):
        assert heading in md
        assert f"<h2>{heading[3:]}</h2>" in html_text
    # Markdown links figures relatively; the HTML embeds the same PNG bytes
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["confusion_matrix.png", "learning_curves.png", "explain/grid.png"]
    assert _embedded_images(html_text) == [(run / p).read_bytes() for p in links]
    assert 'src="' not in html_text.replace('src="data:image/png;base64,', "")
    assert "variant: all" in md and "<pre><code>" in html_text  # the config
    assert (
        str(built["data"]) in md
        and json.loads((run / "run.json").read_text())["data_checksum"] in md
    )
    assert "CC 8 (33%), WCC 8 (33%), NCC 8 (33%)" in md
    import torch

    assert f"| torch | `{torch.__version__}` |" in md


def test_report_notes_missing_data_instead_of_failing(built, tmp_path):
    from coolcore.apps.report import write_report

    run = light_copy(built["run"], tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    record["data"] = str(tmp_path / "gone")
    (run / "run.json").write_text(json.dumps(record))
    md = write_report(run).read_text()
    assert "Not drawn:" in md and "are not there" in md
    assert "is not on this machine any more" in md


def test_ablation_report(built, tmp_path):
    from coolcore.apps.report import write_report
    from coolcore.evaluate.plots import plot_ablation
    from coolcore.evaluate.tables import ablation_summary
    from coolcore.runs.folder import RunFolder

    abl = tmp_path / "abl"
    abl.mkdir()
    for method in ("baseline", "all"):
        light_copy(built["run"], abl / method / "rep_00")
    preds = pd.read_csv(
        built["run"] / "predictions.csv", dtype={"image_id": str, "cluster_id": str}
    )
    conc = preds.assign(predicted=preds["label"].map({"CC": "CC", "WCC": "NCC", "NCC": "NCC"}))
    conc.to_csv(abl / "c_SB_literature_predictions.csv", index=False)
    results = {"baseline": [preds], "all": [preds], "c_SB (literature)": [conc]}
    plot_ablation(results, abl / "ablation.png", n_boot=50)
    record = json.loads((built["run"] / "run.json").read_text())
    record.update(kind="ablation", methods=["baseline", "all"], repeats=1, sweep=None)
    (abl / "run.json").write_text(json.dumps(record))
    (abl / "folds.csv").write_text((built["run"] / "folds.csv").read_text())
    # the results are data (results.csv); table.md is made from them, not read back
    table = RunFolder(abl).write_ablation_summary(ablation_summary(results, n_boot=50))
    assert (abl / "table.md").read_text() == table + "\n"
    (abl / "table.md").write_text("| garbage |\n")
    md = write_report(abl, explain=False).read_text()
    assert "garbage" not in md
    for line in table.splitlines()[2:]:  # every row of the table, from results.csv
        assert line in md
    html_text = (abl / "report.html").read_text()
    assert "ablation run `abl`" in md
    assert "| c_SB (literature) |" in md and "<td>c_SB (literature)</td>" in html_text
    # the baseline row of the confusion table, by hand: CC right, WCC -> NCC, NCC right
    counts = confusion_matrix(conc["label"], conc["predicted"], labels=list(CLASS_NAMES))
    macro = f1_score(conc["label"], conc["predicted"], average="macro", zero_division=0)
    cells = " | ".join("  ".join(str(v) for v in row) for row in counts)
    assert f"| `c_SB (literature)` | {macro:.3f} | {cells} |" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "ablation.png" in links and "all/rep_00/confusion_matrix.png" in links
    assert "baseline/rep_00/learning_curves.png" in links
    assert len(_embedded_images(html_text)) == len(links)


def test_report_refusals(built, tmp_path):
    from coolcore.apps.report import write_report

    with pytest.raises(UsageError, match="not a run folder"):
        write_report(tmp_path)
    run = light_copy(built["run"], tmp_path / "run")
    (run / "metrics.json").unlink()
    with pytest.raises(DataError, match="no metrics.json"):
        write_report(run)


def test_cli_report_prints_paths(built, tmp_path, capsys):
    run = light_copy(built["run"], tmp_path / "run")
    assert run_cli(["report", run, "--no-explain"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(run / "report.md"), str(run / "report.html")]
    assert run_cli(["report", tmp_path / "nowhere"]) == 2
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ablation-cpu", "ablation-cpu-observed"])
def test_report_reads_a_committed_run_made_before_results_csv(name):
    """The committed runs have table.md but no results.csv: the report summarises their
    predictions again; its macro-F1 column equals scikit-learn's on those predictions."""
    from pathlib import Path

    from coolcore.apps.render import render_markdown
    from coolcore.apps.report import report_blocks

    run = Path(__file__).resolve().parents[1] / "results" / name
    md = render_markdown(report_blocks(run, explain=False))
    for method in ("baseline", "all"):
        preds = pd.read_csv(run / method / "rep_00" / "predictions.csv")
        macro = f1_score(preds["label"], preds["predicted"], average="macro")
        assert f"| {method} | 1 | {macro:.3f} | [" in md
    assert not (run / "report.md").exists()
