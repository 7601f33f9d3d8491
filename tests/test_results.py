"""The committed ablations (results/ablation-cpu*), recomputed independently.

The run folders keep every method's predictions. Here the stored numbers
(each network's ``metrics.json`` and the run's ``table.md``) are checked against
scikit-learn's macro-F1 of those predictions and against a cluster bootstrap
written out in this file with NumPy (not coolcore's), within the Monte-Carlo
error of 1000 replicates. Retraining is not part of the test (an hour and more
on 2 cores); the command that made the run is in its ``run.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from coolcore import CLASS_NAMES
from coolcore.runs.folder import RunFolder
from coolcore.train.config import load_config
from coolcore.train.methods import ABLATION_METHODS

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "ablation-cpu": list(ABLATION_METHODS),  # every row of the paper's Table I
    "ablation-cpu-observed": ["baseline", "all"],
}
BASELINE_FILES = {
    "c_SB (literature)": "c_SB_literature_predictions.csv",
    "c_SB (fit)": "c_SB_fit_predictions.csv",
    "c_scaled (fit)": "c_scaled_fit_predictions.csv",
}
CI_TOLERANCE = 0.012  # Monte-Carlo error of a 2.5% quantile over 1000 replicates, and more


@pytest.fixture(scope="module", params=list(RUNS))
def run(request) -> Path:
    path = ROOT / "results" / request.param
    assert (path / "run.json").is_file(), f"{path} is missing: the README quotes it"
    return path


def _predictions(run: Path) -> dict[str, pd.DataFrame]:
    """Every method's first-repeat predictions, read with pandas from the known paths."""
    out = {}
    for name, file in BASELINE_FILES.items():
        if (run / file).is_file():
            out[name] = pd.read_csv(run / file, dtype={"image_id": str, "cluster_id": str})
    for method in RUNS[run.name]:
        slug = method.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")
        path = run / slug / "rep_00" / "predictions.csv"
        out[method] = pd.read_csv(path, dtype={"image_id": str, "cluster_id": str})
    return out


def _table_rows(run: Path) -> dict[str, list[str]]:
    """Method -> cells of its first row in the committed table.md."""
    rows = {}
    for line in (run / "table.md").read_text().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0]:
            rows[cells[0]] = cells
    return rows


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Macro-F1 of integer labels (0..2) from a confusion matrix, zero division -> 0."""
    cm = np.bincount(3 * y + p, minlength=9).reshape(3, 3).astype(float)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(3), where=denom > 0)
    return float(f1.mean())


def _cluster_bootstrap(preds: pd.DataFrame, n_boot: int = 1000, seed: int = 12345):
    """95% percentile interval of macro-F1, resampling clusters with replacement."""
    index = {c: i for i, c in enumerate(CLASS_NAMES)}
    y = preds["label"].map(index).to_numpy()
    p = preds["predicted"].map(index).to_numpy()
    clusters, inverse = np.unique(preds["cluster_id"].to_numpy(), return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(clusters))]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        chosen = rng.integers(0, len(clusters), len(clusters))
        rows = np.concatenate([members[c] for c in chosen])
        values[b] = _macro_f1(y[rows], p[rows])
    return np.quantile(values, [0.025, 0.975])


def test_the_run_is_the_cpu_preset_with_every_method(run):
    record = json.loads((run / "run.json").read_text())
    assert record["kind"] == "ablation" and record["sweep"] is None
    assert record["n_images"] == 954 and record["n_clusters"] == 318
    # the cpu preset as it was then: each map scaled on its own (one scale since 2026-12-07)
    cfg = load_config("cpu", ["preprocess.scaling=image"])
    recorded = record["config"]["preprocess"]
    # field_kpc (observations only) came after these runs; every key they recorded agrees
    assert set(cfg["preprocess"]) - set(recorded) <= {"field_kpc"}
    assert all(recorded[k] == cfg["preprocess"][k] for k in recorded)
    # the cpu preset as it was before the training recipe: 8 epochs, StepLR after 6
    assert record["config"]["train"]["epochs"] == 8
    assert record["config"]["train"]["step_size"] == 6
    assert record["config"]["cv"]["folds"] == cfg["cv"]["folds"]
    for method, preds in _predictions(run).items():
        assert len(preds) == 954 and preds["image_id"].is_unique, method
    assert not list(run.rglob("*.ckpt"))  # no checkpoint is committed


def test_metrics_json_agree_with_sklearn(run):
    for method in RUNS[run.name]:
        rep = RunFolder(run).method_run(method, 0)
        preds = pd.read_csv(rep.predictions_path)
        metrics = json.loads(rep.metrics_path.read_text())
        expected = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert metrics["macro_f1"] == pytest.approx(expected, abs=1e-12)


def test_table_numbers_recomputed_independently(run):
    rows = _table_rows(run)
    predictions = _predictions(run)
    assert set(rows) == set(predictions)
    for method, preds in predictions.items():
        cells = rows[method]
        assert cells[1] == "1"  # one repeat
        macro = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert float(cells[2]) == pytest.approx(macro, abs=5e-4), method
        low, high = (float(v) for v in cells[3].strip("[]").split(","))
        ref_low, ref_high = _cluster_bootstrap(preds)
        assert low == pytest.approx(ref_low, abs=CI_TOLERANCE), method
        assert high == pytest.approx(ref_high, abs=CI_TOLERANCE), method
        assert low < macro < high


def test_an_old_run_is_summarised_from_its_predictions(run):
    """Runs made before results.csv existed: the summary comes from their predictions."""
    folder = RunFolder(run)
    assert not folder.results_path.is_file()
    summary = folder.ablation_summary().set_index("method")
    for method, preds in _predictions(run).items():
        macro = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert summary.loc[method, "macro_f1_mean"] == pytest.approx(macro, abs=1e-12)


# --------------------------------------------------------------------------- domain shift
SHIFT = ROOT / "results" / "shift-cpu"
# 106 test clusters: the bootstrap's standard deviation reaches 0.06, so a 2.5% quantile
# of the table's 1000 replicates has a Monte-Carlo error of about 0.005; 4 times that
SHIFT_CI_TOLERANCE = 0.02


@pytest.mark.skipif(
    not (SHIFT / "domain_shift.csv").is_file(), reason="the domain-shift table is not committed"
)
def test_domain_shift_table_recomputed_from_its_predictions():
    """benchmarks/domain_shift.py's table against scikit-learn and the bootstrap above,
    from the predictions it saved; the README quotes this table."""
    from sklearn.metrics import balanced_accuracy_score

    table = pd.read_csv(SHIFT / "domain_shift.csv")
    assert {"emissivity", "xmm"} <= set(table["train"])
    assert {"emissivity", "xmm", "chandra", "erosita"} <= set(table["test"])
    for row in table.itertuples(index=False):
        kind = "network" if row.method.startswith("network") else "c_SB"
        preds = pd.read_csv(
            SHIFT / "predictions" / f"{row.train}__{row.test}__{kind}.csv",
            dtype={"image_id": str, "cluster_id": str},
        )
        assert len(preds) == row.n_maps and preds["image_id"].is_unique
        macro = f1_score(
            preds["label"], preds["predicted"], labels=list(CLASS_NAMES), average="macro"
        )
        assert row.macro_f1 == pytest.approx(macro, abs=1e-4)
        balanced = balanced_accuracy_score(preds["label"], preds["predicted"])
        assert row.balanced_accuracy == pytest.approx(balanced, abs=1e-4)
        low, high = _cluster_bootstrap(preds, n_boot=4000)
        assert row.ci_low == pytest.approx(low, abs=SHIFT_CI_TOLERANCE)
        assert row.ci_high == pytest.approx(high, abs=SHIFT_CI_TOLERANCE)
    for name in ("emissivity", "xmm"):  # the models: the cpu preset on 954 maps
        record = json.loads((SHIFT / name / "run.json").read_text())
        assert record["kind"] == "cv" and record["n_images"] == 954
    assert not list(SHIFT.rglob("*.ckpt"))


# --------------------------------------------------------------------------- seeded tables
SEEDED = ROOT / "results" / "recipe-cpu"
SEED_NETWORKS = ("baseline", "all")


def _seed_runs() -> dict[str, list[Path]]:
    """``{sample: [SAMPLE-sK folders]}`` of the committed seeded ablations."""
    out: dict[str, list[Path]] = {}
    for path in sorted(SEEDED.glob("*-s[0-9]*")):
        if (path / "run.json").is_file() and _kind(path) == "ablation":
            out.setdefault(path.name.rsplit("-s", 1)[0], []).append(path)
    return out


def _kind(path: Path) -> str:
    return json.loads((path / "run.json").read_text())["kind"]


def _regression_seeds() -> dict[str, list[Path]]:
    """Cooling-time cv runs by name: ``NAME`` (seed 0) and ``NAME-sK``."""
    out: dict[str, list[Path]] = {}
    for path in sorted(SEEDED.glob("regression-*")):
        if (path / "run.json").is_file() and _kind(path) == "cv":
            name = path.name.rsplit("-s", 1)[0] if "-s" in path.name[-4:] else path.name
            out.setdefault(name, []).append(path)
    return out


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image_id": str, "cluster_id": str}).sort_values("image_id")


def _codes(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy()


def _two_level(y, preds, clusters, n_boot=1000, seed=777, minus=None):
    """Mean macro-F1 over seeds, resampling clusters and seeds (written here with NumPy),
    less that of the predictions ``minus`` on the same clusters; returns the replicates."""
    ids, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(ids))]
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        rows = np.concatenate([members[c] for c in rng.integers(0, len(ids), len(ids))])
        drawn = rng.integers(0, len(preds), len(preds))
        out[b] = np.mean([_macro_f1(y[rows], preds[r][rows]) for r in drawn])
        if minus is not None:
            out[b] -= _macro_f1(y[rows], minus[rows])
    return out


def _ece(probs: np.ndarray, y: np.ndarray) -> float:
    conf, correct = probs.max(1), probs.argmax(1) == y
    total = 0.0
    for b in range(10):
        inside = (conf >= b / 10) & ((conf < (b + 1) / 10) | (b == 9))
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return total


def _grid_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    logp = np.log(np.clip(probs, 1e-12, None))
    best, best_nll = 1.0, np.inf
    for t in grid:
        z = logp / t
        z = z - z.max(1, keepdims=True)
        nll = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean()
        if nll < best_nll:
            best, best_nll = t, nll
    return best


def _md_rows(text: str, first: str) -> dict[str, list[str]]:
    """Rows of the Markdown tables in ``text`` whose header starts with ``first``."""
    rows, inside = {}, False
    for line in text.splitlines():
        if line.startswith(f"| {first} |"):
            inside = True
            continue
        if inside and line.startswith("|---"):
            continue
        if inside and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
        else:
            inside = False
    return rows


@pytest.mark.parametrize("sample", sorted(_seed_runs()) or ["missing"])
def test_seeded_table_recomputed_independently(sample):
    """results/recipe-cpu/tables.md (benchmarks/seed_table.py, quoted in the README)
    against scikit-learn, a two-level bootstrap and an ECE and temperature written here."""
    from sklearn.metrics import balanced_accuracy_score, recall_score

    runs = _seed_runs().get(sample)
    assert runs, f"{SEEDED}: no committed seeded ablation; the README quotes them"
    text = (SEEDED / "tables.md").read_text()
    section = text.split(f"### {sample} sample")[1].split("### ")[0]
    rows = _md_rows(section, "method")
    readme = (ROOT / "README.md").read_text()
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            assert line in readme, f"README lacks the row {line!r}"
    networks = [m for m in SEED_NETWORKS if (runs[0] / m).is_dir()]  # all, or baseline alone
    assert "baseline" in networks
    conc = _read(runs[0] / "c_SB_fit_predictions.csv")
    y, clusters = _codes(conc, "label"), conc["cluster_id"].to_numpy()
    ref = _codes(conc, "predicted")
    for method in networks:
        frames = [_read(run / method / "rep_00" / "predictions.csv") for run in runs]
        assert all((f["image_id"].to_numpy() == conc["image_id"].to_numpy()).all() for f in frames)
        preds = [_codes(f, "predicted") for f in frames]
        scores = [f1_score(y, p, average="macro") for p in preds]
        cells = rows[method]
        assert cells[1] == str(len(runs))
        mean_std = f"{np.mean(scores):.3f}" + (
            f" ± {np.std(scores, ddof=1):.3f}" if len(runs) > 1 else ""
        )
        assert cells[2] == mean_std
        reps = _two_level(y, preds, clusters)
        low, high = (float(v) for v in cells[3].strip("[]").split(","))
        assert low == pytest.approx(np.quantile(reps, 0.025), abs=CI_TOLERANCE)
        assert high == pytest.approx(np.quantile(reps, 0.975), abs=CI_TOLERANCE)
        diff = float(cells[4].split(" ")[0])
        assert diff == pytest.approx(np.mean(scores) - f1_score(y, ref, average="macro"), abs=6e-4)
        balanced = np.mean([balanced_accuracy_score(y, p) for p in preds])
        assert float(cells[5].split(" ")[0]) == pytest.approx(balanced, abs=6e-4)
        recall = np.mean([recall_score(y, p, average=None) for p in preds], axis=0)
        assert [c.rstrip("%") for c in cells[6:9]] == [f"{100 * r:.0f}" for r in recall]
    # the profile baseline (one fit, no seed) and each network's paired difference to it
    prof_path = runs[0] / "profile_fit_predictions.csv"
    assert prof_path.is_file(), f"{runs[0]}: no profile baseline (benchmarks/add_baselines.py)"
    if prof_path.is_file():
        prof = _codes(_read(prof_path), "predicted")
        f_prof = f1_score(y, prof, average="macro")
        assert rows["profile (fit)"][2] == f"{f_prof:.3f}"
        against = _md_rows(section, "against profile (fit)")
        for method in networks:
            preds = [_codes(_read(run / method / "rep_00" / "predictions.csv"), "predicted")
                     for run in runs]  # fmt: skip
            diff = np.mean([f1_score(y, p, average="macro") for p in preds]) - f_prof
            reps = _two_level(y, preds, clusters, minus=prof)
            cell = against[method][2]
            assert float(cell.split(" ")[0]) == pytest.approx(diff, abs=6e-4)
            low, high = (float(v) for v in cell.split(" ", 1)[1].strip("[]").split(","))
            assert low == pytest.approx(np.quantile(reps, 0.025), abs=CI_TOLERANCE)
            assert high == pytest.approx(np.quantile(reps, 0.975), abs=CI_TOLERANCE)
    # calibration: each seed's ECE before and after temperature scaling, recomputed
    cal = _md_rows(section, "network")
    for method in networks:
        before, after = [], []
        for run in runs:
            tests, scaled = [], []
            for fold in sorted((run / method / "rep_00").glob("fold_*")):
                val, test = _read(fold / "val_predictions.csv"), _read(fold / "predictions.csv")
                cols = [f"p_{c}" for c in CLASS_NAMES]
                t = _grid_temperature(val[cols].to_numpy(), _codes(val, "label"))
                z = np.log(np.clip(test[cols].to_numpy(), 1e-12, None)) / t
                e = np.exp(z - z.max(1, keepdims=True))
                tests.append(test)
                scaled.append(e / e.sum(1, keepdims=True))
            every = pd.concat(tests)
            yy, p = _codes(every, "label"), every[[f"p_{c}" for c in CLASS_NAMES]].to_numpy()
            before.append(_ece(p, yy))
            after.append(_ece(np.concatenate(scaled), yy))
        cells = cal[method]
        assert float(cells[2].split(" ")[0]) == pytest.approx(np.mean(before), abs=6e-4)
        assert float(cells[3].split(" ")[0]) == pytest.approx(np.mean(after), abs=2e-3)
    for run in runs:
        assert not list(run.rglob("*.ckpt"))


@pytest.mark.parametrize(
    "name", ["regression-default-w0.2", "regression-dataset-w0.2", "regression-xmm-dataset-w0.2"]
)
def test_cooling_time_run_recomputed(name):
    """The README's cooling-time figures (results/recipe-cpu/regression-*-w0.2):
    scatter and 68/95% coverage of the network recomputed from its predictions."""
    from scipy.stats import norm

    run = SEEDED / name
    preds = pd.read_csv(run / "predictions.csv")
    assert len(preds) == 954 and not list(run.rglob("*.ckpt"))
    residual = np.log10(preds["t_cool_gyr"]) - preds["log10_tcool"]
    z = np.abs(residual) / preds["log10_tcool_sigma"]
    net = json.loads((run / "metrics.json").read_text())["regression"]["network"]
    assert net["scatter_dex"] == pytest.approx(np.std(residual, ddof=1), abs=1e-3)
    assert net["coverage_68"] == pytest.approx(np.mean(z <= norm.ppf(0.84)), abs=1e-9)
    assert net["coverage_95"] == pytest.approx(np.mean(z <= norm.ppf(0.975)), abs=1e-9)
    readme = (ROOT / "README.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    prof = metrics["regression"]["profile"]
    if name == "regression-default-w0.2":
        assert f"scatter {prof['scatter_dex']:.2f} dex" in readme
        assert f"{prof['mad_dex']:.3f} dex against the network's {net['mad_dex']:.3f}" in readme
        assert f"{100 * prof['coverage_68']:.1f}% and {100 * prof['coverage_95']:.1f}%" in readme
    elif name == "regression-xmm-dataset-w0.2":
        low, high = net["scatter_dex_ci"]
        assert f"{net['scatter_dex']:.3f} dex [{low:.3f}, {high:.3f}] against" in readme
        assert f"{prof['scatter_dex']:.3f} [{prof['scatter_dex_ci'][0]:.3f}," in readme
        assert f"with the head: {metrics['macro_f1']:.3f}" in readme
        # "tighter than the profile ridge by D dex [LOW, HIGH]": a cluster bootstrap here
        base = _read(run / "regression_baselines.csv")
        first = _read(run / "predictions.csv")
        y = np.log10(first["t_cool_gyr"]).to_numpy()
        r_net, r_prof = y - first["log10_tcool"].to_numpy(), y - base["profile_mu"].to_numpy()
        ids, inverse = np.unique(first["cluster_id"].to_numpy(), return_inverse=True)
        members = [np.flatnonzero(inverse == c) for c in range(len(ids))]
        rng = np.random.default_rng(777)
        diffs = []
        for _ in range(1000):
            rows = np.concatenate([members[c] for c in rng.integers(0, len(ids), len(ids))])
            diffs.append(np.std(r_prof[rows], ddof=1) - np.std(r_net[rows], ddof=1))
        d = np.std(r_prof, ddof=1) - np.std(r_net, ddof=1)
        flat = " ".join(readme.split())
        stated = re.search(
            r"tighter than the profile ridge by ([\d.]+) dex \[([\d.]+), ([\d.]+)\]", flat
        )
        assert float(stated[1]) == pytest.approx(d, abs=5e-4)
        low, high = float(stated[2]), float(stated[3])
        # seed 1 beside it: the two seeds' mean and std of the scatter, with NumPy
        second = _read(SEEDED / f"{name}-s1" / "predictions.csv")
        r_two = [r_net, np.log10(second["t_cool_gyr"]).to_numpy() - second["log10_tcool"]]
        scat = [np.std(r, ddof=1) for r in r_two]
        assert f"over the two seeds {np.mean(scat):.3f} ± {np.std(scat, ddof=1):.3f} dex" in flat
        np.testing.assert_allclose([low, high], np.quantile(diffs, [0.025, 0.975]), atol=0.006)
    else:
        low, high = net["scatter_dex_ci"]
        assert f"{net['scatter_dex']:.2f} dex [{low:.2f}, {high:.2f}] against" in readme
        assert f"{prof['scatter_dex']:.2f} dex [{prof['scatter_dex_ci'][0]:.2f}," in readme
        assert f"classification with the head: {metrics['macro_f1']:.3f}" in readme
    assert f"{net['scatter_dex']:.2f} dex" in readme
    assert (
        f"{100 * net['coverage_68']:.1f}%" in readme
        and f"{100 * net['coverage_95']:.1f}%" in readme
    )
    # the sigmas scaled per fold: each factor from its validation maps, the coverage again
    scaled = metrics["regression"]["network_scaled"]
    factor = np.empty(len(preds))
    for k in range(5):
        val = pd.read_csv(run / f"fold_{k:02d}" / "val_predictions.csv")
        zv = (np.log10(val["t_cool_gyr"]) - val["log10_tcool"]) / val["log10_tcool_sigma"]
        assert scaled["sigma_scale"][k] == pytest.approx(np.sqrt(np.mean(zv**2)), rel=1e-9)
        factor[(preds["fold"] == k).to_numpy()] = np.sqrt(np.mean(zv**2))
    for level, key in ((0.84, "coverage_68"), (0.975, "coverage_95")):
        assert scaled[key] == pytest.approx(np.mean(z / factor <= norm.ppf(level)), abs=1e-9)
        assert f"{100 * scaled[key]:.1f}%" in readme


@pytest.mark.parametrize("sample", ["default", "xmm"])
def test_profile_diagnostic_agrees_with_the_seeded_table(sample):
    """results/recipe-cpu/profile-diagnostic-SAMPLE.md (benchmarks/profile_diagnostic.py)
    refits profile (fit) itself: its row equals the seeded table's (same folds, same
    bootstrap), so do the networks' rows when it was made with as many seeds, and the
    README quotes its shape row."""
    diag = _md_rows((SEEDED / f"profile-diagnostic-{sample}.md").read_text(), "method")
    text = (SEEDED / "tables.md").read_text()
    seeded = _md_rows(text.split(f"### {sample} sample")[1].split("### ")[0], "method")
    assert diag["profile (fit)"][:4] == seeded["profile (fit)"][:4]
    for method in ("baseline", "all"):
        if diag[method][1] == seeded[method][1]:
            assert diag[method][:4] == seeded[method][:4], method
    shape = diag["profile shape"]
    assert f"{shape[2]} {shape[3]}" in (ROOT / "README.md").read_text()


def test_cooling_time_seed_tables_recomputed():
    """The README's cooling-time tables (benchmarks/seed_table.py, names with three seeds
    or more): scatter and scaled coverage per seed with NumPy, each fold's sigma factor
    from its validation maps, and a two-level bootstrap written here."""
    from scipy.stats import norm

    readme = (ROOT / "README.md").read_text()
    groups = {k: v for k, v in _regression_seeds().items() if len(v) >= 3}
    assert ("### cooling time:" in readme) == bool(groups)
    for name, runs in groups.items():
        section = readme.split(f"### cooling time: {name} ")[1].split("### ")[0]
        rows = _md_rows(section, "estimate")
        base = _read(runs[0] / "regression_baselines.csv")
        scatter, coverage, frames = [], [], []
        for run in runs:
            preds = _read(run / "predictions.csv")
            factor = np.empty(len(preds))
            for k in range(5):
                val = pd.read_csv(run / f"fold_{k:02d}" / "val_predictions.csv")
                zv = (np.log10(val["t_cool_gyr"]) - val["log10_tcool"]) / val["log10_tcool_sigma"]
                factor[(preds["fold"] == k).to_numpy()] = np.sqrt(np.mean(zv**2))
            r = (np.log10(preds["t_cool_gyr"]) - preds["log10_tcool"]).to_numpy()
            scatter.append(np.std(r, ddof=1))
            z = np.abs(r) / (preds["log10_tcool_sigma"].to_numpy() * factor)
            coverage.append(np.mean(z <= norm.ppf(0.84)))
            frames.append(r)
        cells = rows["network, sigma scaled per fold"]
        assert cells[1] == str(len(runs))
        assert cells[2] == f"{np.mean(scatter):.3f} ± {np.std(scatter, ddof=1):.3f}"
        cov = f"{100 * np.mean(coverage):.1f} ± {100 * np.std(coverage, ddof=1):.1f}%"
        assert cells[6] == cov
        first = _read(runs[0] / "predictions.csv")
        assert (first["image_id"].to_numpy() == base["image_id"].to_numpy()).all()
        clusters = first["cluster_id"].to_numpy()
        prof = np.log10(first["t_cool_gyr"]).to_numpy() - base["profile_mu"].to_numpy()
        ids, inverse = np.unique(clusters, return_inverse=True)
        members = [np.flatnonzero(inverse == c) for c in range(len(ids))]
        rng = np.random.default_rng(777)
        reps, diffs = np.empty(1000), np.empty(1000)
        for b in range(1000):
            rows_b = np.concatenate([members[c] for c in rng.integers(0, len(ids), len(ids))])
            drawn = rng.integers(0, len(runs), len(runs))
            reps[b] = np.mean([np.std(frames[d][rows_b], ddof=1) for d in drawn])
            diffs[b] = reps[b] - np.std(prof[rows_b], ddof=1)
        low, high = (float(v) for v in cells[3].strip("[]").split(", "))
        np.testing.assert_allclose([low, high], np.quantile(reps, [0.025, 0.975]), atol=0.006)
        d_low, d_high = (float(v) for v in cells[4].split("[")[1].strip("]").split(", "))
        np.testing.assert_allclose([d_low, d_high], np.quantile(diffs, [0.025, 0.975]), atol=0.006)
        profile_row = rows["profile ridge"]
        assert profile_row[2] == f"{np.std(prof, ddof=1):.3f}"


def test_a1835_worked_example_matches_its_table():
    """results/a1835/README.md quotes results/a1835/a1835.csv (benchmarks/a1835_tcool.sh)."""
    row = pd.read_csv(ROOT / "results" / "a1835" / "a1835.csv").iloc[0]
    text = " ".join((ROOT / "results" / "a1835" / "README.md").read_text().split())
    assert row["predicted"] == "CC" and row["predicted_from_tcool"] == "CC"
    assert f"CC (p = {row['p_CC']:.2f} CC, {row['p_WCC']:.2f} WCC, {row['p_NCC']:.2f} NCC)" in text
    mu, sigma = row["log10_tcool"], row["log10_tcool_sigma"]
    assert f"{mu:.3f} ± {sigma:.3f} (t_cool {10**mu:.2f} Gyr, 68% interval" in text
    assert f"{10 ** (mu - sigma):.2f}-{10 ** (mu + sigma):.2f} Gyr" in text
    assert "EMOS2" in row["warning"] and "EPN" in row["warning"]
