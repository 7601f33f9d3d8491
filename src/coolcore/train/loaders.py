"""The in-memory training data: a data set over one tensor, an epoch-seeded shuffle,
the DataLoader :func:`coolcore.train.fit.fit_fold` and ``coolcore bench`` use, and
the cooling-time targets of the regression head (:func:`log10_tcool_targets`).

A batch is ``(images, labels)``, or ``(images, labels, log10_tcool)`` when the
loader is given cooling-time targets (``model.regression``).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler

from coolcore.errors import UsageError

__all__ = [
    "EpochSeededSampler",
    "InMemoryImages",
    "as_tensor_images",
    "drop_single_last_batch",
    "log10_tcool_targets",
    "make_loader",
]


class InMemoryImages(torch.utils.data.Dataset):
    """Preprocessed maps held in one tensor; a batch is one fancy-indexing call.

    ``__getitems__`` hands the DataLoader a whole batch at once, so there is no
    per-sample Python work and no file read in the training loop.  With ``rows``
    the data set is those rows of ``images`` and ``labels`` (a fold's training
    part, say) without copying them.  With ``targets`` (one float per map, e.g.
    log10 of the cooling time) a sample is ``(image, label, target)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        rows: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.targets = targets
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels) if self.rows is None else len(self.rows)

    def _take(self, index):
        if self.targets is None:
            return self.images[index], self.labels[index]
        return self.images[index], self.labels[index], self.targets[index]

    def __getitem__(self, i: int):
        return self._take(i if self.rows is None else int(self.rows[i]))

    def __getitems__(self, idx: list[int]):
        index = torch.as_tensor(idx, dtype=torch.long)
        if self.rows is not None:
            index = self.rows[index]
        return self._take(index)


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
    targets: np.ndarray | torch.Tensor | None = None,
) -> DataLoader:
    """A DataLoader over in-memory tensors (only ``rows`` of them if given, not copied);
    shuffled by epoch when a seed is given; ``targets`` (float per map) adds a third
    element to each batch."""
    if targets is not None:
        targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    ds = InMemoryImages(images, labels, rows, targets)
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


def log10_tcool_targets(catalog: pd.DataFrame, source: str | os.PathLike) -> np.ndarray:
    """log10 of every map's central cooling time in Gyr: the regression head's targets.

    Parameters
    ----------
    catalog : pandas.DataFrame
        The data set's catalogue (:func:`coolcore.data.catalog.read_catalog`).
    source : path
        The catalogue file, named in the message.

    Returns
    -------
    numpy.ndarray
        (N,) float64.

    Raises
    ------
    coolcore.errors.UsageError
        No ``t_cool_gyr`` column, or a row whose value is missing, not finite or
        not positive: ``model.regression`` needs a cooling time for every map.
    """
    if "t_cool_gyr" not in catalog:
        raise UsageError(
            f"{source}: no t_cool_gyr column; model.regression=true needs the central "
            "cooling time of every map (or set model.regression=false)"
        )
    t = pd.to_numeric(catalog["t_cool_gyr"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(t) & (t > 0)))
    if bad.size:
        ids = ", ".join(str(v) for v in catalog["image_id"].iloc[bad[:3]])
        more = f" and {bad.size - 3} more" if bad.size > 3 else ""
        raise UsageError(
            f"{source}: t_cool_gyr missing or not positive for {bad.size} map(s) (image_id "
            f"{ids}{more}); model.regression=true needs a positive cooling time for every map"
        )
    return np.log10(t)
