"""Trained models on new maps: load a model folder safely, predict with the ensemble.

:func:`coolcore.apps.export.export_model` writes the model folder (its layout is
described there); :mod:`coolcore.data.inputs` says how a map is brought to the model.

Loading (:func:`load_model`) never unpickles code: the weights are safetensors,
and a cv run folder is read with ``torch.load(..., weights_only=True)``.  Every
weight file's SHA-256 is checked against ``model.json`` before it is read, so a
truncated, corrupt or modified file is refused with a one-line
:class:`~coolcore.errors.DataError` naming it.

Predictions
-----------
Each fold model gives class probabilities; the ensemble's are their mean.
``predicted`` is the arg-max of the mean, ``ordinal_score = sum_k k p_k`` the
expected class index (0 CC, 1 WCC, 2 NCC), ``spread`` the standard deviation
over the fold models (``ddof=0``) of the probability of the predicted class
(0 for a single model).  The box ``box_x0, box_y0, box_x1, box_y1`` is the
auxiliary branch's crop box in pixels of the *model input*
(``input_size`` x ``input_size``; x the column, y the row, both ends inclusive),
averaged over the fold models; ``baseline`` models give the whole input.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolcore import CLASS_NAMES, __version__
from coolcore.apps.export import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MODEL_FILE,
    _checkpoint_of,
    _cv_record,
    _fold_dirs,
    _metadata,
    _network_config,
    _one_line,
    _read_json,
    _sha256,
    _state_from_checkpoint,
    export_model,
)
from coolcore.data.inputs import (
    MapInput,
    _as_inputs,
    _header_scale_and_unit,
    collect_inputs,
    input_window_px,
    map_pixel_kpc,
)
from coolcore.errors import CoolcoreError, DataError, ImageError, UsageError

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FILE",
    "PIXEL_SCALE_TOLERANCE",
    "PREDICTION_COLUMNS",
    "MapInput",
    "TrainedModel",
    "collect_inputs",
    "export_model",
    "input_window_px",
    "load_model",
    "map_pixel_kpc",
]

PIXEL_SCALE_TOLERANCE = 0.2
"""Relative pixel-scale difference to the training data above which a map is warned about."""

PREDICTION_COLUMNS: tuple[str, ...] = (
    "file",
    "image_id",
    *(f"p_{c}" for c in CLASS_NAMES),
    "predicted",
    "ordinal_score",
    "spread",
    "box_x0",
    "box_y0",
    "box_x1",
    "box_y1",
    "error",
)
"""Columns of ``coolcore predict``'s CSV, in order."""


# --------------------------------------------------------------------------- loading
def _build_net(network: dict, state: dict, source: Path):
    import torch

    from coolcore.nn.model import MultiBranchAttentionNet

    config = {k: v for k, v in network.items() if k in MultiBranchAttentionNet.CONFIG_KEYS}
    config["weights"] = "none"  # the trained weights come from the state dict
    try:
        # built on the meta device: no time spent on a random initialisation that
        # the state dict replaces at once (assign=True adopts its tensors)
        with torch.device("meta"):
            net = MultiBranchAttentionNet.from_config(config)
    except CoolcoreError as exc:
        raise DataError(f"{source}: bad network description ({exc})") from None
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())[:200]
        raise DataError(
            f"{source}: weights do not fit the network in {MODEL_FILE} ({text})"
        ) from None
    return net.eval()


def _load_weight_file(path: Path, expected_sha: str | None) -> dict:
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(f"{path}: weight file missing (listed in {MODEL_FILE})")
    if expected_sha is not None:
        actual = _sha256(path)
        if actual != expected_sha:
            raise DataError(
                f"{path}: SHA-256 {actual[:12]}... does not match {MODEL_FILE} "
                f"({str(expected_sha)[:12]}...): the file is truncated, corrupt or was modified"
            )
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise DataError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None


def _check_meta(meta: dict, path: Path) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"{path}: not a coolcore model description (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version != FORMAT_VERSION:
        raise DataError(
            f"{path}: model format version {version!r} is not supported by coolcore "
            f"{__version__} (it reads version {FORMAT_VERSION}); use the coolcore that wrote it"
        )
    for key in ("network", "preprocess", "weights", "folds", "class_names"):
        if key not in meta:
            raise DataError(f"{path}: missing key '{key}'")
    if list(meta["class_names"]) != list(CLASS_NAMES):
        raise DataError(
            f"{path}: class names {meta['class_names']} differ from {list(CLASS_NAMES)}"
        )


def load_model(path: str | os.PathLike, *, device: str | None = None) -> TrainedModel:
    """Load a model folder (or use a cv run folder directly) for prediction.

    Parameters
    ----------
    path : path
        A folder written by :func:`export_model` (``model.json`` + safetensors),
        or a finished cv run folder (its fold checkpoints, read with
        ``weights_only=True``, form the ensemble).
    device : str, optional
        ``"cpu"``, ``"cuda"`` ... (default: CUDA when available).

    Returns
    -------
    TrainedModel

    Raises
    ------
    coolcore.errors.UsageError
        ``path`` is neither a model folder nor a cv run.
    coolcore.errors.DataError
        ``model.json`` unreadable or of an unknown format version; a weight file
        missing, truncated, corrupt or modified (SHA-256 mismatch).

    Examples
    --------
    >>> import coolcore
    >>> model = coolcore.load_model("model")            # doctest: +SKIP
    >>> model.predict(["maps/a1795.fits"])              # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such model folder")
    if path.is_dir() and not (path / MODEL_FILE).is_file() and (path / "run.json").is_file():
        return _model_from_run(path, device=device)
    if not path.is_dir():
        raise UsageError(
            f"{path}: not a model folder (MODEL_DIR is the folder `coolcore export` writes)"
        )
    meta_path = path / MODEL_FILE
    if not meta_path.is_file():
        raise UsageError(
            f"{path}: not a model folder (no {MODEL_FILE}); make one with "
            f"`coolcore export RUN --out {path}`"
        )
    meta = _read_json(meta_path)
    _check_meta(meta, meta_path)
    nets = []
    for k in meta["folds"]:
        name = f"fold_{int(k):02d}.safetensors"
        if name not in meta["weights"]:
            raise DataError(f"{meta_path}: no SHA-256 listed for {name}")
        file = path / name
        state = _load_weight_file(file, meta["weights"][name])
        nets.append(_build_net(meta["network"], state, file))
    return TrainedModel(nets, meta, path, device=device)


def _model_from_run(run: Path, *, device: str | None) -> TrainedModel:
    record = _cv_record(run)
    dirs = _fold_dirs(run)
    n_folds = int(record["config"]["cv"]["folds"])
    folds = [k for k in range(n_folds) if k in dirs]
    if not folds:
        raise DataError(f"{run}: no fold folders with checkpoints")
    nets = []
    for k in folds:
        ckpt = _checkpoint_of(dirs[k])
        state, cfg = _state_from_checkpoint(ckpt)
        nets.append(_build_net(_network_config(cfg), state, ckpt))
    meta = _metadata(run, record, folds, weights={})
    return TrainedModel(nets, meta, run, device=device)


# --------------------------------------------------------------------------- the model
@dataclass
class _Prepared:
    """A batch ready for the network: which inputs, their tensors, and the failures."""

    ok: list[int]
    images: np.ndarray  # (n_ok, S, S) float32
    errors: dict[int, str]
    warnings: list[str]


class TrainedModel:
    """A trained ensemble (one network per fold) with its preprocessing; see :func:`load_model`.

    Attributes
    ----------
    meta : dict
        The content of ``model.json``.
    nets : list of MultiBranchAttentionNet
        The fold models, in eval mode.
    path : Path
        The folder it was loaded from.
    """

    def __init__(self, nets: list, meta: dict, path: Path, *, device: str | None = None) -> None:
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
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

    def __repr__(self) -> str:
        pix = f", {self.pixel_kpc:g} kpc/px" if self.pixel_kpc else ""
        return (
            f"TrainedModel({self.variant}, {len(self.nets)} fold model(s), "
            f"input {self.input_size} px from {self.crop_px} px{pix}, from {self.path})"
        )

    # ---------------------------------------------------------------- preparing
    def _read(
        self, item: MapInput, pixel_kpc: float | None
    ) -> tuple[np.ndarray, float | None, str | None]:
        """The map, its pixel scale in kpc and its unit (None where unknown)."""
        from coolcore.data.io import read_image

        if item.array is not None:
            arr = np.asarray(item.array)
            if arr.ndim != 2:
                raise ImageError(f"{item.name}: expected a 2-D map, got shape {arr.shape}")
            if arr.dtype.kind not in "iuf":
                raise ImageError(f"{item.name}: non-numeric data (dtype {arr.dtype})")
            return np.asarray(arr, dtype=np.float64), pixel_kpc or item.pixel_kpc, None
        arr = read_image(item.file)
        header_scale, unit = _header_scale_and_unit(Path(item.file))
        return arr, pixel_kpc or item.pixel_kpc or header_scale, unit

    def _warnings(self, item: MapInput, scale: float | None, unit: str | None) -> list[str]:
        """One-line warnings: pixel scale off by more than 20 %; other units under data-set scaling."""
        out = []
        ref = self.pixel_kpc
        if scale and ref and abs(scale - ref) / ref > PIXEL_SCALE_TOLERANCE:
            out.append(
                f"{item.name}: pixel scale {scale:.4g} kpc differs from the training maps' "
                f"{ref:.4g} kpc by {100 * abs(scale - ref) / ref:.0f}% "
                f"(> {100 * PIXEL_SCALE_TOLERANCE:.0f}%); predictions may be unreliable"
            )
        train_unit = self.meta.get("training_data", {}).get("bunit")
        if (
            self.meta["preprocess"]["scaling"] == "dataset"
            and unit
            and train_unit
            and unit.strip().lower() != train_unit.strip().lower()
        ):
            out.append(
                f"{item.name}: unit '{unit}' differs from the training maps' '{train_unit}'; "
                "this model scales all maps with one range of log values, so units matter"
            )
        return out

    def prepare(
        self,
        items: Sequence[MapInput],
        *,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
    ) -> _Prepared:
        """Read and preprocess maps into the model's input; failures are collected, not raised."""
        from coolcore.data.preprocess import PreprocessConfig, preprocess_batch

        p = self.meta["preprocess"]
        log_range = tuple(p["log_range"]) if p.get("log_range") else None
        errors: dict[int, str] = {}
        notes: list[str] = []
        arrays: dict[int, np.ndarray] = {}
        windows: dict[int, int] = {}
        for i, item in enumerate(items):
            try:
                arr, scale, unit = self._read(item, pixel_kpc)
                windows[i] = input_window_px(
                    arr.shape,
                    scale,
                    model_crop_px=self.crop_px,
                    model_pixel_kpc=self.pixel_kpc,
                    crop_px=crop_px,
                    crop_kpc=crop_kpc,
                    name=item.name,
                )
                arrays[i] = arr
                notes.extend(self._warnings(item, scale, unit))
            except UsageError:
                raise
            except CoolcoreError as exc:
                errors[i] = str(exc)
        done: dict[int, np.ndarray] = {}
        for n in sorted(set(windows.values())):
            members = [i for i in windows if windows[i] == n]
            cfg = PreprocessConfig(
                crop=n, size=self.input_size, scaling=p["scaling"], center=p.get("center", "image")
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
        ok = sorted(done)
        s = self.input_size
        images = np.stack([done[i] for i in ok]) if ok else np.zeros((0, s, s), np.float32)
        return _Prepared(ok=ok, images=images, errors=errors, warnings=notes)

    # ---------------------------------------------------------------- inference
    def forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every fold model on a batch of preprocessed images.

        Parameters
        ----------
        images : numpy.ndarray
            (B, S, S) float32 in [0, 1].

        Returns
        -------
        probs : numpy.ndarray
            (F, B, 3) class probabilities of each fold model.
        boxes : numpy.ndarray
            (F, B, 4) crop boxes ``(x0, y0, x1, y1)`` in input pixels (the whole
            input for ``baseline``).
        """
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None].to(
            self.device
        )
        s = images.shape[-1]
        probs, boxes = [], []
        with torch.inference_mode():
            for net in self.nets:
                out = net(x)
                probs.append(out.logits.float().softmax(dim=1).cpu().double().numpy())
                if out.boxes is None:
                    b = np.tile(np.array([0, 0, s - 1, s - 1], dtype=np.float64), (len(images), 1))
                else:
                    b = out.boxes.cpu().double().numpy()
                boxes.append(b)
        return np.stack(probs), np.stack(boxes)

    def _iter_batches(
        self,
        items: Sequence[MapInput],
        *,
        batch_size: int,
        crop_px: int | None,
        crop_kpc: float | None,
        pixel_kpc: float | None,
        progress: bool,
        on_warning: Callable[[str], None] | None,
        on_error: Callable[[str], None] | None,
        desc: str,
        stacklevel: int = 5,
    ) -> Iterator[tuple[int, _Prepared, np.ndarray | None, np.ndarray | None]]:
        from tqdm import tqdm

        if batch_size < 1:
            raise UsageError(f"batch size {batch_size}: must be at least 1")
        if crop_px is not None and crop_px < 2:
            raise UsageError(f"--crop-px {crop_px}: must be at least 2")
        if crop_kpc is not None and not crop_kpc > 0:
            raise UsageError(f"--crop-kpc {crop_kpc}: must be a positive number of kpc")
        if pixel_kpc is not None and not pixel_kpc > 0:
            raise UsageError(f"--pixel-kpc {pixel_kpc}: must be a positive number of kpc")
        with tqdm(
            total=len(items), desc=desc, unit="map", disable=not progress, file=sys.stderr
        ) as bar:

            def say(fn: Callable[[str], None] | None, text: str) -> None:
                if fn is None:
                    warnings.warn(text, stacklevel=stacklevel)
                elif progress:
                    bar.clear()
                    fn(text)
                    bar.refresh()
                else:
                    fn(text)

            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                prep = self.prepare(chunk, crop_px=crop_px, crop_kpc=crop_kpc, pixel_kpc=pixel_kpc)
                for text in prep.warnings:
                    say(on_warning, text)
                for i in sorted(prep.errors):
                    if on_error is not None:
                        say(on_error, prep.errors[i])
                probs = boxes = None
                if prep.ok:
                    probs, boxes = self.forward(prep.images)
                yield start, prep, probs, boxes
                bar.update(len(chunk))

    def predict(
        self,
        images_or_paths: Any = None,
        *,
        catalog: str | os.PathLike | None = None,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
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
            How a map is brought to the model input (see the module docstring).
            ``pixel_kpc`` overrides every map's own pixel scale.
        batch_size : int
            Maps per forward pass.
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
            Columns :data:`PREDICTION_COLUMNS`, one row per map in input order;
            failed maps have NaN numbers, an empty ``predicted`` and the message in
            ``error`` (empty when fine).
        """
        if output not in ("frame", "records"):
            raise UsageError(f"output={output!r}: must be 'frame' or 'records'")
        if errors not in ("row", "raise"):
            raise UsageError(f"errors={errors!r}: must be 'row' or 'raise'")
        items = _as_inputs(images_or_paths, pixel_kpc) if images_or_paths is not None else []
        if catalog is not None:
            items = collect_inputs(catalog=catalog) + items
        if not items:
            raise UsageError("no maps given: pass paths, arrays or catalog=CSV")
        frame = self._predict_items(
            items,
            crop_px=crop_px,
            crop_kpc=crop_kpc,
            pixel_kpc=pixel_kpc,
            batch_size=batch_size,
            progress=progress,
            on_warning=on_warning,
            on_error=on_error,
            raise_errors=errors == "raise",
        )
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
        frame = self._predict_items(items, **kwargs)
        return frame, catalog_metrics(items, frame)

    def _predict_items(
        self,
        items: Sequence[MapInput],
        *,
        crop_px: int | None = None,
        crop_kpc: float | None = None,
        pixel_kpc: float | None = None,
        batch_size: int = 32,
        progress: bool = False,
        on_warning: Callable[[str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        raise_errors: bool = False,
    ) -> pd.DataFrame:
        table = _PredictionTable(items)
        for start, prep, p, b in self._iter_batches(
            items,
            batch_size=batch_size,
            crop_px=crop_px,
            crop_kpc=crop_kpc,
            pixel_kpc=pixel_kpc,
            progress=progress,
            on_warning=on_warning,
            on_error=on_error,
            desc="predicting",
        ):
            if raise_errors and prep.errors:
                first = min(prep.errors)
                raise ImageError(prep.errors[first])
            table.add(start, prep, p, b)
        return table.frame()


class _PredictionTable:
    """The prediction table filled batch by batch (from :meth:`TrainedModel._iter_batches`)."""

    def __init__(self, items: Sequence[MapInput]) -> None:
        n = len(items)
        self.items = items
        self.probs = np.full((n, len(CLASS_NAMES)), np.nan)
        self.spread = np.full(n, np.nan)
        self.boxes = np.full((n, 4), np.nan)
        self.error = [""] * n

    def add(
        self, start: int, prep: _Prepared, p: np.ndarray | None, b: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Record one batch: per-fold probabilities ``p`` (F, B, 3) and boxes ``b`` (F, B, 4)
        of the maps ``prep.ok``, and the failures. Returns the ensemble's (mean, predicted
        class index) of the batch, or None when no map of it could be read."""
        for i, text in prep.errors.items():
            self.error[start + i] = text
        if p is None:
            return None
        rows = start + np.asarray(prep.ok)
        mean = p.mean(axis=0)  # (B, 3)
        pred = mean.argmax(axis=1)
        self.probs[rows] = mean
        self.spread[rows] = p[:, np.arange(len(pred)), pred].std(axis=0)
        self.boxes[rows] = b.mean(axis=0)
        return mean, pred

    def frame(self) -> pd.DataFrame:
        return _frame(self.items, self.probs, self.spread, self.boxes, self.error)


def _frame(
    items: Sequence[MapInput],
    probs: np.ndarray,
    spread: np.ndarray,
    boxes: np.ndarray,
    error: list[str],
) -> pd.DataFrame:
    """The prediction table (columns :data:`PREDICTION_COLUMNS`)."""
    ok = np.isfinite(probs).all(axis=1)
    names = np.asarray(CLASS_NAMES, dtype=object)
    predicted = np.where(ok, names[np.where(ok, np.nan_to_num(probs).argmax(axis=1), 0)], "")
    data: dict[str, Any] = {
        "file": [it.file for it in items],
        "image_id": [it.image_id for it in items],
    }
    for c, name in enumerate(CLASS_NAMES):
        data[f"p_{name}"] = probs[:, c]
    data["predicted"] = predicted
    data["ordinal_score"] = probs @ np.arange(len(CLASS_NAMES), dtype=np.float64)
    data["spread"] = spread
    for j, key in enumerate(("box_x0", "box_y0", "box_x1", "box_y1")):
        data[key] = boxes[:, j]
    data["error"] = error
    return pd.DataFrame(data, columns=list(PREDICTION_COLUMNS))


def catalog_metrics(items: Sequence[MapInput], frame: pd.DataFrame) -> dict | None:
    """Metrics (:func:`coolcore.evaluate.metrics.compute_metrics`) of predicted maps that have labels."""
    from coolcore.evaluate.metrics import compute_metrics

    labels = [it.label for it in items]
    keep = np.array([lab in CLASS_NAMES for lab in labels]) & (frame["error"] == "").to_numpy()
    if not keep.any():
        return None
    table = frame.loc[keep, ["image_id", "predicted", *(f"p_{c}" for c in CLASS_NAMES)]].copy()
    table["label"] = np.asarray(labels, dtype=object)[keep]
    table["cluster_id"] = [
        it.cluster_id or it.image_id for it, k in zip(items, keep, strict=True) if k
    ]
    return compute_metrics(table)


def write_predictions(frame: pd.DataFrame, out: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the prediction table atomically; an existing ``out`` needs ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise UsageError(f"{out}: already exists; pass --force to overwrite it")
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; --out names the CSV file to write")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UsageError(f"{out}: cannot write the file ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
