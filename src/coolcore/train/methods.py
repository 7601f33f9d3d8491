"""The methods an ablation compares: the paper's Table I variants, the intersection
mask, the loss-weight sweep of Table II and the concentration baselines."""

from __future__ import annotations

import copy

from coolcore.errors import UsageError

__all__ = [
    "ABLATION_METHODS",
    "CONCENTRATION_METHODS",
    "LOSS_WEIGHT_SWEEP",
    "ablation_plan",
]

ABLATION_METHODS: dict[str, dict] = {
    "baseline": {"variant": "baseline"},
    "att": {"variant": "att"},
    "gauss": {"variant": "gauss"},
    "att+gauss": {"variant": "att+gauss"},
    "all": {"variant": "all"},
    "all (intersection)": {"variant": "all", "combine": "intersection"},
}
"""The network rows of the ablation: the paper's Table I and the intersection mask."""

LOSS_WEIGHT_SWEEP: list[tuple[float, float, float, float]] = [
    (0.8, 0.1, 0.1, 1.0),
    (0.8, 0.1, 0.1, 100.0),
    (0.1, 0.1, 0.8, 0.1),
    (0.1, 0.8, 0.1, 0.1),
    (0.8, 0.1, 0.1, 0.1),
]
"""The paper's Table II: (a_p, a_a, a_f, a_r) for the ``all`` variant."""

CONCENTRATION_METHODS: tuple[str, ...] = (
    "c_SB (literature)",
    "c_SB (fit)",
    "c_scaled (fit)",
    "profile (fit)",
)
"""The astronomers' baselines of an ablation, in table order: the concentrations and
a logistic regression on the surface-brightness profile (:mod:`coolcore.evaluate.profiles`)."""


def ablation_plan(cfg: dict, sweep: str | None) -> dict[str, dict]:
    """Method name -> its config, for the ablation or the loss-weight sweep.

    Parameters
    ----------
    cfg : the run config every method starts from.
    sweep : None for the ablation, ``"loss-weights"`` for the paper's Table II.

    Raises
    ------
    UsageError
        An unknown sweep.
    """
    plan: dict[str, dict] = {}
    if sweep is None:
        for name, model in ABLATION_METHODS.items():
            c = copy.deepcopy(cfg)
            c["model"].update(model)
            plan[name] = c
    elif sweep == "loss-weights":
        c = copy.deepcopy(cfg)
        c["model"]["variant"] = "baseline"
        plan["baseline"] = c
        for alphas in LOSS_WEIGHT_SWEEP:
            c = copy.deepcopy(cfg)
            c["model"]["variant"] = "all"
            c["loss"]["alphas"] = list(alphas)
            plan["all a=" + "/".join(f"{a:g}" for a in alphas)] = c
    else:
        raise UsageError(f"--sweep {sweep}: unknown sweep (known: loss-weights)")
    return plan
