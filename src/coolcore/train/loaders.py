"""The in-memory training data: a data set over one tensor, an epoch-seeded shuffle,
the DataLoader :func:`coolcore.train.fit.fit_fold` and ``coolcore bench`` use, the
cooling-time targets of the regression head (:func:`log10_tcool_targets`), and the
dihedral augmentation of training batches (:func:`dihedral_batch`).

A batch is ``(images, labels)``, or ``(images, labels, log10_tcool)`` when the
loader is given cooling-time targets (``model.regression``).  When it is given the
full-resolution maps (``model.crop_source=full``) a batch is
``(images, labels, log10_tcool or None, full)``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler

from coolcore.errors import UsageError

__all__ = [
    "DIHEDRAL_ORDER",
    "EpochSeededSampler",
    "InMemoryImages",
    "as_tensor_images",
    "dihedral_batch",
    "dihedral_elements",
    "dihedral_transform",
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
    log10 of the cooling time) a sample is ``(image, label, target)``; with
    ``full`` (the maps before the resize, one per image) it is
    ``(image, label, target or None, full map)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        rows: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        full: torch.Tensor | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.targets = targets
        self.full = full
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels) if self.rows is None else len(self.rows)

    def _take(self, index):
        target = None if self.targets is None else self.targets[index]
        if self.full is not None:
            return self.images[index], self.labels[index], target, self.full[index]
        if self.targets is None:
            return self.images[index], self.labels[index]
        return self.images[index], self.labels[index], target

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
    full: torch.Tensor | None = None,
) -> DataLoader:
    """A DataLoader over in-memory tensors (only ``rows`` of them if given, not copied);
    shuffled by epoch when a seed is given; ``targets`` (float per map) adds a third
    element to each batch, ``full`` ((N, 1, F, F) maps before the resize) a fourth."""
    if targets is not None:
        targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    ds = InMemoryImages(images, labels, rows, targets, full)
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


DIHEDRAL_ORDER = 8
"""The elements of the dihedral group D4 of the square: ``e = r + 4 f``, a rotation by
``r`` quarter turns (``torch.rot90`` / ``np.rot90``, rows towards columns), then a
left-right flip of the last axis when ``f = 1``."""


def dihedral_transform(x: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
    """Each square map of a batch transformed by its element of D4.

    Parameters
    ----------
    x : Tensor
        (B, ..., S, S) maps.
    elements : Tensor
        (B,) integers in [0, 8) (:data:`DIHEDRAL_ORDER`); 0 is the identity.

    Returns
    -------
    Tensor
        A new tensor of ``x``'s shape: map ``i`` is ``x[i]`` rotated by
        ``elements[i] % 4`` quarter turns, then flipped left-right if ``elements[i] >= 4``.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dihedral_transform needs square maps, got shape {tuple(x.shape)}")
    elements = torch.as_tensor(elements).to("cpu")
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for e in torch.unique(elements).tolist():
        idx = torch.nonzero(elements == e).flatten().to(x.device)
        part = torch.rot90(x[idx], e % 4, dims=(-2, -1))
        out[idx] = torch.flip(part, dims=(-1,)) if e >= 4 else part
    return out


def dihedral_elements(n: int, seed: int, epoch: int, batch: int, rank: int = 0) -> torch.Tensor:
    """The D4 elements of the ``n`` maps of one training batch: random, but fixed by
    (seed, epoch, batch index, process rank), so a deterministic or resumed run draws
    the same ones.  Returns (n,) int64 in [0, 8)."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(batch), int(rank)])
    g = torch.Generator().manual_seed(int(state.generate_state(1)[0]))
    return torch.randint(0, DIHEDRAL_ORDER, (n,), generator=g)


def dihedral_batch(batch: tuple, elements: torch.Tensor) -> tuple:
    """A training batch (see the module) with its maps, and their full-resolution maps if
    any, transformed by ``elements`` (:func:`dihedral_transform`); labels and targets kept.

    Projected X-ray maps have no preferred orientation, so a cluster's class does not
    change under the flips and quarter turns of the square.
    """
    out = list(batch)
    out[0] = dihedral_transform(batch[0], elements)
    if len(batch) > 3 and batch[3] is not None:
        out[3] = dihedral_transform(batch[3], elements)
    return tuple(out)


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
