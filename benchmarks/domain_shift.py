"""The domain-shift table: models trained on one kind of map, tested on every kind.

Usage::

    python benchmarks/domain_shift.py --train emissivity=runs/shift/emissivity \\
        --train xmm=runs/shift/xmm \\
        --test emissivity=data/shift-test/emissivity --test xmm=data/shift-test/xmm \\
        --test chandra=data/shift-test/chandra --test erosita=data/shift-test/erosita \\
        --out results/domain_shift

Each ``--train NAME=RUN`` is a finished ``coolcore cv`` run folder: its fold models,
as one ensemble (the mean of their probabilities, as ``coolcore export``), classify
every map of each ``--test NAME=DATA`` sample, which must be simulated with another
seed than the training sample, so that no cluster is in both.  Beside each network,
the surface-brightness concentration c_SB with two thresholds fitted on the whole
training sample (the same fit a user would make on that training set) classifies
the same test maps, measured on the same field the network sees
(:func:`coolcore.evaluate.indicators.dataset_features`).

Writes ``OUT/domain_shift.csv`` (one row per training kind x test kind x method:
macro-F1, its 95% cluster-bootstrap interval, balanced accuracy, n maps),
``OUT/domain_shift.md`` (the README's table) and every row's predictions in
``OUT/predictions/TRAIN__TEST__{network,c_SB}.csv`` (``tests/test_results.py``
recomputes the table from them), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES


def _pairs(values: list[str], flag: str) -> dict[str, Path]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{flag} {v}: expected NAME=PATH")
        out[name] = Path(path)
    return out


def _preprocess(run: Path):
    """The run's preprocessing (crop, field_kpc ...) as a PreprocessConfig."""
    from coolcore.data.transforms import PreprocessConfig

    p = json.loads((run / "run.json").read_text())["config"]["preprocess"]
    return PreprocessConfig(
        crop=p["crop"], size=p["size"], scaling=p["scaling"], field_kpc=p.get("field_kpc", 1000.0)
    )


def _table(catalog: pd.DataFrame, predicted: np.ndarray, probs: np.ndarray | None) -> pd.DataFrame:
    """One row per map: ids, true label, predicted class (and probabilities)."""
    table = pd.DataFrame(
        {
            "image_id": catalog["image_id"].to_numpy(),
            "cluster_id": catalog["cluster_id"].to_numpy(),
            "label": catalog["label"].to_numpy(),
            "predicted": predicted,
        }
    )
    if probs is not None:
        for c, name in enumerate(CLASS_NAMES):
            table[f"p_{name}"] = probs[:, c]
    return table


def _metrics(table: pd.DataFrame) -> dict:
    from sklearn.metrics import balanced_accuracy_score

    from coolcore.evaluate.metrics import compute_metrics

    m = compute_metrics(table)
    lo, hi = m["macro_f1_ci"]
    return {
        "macro_f1": m["macro_f1"],
        "ci_low": lo,
        "ci_high": hi,
        "balanced_accuracy": balanced_accuracy_score(table["label"], table["predicted"]),
        "n_maps": len(table),
        "n_clusters": m["n_clusters"],
    }


def evaluate(
    train: dict[str, Path], test: dict[str, Path]
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """One row per (training kind, test kind, method), and each row's predictions
    (keyed ``TRAIN__TEST__network`` or ``TRAIN__TEST__c_SB``)."""
    from coolcore.apps.export import export_model
    from coolcore.apps.inference import load_model
    from coolcore.data.catalog import read_catalog, resolve_data
    from coolcore.evaluate.baselines import ConcentrationClassifier
    from coolcore.evaluate.indicators import dataset_features

    rows, predictions = [], {}
    for tname, run in train.items():
        cfg = _preprocess(run)
        record = json.loads((run / "run.json").read_text())
        train_cat = read_catalog(resolve_data(record["data"]))
        c_train = dataset_features(train_cat, cfg)
        clf = ConcentrationClassifier(indicator="c_sb", thresholds="fit")
        clf.fit(c_train["c_SB"], train_cat["y"].to_numpy())
        with tempfile.TemporaryDirectory(prefix="coolcore-shift-") as tmp:
            model = load_model(export_model(run, Path(tmp) / "model"), device="cpu")
            for sname, data in test.items():
                cat = read_catalog(resolve_data(data))
                frame = model.predict(catalog=resolve_data(data), progress=True)
                ok = (frame["error"] == "").to_numpy()
                if not ok.all():
                    print(
                        f"{tname} -> {sname}: {int((~ok).sum())} maps failed: "
                        f"{frame.loc[~ok, 'error'].iloc[0]}"
                    )
                # both methods are scored on the maps the network could take (a map
                # refused with an error row, e.g. too few counts, is left out of both)
                cat = cat[ok].reset_index(drop=True)
                probs = frame[[f"p_{c}" for c in CLASS_NAMES]].to_numpy()[ok]
                net_table = _table(cat, frame["predicted"].to_numpy()[ok], probs)
                predictions[f"{tname}__{sname}__network"] = net_table
                net = _metrics(net_table)
                rows.append(
                    {
                        "train": tname,
                        "test": sname,
                        "method": f"network ({record['config']['model']['variant']})",
                        **net,
                    }
                )
                c_test = dataset_features(cat, cfg)
                pred = np.asarray(clf.predict(c_test["c_SB"]), dtype=object)
                c_table = _table(cat, pred, None)
                predictions[f"{tname}__{sname}__c_SB"] = c_table
                rows.append(
                    {
                        "train": tname,
                        "test": sname,
                        "method": "c_SB, thresholds fitted on train",
                        **_metrics(c_table),
                    }
                )
                print(pd.DataFrame(rows[-2:]).to_string(index=False))
    return pd.DataFrame(rows), predictions


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| trained on | tested on | method | macro-F1 | 95% interval | balanced accuracy | maps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.train} | {r.test} | {r.method} | {r.macro_f1:.3f} | "
            f"{r.ci_low:.3f}-{r.ci_high:.3f} | {r.balanced_accuracy:.3f} | {r.n_maps} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="append", required=True, metavar="NAME=RUN")
    parser.add_argument("--test", action="append", required=True, metavar="NAME=DATA")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    table, predictions = evaluate(_pairs(args.train, "--train"), _pairs(args.test, "--test"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predictions").mkdir(exist_ok=True)
    for name, frame in predictions.items():
        frame.to_csv(args.out / "predictions" / f"{name}.csv", index=False, float_format="%.9g")
    table.to_csv(args.out / "domain_shift.csv", index=False, float_format="%.4f")
    text = markdown(table)
    (args.out / "domain_shift.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
