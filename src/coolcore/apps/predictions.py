"""The prediction table of ``coolcore predict``: its columns, filling it batch by batch, writing it.

Columns (:data:`PREDICTION_COLUMNS`): ``file``, ``image_id``, the ensemble's
class probabilities ``p_CC``, ``p_WCC``, ``p_NCC`` (the mean of the fold
models'), ``predicted`` (their arg-max), ``ordinal_score = sum_k k p_k`` (0 CC,
1 WCC, 2 NCC), ``spread`` (the standard deviation over the fold models,
``ddof=0``, of the probability of the predicted class; 0 for one model), the
crop box ``box_x0, box_y0, box_x1, box_y1`` in pixels of the model input
(averaged over the fold models), the map's diagnostics ``center_ra``,
``center_dec``, ``pixel_kpc``, ``field_kpc``, ``counts``, ``masked_fraction``
and ``warning`` (:data:`coolcore.apps.batches.DIAGNOSTIC_COLUMNS`; the first six
are NaN where they do not apply: a plain map has no centre, counts or mask),
``log10_tcool`` and ``log10_tcool_sigma`` (the cooling-time head's prediction of
log10 t_cool / Gyr: the mean and standard deviation of the mixture of the fold
models' Gaussians, :func:`coolcore.evaluate.regression.mixture_moments`) and
``predicted_from_tcool`` (the class that ``log10_tcool`` implies by the 1.0 / 7.7
Gyr thresholds), NaN and empty for a model without the head; ``t_cool_gyr`` (the
catalogue's true central cooling time, NaN where not given) and ``error`` (empty
when the map was predicted).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES
from coolcore.data.inputs import MapInput
from coolcore.errors import ImageError, UsageError
from coolcore.evaluate.regression import classes_from_log10_tcool

if TYPE_CHECKING:  # pragma: no cover
    from coolcore.apps.batches import PredictionBatch

__all__ = [
    "PREDICTION_COLUMNS",
    "PredictionTable",
    "catalog_metrics",
    "prediction_frame",
    "write_predictions",
]

BOX_COLUMNS: tuple[str, ...] = ("box_x0", "box_y0", "box_x1", "box_y1")

DIAGNOSTIC_COLUMNS: tuple[str, ...] = (
    "center_ra",
    "center_dec",
    "pixel_kpc",
    "field_kpc",
    "counts",
    "masked_fraction",
    "warning",
)
"""Per-map diagnostics (see :mod:`coolcore.data.observation`)."""

PREDICTION_COLUMNS: tuple[str, ...] = (
    "file",
    "image_id",
    *(f"p_{c}" for c in CLASS_NAMES),
    "predicted",
    "ordinal_score",
    "spread",
    *BOX_COLUMNS,
    *DIAGNOSTIC_COLUMNS,
    "log10_tcool",
    "log10_tcool_sigma",
    "predicted_from_tcool",
    "t_cool_gyr",
    "error",
)
"""Columns of ``coolcore predict``'s CSV, in order."""


class PredictionTable:
    """The prediction table of a list of maps, filled from :meth:`TrainedModel.predict_batches`.

    Parameters
    ----------
    items : sequence of MapInput
        The maps, in the order of the table's rows (the order the batches were made from).

    Examples
    --------
    >>> table = PredictionTable(items)                          # doctest: +SKIP
    >>> for batch in model.predict_batches(items):              # doctest: +SKIP
    ...     table.add(batch)
    >>> frame = table.frame()                                   # doctest: +SKIP
    """

    def __init__(self, items: Sequence[MapInput]) -> None:
        n = len(items)
        self.items = items
        self.probs = np.full((n, len(CLASS_NAMES)), np.nan)
        self.spread = np.full(n, np.nan)
        self.boxes = np.full((n, 4), np.nan)
        self.tcool = np.full((n, 2), np.nan)
        self.diagnostics: list[dict] = [{} for _ in range(n)]
        self.error = [""] * n

    def add(self, batch: PredictionBatch) -> None:
        """Record one batch: the ensemble's numbers of its predicted maps, the messages of the others."""
        for i, text in batch.errors.items():
            self.error[batch.start + i] = text
        for i, values in batch.diagnostics.items():
            self.diagnostics[batch.start + i] = values
        if not batch.ok:
            return
        rows = batch.rows
        self.probs[rows] = batch.probs
        self.spread[rows] = batch.spread
        self.boxes[rows] = batch.boxes
        tcool = batch.tcool
        if tcool is not None:
            self.tcool[rows] = np.stack(tcool, axis=1)

    def frame(self) -> pd.DataFrame:
        """The table (columns :data:`PREDICTION_COLUMNS`); unpredicted rows have NaN numbers."""
        probs = self.probs
        ok = np.isfinite(probs).all(axis=1)
        names = np.asarray(CLASS_NAMES, dtype=object)
        predicted = np.where(ok, names[np.where(ok, np.nan_to_num(probs).argmax(axis=1), 0)], "")
        data: dict[str, Any] = {
            "file": [it.file for it in self.items],
            "image_id": [it.image_id for it in self.items],
        }
        for c, name in enumerate(CLASS_NAMES):
            data[f"p_{name}"] = probs[:, c]
        data["predicted"] = predicted
        data["ordinal_score"] = probs @ np.arange(len(CLASS_NAMES), dtype=np.float64)
        data["spread"] = self.spread
        for j, key in enumerate(BOX_COLUMNS):
            data[key] = self.boxes[:, j]
        for key in DIAGNOSTIC_COLUMNS:
            default = "" if key == "warning" else np.nan
            data[key] = [d.get(key, default) for d in self.diagnostics]
        data["log10_tcool"] = self.tcool[:, 0]
        data["log10_tcool_sigma"] = self.tcool[:, 1]
        data["predicted_from_tcool"] = classes_from_log10_tcool(self.tcool[:, 0])
        data["t_cool_gyr"] = [
            np.nan if it.t_cool_gyr is None else it.t_cool_gyr for it in self.items
        ]
        data["error"] = self.error
        return pd.DataFrame(data, columns=list(PREDICTION_COLUMNS))


def prediction_frame(
    items: Sequence[MapInput], batches: Iterable[PredictionBatch], *, raise_errors: bool = False
) -> pd.DataFrame:
    """The prediction table of ``items`` from their batches (:meth:`TrainedModel.predict_batches`).

    Parameters
    ----------
    items : sequence of MapInput
        The maps the batches were made from, in order.
    batches : iterable of PredictionBatch
        The batches, consumed here.
    raise_errors : bool
        Raise the first failed map's :class:`~coolcore.errors.ImageError` instead
        of giving it a row with ``error`` set.
    """
    table = PredictionTable(items)
    for batch in batches:
        if raise_errors and batch.errors:
            raise ImageError(batch.errors[min(batch.errors)])
        table.add(batch)
    return table.frame()


def catalog_metrics(items: Sequence[MapInput], frame: pd.DataFrame) -> dict | None:
    """Metrics (:func:`coolcore.evaluate.metrics.compute_metrics`) of predicted maps that have labels.

    Parameters
    ----------
    items : sequence of MapInput
        The maps (from a catalogue: their ``label`` and ``cluster_id``).
    frame : pandas.DataFrame
        Their prediction table, row for row.

    Returns
    -------
    dict or None
        None when no predicted map has a label.  With the cooling-time head and
        maps with a true ``t_cool_gyr`` it holds ``regression``
        (:func:`coolcore.evaluate.regression.regression_metrics`, by cluster).
    """
    from coolcore.evaluate.metrics import compute_metrics
    from coolcore.evaluate.regression import regression_metrics

    labels = [it.label for it in items]
    keep = np.array([lab in CLASS_NAMES for lab in labels]) & (frame["error"] == "").to_numpy()
    if not keep.any():
        return None
    table = frame.loc[keep, ["image_id", "predicted", *(f"p_{c}" for c in CLASS_NAMES)]].copy()
    table["label"] = np.asarray(labels, dtype=object)[keep]
    clusters = [it.cluster_id or it.image_id for it in items]
    table["cluster_id"] = np.asarray(clusters, dtype=object)[keep]
    metrics = compute_metrics(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log10(frame["t_cool_gyr"].to_numpy(dtype=np.float64))
    mu, sigma = frame["log10_tcool"].to_numpy(), frame["log10_tcool_sigma"].to_numpy()
    if (np.isfinite(y) & np.isfinite(mu)).any():
        metrics["regression"] = regression_metrics(y, mu, sigma, cluster_id=clusters)
    return metrics


def write_predictions(frame: pd.DataFrame, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the prediction table atomically; an existing ``out`` needs ``force``.

    Raises
    ------
    coolcore.errors.UsageError
        ``out`` exists without ``force``, is a folder, or cannot be written.
    """
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out}: already exists; pass --force to overwrite it")
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; --out names the CSV file to write")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp, index=False, float_format="%.9g")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UsageError(f"{out}: cannot write the file ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
