"""The demo's verdict sentences: who wins, and when the sample cannot tell."""

import numpy as np
from test_evaluation import make_predictions

from coolcore.apps.verdict import classification_verdict, cooling_time_verdict


def _pair(acc_net, acc_conc, n_clusters=120):
    base = make_predictions(n_clusters=n_clusters, seed=1)
    rng = np.random.default_rng(2)
    labels = base["label"].to_numpy()
    wrong = {"CC": "WCC", "WCC": "NCC", "NCC": "CC"}

    def predicted(accuracy):
        right = rng.random(len(labels)) < accuracy
        return np.where(right, labels, [wrong[c] for c in labels])

    net, conc = (
        base.assign(predicted=predicted(acc_net)),
        base.assign(predicted=predicted(acc_conc)),
    )
    return {"c_SB (fit)": [conc], "baseline": [net], "all": [conc]}


def test_classification_verdict():
    assert classification_verdict(_pair(0.95, 0.5), ["baseline", "all"]).endswith(
        "the network wins."
    )
    # the best network is chosen: here `all`, which equals the concentration
    text = classification_verdict(_pair(0.3, 0.8), ["baseline", "all"])
    assert "`all`" in text and text.endswith("cannot tell them apart.")
    text = classification_verdict(_pair(0.3, 0.8), ["baseline"])
    assert text.endswith("the concentration wins.")
    assert classification_verdict(_pair(0.9, 0.5), ["att"]) is None


def _block(scatter, ci):
    return {"scatter_dex": scatter, "scatter_dex_ci": ci, "coverage_68": 0.7, "coverage_95": 0.95}


def test_cooling_time_verdict():
    wins = cooling_time_verdict(
        "all", {"network": _block(0.2, [0.15, 0.25]), "concentration": _block(0.3, [0.26, 0.35])}
    )
    assert wins.endswith("the network wins.") and "0.20 dex [0.15, 0.25]" in wins
    loses = cooling_time_verdict(
        "all", {"network": _block(1.3, [0.5, 2.0]), "concentration": _block(0.3, [0.23, 0.36])}
    )
    assert loses.endswith("the concentration wins.")
    tie = cooling_time_verdict(
        "all", {"network": _block(0.3, [0.2, 0.4]), "concentration": _block(0.3, [0.25, 0.35])}
    )
    assert tie.endswith("cannot tell them apart.")
    assert cooling_time_verdict("all", {}) is None
    scaled = {**_block(0.3, [0.2, 0.4]), "coverage_68": 0.684, "coverage_95": 0.941}
    text = cooling_time_verdict(
        "all",
        {"network": _block(0.3, [0.2, 0.4]), "network_scaled": scaled,
         "concentration": _block(0.3, [0.25, 0.35])},
    )  # fmt: skip
    assert "cover 70%/95% of the maps (68%/94% with each fold's sigma scaled" in text


def test_verdicts_against_the_profile_baselines():
    results = _pair(0.3, 0.8)
    results["profile (fit)"] = results.pop("c_SB (fit)")
    assert classification_verdict(results, ["baseline"]) is None  # no concentration here
    text = classification_verdict(results, ["baseline"], "profile (fit)")
    assert "profile fit `profile (fit)`" in text and text.endswith("the profile fit wins.")
    block = {"network": _block(1.3, [0.5, 2.0]), "profile": _block(0.2, [0.18, 0.23])}
    assert cooling_time_verdict("all", block) is None  # no concentration block
    text = cooling_time_verdict("all", block, "profile")
    assert "profile fit 0.20 dex [0.18, 0.23]" in text and text.endswith("the profile fit wins.")
