"""A trained ensemble on new maps: read, preprocess, classify batch by batch.

:func:`coolcore.apps.inference.load_model` makes a :class:`TrainedModel`;
:mod:`coolcore.data.inputs` says how a map is brought to the model input.

:meth:`TrainedModel.predict_batches` is the one loop over the maps: it yields a
:class:`PredictionBatch` per batch (which maps were read, their model inputs,
each fold model's probabilities and boxes and, when asked, one fold model's
:class:`~coolcore.nn.model.Explanation`).  :meth:`TrainedModel.predict` fills
the prediction table from it (:func:`coolcore.apps.predictions.prediction_frame`),
:func:`coolcore.apps.explain.explain_maps` draws figures from it.  A map's
numbers do not depend on the batch it is in (nor on ``batch_size``).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coolcore.apps.batches import PredictionBatch, PreparedMaps, prepare_maps
from coolcore.apps.devices import resolve_device
from coolcore.apps.predictions import catalog_metrics, prediction_frame
from coolcore.data.inputs import MapInput, as_inputs, collect_inputs, window_options
from coolcore.errors import UsageError
from coolcore.evaluate.calibration import fold_sigma_scales, fold_temperatures

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from coolcore.nn.model import MultiBranchAttentionNet

__all__ = ["TrainedModel"]


class TrainedModel:
    """A trained ensemble (one network per fold) with its preprocessing; see ``load_model``.

    Parameters
    ----------
    nets : list of MultiBranchAttentionNet
        The fold models, in the order of ``meta["folds"]``.
    meta : dict
        The model description (the content of ``model.json``).
    path : path
        Where it was loaded from.
    device : str, optional
        As :func:`resolve_device`.

    Attributes
    ----------
    meta : dict
        The content of ``model.json``.
    nets : list of MultiBranchAttentionNet
        The fold models, in eval mode.
    path : Path
        The folder it was loaded from.
    device : torch.device
    """

    def __init__(
        self,
        nets: list,
        meta: dict,
        path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.nets = [n.to(self.device).eval() for n in nets]
        if self.device.type == "cpu":
            self.nets = [n.to_channels_last() for n in self.nets]
        self.meta = meta
        self.path = Path(path)

    # ---------------------------------------------------------------- properties
    @property
    def variant(self) -> str:
        return self.meta["variant"]

    @property
    def folds(self) -> list[int]:
        return [int(k) for k in self.meta["folds"]]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @property
    def input_size(self) -> int:
        return int(self.meta["preprocess"]["input_size"])

    @property
    def crop_px(self) -> int:
        """The training window side in map pixels."""
        return int(self.meta["preprocess"]["crop"])

    @property
    def pixel_kpc(self) -> float | None:
        """The training maps' pixel scale (median over the catalogue), if known."""
        return self.meta.get("training_data", {}).get("pixel_kpc")

    @property
    def fov_kpc(self) -> float | None:
        """The training window's field of view in kpc, if known."""
        return self.meta.get("training_data", {}).get("fov_kpc")

    @property
    def temperatures(self) -> list[float]:
        """Each fold model's temperature (:func:`coolcore.evaluate.calibration.fold_temperatures`)."""
        return fold_temperatures(self.meta, len(self.nets))

    @property
    def sigma_scales(self) -> list[float]:
        """Each fold model's cooling-time sigma factor
        (:func:`coolcore.evaluate.calibration.fold_sigma_scales`)."""
        return fold_sigma_scales(self.meta, len(self.nets))

    def fold_network(self, fold: int) -> MultiBranchAttentionNet:
        """The network of fold ``fold`` (a fold number of :attr:`folds`).

        Raises
        ------
        coolcore.errors.UsageError
            The model holds no such fold.
        """
        if fold not in self.folds:
            raise UsageError(
                f"--fold {fold}: the model holds folds {', '.join(map(str, self.folds))}"
            )
        return self.nets[self.folds.index(fold)]

    def __repr__(self) -> str:
        pix = f", {self.pixel_kpc:g} kpc/px" if self.pixel_kpc else ""
        return (
            f"TrainedModel({self.variant}, {len(self.nets)} fold model(s), "
            f"input {self.input_size} px from {self.crop_px} px{pix}, from {self.path})"
        )

    # ---------------------------------------------------------------- preparing
    def prepare(
        self,
        items: Sequence[MapInput],
        *,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
        cosmology: str | None = None,
    ) -> PreparedMaps:
        """Read and preprocess maps into the model's input (:func:`coolcore.apps.batches.prepare_maps`)."""
        return prepare_maps(
            items,
            self.meta,
            crop_px=crop_px,
            crop_kpc=crop_kpc,
            pixel_kpc=pixel_kpc,
            cosmology=cosmology,
        )

    # ---------------------------------------------------------------- inference
    def forward(
        self, images: np.ndarray, full: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Every fold model on a batch of preprocessed images.

        Parameters
        ----------
        images : numpy.ndarray
            (B, S, S) float32 in [0, 1].
        full : numpy.ndarray, optional
            (B, C, C) the same maps before the resize, for networks that cut their
            crop from them (``crop_source: full``).

        Returns
        -------
        probs : numpy.ndarray
            (F, B, 3) class probabilities of each fold model, its logits divided by
            its temperature (:attr:`temperatures`).
        boxes : numpy.ndarray
            (F, B, 4) crop boxes ``(x0, y0, x1, y1)`` in input pixels (the whole
            input for ``baseline``).
        tcool : numpy.ndarray or None
            (F, B, 2) ``mu`` and ``sigma`` of log10 t_cool / Gyr of each fold
            model, ``sigma`` times its factor (:attr:`sigma_scales`); None for
            models without the cooling-time head.
        """
        import torch

        x = self._tensor(images)
        xf = None if full is None else self._tensor(full)
        s = images.shape[-1]
        probs, boxes, tcool = [], [], []
        with torch.inference_mode():
            scaled = zip(self.nets, self.temperatures, self.sigma_scales, strict=True)
            for net, temperature, sigma_scale in scaled:
                out = net(x) if xf is None else net(x, xf)
                logits = out.logits.float() / temperature
                probs.append(logits.softmax(dim=1).cpu().double().numpy())
                if out.boxes is None:
                    b = np.tile(np.array([0, 0, s - 1, s - 1], dtype=np.float64), (len(images), 1))
                else:
                    b = out.boxes.cpu().double().numpy()
                boxes.append(b)
                if out.tcool_mu is not None:
                    tcool.append(
                        torch.stack([out.tcool_mu, out.tcool_sigma * sigma_scale], 1)
                        .cpu()
                        .double()
                        .numpy()
                    )
        return np.stack(probs), np.stack(boxes), np.stack(tcool) if tcool else None

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
        return x.to(self.device)

    def predict_batches(
        self,
        items: Any,
        *,
        batch_size: int = 32,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
        cosmology: str | None = None,
        explain_fold: int | None = None,
        progress: bool = False,
        desc: str = "predicting",
        on_warning: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> Iterator[PredictionBatch]:
        """Read, preprocess and classify maps batch by batch: the one loop of predict and explain.

        The arguments are checked at once (not when the first batch is asked for).

        Parameters
        ----------
        items
            What :meth:`predict` accepts (paths, arrays, :class:`MapInput` ...),
            normalised by :func:`coolcore.data.inputs.as_inputs`.
        batch_size : int
            Maps per forward pass (at least 1); the results do not depend on it.
        crop_px, crop_kpc, pixel_kpc
            How a map is brought to the model input (:mod:`coolcore.data.inputs`).
        cosmology : str, optional
            The astropy cosmology turning an observation's WCS and redshift into
            kpc (default Planck18; :mod:`coolcore.data.observation`).
        explain_fold : int, optional
            A fold number of :attr:`folds`: each batch also carries that fold
            model's :class:`~coolcore.nn.model.Explanation` of its maps.
        progress : bool
            A tqdm progress bar on stderr, labelled ``desc``.
        on_warning, on_error : callable, optional
            Receive each batch's one-line warnings and errors as they come
            (default: warnings go to :func:`warnings.warn`, errors only into the
            batch).

        Yields
        ------
        PredictionBatch
            One per ``batch_size`` maps, in order.

        Raises
        ------
        coolcore.errors.UsageError
            A bad ``batch_size``, window option or ``explain_fold``.
        """
        if batch_size < 1:
            raise UsageError(f"batch size {batch_size}: must be at least 1")
        window = window_options(crop_px, crop_kpc, pixel_kpc, cosmology)
        explainer = None if explain_fold is None else self.fold_network(explain_fold)
        return self._batches(
            as_inputs(items, pixel_kpc),
            batch_size,
            window,
            explainer,
            progress,
            desc,
            on_warning,
            on_error,
        )

    def _batches(
        self,
        items: list[MapInput],
        batch_size: int,
        window: dict,
        explainer: MultiBranchAttentionNet | None,
        progress: bool,
        desc: str,
        on_warning: Callable[[str], None] | None,
        on_error: Callable[[str], None] | None,
    ) -> Iterator[PredictionBatch]:
        import torch
        from tqdm import tqdm

        with tqdm(
            total=len(items),
            desc=desc,
            unit="map",
            disable=None if progress else True,
            file=sys.stderr,
        ) as bar:

            def say(fn: Callable[[str], None] | None, text: str) -> None:
                if fn is None:  # warnings.warn <- say <- this generator <- predict <- the caller
                    warnings.warn(text, stacklevel=4)
                elif progress:
                    bar.clear()
                    fn(text)
                    bar.refresh()
                else:
                    fn(text)

            n_folds = len(self.nets)
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                prep = self.prepare(chunk, **window)
                for text in prep.warnings:
                    say(on_warning, text)
                for i in sorted(prep.errors):
                    if on_error is not None:
                        say(on_error, prep.errors[i])
                probs, boxes = np.zeros((n_folds, 0, 3)), np.zeros((n_folds, 0, 4))
                explanation = tcool = None
                if prep.ok:
                    probs, boxes, tcool = self.forward(prep.images, prep.full)
                    if explainer is not None:
                        with torch.inference_mode():
                            xf = None if prep.full is None else self._tensor(prep.full)
                            explanation = explainer.explain(self._tensor(prep.images), xf)
                yield PredictionBatch(
                    start=start,
                    items=chunk,
                    ok=prep.ok,
                    images=prep.images,
                    errors=prep.errors,
                    warnings=prep.warnings,
                    fold_probs=probs,
                    fold_boxes=boxes,
                    explanation=explanation,
                    diagnostics=prep.diagnostics,
                    fields=prep.fields,
                    fold_tcool=tcool,
                )
                bar.update(len(chunk))

    def predict(
        self,
        images_or_paths: Any = None,
        *,
        catalog: str | os.PathLike | None = None,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
        cosmology: str | None = None,
        batch_size: int = 32,
        progress: bool = False,
        output: str = "frame",
        errors: str = "row",
        on_warning: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> pd.DataFrame | list[dict]:
        """Classify maps with the ensemble.

        Parameters
        ----------
        images_or_paths
            A path (file or folder), a 2-D array, an (N, H, W) stack, or a
            sequence of paths / arrays / :class:`MapInput`.
        catalog : path, optional
            A catalogue CSV whose maps are predicted first (as ``--catalog``).
        crop_px, crop_kpc, pixel_kpc
            How a map is brought to the model input (see :mod:`coolcore.data.inputs`).
            ``pixel_kpc`` overrides every map's own pixel scale.
        cosmology : str, optional
            Astropy cosmology of observations (default Planck18).
        batch_size : int
            Maps per forward pass (the results do not depend on it).
        progress : bool
            Show a tqdm progress bar on stderr.
        output : {"frame", "records"}
            A :class:`pandas.DataFrame` or a list of dicts.
        errors : {"row", "raise"}
            A map that cannot be read or used gives a row with ``error`` set
            (default), or raises its :class:`~coolcore.errors.ImageError`.
        on_warning, on_error : callable, optional
            Receive one-line messages (default: warnings go to :func:`warnings.warn`,
            errors only to the ``error`` column).

        Returns
        -------
        pandas.DataFrame or list of dict
            Columns :data:`coolcore.apps.predictions.PREDICTION_COLUMNS`, one row
            per map in input order; failed maps have NaN numbers, an empty
            ``predicted`` and the message in ``error`` (empty when fine).
        """
        if output not in ("frame", "records"):
            raise UsageError(f"output={output!r}: must be 'frame' or 'records'")
        if errors not in ("row", "raise"):
            raise UsageError(f"errors={errors!r}: must be 'row' or 'raise'")
        items = as_inputs(images_or_paths, pixel_kpc) if images_or_paths is not None else []
        if catalog is not None:
            items = collect_inputs(catalog=catalog) + items
        if not items:
            raise UsageError("no maps given: pass paths, arrays or catalog=CSV")
        batches = self.predict_batches(
            items,
            batch_size=batch_size,
            crop_px=crop_px,
            crop_kpc=crop_kpc,
            pixel_kpc=pixel_kpc,
            cosmology=cosmology,
            progress=progress,
            on_warning=on_warning,
            on_error=on_error,
        )
        frame = prediction_frame(items, batches, raise_errors=errors == "raise")
        return frame if output == "frame" else frame.to_dict(orient="records")

    def evaluate(
        self, catalog: str | os.PathLike, **kwargs: Any
    ) -> tuple[pd.DataFrame, dict | None]:
        """Predict a labelled catalogue's maps and score them (``predict --catalog``).

        Parameters
        ----------
        catalog : path
            Catalogue CSV with ``label`` (or ``t_cool_gyr``) for some or all rows.
        **kwargs
            Options of :meth:`predict` (``crop_px``, ``pixel_kpc``, ``batch_size`` ...).

        Returns
        -------
        (pandas.DataFrame, dict or None)
            The prediction table, and :func:`coolcore.evaluate.metrics.compute_metrics`
            of the maps that have labels and were predicted (None if there are none).
        """
        items = collect_inputs(catalog=catalog)
        frame = self.predict(items, **{**kwargs, "output": "frame"})
        return frame, catalog_metrics(items, frame)
