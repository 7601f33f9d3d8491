"""Load a trained model safely: a model folder (``coolcore export``) or a finished cv run.

:func:`coolcore.apps.export.export_model` writes the model folder (its layout is
described there); :func:`load_model` reads it back as a
:class:`~coolcore.apps.trained.TrainedModel`, which predicts
(:meth:`~coolcore.apps.trained.TrainedModel.predict`, batch by batch with
:meth:`~coolcore.apps.trained.TrainedModel.predict_batches`); the prediction
table's columns are described in :mod:`coolcore.apps.predictions`.  This module
also gives the names of those modules that the command line and the package use
(``TrainedModel``, ``collect_inputs``, ``write_predictions``, ``catalog_metrics``
...), so ``from coolcore.apps.inference import ...`` keeps working.

Loading never unpickles code: the weights are safetensors, and a cv run folder
is read with ``torch.load(..., weights_only=True)``.  Before any weight is read,
``model.json`` is checked (:func:`check_model_meta`): its format version; its
own checksum ``meta_sha256`` where it has one (model folders exported before
that key existed have none and are accepted without it); that it is complete
(``variant``, ``network``, ``preprocess``, a non-empty ``folds`` list, one
``weights`` entry per fold) and consistent (the variant with the network, the
preprocessing with itself and with the run config it records).  Then every
weight file's SHA-256 is checked against ``model.json`` before it is read.  A
truncated, corrupt, modified or hand-edited file is refused with a one-line
:class:`~coolcore.errors.DataError` naming it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coolcore import CLASS_NAMES, __version__
from coolcore.apps.devices import resolve_device
from coolcore.apps.export import (
    FORMAT_NAME,
    FORMAT_VERSION,
    META_CHECKSUM_KEY,
    MODEL_FILE,
    meta_checksum,
    model_metadata,
    one_line,
    state_from_checkpoint,
)
from coolcore.apps.trained import TrainedModel
from coolcore.errors import CoolcoreError, DataError, UsageError
from coolcore.runs.atomic import file_sha256
from coolcore.runs.folder import RunFolder, read_json

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from coolcore.nn.model import MultiBranchAttentionNet

__all__ = [
    "check_model_meta",
    "load_model",
    "rebuild_network",
]

_META_KEYS = ("class_names", "variant", "network", "preprocess", "folds", "weights")


# --------------------------------------------------------------------------- loading
def rebuild_network(
    run_cfg: Mapping[str, Any], state: Mapping[str, Any], source: Path
) -> MultiBranchAttentionNet:
    """A trained network: the one a run config describes, with a state dict's weights.

    Parameters
    ----------
    run_cfg : mapping
        A run config, or any mapping with its ``model`` section (for a model
        folder, ``{"model": meta["network"]}``); built with
        :func:`coolcore.nn.model.build_network` (``weights="none"``: the trained
        weights, and the input normalisation, come from ``state``).
    state : mapping
        The network's state dict (all keys, exactly).
    source : Path
        The file the weights came from, for messages.

    Raises
    ------
    coolcore.errors.DataError
        A network description the network refuses, or weights that do not fit it.
    """
    import torch

    from coolcore.nn.model import build_network

    try:
        # built on the meta device: no time spent on a random initialisation that
        # the state dict replaces at once (assign=True adopts its tensors)
        with torch.device("meta"):
            net = build_network(run_cfg, weights="none")
    except (CoolcoreError, KeyError, TypeError) as exc:
        raise DataError(f"{source}: bad network description ({one_line(exc)})") from None
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
        actual = file_sha256(path)
        if actual != expected_sha:
            raise DataError(
                f"{path}: SHA-256 {actual[:12]}... does not match {MODEL_FILE} "
                f"({str(expected_sha)[:12]}...): the file is truncated, corrupt or was modified"
            )
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise DataError(f"{path}: not a readable safetensors file ({one_line(exc)})") from None


def _positive_or_none(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_folds_and_weights(meta: dict, path: Path) -> None:
    folds, weights = meta["folds"], meta["weights"]
    if not isinstance(folds, list) or not folds:
        raise DataError(f"{path}: 'folds' is empty or not a list: the model holds no fold model")
    if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in folds):
        raise DataError(f"{path}: 'folds' {folds} must be fold numbers (integers >= 0)")
    if len(set(folds)) != len(folds):
        raise DataError(f"{path}: 'folds' {folds} lists a fold twice")
    if not isinstance(weights, dict):
        raise DataError(f"{path}: 'weights' must map weight files to their SHA-256")
    names = {f"fold_{k:02d}.safetensors" for k in folds}
    missing, extra = sorted(names - set(weights)), sorted(set(weights) - names)
    if missing:
        raise DataError(f"{path}: no SHA-256 listed for {missing[0]}")
    if extra:
        raise DataError(
            f"{path}: 'weights' lists {extra[0]}, which is not one of the folds {folds}"
        )


def _check_preprocess(meta: dict, path: Path) -> None:
    from coolcore.data.transforms import PreprocessConfig

    p = meta["preprocess"]
    if not isinstance(p, dict):
        raise DataError(f"{path}: 'preprocess' must be a mapping")
    for key in ("crop", "input_size", "scaling"):
        if key not in p:
            raise DataError(f"{path}: missing key 'preprocess.{key}'")
    try:
        cfg = PreprocessConfig(
            crop=p["crop"],
            size=p.get("size"),
            scaling=p["scaling"],
            center=p.get("center", "image"),
        )
    except CoolcoreError as exc:
        raise DataError(f"{path}: {exc}") from None
    if p["input_size"] != cfg.output_size or (cfg.size or 0) > cfg.crop:
        raise DataError(
            f"{path}: preprocess input_size {p['input_size']!r} does not follow from its "
            f"crop {cfg.crop} and size {cfg.size} (input_size = size, or crop without size)"
        )
    log_range = p.get("log_range")
    if cfg.scaling == "dataset" and not (
        isinstance(log_range, list)
        and len(log_range) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in log_range)
        and log_range[0] < log_range[1]
    ):
        raise DataError(
            f"{path}: data-set scaling needs 'preprocess.log_range' [low, high], got {log_range!r}"
        )
    config = meta.get("config")
    recorded = config.get("preprocess") if isinstance(config, dict) else None
    if isinstance(recorded, dict):
        for key, value in cfg.to_dict().items():
            if key in recorded and recorded[key] != value:
                raise DataError(
                    f"{path}: preprocess {key}={value!r} differs from the run config's "
                    f"{recorded[key]!r}: the file was edited; export the model again"
                )


def _check_network(meta: dict, path: Path) -> None:
    from coolcore.nn.model import network_config
    from coolcore.nn.options import VARIANTS

    network, variant = meta["network"], meta["variant"]
    if variant not in VARIANTS:
        raise DataError(f"{path}: variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if not isinstance(network, dict) or network.get("variant") != variant:
        got = network.get("variant") if isinstance(network, dict) else network
        raise DataError(f"{path}: variant {variant!r} differs from the network's {got!r}")
    config = meta.get("config")
    if isinstance(config, dict) and isinstance(config.get("model"), dict):
        recorded = network_config(config)
        if recorded != network:
            key = next(
                k for k in sorted({*recorded, *network}) if recorded.get(k) != network.get(k)
            )
            raise DataError(
                f"{path}: network {key}={network.get(key)!r} differs from the run config's "
                f"{recorded.get(key)!r}: the file was edited; export the model again"
            )
    training = meta.get("training_data", {})
    if not isinstance(training, dict) or not all(
        _positive_or_none(training.get(k)) for k in ("pixel_kpc", "fov_kpc")
    ):
        raise DataError(f"{path}: training_data pixel_kpc and fov_kpc must be positive numbers")


def check_model_meta(meta: dict, path: Path) -> None:
    """Refuse a ``model.json`` that is not of this format, not intact, not complete or not consistent.

    In order: ``format`` and ``format_version``; ``meta_sha256`` (the SHA-256 of
    the rest, :func:`coolcore.apps.export.meta_checksum`) when present: model
    folders exported before it existed have none and are checked without it;
    the keys ``class_names`` (those of this coolcore), ``variant``, ``network``,
    ``preprocess``, ``folds`` and ``weights``; ``folds`` a non-empty list of
    distinct fold numbers with exactly one ``fold_XX.safetensors`` in
    ``weights`` each; the variant one of the network's, and the network's own;
    ``preprocess`` valid (:class:`coolcore.data.transforms.PreprocessConfig`),
    its ``input_size`` following from ``crop`` and ``size``, a ``log_range``
    for data-set scaling; network and preprocessing equal to those of the run
    ``config`` recorded beside them; training pixel scale and field of view
    positive where given.

    Parameters
    ----------
    meta : dict
        The parsed ``model.json``.
    path : Path
        Its path, for messages.

    Raises
    ------
    coolcore.errors.DataError
        The first problem found, on one line.
    """
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"{path}: not a coolcore model description (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version != FORMAT_VERSION:
        raise DataError(
            f"{path}: model format version {version!r} is not supported by coolcore "
            f"{__version__} (it reads version {FORMAT_VERSION}); use the coolcore that wrote it"
        )
    if META_CHECKSUM_KEY in meta and meta[META_CHECKSUM_KEY] != meta_checksum(meta):
        raise DataError(
            f"{path}: its content does not match its {META_CHECKSUM_KEY} (the file was edited "
            "or is corrupt); export the model again from its run"
        )
    for key in _META_KEYS:
        if key not in meta:
            raise DataError(f"{path}: missing key '{key}'; export the model again from its run")
    if not isinstance(meta["class_names"], list) or meta["class_names"] != list(CLASS_NAMES):
        raise DataError(
            f"{path}: class names {meta['class_names']} differ from {list(CLASS_NAMES)}"
        )
    _check_folds_and_weights(meta, path)
    _check_network(meta, path)
    _check_preprocess(meta, path)


def load_model(
    path: str | os.PathLike, *, device: str | torch.device | None = None
) -> TrainedModel:
    """Load a model folder (or use a cv run folder directly) for prediction.

    Parameters
    ----------
    path : path
        A folder written by :func:`export_model` (``model.json`` + safetensors),
        or a finished cv run folder (its fold checkpoints, read with
        ``weights_only=True``, form the ensemble).
    device : str, optional
        ``"cpu"``, ``"cuda"`` ... (default: CUDA when available); checked by
        :func:`coolcore.apps.devices.resolve_device` before anything is read.

    Returns
    -------
    TrainedModel

    Raises
    ------
    coolcore.errors.UsageError
        ``path`` is neither a model folder nor a finished cv run; a device that
        is not one or cannot be used here.
    coolcore.errors.DataError
        ``model.json`` unreadable, of an unknown format version, edited, incomplete
        or inconsistent (:func:`check_model_meta`); a weight file missing,
        truncated, corrupt or modified (SHA-256 mismatch).

    Examples
    --------
    >>> import coolcore
    >>> model = coolcore.load_model("model")            # doctest: +SKIP
    >>> model.predict(["maps/a1795.fits"])              # doctest: +SKIP
    """
    path = Path(path)
    device = resolve_device(device)  # a bad --device fails before any file is read
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
    meta = read_json(meta_path)
    check_model_meta(meta, meta_path)
    nets = []
    for k in meta["folds"]:  # check_model_meta: one listed weight file per fold
        name = f"fold_{int(k):02d}.safetensors"
        file = path / name
        state = _load_weight_file(file, meta["weights"][name])
        nets.append(rebuild_network({"model": meta["network"]}, state, file))
    return TrainedModel(nets, meta, path, device=device)


def _model_from_run(run: Path, *, device: torch.device) -> TrainedModel:
    folder = RunFolder(run)
    record = folder.finished_cv_record()  # an unfinished run is refused
    folds = list(range(int(record["config"]["cv"]["folds"])))
    nets = []
    for k in folds:
        ckpt = folder.checkpoint(k)
        state, cfg = state_from_checkpoint(ckpt)
        nets.append(rebuild_network(cfg, state, ckpt))
    meta = model_metadata(run, record, folds, weights={})
    return TrainedModel(nets, meta, run, device=device)
