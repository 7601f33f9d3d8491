"""The Lightning module: the network, its loss and optimiser; reloading and predicting.

:class:`ClusterClassifier` wraps :func:`coolcore.nn.model.build_network` of the
run config (its pretrained trunks read by :func:`coolcore.train.weights.read_trunk_state`),
:func:`coolcore.nn.losses.total_loss` with the fold's class weights, Adam and
StepLR, and logs the validation macro-F1 that picks the best epoch.  With the
cooling-time head (``model.regression``) a batch carries log10 t_cool as its
third element, the loss gains its Gaussian likelihood, and ``train_tcool_nll`` /
``val_tcool_nll`` are logged beside the losses.
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
from coolcore.train.weights import read_trunk_state

__all__ = ["ClusterClassifier", "load_module", "predict_outputs", "predict_probs"]


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
    """

    def __init__(self, cfg: dict, class_weight: list[float], *, read_weights: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["read_weights"])
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
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor):
        return self._compiled[0](x) if self._compiled else self.net(x)

    def _loss(self, batch, stage: str):
        """The batch's network outputs and total loss; logs the cooling-time term if any."""
        x, y, *rest = batch
        out = self(x)
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

    def training_step(self, batch, batch_idx):
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
        opt = torch.optim.Adam(self.parameters(), lr=t["lr"])
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=t["step_size"], gamma=t["gamma"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


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


@torch.no_grad()
def predict_probs(
    net: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (n, 3) of a network on (n, 1, S, S) maps, in eval mode."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        out.append(net(x).logits.float().softmax(dim=1).cpu())
    if not out:
        return np.zeros((0, len(CLASS_NAMES)), dtype=np.float64)
    return torch.cat(out).double().numpy()


@torch.no_grad()
def predict_outputs(
    net: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities, and the cooling-time Gaussian where the network has the head.

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
        result = net(images[start : start + batch_size].to(device))
        cols = [result.logits.float().softmax(dim=1)]
        if result.tcool_mu is not None:
            cols += [result.tcool_mu.float()[:, None], result.tcool_sigma.float()[:, None]]
        out.append(torch.cat(cols, dim=1).cpu())
    if not out:
        return np.zeros((0, width), dtype=np.float64)
    return torch.cat(out).double().numpy()
