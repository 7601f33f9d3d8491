"""The paper's protocol in one import: cross-validation and the ablation.

The code lives in :mod:`coolcore.train.protocol` (``run_cv``),
:mod:`coolcore.train.ablation` (``run_ablation``) and
:mod:`coolcore.train.methods` (the methods compared); this module gathers their
public names for the command line and for notebooks.
"""

from __future__ import annotations

from coolcore.train.ablation import (
    concentration_predictions,
    load_ablation_results,
    run_ablation,
)
from coolcore.train.methods import (
    ABLATION_METHODS,
    CONCENTRATION_METHODS,
    LOSS_WEIGHT_SWEEP,
    ablation_plan,
)
from coolcore.train.protocol import (
    catalog_checksum,
    check_model_and_hardware,
    data_inputs,
    finalise_cv,
    folds_frame,
    learning_history,
    load_data,
    make_folds,
    run_cv,
)

__all__ = [
    "ABLATION_METHODS",
    "CONCENTRATION_METHODS",
    "LOSS_WEIGHT_SWEEP",
    "ablation_plan",
    "catalog_checksum",
    "check_model_and_hardware",
    "concentration_predictions",
    "data_inputs",
    "finalise_cv",
    "folds_frame",
    "learning_history",
    "load_ablation_results",
    "load_data",
    "make_folds",
    "run_ablation",
    "run_cv",
]
