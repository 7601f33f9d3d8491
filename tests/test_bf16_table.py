"""benchmarks/bf16_table.py (issue 13) on run folders written here by hand, and the
committed results/bf16-cpu runs recomputed independently (scikit-learn's macro-F1 of
their predictions; the precision each fold recorded against the run's name)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bf16_table", ROOT / "benchmarks" / "bf16_table.py")
bf16_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bf16_table)

COMMITTED = ROOT / "results" / "bf16-cpu"


def _run(folder: Path, name: str, precision: str, f1: float, seconds: list[float], probs) -> None:
    run = folder / name
    for k, s in enumerate(seconds):
        (run / f"fold_{k:02d}").mkdir(parents=True)
        info = {"precision": precision, "seconds": s}
        (run / f"fold_{k:02d}" / "fold.json").write_text(json.dumps(info))
    (run / "metrics.json").write_text(json.dumps({"macro_f1": f1}))
    frame = pd.DataFrame(probs, columns=["p_CC", "p_WCC", "p_NCC"])
    frame.insert(0, "image_id", [f"m{i}" for i in range(len(frame))])
    frame.to_csv(run / "predictions.csv", index=False)


def test_table_by_hand(tmp_path) -> None:
    p = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    _run(tmp_path, "fp32-s0", "32-true", 0.70, [60, 60], p)
    _run(tmp_path, "fp32-s1", "32-true", 0.74, [90, 90], p)
    _run(tmp_path, "bf16-s0", "bf16-mixed", 0.72, [30, 30], p)
    _run(tmp_path, "bf16-s1", "bf16-mixed", 0.71, [60, 60], p)
    _run(tmp_path, "bf16-s0-again", "bf16-mixed", 0.72, [30, 30], p + [[0, 1e-6, -1e-6], [0, 0, 0]])
    (tmp_path / "bf16-s2.partial").mkdir()  # unfinished: ignored
    s = bf16_table.summarise(tmp_path)
    f, b = s["per_precision"]["fp32"], s["per_precision"]["bf16"]
    assert f["seeds"] == b["seeds"] == 2
    assert f["macro_f1_mean"] == pytest.approx(0.72)
    assert f["macro_f1_std"] == pytest.approx(np.std([0.70, 0.74], ddof=1))
    assert f["minutes_mean"] == pytest.approx((2 + 3) / 2)
    assert s["speedup_per_seed"] == pytest.approx([2.0, 1.5])
    assert s["speedup_median"] == pytest.approx(1.75)
    assert s["repeat_identical"] is False and s["repeat_max_abs_diff"] == pytest.approx(1e-6)
    text = bf16_table.format_table(s)
    assert "bf16 - fp32 macro-F1: -0.005" in text and "within the spread" in text
    assert "DIFFERENT" in text and "median 1.75x" in text
    # the same predictions give "identical"
    _run(tmp_path, "x", "bf16-mixed", 0.72, [30], p)
    assert bf16_table.same_predictions(tmp_path / "bf16-s0", tmp_path / "x") == (True, 0.0)


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="results/bf16-cpu not committed yet")
def test_committed_runs_recomputed() -> None:
    runs = [p for p in COMMITTED.iterdir() if p.is_dir()]
    assert runs
    for run in runs:
        want = "32-true" if run.name.startswith("fp32") else "bf16-mixed"
        folds = sorted(run.glob("fold_*/fold.json"))
        assert folds and {json.loads(f.read_text())["precision"] for f in folds} == {want}
        pred = pd.read_csv(run / "predictions.csv")
        f1 = f1_score(pred["label"], pred["predicted"], average="macro")
        stored = json.loads((run / "metrics.json").read_text())["macro_f1"]
        assert stored == pytest.approx(f1, abs=1e-9)
    s = bf16_table.summarise(COMMITTED)
    assert s["per_precision"]["fp32"]["seeds"] >= 3 and s["per_precision"]["bf16"]["seeds"] >= 3
