"""The README's seeded tables, rebuilt from committed run folders (issue 12).

Usage::

    python benchmarks/seed_table.py results/recipe-cpu [--out results/recipe-cpu/tables.md]
        [--readme README.md]

(``make tables`` runs it with both: the Markdown goes to ``tables.md`` and replaces
what stands between the README's ``<!-- seed tables -->`` and ``<!-- /seed tables -->``.)

For each sample found in the folder (``SAMPLE-sK``: one ablation per training seed
K, made by ``benchmarks/recipe_seeds.sh``), with every finished seed:

1. the networks against the astronomers' concentration: macro-F1 mean ± std over
   the seeds, an interval over clusters and seeds, the paired difference to
   ``c_SB (fit)`` (thresholds fitted on the training folds), balanced accuracy and
   the recall of each class (Su et al. 2020's "accuracy per class"); then each
   network against ``profile (fit)``, the logistic regression on the
   surface-brightness profile (:mod:`coolcore.evaluate.profiles`), where the runs have it;
2. does attention help: ``all`` against ``baseline``, paired by seed, per class (F1);
3. whether the probabilities mean what they say: each seed's expected calibration
   error before and after temperature scaling (fitted per fold on its validation
   maps), and a reliability diagram of the first seed's best network
   (``reliability-SAMPLE.png``).

Then, for each cooling-time run of ``benchmarks/regression_default.sh`` with at least
three training seeds (``NAME``, ``NAME-s1``, ...): the scatter of log10 t_cool and the
coverage of the 68% and 95% intervals (sigma as trained, and scaled per fold on the
validation maps), mean ± std over the seeds with intervals over clusters and seeds,
beside the ridge regression on the profile and the line on c_SB (the run's
``regression_baselines.csv``), the scatter's difference paired on the same clusters
(:func:`coolcore.evaluate.tcool_report.seeded_regression`).

The numbers come from :func:`coolcore.evaluate.compare.compare_methods` (two-level
bootstrap, 1000 replicates, seed 0) and
:func:`coolcore.evaluate.calibration.calibration_report`;
tests/test_results.py recomputes them independently.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.apps.comparison import collect_methods
from coolcore.evaluate.calibration import calibration_report, fold_scaled_sigma
from coolcore.evaluate.compare import compare_methods, comparison_markdown
from coolcore.evaluate.plots import plot_reliability
from coolcore.evaluate.tcool_report import seeded_regression
from coolcore.runs.folder import RunFolder

REFERENCE = "c_SB (fit)"
SAMPLES: dict[str, str] = {
    "default": "emissivity maps, each scaled on its own",
    "xmm": "XMM-Newton mock observations of the same clusters",
    "default-dataset": "the default maps with one brightness scale for all "
    "(`preprocess.scaling=dataset`), the baseline network",
    "xmm-dataset": "the XMM-Newton mocks with one brightness scale for all (their surface "
    "luminosity, rate per kpc² × 4πD_L², `preprocess.scaling=dataset`), the baseline network",
}
"""The samples of ``benchmarks/recipe_seeds.sh`` in table order, with what they are."""
PROFILE = "profile (fit)"
NETWORKS = ("baseline", "all")
SU_2020 = "| Su et al. 2020: ResNet-18, mock Chandra TNG300 | – | – | – | – | – | 92% | 81% | 83% |"


def seed_runs(root: Path) -> dict[str, dict[int, Path]]:
    """``{sample: {seed: ablation folder}}`` of the finished ablations under ``root``."""
    out: dict[str, dict[int, Path]] = {}
    for path in sorted(root.iterdir()):
        m = re.fullmatch(r"(.+)-s(\d+)", path.name)
        if m and path.is_dir() and RunFolder(path).kind() == "ablation":
            out.setdefault(m.group(1), {})[int(m.group(2))] = path
    order = {name: k for k, name in enumerate(SAMPLES)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def sample_results(runs: dict[int, Path]) -> dict[str, list]:
    """``{method: [predictions per seed]}``: the networks of every seed, the astronomers'
    baselines once (they do not depend on the training seed; :mod:`coolcore.apps.comparison`)."""
    return collect_methods([str(path) for _, path in sorted(runs.items())])


def calibration_rows(runs: dict[int, Path], sample: str, root: Path) -> list[str]:
    """One Markdown row per network: ECE and NLL per seed before -> after temperature
    scaling, mean ± std; draws the first seed's reliability diagram of ``all``."""
    lines = [
        "| network | seeds | ECE as trained | ECE temperature-scaled | NLL as trained "
        "| NLL scaled | fold temperatures |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in NETWORKS:
        reports = []
        for seed, path in sorted(runs.items()):
            rep = RunFolder(path).method_run(method, 0)
            if not rep.path.is_dir():  # an ablation of the baseline alone
                continue
            n = len(rep.fold_dirs())
            vals = [rep.read_fold_validation(k) for k in range(n)]
            if any(v is None for v in vals):
                continue
            tests = [rep.read_fold_predictions(k) for k in range(n)]
            report, _ = calibration_report(tests, vals)
            reports.append(report)
            if method == "all" and len(reports) == 1:
                plot_reliability(
                    report,
                    root / f"reliability-{sample}.png",
                    title=f"{sample} sample, `all`, seed {seed}: reliability of the test folds",
                )
        if not reports:
            continue

        def pm(key, reports=reports):
            v = np.array([r[key] for r in reports])
            return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

        temps = np.concatenate([r["temperature"] for r in reports])
        lines.append(
            f"| {method} | {len(reports)} | {pm('ece')} | {pm('ece_scaled')} | {pm('nll')} "
            f"| {pm('nll_scaled')} | {temps.min():.2f} - {temps.max():.2f} |"
        )
    return lines


def attention_rows(results: dict[str, list]) -> list[str]:
    """``all`` minus ``baseline``, paired by seed: macro-F1 and each class's F1."""
    if not all(m in results for m in NETWORKS):
        return []
    table = compare_methods(
        {m: results[m] for m in NETWORKS}, reference="baseline", n_boot=1000, seed=0
    ).set_index("method")
    row = table.loc["all"]
    keys = ["macro_f1", *(f"f1_{c}" for c in CLASS_NAMES)]
    head = ["seeds", "Δ macro-F1", *(f"Δ F1 {c}" for c in CLASS_NAMES)]
    cells = [str(int(row["n_seeds"]))] + [
        f"{row[f'{k}_diff']:+.3f} [{row[f'{k}_diff_low']:+.3f}, {row[f'{k}_diff_high']:+.3f}]"
        for k in keys
    ]
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        "| " + " | ".join(cells) + " |",
    ]


def profile_rows(results: dict[str, list]) -> list[str]:
    """Each network minus ``profile (fit)`` (the logistic regression on the
    surface-brightness profile), paired on the same clusters."""
    if PROFILE not in results:
        return []
    table = compare_methods(
        {m: results[m] for m in (PROFILE, *NETWORKS) if m in results},
        reference=PROFILE,
        n_boot=1000,
        seed=0,
    ).set_index("method")
    lines = [f"| against {PROFILE} | seeds | Δ macro-F1 [95% CI] |", "|---|---|---|"]
    for method in NETWORKS:
        if method in table.index:
            row = table.loc[method]
            lines.append(
                f"| {method} | {int(row['n_seeds'])} | {row['macro_f1_diff']:+.3f} "
                f"[{row['macro_f1_diff_low']:+.3f}, {row['macro_f1_diff_high']:+.3f}] |"
            )
    return lines


def sample_section(sample: str, runs: dict[int, Path], root: Path) -> str:
    results = sample_results(runs)
    seeds = ", ".join(map(str, sorted(runs)))
    table = compare_methods(results, reference=REFERENCE, n_boot=1000, seed=0)
    attention = attention_rows(results)
    out = [
        f"### {sample} sample (training seeds {seeds})",
        "",
        *([f"{SAMPLES[sample][0].upper()}{SAMPLES[sample][1:]}.", ""] if sample in SAMPLES else []),
        f"Networks against the concentration; Δ is paired with `{REFERENCE}` on the same "
        "clusters; recall per class is Su et al.'s accuracy per class.",
        "",
        comparison_markdown(table, reference=REFERENCE).rstrip("\n"),
        SU_2020,
        "",
        *(
            [
                f"Against the stronger astronomers' baseline `{PROFILE}` (a logistic "
                "regression on the 12-annulus surface-brightness profile):",
                "",
                *profile_rows(results),
                "",
            ]
            if PROFILE in results
            else []
        ),
        *(
            [
                "Does attention help? `all` minus `baseline`, paired by seed and cluster:",
                "",
                *attention,
                "",
            ]
            if attention
            else []
        ),
        "Calibration of the test folds (each seed; temperature fitted per fold on its "
        "validation maps):",
        "",
        *calibration_rows(runs, sample, root),
        "",
    ]
    return "\n".join(out)


REGRESSION_RUNS: dict[str, str] = {
    "regression-default-w0.2": "`all` with the cooling-time head (`loss.regression_weight=0.2`) "
    "on the default sample, each map scaled on its own",
    "regression-dataset-w0.2": "`all` with the cooling-time head (`loss.regression_weight=0.2`) "
    "on the default sample with one brightness scale for all maps",
    "regression-xmm-dataset-w0.2": "`all` with the cooling-time head "
    "(`loss.regression_weight=0.2`) on the XMM-Newton mocks with one brightness scale",
}
"""The cv runs of ``benchmarks/regression_default.sh`` in table order, with what they are."""
MIN_SEEDS = 3  # a network row of the README's tables is at least three training seeds


def regression_runs(root: Path) -> dict[str, dict[int, Path]]:
    """``{name: {seed: cv run}}`` of the finished cooling-time runs under ``root``
    (``NAME`` is seed 0, ``NAME-sK`` seed K)."""
    out: dict[str, dict[int, Path]] = {}
    for path in sorted(root.glob("regression-*")):
        folder = RunFolder(path)
        if path.is_dir() and folder.kind() == "cv" and (path / "metrics.json").is_file():
            m = re.fullmatch(r"(.+?)(?:-s(\d+))?", path.name)
            seed = int(folder.read_record()["config"]["train"]["seed"])
            if seed != int(m.group(2) or 0):
                raise ValueError(f"{path}: its name says seed {m.group(2) or 0}, its config {seed}")
            out.setdefault(m.group(1), {})[seed] = path
    order = {name: k for k, name in enumerate(REGRESSION_RUNS)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _scaled(path: Path) -> pd.DataFrame:
    """A cv run's predictions with each fold's sigma times its factor (network_scaled)."""
    folder = RunFolder(path)
    frame = folder.read_predictions()
    scales = folder.read_metrics()["regression"]["network_scaled"]["sigma_scale"]
    return frame.assign(log10_tcool_sigma=fold_scaled_sigma(frame, scales))


def regression_section(name: str, runs: dict[int, Path]) -> str:
    """The cooling-time table of one run's seeds (:func:`seeded_regression`)."""
    paths = [runs[k] for k in sorted(runs)]
    baselines = RunFolder(paths[0]).read_regression_baselines()
    raw = seeded_regression([RunFolder(p).read_predictions() for p in paths], baselines)
    scaled = seeded_regression([_scaled(p) for p in paths])["network"]
    head = (
        "| estimate | seeds | scatter (dex) | 95% CI (clusters, seeds) | Δ scatter vs "
        "profile ridge [95% CI] | MAD (dex) | 68% interval covers | 95% interval covers |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]

    def pm(block, key, scale=1.0, digits=3):
        text = f"{scale * block[key]:.{digits}f}"
        return text + (f" ± {scale * block[key + '_std']:.{digits}f}" if block["seeds"] > 1 else "")

    def cells(label, block, delta, mad):
        low, high = block["scatter_dex_ci"]
        return (
            f"| {label} | {block['seeds']} | {pm(block, 'scatter_dex')} | [{low:.3f}, {high:.3f}] "
            f"| {delta} | {mad} | {pm(block, 'coverage_68', 100, 1)}% "
            f"| {pm(block, 'coverage_95', 100, 1)}% |"
        )

    net = raw["network"]
    delta = "–"
    if "profile" in raw:
        low, high = net["delta_scatter_vs_profile_ci"]
        delta = f"{net['delta_scatter_vs_profile']:+.3f} [{low:+.3f}, {high:+.3f}]"
    lines.append(cells("network, sigma as trained", net, delta, f"{net['mad_dex']:.3f}"))
    lines.append(cells("network, sigma scaled per fold", scaled, delta, f"{net['mad_dex']:.3f}"))
    for key, label in (("profile", "profile ridge"), ("concentration", "concentration line")):
        if key in raw:
            lines.append(cells(label, raw[key], "–", "–"))
    seeds = ", ".join(map(str, sorted(runs)))
    what = REGRESSION_RUNS.get(name, name)
    return "\n".join([
        f"### cooling time: {name} (training seeds {seeds})",
        "",
        f"{what[0].upper()}{what[1:]}: log10 t_cool of each map with a Gaussian sigma, "
        "beside a ridge regression on the 12-annulus profile and a line on log10 c_SB "
        "fitted on the same training folds; Δ is paired on the same clusters (negative: "
        "the network is tighter).",
        "",
        *lines,
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder of SAMPLE-sK ablation runs")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    parser.add_argument(
        "--readme", type=Path, help="replace the README's part between the seed-table markers"
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"seed_table.py: {args.root}: no such folder", file=sys.stderr)
        return 2
    samples = seed_runs(args.root)
    if not samples:
        print(f"seed_table.py: {args.root}: no finished SAMPLE-sK ablation runs", file=sys.stderr)
        return 2
    sections = [sample_section(s, runs, args.root) for s, runs in samples.items()]
    for name, runs in regression_runs(args.root).items():
        if len(runs) >= MIN_SEEDS:
            sections.append(regression_section(name, runs))
        else:
            print(
                f"seed_table.py: {name}: {len(runs)} seed(s), tabulated from {MIN_SEEDS}",
                file=sys.stderr,
            )
    text = "\n".join(sections)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.readme:
        readme = args.readme.read_text()
        begin, end = "<!-- seed tables -->", "<!-- /seed tables -->"
        if readme.count(begin) != 1 or readme.count(end) != 1:
            print(f"seed_table.py: {args.readme}: needs one {begin} and one {end}", file=sys.stderr)
            return 2
        head, rest = readme.split(begin)
        args.readme.write_text(f"{head}{begin}\n\n{text}\n{end}{rest.split(end)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
