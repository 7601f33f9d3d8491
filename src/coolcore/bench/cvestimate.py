"""One variant's cross-validation in minutes, for ``coolcore bench``: the per-fold overhead
(:func:`bench_fold_overhead`) and the estimate from step times (:func:`estimate_cv_minutes`).

The step times come from :func:`coolcore.bench.cost.bench_step_times`;
:func:`coolcore.bench.cost.bench_cost` puts the pieces together.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from coolcore.bench.timing import median_wall_s

__all__ = ["bench_fold_overhead", "estimate_cv_minutes"]


# --------------------------------------------------------------------------- fold overhead
def bench_fold_overhead(
    cfg: Mapping[str, Any], *, repeats: int = 3, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """What one fold costs besides its training and inference steps.

    Measured (median of ``repeats``): building the network with its Adam
    optimiser (``build_s``), saving a full checkpoint of weights and Adam's
    state (``save_full_s``, Lightning's ``last.ckpt``), saving the weights
    alone (``save_weights_s``, ``best.ckpt``) and reading them back into a
    network (``load_s``).  ``fold_overhead_s`` = 2 ``build_s`` (training, and
    reloading the best epoch) + epochs x (``save_full_s`` + ``save_weights_s``;
    as if every epoch improved, an upper bound) + ``load_s``.  Lightning's own
    loop and logging are not included.
    """
    from coolcore.nn.model import build_network

    device = torch.device(device)
    epochs = int(cfg["train"]["epochs"])

    def build():
        net = build_network(cfg, weights="none", variant="all").to(device=device)
        return net, torch.optim.Adam(net.parameters(), lr=cfg["train"]["lr"])

    build_s = median_wall_s(build, repeats)
    net, opt = build()
    for p in net.parameters():  # Adam's state exists after its first step
        p.grad = torch.zeros_like(p)
    opt.step()
    with tempfile.TemporaryDirectory(prefix="coolcore-bench-ckpt-") as tmp:
        full, best = Path(tmp) / "last.ckpt", Path(tmp) / "best.ckpt"
        save_full_s = median_wall_s(
            lambda: torch.save(
                {"state_dict": net.state_dict(), "optimizer": opt.state_dict()}, full
            ),
            repeats,
        )
        save_weights_s = median_wall_s(
            lambda: torch.save({"state_dict": net.state_dict()}, best), repeats
        )
        load_s = median_wall_s(
            lambda: net.load_state_dict(
                torch.load(best, map_location=device, weights_only=True)["state_dict"]
            ),
            repeats,
        )
    return {
        "build_s": build_s,
        "save_full_s": save_full_s,
        "save_weights_s": save_weights_s,
        "load_s": load_s,
        "epochs": epochs,
        "fold_overhead_s": 2 * build_s + epochs * (save_full_s + save_weights_s) + load_s,
    }


# --------------------------------------------------------------------------- cv estimate
def estimate_cv_minutes(
    *,
    n_maps: int,
    folds: int,
    epochs: int,
    batch_size: int,
    train_step_s: float,
    infer_step_s: float,
    test_infer_step_s: float,
    fold_overhead_s: float,
) -> dict[str, Any]:
    """Minutes of one variant's whole cross-validation, from step times and fold sizes.

    Each fold validates on ``round(n_maps / folds)`` maps, tests on as many and
    trains on the rest ((K-2)/K of the maps).  An epoch is ``ceil(n_train /
    batch_size)`` training steps (one fewer where the last batch would hold a
    single map, :func:`coolcore.train.loaders.drop_single_last_batch`) and the
    validation maps at ``infer_step_s / batch_size`` each; after the epochs the
    test maps are predicted at ``test_infer_step_s / batch_size`` each
    (:func:`coolcore.train.module.predict_probs` runs in fp32); then
    ``fold_overhead_s``.

    Parameters
    ----------
    n_maps, folds, epochs, batch_size : int
        The data set's maps and the config's ``cv.folds``, ``train.epochs``,
        ``train.batch_size``.
    train_step_s, infer_step_s : float
        Seconds of a training step and an inference pass of ``batch_size`` maps
        in the precision training uses.
    test_infer_step_s : float
        Seconds of an fp32 inference pass of ``batch_size`` maps.
    fold_overhead_s : float
        Seconds per fold besides the steps (:func:`bench_fold_overhead`).

    Returns
    -------
    dict
        ``cv_minutes`` and the arithmetic: maps per part, training steps per
        epoch, seconds per epoch and per fold.
    """
    from coolcore.train.loaders import drop_single_last_batch

    n_hold = round(n_maps / folds)
    n_train = n_maps - 2 * n_hold
    steps = math.ceil(n_train / batch_size) - int(drop_single_last_batch(n_train, batch_size))
    epoch_s = steps * train_step_s + n_hold * infer_step_s / batch_size
    fold_s = epochs * epoch_s + n_hold * test_infer_step_s / batch_size + fold_overhead_s
    return {
        "maps": n_maps,
        "folds": folds,
        "epochs": epochs,
        "batch": batch_size,
        "train_maps": n_train,
        "val_maps": n_hold,
        "test_maps": n_hold,
        "train_steps_per_epoch": steps,
        "epoch_s": epoch_s,
        "fold_s": fold_s,
        "fold_overhead_s": fold_overhead_s,
        "cv_minutes": folds * fold_s / 60.0,
    }
