"""The in-memory training data: a data set over one tensor, an epoch-seeded shuffle,
and the DataLoader :func:`coolcore.train.fit.fit_fold` and ``coolcore bench`` use."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

__all__ = [
    "EpochSeededSampler",
    "InMemoryImages",
    "as_tensor_images",
    "drop_single_last_batch",
    "make_loader",
]


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
