"""Which wins on this sample: the best network or the astronomers' indicators.

Plain sentences for the end of ``coolcore demo`` and for an ablation's report,
from the run's committed numbers: the classification (the best network's macro-F1
against ``c_SB (fit)``, thresholds fitted on the training folds, and against
``profile (fit)``, the logistic regression on the surface-brightness profile,
paired on the same clusters) and, where the networks carry the cooling-time head,
the cooling time (the network's scatter and interval coverage against the
least-squares fit of log10 t_cool on log10 c_SB and the ridge regression on the
profile over the same folds).

A side "wins" only when the 95% interval of the paired difference excludes zero
(classification) or the two scatters' intervals do not overlap (cooling time);
otherwise the sentence says the sample cannot tell them apart.
"""

from __future__ import annotations

from pathlib import Path

from coolcore.evaluate.paired import paired_difference
from coolcore.runs.folder import RunFolder

__all__ = ["classification_verdict", "cooling_time_verdict", "verdict_lines"]

CONCENTRATION = "c_SB (fit)"
BASELINES: dict[str, str] = {"c_SB (fit)": "the concentration", "profile (fit)": "the profile fit"}
"""The classification baselines a verdict is given against, and their names in it."""
REGRESSION_BASELINES: dict[str, str] = {
    "concentration": "the concentration",
    "profile": "the profile fit",
}
"""The ``regression`` blocks a cooling-time verdict is given against, and their names."""


def classification_verdict(
    results: dict, networks: list[str], reference: str = CONCENTRATION
) -> str | None:
    """The sentence for ``{method: [predictions per repeat]}``: the best of ``networks``
    against ``reference`` (a key of :data:`BASELINES`; None when either is missing)."""
    networks = [m for m in networks if m in results]
    if reference not in results or not networks:
        return None
    scores = {
        m: paired_difference(results[m], results[reference], n_boot=1000, seed=0) for m in networks
    }
    best = max(scores, key=lambda m: scores[m]["macro_f1_a"])
    d = scores[best]
    low, high = d["ci"]
    who = BASELINES.get(reference, f"`{reference}`")
    head = (
        f"Classification: best network `{best}` macro-F1 {d['macro_f1_a']:.3f}, "
        f"{who.removeprefix('the ')} `{reference}` {d['macro_f1_b']:.3f}; difference "
        f"{d['difference']:+.3f} [95% CI {low:+.3f}, {high:+.3f}] over {d['n_clusters']} "
        "clusters: "
    )
    if low > 0:
        return head + "the network wins."
    if high < 0:
        return head + f"{who} wins."
    return head + "this sample cannot tell them apart."


def cooling_time_verdict(
    method: str, regression: dict, baseline: str = "concentration"
) -> str | None:
    """The sentence for a run's ``metrics.json`` ``regression`` block against its
    ``baseline`` block (None without both)."""
    net, other = regression.get("network"), regression.get(baseline)
    if not net or not other:
        return None
    scaled = regression.get("network_scaled")
    rescaled = (
        f" ({100 * scaled['coverage_68']:.0f}%/{100 * scaled['coverage_95']:.0f}% with each "
        "fold's sigma scaled on its validation maps)"
        if scaled
        else ""
    )
    text = (
        f"Cooling time (`{method}`, log10 t_cool): network scatter {net['scatter_dex']:.2f} dex "
        f"[{net['scatter_dex_ci'][0]:.2f}, {net['scatter_dex_ci'][1]:.2f}], its 68%/95% "
        f"intervals cover {100 * net['coverage_68']:.0f}%/{100 * net['coverage_95']:.0f}% "
        f"of the maps{rescaled}; {baseline} fit {other['scatter_dex']:.2f} dex "
        f"[{other['scatter_dex_ci'][0]:.2f}, {other['scatter_dex_ci'][1]:.2f}], "
        f"{100 * other['coverage_68']:.0f}%/{100 * other['coverage_95']:.0f}%: "
    )
    if net["scatter_dex_ci"][1] < other["scatter_dex_ci"][0]:
        return text + "the network wins."
    if other["scatter_dex_ci"][1] < net["scatter_dex_ci"][0]:
        return text + f"{REGRESSION_BASELINES.get(baseline, baseline)} wins."
    return text + "this sample cannot tell them apart."


def verdict_lines(run: str | Path) -> list[str]:
    """The verdict sentences of a finished ablation run: the classification, then the
    cooling time of each network with the head (first repeat); empty if nothing applies."""
    folder = RunFolder(run)
    methods = list(folder.ablation_record().get("methods", []))
    results = {m: frames for m, frames in folder.ablation_results().items() if frames}
    lines = [classification_verdict(results, methods, ref) for ref in BASELINES]
    for m in methods:
        sub = folder.method_run(m, 0)
        if sub.metrics_path.is_file():
            block = sub.read_metrics().get("regression") or {}
            lines.extend(cooling_time_verdict(m, block, b) for b in REGRESSION_BASELINES)
    return [line for line in lines if line]
