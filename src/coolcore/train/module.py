"""The Lightning module: the network, its loss and optimiser; reloading and predicting.

:class:`ClusterClassifier` wraps :func:`coolcore.nn.model.build_network` of the
run config (its pretrained trunks read by :func:`coolcore.train.weights.read_trunk_state`),
:func:`coolcore.nn.losses.total_loss` with the fold's class weights, the optimiser
and learning-rate schedule (:func:`make_optimizer`, :func:`make_scheduler`: Adam and
StepLR by default), and logs the validation macro-F1 that picks the best epoch and
the learning rate of each epoch's first batch (``lr``).  With the cooling-time head
(``model.regression``) a batch carries log10 t_cool as its third element, the loss
gains its Gaussian likelihood, and ``train_tcool_nll`` / ``val_tcool_nll`` are
logged beside the losses.  With ``train.augment=dihedral`` each training batch's
maps are flipped and rotated (:func:`coolcore.train.loaders.dihedral_batch`); with
``model.crop_source=full`` a batch's fourth element, the full-resolution maps, goes
to the network beside the input.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.metrics import f1_score

from coolcore import CLASS_NAMES
from coolcore.nn.losses import total_loss
from coolcore.nn.model import build_network
from coolcore.train.loaders import dihedral_batch, dihedral_elements
from coolcore.train.weights import read_trunk_state

__all__ = [
    "ClusterClassifier",
    "load_module",
    "make_optimizer",
    "make_scheduler",
    "predict_outputs",
    "predict_probs",
]


class ClusterClassifier(pl.LightningModule):
    """The network, its loss and its optimiser, as Lightning wants them.

    Parameters
    ----------
    cfg : dict
        The run config (:func:`coolcore.train.config.load_config`).
    class_weight : list of float
        Per-class loss weights (:func:`coolcore.nn.losses.class_weights` of the
        training part).
    read_weights : bool
        Start the trunks from ``model.weights`` (read from its file).  False
        builds them at random with ``weights="none"``, for a checkpoint's state
        dict to replace at once (:func:`load_module`); nothing is read then.
    seed : int
        The fold's seed: with ``train.augment=dihedral`` the maps' transforms are
        drawn from (seed, epoch, batch index) (:func:`coolcore.train.loaders.dihedral_elements`).
    """

    def __init__(
        self, cfg: dict, class_weight: list[float], *, read_weights: bool = True, seed: int = 0
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["read_weights", "seed"])
        self.cfg = cfg
        if read_weights:
            self.net = build_network(cfg, trunk_state=read_trunk_state(cfg["model"]["weights"]))
        else:
            self.net = build_network(cfg, weights="none")
        if cfg["train"]["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        # torch.compile'd forward kept outside the module's attributes, so that the
        # state dict (checkpoints, exported models) keeps the plain parameter names
        self._compiled = [torch.compile(self.net)] if cfg["train"]["compile"] else []
        self.register_buffer("class_weight", torch.tensor(class_weight, dtype=torch.float32))
        self.alphas = tuple(cfg["loss"]["alphas"])
        self.regression_weight = float(cfg["loss"].get("regression_weight", 1.0))
        self.augment = cfg["train"].get("augment", "none")
        self.seed = int(seed)
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, full: torch.Tensor | None = None):
        if full is None:  # the network called exactly as before the option existed
            return self._compiled[0](x) if self._compiled else self.net(x)
        return self._compiled[0](x, full) if self._compiled else self.net(x, full)

    def _loss(self, batch, stage: str):
        """The batch's network outputs and total loss; logs the cooling-time term if any."""
        x, y, *rest = batch
        out = self(x, rest[1] if len(rest) > 1 else None)
        loss, parts = total_loss(
            out,
            y,
            self.class_weight,
            self.alphas,
            tcool=rest[0] if rest else None,
            regression_weight=self.regression_weight,
        )
        if "loss_tcool" in parts:
            self.log(
                f"{stage}_tcool_nll",
                parts["loss_tcool"],
                on_step=False,
                on_epoch=True,
                batch_size=len(y),
                sync_dist=stage == "val",
            )
        return out, loss

    def on_train_epoch_start(self) -> None:
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("lr", float(lr), on_step=False, on_epoch=True, batch_size=1)

    def training_step(self, batch, batch_idx):
        if self.augment == "dihedral":
            # (epoch, rank: 0 without a trainer, as Lightning's properties give them)
            epoch, rank = self.current_epoch, self.global_rank
            elements = dihedral_elements(len(batch[1]), self.seed, epoch, batch_idx, rank)
            batch = dihedral_batch(batch, elements)
        _, loss = self._loss(batch, "train")
        self.log(
            "train_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch[1]),
        )
        return loss

    def validation_step(self, batch, batch_idx):
        out, loss = self._loss(batch, "val")
        y = batch[1]
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        self._val_probs.append(out.logits.float().softmax(dim=1).detach())
        self._val_targets.append(y.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_probs:
            return
        probs = torch.cat(self._val_probs)
        targets = torch.cat(self._val_targets)
        self._val_probs.clear()
        self._val_targets.clear()
        if self.trainer.world_size > 1:
            # Lightning's DistributedSampler (no shuffle) gives rank r the maps
            # r, r + W, r + 2W ... of the validation set, padded at the end with
            # repeats of the first maps so that every rank gets as many: put the
            # gathered (W, m) results back in that order and drop the repeats.
            n = len(self.trainer.val_dataloaders.dataset)
            probs = self.all_gather(probs).transpose(0, 1).reshape(-1, probs.shape[-1])[:n]
            targets = self.all_gather(targets).transpose(0, 1).reshape(-1)[:n]
        pred = probs.argmax(dim=1).cpu().numpy()
        f1 = f1_score(
            targets.cpu().numpy(), pred, labels=[0, 1, 2], average="macro", zero_division=0
        )
        self.log("val_macro_f1", float(f1), prog_bar=True, sync_dist=False, rank_zero_only=True)

    def configure_optimizers(self):
        t = self.cfg["train"]
        opt = make_optimizer(self.parameters(), t)
        per_batch = t.get("schedule", "step") != "step" or t.get("warmup_epochs", 0) > 0
        # the number of optimiser steps per epoch is only asked for when it is used
        steps = self.trainer.estimated_stepping_batches // t["epochs"] if per_batch else None
        sched, interval = make_scheduler(opt, t, steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}


def make_optimizer(params, train: dict) -> torch.optim.Optimizer:
    """Adam with ``train.lr`` (the paper's); AdamW with ``train.weight_decay`` when that is > 0
    (decoupled weight decay on every parameter)."""
    decay = float(train.get("weight_decay", 0.0))
    if decay > 0:
        return torch.optim.AdamW(params, lr=train["lr"], weight_decay=decay)
    return torch.optim.Adam(params, lr=train["lr"])


def make_scheduler(optimizer: torch.optim.Optimizer, train: dict, steps_per_epoch: int | None):
    """The learning-rate schedule of a run config's ``train`` section, and its interval.

    - ``schedule: step``, ``warmup_epochs: 0`` (the default, the paper's):
      ``StepLR(step_size, gamma)`` stepped per epoch.
    - ``warmup_epochs: W > 0``: first a linear warm-up per batch, ``LinearLR`` from
      ``lr / 10`` to ``lr`` over ``W * steps_per_epoch`` batches (the first batch gets
      ``lr / 10``); then the schedule, stepped per batch.
    - ``schedule: cosine``: ``CosineAnnealingLR`` from ``lr`` down to ``lr *
      min_lr_ratio`` over the ``(epochs - W) * steps_per_epoch`` batches after the
      warm-up (reached after the last one), one after the other in ``SequentialLR``.
    - ``schedule: step`` with a warm-up: both factors at once (``ChainedScheduler``):
      ``lr`` is also multiplied by ``gamma`` after every ``step_size`` epochs counted
      from the start, as without a warm-up.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    train : dict
        The run config's ``train`` section.
    steps_per_epoch : int or None
        Optimiser steps per epoch; only needed for a per-batch schedule.

    Returns
    -------
    (scheduler, interval)
        ``interval`` is ``"epoch"`` or ``"step"``, as Lightning's ``lr_scheduler`` wants it.
    """
    sched = torch.optim.lr_scheduler
    kind, warm = train.get("schedule", "step"), int(train.get("warmup_epochs", 0))
    if kind == "step" and warm == 0:
        return sched.StepLR(optimizer, step_size=train["step_size"], gamma=train["gamma"]), "epoch"
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(f"a per-batch schedule needs steps_per_epoch >= 1, got {steps_per_epoch}")
    warm_steps = warm * steps_per_epoch
    warmup = [sched.LinearLR(optimizer, 0.1, 1.0, total_iters=warm_steps)] if warm else []
    if kind == "step":
        size = train["step_size"] * steps_per_epoch
        decay = sched.StepLR(optimizer, step_size=size, gamma=train["gamma"])
        return sched.ChainedScheduler([*warmup, decay]), "step"
    total = (int(train["epochs"]) - warm) * steps_per_epoch
    floor = train["lr"] * float(train.get("min_lr_ratio", 0.01))
    cosine = sched.CosineAnnealingLR(optimizer, T_max=total, eta_min=floor)
    if not warm:
        return cosine, "step"
    return sched.SequentialLR(optimizer, [*warmup, cosine], milestones=[warm_steps]), "step"


def load_module(path: str | Path) -> ClusterClassifier:
    """Load a Lightning checkpoint of ours without unpickling code.

    The network is rebuilt from the checkpoint's config without reading its
    ``model.weights`` source (the checkpoint holds the trained tensors and
    input normalisation), so a run started from ImageNet weights reloads offline.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    hp = state["hyper_parameters"]
    cfg = copy.deepcopy(hp["cfg"])
    cfg["train"]["compile"] = False
    module = ClusterClassifier(cfg, hp["class_weight"], read_weights=False)
    module.load_state_dict(state["state_dict"])
    return module.eval()


def _net_on(net, images, full, start: int, stop: int, device):
    """The network on maps ``start:stop`` (and their full-resolution maps, if any)."""
    x = images[start:stop].to(device)
    return net(x) if full is None else net(x, full[start:stop].to(device))


@torch.no_grad()
def predict_probs(
    net: torch.nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    full: torch.Tensor | None = None,
) -> np.ndarray:
    """Class probabilities (n, 3) of a network on (n, 1, S, S) maps, in eval mode
    (``full``: the (n, 1, F, F) maps before the resize, for ``crop_source="full"``)."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        result = _net_on(net, images, full, start, start + batch_size, device)
        out.append(result.logits.float().softmax(dim=1).cpu())
    if not out:
        return np.zeros((0, len(CLASS_NAMES)), dtype=np.float64)
    return torch.cat(out).double().numpy()


@torch.no_grad()
def predict_outputs(
    net: torch.nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 64,
    full: torch.Tensor | None = None,
) -> np.ndarray:
    """Class probabilities, and the cooling-time Gaussian where the network has the head
    (``full``: as :func:`predict_probs`).

    Returns
    -------
    numpy.ndarray
        (n, 3) as :func:`predict_probs`; for a network with ``regression``
        (n, 5): the probabilities, then ``mu`` and ``sigma`` of log10 t_cool / Gyr.
    """
    net.eval()
    device = next(net.parameters()).device
    width = len(CLASS_NAMES) + (2 if getattr(net, "regression", False) else 0)
    out = []
    for start in range(0, len(images), batch_size):
        result = _net_on(net, images, full, start, start + batch_size, device)
        cols = [result.logits.float().softmax(dim=1)]
        if result.tcool_mu is not None:
            cols += [result.tcool_mu.float()[:, None], result.tcool_sigma.float()[:, None]]
        out.append(torch.cat(cols, dim=1).cpu())
    if not out:
        return np.zeros((0, width), dtype=np.float64)
    return torch.cat(out).double().numpy()
