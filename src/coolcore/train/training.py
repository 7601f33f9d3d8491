"""Training one fold with Lightning: the module, the in-memory data, fit and predict.

The whole training path: :func:`fit_fold` takes the preprocessed images (already
in memory), the indices of a fold's train / validation / test sets and the run
config; it trains with Adam and StepLR, keeps the epoch with the best
validation macro-F1, and returns the test set's class probabilities.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader, Sampler

from coolcore import CLASS_NAMES
from coolcore.nn.losses import class_weights, total_loss
from coolcore.nn.model import build_network
from coolcore.runs.folder import atomic_write_text, raise_if_interrupted
from coolcore.train.hardware import Hardware, launched_rank, quiet_lightning

LOG_FILE = "metrics.csv"


class ClusterClassifier(pl.LightningModule):
    """The network, its loss and its optimiser, as Lightning wants them."""

    def __init__(self, cfg: dict, class_weight: list[float]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = cfg
        self.net = build_network(cfg)
        if cfg["train"]["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        # torch.compile'd forward kept outside the module's attributes, so that the
        # state dict (checkpoints, exported models) keeps the plain parameter names
        self._compiled = [torch.compile(self.net)] if cfg["train"]["compile"] else []
        self.register_buffer("class_weight", torch.tensor(class_weight, dtype=torch.float32))
        self.alphas = tuple(cfg["loss"]["alphas"])
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor):
        return self._compiled[0](x) if self._compiled else self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        loss, _ = total_loss(out, y, self.class_weight, self.alphas)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        loss, _ = total_loss(out, y, self.class_weight, self.alphas)
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


class InMemoryImages(torch.utils.data.Dataset):
    """Preprocessed maps held in one tensor; a batch is one fancy-indexing call.

    ``__getitems__`` hands the DataLoader a whole batch at once, so there is no
    per-sample Python work and no file read in the training loop.  With ``rows``
    the data set is those rows of ``images`` and ``labels`` (a fold's training
    part, say) without copying them.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None
    ) -> None:
        self.images = images
        self.labels = labels
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels) if self.rows is None else len(self.rows)

    def __getitem__(self, i: int):
        j = i if self.rows is None else int(self.rows[i])
        return self.images[j], self.labels[j]

    def __getitems__(self, idx: list[int]):
        index = torch.as_tensor(idx, dtype=torch.long)
        if self.rows is not None:
            index = self.rows[index]
        return self.images[index], self.labels[index]


def _batch_as_is(batch):
    return batch


class EpochSeededSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle_seed: int | None,
    drop_last: bool = False,
    rows: np.ndarray | torch.Tensor | None = None,
) -> DataLoader:
    """A DataLoader over in-memory tensors (only ``rows`` of them if given, not copied);
    shuffled by epoch when a seed is given."""
    ds = InMemoryImages(images, labels, rows)
    sampler = EpochSeededSampler(len(ds), shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=drop_last,
        collate_fn=_batch_as_is,
        pin_memory=torch.cuda.is_available(),
    )


def drop_single_last_batch(n_train: int, batch_size: int, world_size: int = 1) -> bool:
    """Whether each process's last training batch would hold a single map.

    BatchNorm cannot normalise one value per channel in training mode (a batch of
    one map whose feature map has shrunk to 1 x 1), so such a batch is dropped;
    the shuffle changes every epoch, so a different map sits out each time. With
    several processes each one gets ``ceil(n_train / world_size)`` maps.
    """
    per_process = -(-n_train // max(1, world_size))
    return per_process % batch_size == 1


def as_tensor_images(images: np.ndarray) -> torch.Tensor:
    """(N, S, S) float32 NumPy -> (N, 1, S, S) tensor sharing memory."""
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)


def _precision(cfg: dict, accelerator: str) -> str:
    p = cfg["train"]["precision"]
    if p != "auto":
        return "32-true" if p == "32" else p
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu else "32-true"


class _StopWhenInterrupted(pl.Callback):
    """Stop at the next batch if SIGINT/SIGTERM was received (see ``raise_if_interrupted``)."""

    def on_train_batch_end(self, *args, **kwargs) -> None:
        raise_if_interrupted()

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        raise_if_interrupted()

    def on_train_epoch_end(self, *args, **kwargs) -> None:
        raise_if_interrupted()


def fit_fold(
    images: torch.Tensor,
    labels: np.ndarray,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: dict,
    fold_dir: Path,
    *,
    seed: int,
    hardware: Hardware | None = None,
    resume: bool = True,
    progress: bool = True,
    keep_checkpoint: bool = True,
) -> tuple[np.ndarray, dict] | None:
    """Train on one fold, pick the best validation epoch, predict its test set.

    Parameters
    ----------
    images : (N, 1, S, S) float32 tensor of preprocessed maps.
    labels : (N,) int class indices.
    split : (train_idx, val_idx, test_idx) index arrays.
    cfg : the run config (:func:`coolcore.train.config.load_config`).
    fold_dir : the fold's folder: checkpoints and the CSV log go there.
    seed : seeds the initialisation and the shuffle.
    resume : continue from ``fold_dir/checkpoints/last.ckpt`` when it exists.
    keep_checkpoint : keep ``checkpoints/best.ckpt`` (the weights of the best epoch,
        what ``coolcore export`` packs); the full ``last.ckpt`` is always removed
        once the fold is done.

    Returns
    -------
    (probs, info) on the global-zero process: the test set's (n_test, 3)
    probabilities and a dict with the best epoch and score; None on other ranks.
    """
    hw = hardware or Hardware()
    quiet_lightning()
    train_idx, val_idx, test_idx = (np.asarray(s) for s in split)
    t = cfg["train"]
    pl.seed_everything(seed, workers=True, verbose=False)
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    weight = class_weights(y[train_idx], num_classes=len(CLASS_NAMES)).tolist()
    module = ClusterClassifier(cfg, weight)
    val_loader = make_loader(images, y, max(t["batch_size"], 64), shuffle_seed=None, rows=val_idx)

    ckpt_dir = Path(fold_dir) / "checkpoints"
    # best.ckpt keeps the weights only (a third of a full checkpoint with Adam's
    # state); last.ckpt is the full state for --resume and is deleted once the
    # fold is finished.
    best_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val_macro_f1",
        mode="max",
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    last_cb = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    callbacks = [best_cb, last_cb, _StopWhenInterrupted()]
    if progress:
        callbacks.append(TQDMProgressBar(leave=False))
    trainer = pl.Trainer(
        max_epochs=t["epochs"],
        accelerator=hw.accelerator,
        devices=hw.devices,
        strategy=hw.strategy,
        num_nodes=hw.num_nodes,
        precision=_precision(cfg, hw.accelerator),
        deterministic=bool(t["deterministic"]),
        logger=CSVLogger(save_dir=str(fold_dir), name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(fold_dir),
    )
    train_loader = make_loader(
        images,
        y,
        t["batch_size"],
        shuffle_seed=seed,
        drop_last=drop_single_last_batch(len(train_idx), t["batch_size"], trainer.world_size),
        rows=train_idx,
    )
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if (resume and last.is_file()) else None
    writes_log = launched_rank() == 0
    if ckpt_path is not None and writes_log:
        _keep_log_before_resume(Path(fold_dir), last)
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    except SystemExit:
        # Lightning ends a run stopped by Ctrl-C / SIGTERM with sys.exit(1), after
        # its graceful shutdown; let the caller report it as an interruption
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    raise_if_interrupted()
    if not trainer.is_global_zero:
        return None
    best_path = best_cb.best_model_path or last_cb.last_model_path or str(last)
    best = load_module(best_path)
    probs = predict_probs(best.net, images[test_idx], batch_size=max(t["batch_size"], 64))
    score = best_cb.best_model_score
    info = {
        "best_checkpoint": os.path.relpath(best_path, fold_dir),
        "best_val_macro_f1": None if score is None else float(score),
        "best_epoch": int(torch.load(best_path, map_location="cpu", weights_only=True)["epoch"]),
        "epochs": t["epochs"],
        "class_weight": weight,
    }
    if not keep_checkpoint:
        Path(best_path).unlink(missing_ok=True)
    last.unlink(missing_ok=True)
    if writes_log:
        _merge_kept_log(Path(fold_dir))
    return probs, info


KEPT_LOG_FILE = "metrics.before_resume.csv"


def checkpoint_epoch(path: str | Path) -> int:
    """The (0-based) epoch whose end a Lightning checkpoint of ours was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def _read_log(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame({"epoch": pd.Series([], dtype=int)})


def _join_logs(older: pd.DataFrame, newer: pd.DataFrame) -> pd.DataFrame:
    """``older``'s rows before ``newer``'s first epoch, then ``newer``."""
    if not len(newer):
        return older
    if not len(older):
        return newer
    return pd.concat([older[older["epoch"] < newer["epoch"].min()], newer], ignore_index=True)


def _keep_log_before_resume(fold_dir: Path, last: Path) -> None:
    """Save the CSV log of the finished epochs before Lightning's logger deletes it.

    Lightning's CSVLogger removes an existing ``metrics.csv`` when it starts, so
    on resume the rows of the epochs up to the checkpoint's are moved to
    :data:`KEPT_LOG_FILE` (rows of the interrupted epoch are dropped: it is run
    again), and :func:`_merge_kept_log` puts them back when the fold is done.
    """
    log = fold_dir / LOG_FILE
    kept_path = fold_dir / KEPT_LOG_FILE
    current = _read_log(log)
    if not len(current):
        return
    done_epoch = checkpoint_epoch(last)
    kept = _join_logs(_read_log(kept_path), current[current["epoch"] <= done_epoch])
    atomic_write_text(kept_path, kept.to_csv(index=False))
    log.unlink()


def _merge_kept_log(fold_dir: Path) -> None:
    """Prepend the rows kept by :func:`_keep_log_before_resume` to ``metrics.csv``."""
    kept_path = fold_dir / KEPT_LOG_FILE
    if not kept_path.is_file():
        return
    merged = _join_logs(_read_log(kept_path), _read_log(fold_dir / LOG_FILE))
    atomic_write_text(fold_dir / LOG_FILE, merged.to_csv(index=False))
    kept_path.unlink()


def load_module(path: str | Path) -> ClusterClassifier:
    """Load a Lightning checkpoint of ours without unpickling code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    hp = state["hyper_parameters"]
    cfg = copy.deepcopy(hp["cfg"])
    cfg["train"]["compile"] = False
    module = ClusterClassifier(cfg, hp["class_weight"])
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


def predictions_frame(
    catalog: pd.DataFrame, idx: np.ndarray, probs: np.ndarray, fold: int
) -> pd.DataFrame:
    """The rows of predictions.csv for one fold's test images."""
    rows = catalog.iloc[idx]
    frame = pd.DataFrame(
        {
            "image_id": rows["image_id"].astype(str).to_numpy(),
            "cluster_id": rows["cluster_id"].astype(str).to_numpy(),
            "fold": fold,
            "label": rows["label"].to_numpy(),
        }
    )
    for c, name in enumerate(CLASS_NAMES):
        frame[f"p_{name}"] = probs[:, c]
    frame["predicted"] = np.asarray(CLASS_NAMES)[probs.argmax(axis=1)]
    return frame
