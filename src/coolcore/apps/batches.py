"""A batch of maps on their way through a trained model: read, preprocessed, classified.

:func:`prepare_maps` reads maps and brings them to the model input (the rules
are in :mod:`coolcore.data.inputs`), collecting each map's failure instead of
raising it; :class:`PredictionBatch` is what
:meth:`coolcore.apps.trained.TrainedModel.predict_batches` yields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from coolcore.data.inputs import MapInput, input_window_px
from coolcore.data.scale import header_scale_and_unit
from coolcore.errors import CoolcoreError, ImageError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from coolcore.nn.outputs import Explanation

__all__ = [
    "PIXEL_SCALE_TOLERANCE",
    "PredictionBatch",
    "PreparedMaps",
    "prepare_maps",
]

PIXEL_SCALE_TOLERANCE = 0.2
"""Relative pixel-scale difference to the training data above which a map is warned about."""


@dataclass
class PreparedMaps:
    """Maps read and brought to the model input; failures collected, not raised.

    Attributes
    ----------
    ok : list of int
        Indices (into the maps given) of those that could be used, in order.
    images : numpy.ndarray
        (len(ok), S, S) float32 model inputs in [0, 1].
    errors : dict of int to str
        Index -> one-line message of each map that could not be used.
    warnings : list of str
        One-line warnings (pixel scale, units, observations).
    diagnostics : dict of int to dict
        Index -> the map's :data:`coolcore.apps.predictions.DIAGNOSTIC_COLUMNS` (centre, pixel scale, field,
        counts, masked fraction, warning; NaN where they do not apply).
    fields : dict of int to PreparedField
        Index -> the observation's prepared field (observations only), for figures.
    full : numpy.ndarray or None
        (len(ok), crop, crop) the maps before the resize, for a network that cuts its
        auxiliary crop from them (``crop_source: full``); None otherwise.
    """

    ok: list[int]
    images: np.ndarray
    errors: dict[int, str]
    warnings: list[str]
    diagnostics: dict[int, dict] = field(default_factory=dict)
    fields: dict[int, Any] = field(default_factory=dict, repr=False)
    full: np.ndarray | None = field(default=None, repr=False)


@dataclass
class PredictionBatch:
    """One batch of :meth:`TrainedModel.predict_batches`.

    Attributes
    ----------
    start : int
        Index of the batch's first map among all the maps.
    items : sequence of MapInput
        The batch's maps; ``ok``, ``errors`` index into it.
    ok, images, errors, warnings, diagnostics
        As :class:`PreparedMaps`.
    fold_probs : numpy.ndarray
        (F, len(ok), 3) float64 class probabilities of each fold model.
    fold_boxes : numpy.ndarray
        (F, len(ok), 4) float64 crop boxes ``(x0, y0, x1, y1)`` in input pixels,
        both ends inclusive (the whole input for ``baseline``).
    explanation : Explanation or None
        The maps of the fold model asked for (``explain_fold``), as tensors on
        the model's device, row ``j`` for map ``ok[j]``; None otherwise or when
        no map of the batch could be used.
    fold_tcool : numpy.ndarray or None
        (F, len(ok), 2) float64 ``mu`` and ``sigma`` (dex) of each fold model's
        Gaussian for log10 t_cool / Gyr; None for a model without the
        cooling-time head.
    """

    start: int
    items: Sequence[MapInput]
    ok: list[int]
    images: np.ndarray
    errors: dict[int, str]
    warnings: list[str]
    fold_probs: np.ndarray
    fold_boxes: np.ndarray
    explanation: Explanation | None = field(default=None, repr=False)
    diagnostics: dict[int, dict] = field(default_factory=dict)
    fields: dict[int, Any] = field(default_factory=dict, repr=False)
    fold_tcool: np.ndarray | None = None

    @property
    def rows(self) -> np.ndarray:
        """Indices among all the maps of the predicted maps (``start + ok``)."""
        return self.start + np.asarray(self.ok, dtype=np.int64)

    @property
    def probs(self) -> np.ndarray:
        """(len(ok), 3) the ensemble's probabilities: the mean over the fold models."""
        return self.fold_probs.mean(axis=0)

    @property
    def predicted(self) -> np.ndarray:
        """(len(ok),) class index of the ensemble's arg-max."""
        return self.probs.argmax(axis=1)

    @property
    def spread(self) -> np.ndarray:
        """(len(ok),) standard deviation over the fold models of the predicted class's probability."""
        pred = self.predicted
        return self.fold_probs[:, np.arange(len(pred)), pred].std(axis=0)

    @property
    def boxes(self) -> np.ndarray:
        """(len(ok), 4) crop boxes averaged over the fold models."""
        return self.fold_boxes.mean(axis=0)

    @property
    def tcool(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mu, sigma), each (len(ok),): the fold models' Gaussians of log10 t_cool
        combined into their mixture's mean and standard deviation
        (:func:`coolcore.evaluate.regression.mixture_moments`); None without the head."""
        if self.fold_tcool is None:
            return None
        from coolcore.evaluate.regression import mixture_moments

        return mixture_moments(self.fold_tcool[..., 0], self.fold_tcool[..., 1], axis=0)


def _read(item: MapInput, pixel_kpc: float | None) -> tuple[np.ndarray, float | None, str | None]:
    """The map, its pixel scale in kpc and its unit (None where unknown)."""
    from coolcore.data.images import read_image

    if item.array is not None:
        arr = np.asarray(item.array)
        if arr.ndim != 2:
            raise ImageError(f"{item.name}: expected a 2-D map, got shape {arr.shape}")
        if arr.dtype.kind not in "iuf":
            raise ImageError(f"{item.name}: non-numeric data (dtype {arr.dtype})")
        return np.asarray(arr, dtype=np.float64), pixel_kpc or item.pixel_kpc, None
    arr = read_image(item.file)
    header_scale, unit = header_scale_and_unit(item.file)
    return arr, pixel_kpc or item.pixel_kpc or header_scale, unit


def _instrument(item: MapInput) -> str | None:
    """The ``INSTRUME`` keyword of a FITS map's header, None where there is none."""
    if item.array is not None or not item.file:
        return None
    from coolcore.data.images import image_header_info

    try:
        return image_header_info(item.file).get("instrument")
    except CoolcoreError:
        return None


def _plain_diagnostics(scale: float | None, window: int, notes: list[str]) -> dict:
    nan = float("nan")
    return {
        "center_ra": nan,
        "center_dec": nan,
        "pixel_kpc": float(scale) if scale else nan,
        "field_kpc": float(scale * window) if scale else nan,
        "counts": nan,
        "masked_fraction": nan,
        "warning": "; ".join(notes),
    }


def _observation(item, meta, crop_kpc, pixel_kpc, cosmology):
    """(field image, PreparedField, warnings) of one observation at the model's training field."""
    from coolcore.data.inputs import observation_field

    p = meta["preprocess"]
    crop = int(p["crop"])
    training_pixel_kpc = meta.get("training_data", {}).get("pixel_kpc")
    field_kpc = crop_kpc or (crop * training_pixel_kpc if training_pixel_kpc else None)
    if not field_kpc:
        raise ImageError(
            f"{item.name}: the model does not record its training field in kpc; give --crop-kpc"
        )
    prepared = observation_field(
        item, field_kpc=field_kpc, grid=crop, pixel_kpc=pixel_kpc, cosmology=cosmology
    )
    notes = list(prepared.warnings)
    training = meta.get("training_data", {})
    if (
        training.get("kind", "maps") == "maps"
        and training_pixel_kpc
        and prepared.pixel_kpc > (1 + PIXEL_SCALE_TOLERANCE) * training_pixel_kpc
    ):
        notes.append(
            f"{item.name}: observation pixels of {prepared.pixel_kpc:.3g} kpc are "
            f"{prepared.pixel_kpc / training_pixel_kpc:.1f}x coarser than the {training_pixel_kpc:.3g} "
            "kpc maps the model was trained on; predictions may be unreliable (use a model "
            "trained on mock observations of this instrument)"
        )
    notes.extend(_warnings(meta, item, None, None))
    image = prepared.surface_luminosity() if p["scaling"] == "dataset" else prepared.image
    return image, prepared, notes


def _warnings(meta: dict, item: MapInput, scale: float | None, unit: str | None) -> list[str]:
    """One-line warnings: pixel scale off by more than 20 %; other units under data-set scaling."""
    out = []
    ref = meta.get("training_data", {}).get("pixel_kpc")
    if scale and ref and abs(scale - ref) / ref > PIXEL_SCALE_TOLERANCE:
        out.append(
            f"{item.name}: pixel scale {scale:.4g} kpc differs from the training maps' "
            f"{ref:.4g} kpc by {100 * abs(scale - ref) / ref:.0f}% "
            f"(> {100 * PIXEL_SCALE_TOLERANCE:.0f}%); predictions may be unreliable"
        )
    train_inst = meta.get("training_data", {}).get("instrument")
    inst = _instrument(item) if train_inst else None  # a header read only when it can matter
    if train_inst and inst and inst.strip().lower() != str(train_inst).strip().lower():
        out.append(
            f"{item.name}: observed with {inst}, but the model was trained on {train_inst} "
            "maps; predictions may be unreliable (see the README's domain-shift table)"
        )
    train_unit = meta.get("training_data", {}).get("bunit")
    if (
        meta["preprocess"]["scaling"] == "dataset"
        and unit
        and train_unit
        and unit.strip().lower() != train_unit.strip().lower()
    ):
        out.append(
            f"{item.name}: unit '{unit}' differs from the training maps' '{train_unit}'; "
            "this model scales all maps with one range of log values, so units matter"
        )
    return out


def prepare_maps(
    items: Sequence[MapInput],
    meta: dict,
    *,
    crop_px: int | None = None,
    crop_kpc: float | None = None,
    pixel_kpc: float | None = None,
    cosmology: str | None = None,
) -> PreparedMaps:
    """Read maps and bring them to a model's input; failures are collected, not raised.

    Parameters
    ----------
    items : sequence of MapInput
        The maps.
    meta : dict
        The model description (``model.json``): its ``preprocess`` and
        ``training_data`` say how (see :mod:`coolcore.data.inputs`).
    crop_px, crop_kpc, pixel_kpc
        The user's window and pixel scale, as ``--crop-px`` ... .  For an
        observation (:attr:`MapInput.is_observation`) ``crop_kpc`` is the field
        (default: the training field) and ``crop_px`` does not apply.
    cosmology : str, optional
        Name of the astropy cosmology for observations (default Planck18).

    Returns
    -------
    PreparedMaps

    Raises
    ------
    coolcore.errors.UsageError
        Contradicting options (a map's own problems become ``errors``).
    """

    p = meta["preprocess"]
    crop, size = int(p["crop"]), int(p["input_size"])
    training_pixel_kpc = meta.get("training_data", {}).get("pixel_kpc")
    log_range = tuple(p["log_range"]) if p.get("log_range") else None
    errors: dict[int, str] = {}
    notes: list[str] = []
    arrays: dict[int, np.ndarray] = {}
    windows: dict[int, int] = {}
    diagnostics: dict[int, dict] = {}
    fields: dict[int, Any] = {}
    for i, item in enumerate(items):
        try:
            if item.is_observation:
                if crop_px is not None:
                    raise UsageError(
                        "--crop-px does not apply to observations (the field is cut in kpc): "
                        "use --crop-kpc"
                    )
                arr, fields[i], more = _observation(item, meta, crop_kpc, pixel_kpc, cosmology)
                windows[i], arrays[i] = crop, arr
                diagnostics[i] = fields[i].diagnostics()
                diagnostics[i]["warning"] = "; ".join(more)
                notes.extend(more)
                continue
            arr, scale, unit = _read(item, pixel_kpc)
            windows[i] = input_window_px(
                arr.shape,
                scale,
                model_crop_px=crop,
                model_pixel_kpc=training_pixel_kpc,
                crop_px=crop_px,
                crop_kpc=crop_kpc,
                name=item.name,
            )
            arrays[i] = arr
            more = _warnings(meta, item, scale, unit)
            diagnostics[i] = _plain_diagnostics(scale, windows[i], more)
            notes.extend(more)
        except UsageError:
            raise
        except CoolcoreError as exc:
            errors[i] = str(exc)
    done = _preprocess(items, arrays, windows, size, p, log_range, errors)
    ok = sorted(done)
    images = np.stack([done[i] for i in ok]) if ok else np.zeros((0, size, size), np.float32)
    full = None
    if meta.get("network", {}).get("crop_source", "input") == "full":  # the crop's source maps
        big = _preprocess(items, arrays, {i: windows[i] for i in ok}, crop, p, log_range, {})
        full = np.stack([big[i] for i in ok]) if ok else np.zeros((0, crop, crop), np.float32)
    return PreparedMaps(
        ok=ok,
        images=images,
        errors=errors,
        warnings=notes,
        diagnostics=diagnostics,
        fields=fields,
        full=full,
    )


def _preprocess(items, arrays, windows, size, p, log_range, errors) -> dict[int, np.ndarray]:
    """Each map's window preprocessed and resized to ``size`` (a map that fails: ``errors``)."""
    from coolcore.data.transforms import PreprocessConfig, preprocess_batch

    done: dict[int, np.ndarray] = {}
    for n in sorted(set(windows.values())):
        members = [i for i in windows if windows[i] == n]
        cfg = PreprocessConfig(
            crop=n, size=size, scaling=p["scaling"], center=p.get("center", "image")
        )
        try:
            out = preprocess_batch(
                [arrays[i] for i in members], cfg, [items[i].name for i in members], log_range
            )
            done.update(zip(members, out, strict=True))
        except CoolcoreError:  # isolate the bad map(s)
            for i in members:
                try:
                    done[i] = preprocess_batch([arrays[i]], cfg, [items[i].name], log_range)[0]
                except CoolcoreError as exc:
                    errors[i] = str(exc)
    return done
