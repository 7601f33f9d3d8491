"""Run configurations: presets (``paper``, ``cpu``, ``demo``), YAML files and overrides.

A configuration is a nested dict with the sections of :data:`DEFAULTS`. A preset
or a YAML file only states what differs from the defaults; ``--set key=value``
overrides apply last. Unknown keys and out-of-range values are a
:class:`~coolcore.errors.UsageError` naming the key.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from coolcore.data.transforms import DEFAULT_FIELD_KPC
from coolcore.errors import UsageError
from coolcore.nn.options import check_network_options
from coolcore.train.hardware import PRECISIONS

PRESETS = ("paper", "cpu", "demo")
SCHEDULES = ("step", "cosine")
"""``train.schedule``: StepLR per epoch (the paper's), or cosine decay per batch."""
AUGMENTS = ("none", "dihedral")
"""``train.augment``: none, or a random element of the dihedral group D4 per training map."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "sample": {"clusters": 318, "seed": 0},
    "preprocess": {"crop": 256, "size": None, "scaling": "image", "field_kpc": DEFAULT_FIELD_KPC},
    "model": {
        "variant": "all",
        "combine": "union",
        "weights": "none",
        "aux_size": None,
        "tau1": 0.7,
        "tau2": 0.7,
        "lam": 25.0,
        "center_smoothing": 0,
        "regression": False,  # the cooling-time head (docs/method.md)
        "crop_source": "input",  # or "full": the auxiliary crop from the map before the resize
    },
    "loss": {"alphas": [0.8, 0.1, 0.1, 0.1], "regression_weight": 1.0},
    "train": {
        "epochs": 30,
        "batch_size": 16,
        "lr": 1.0e-3,
        "step_size": 10,
        "gamma": 0.1,
        # training options for CPUs (docs/method.md); these defaults are the paper's recipe
        "schedule": "step",  # StepLR(step_size, gamma) per epoch, or "cosine" per batch
        "warmup_epochs": 0,  # linear warm-up from lr / 10, per batch, before the schedule
        "min_lr_ratio": 0.01,  # cosine: the learning rate falls to lr * this
        "weight_decay": 0.0,  # > 0: AdamW with this decoupled weight decay instead of Adam
        "augment": "none",  # "dihedral": a random flip / 90-degree rotation of each training map
        "seed": 0,
        "deterministic": False,
        "precision": "auto",
        "compile": False,
        "channels_last": True,
    },
    "cv": {"folds": 10, "seed": 0},
}

_CHOICES = {
    ("preprocess", "scaling"): ("image", "dataset"),
    ("train", "precision"): PRECISIONS,
    ("train", "schedule"): SCHEDULES,
    ("train", "augment"): AUGMENTS,
}
_RANGES = {
    ("sample", "clusters"): (3, 100000),
    ("sample", "seed"): (0, 2**32 - 1),
    ("preprocess", "crop"): (16, 65536),
    ("preprocess", "size"): (32, 4096),
    # observations only: the field cut around the cluster (docs/observations.md)
    ("preprocess", "field_kpc"): (10.0, 100000.0),
    ("loss", "regression_weight"): (0.0, 1e6),
    ("train", "epochs"): (1, 10000),
    ("train", "batch_size"): (1, 4096),
    ("train", "lr"): (1e-12, 10.0),
    ("train", "step_size"): (1, 10000),
    ("train", "gamma"): (1e-6, 1.0),
    ("train", "warmup_epochs"): (0, 10000),
    ("train", "min_lr_ratio"): (0.0, 1.0),
    ("train", "weight_decay"): (0.0, 10.0),
    # a fold's seed is (train.seed + repeat) * 1000 + fold, and must stay below 2**32
    ("train", "seed"): (0, 4_000_000),
    ("cv", "folds"): (3, 100),
    ("cv", "seed"): (0, 2**32 - 1),
}


def preset_path(name: str) -> Path:
    """Path of a shipped preset YAML file."""
    return Path(str(resources.files("coolcore.train") / "configs" / f"{name}.yaml"))


def load_config(config: str | Path | None = "paper", overrides: list[str] | None = None) -> dict:
    """Load a preset name or YAML path over the defaults, apply ``key=value`` overrides.

    Parameters
    ----------
    config : a preset name (``paper``, ``cpu``, ``demo``), a YAML file, or None for the defaults.
    overrides : strings such as ``"train.epochs=3"`` or ``"model.variant=att"``; values are
        parsed as YAML (``null``, numbers, lists).

    Examples
    --------
    >>> cfg = load_config("cpu", ["train.epochs=2"])
    >>> cfg["train"]["epochs"], cfg["preprocess"]["size"]
    (2, 128)
    """
    cfg = copy.deepcopy(DEFAULTS)
    if config is not None:
        name = str(config)
        path = preset_path(name) if name in PRESETS else Path(name)
        if not path.is_file():
            raise UsageError(
                f"--config {name}: neither a preset ({', '.join(PRESETS)}) nor an existing YAML file"
            )
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{path}: not a UTF-8 text file (byte {exc.object[exc.start]:#04x} at "
                f"offset {exc.start}); save the config as UTF-8"
            ) from None
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise UsageError(f"{path}: not valid YAML ({first})") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{path}: a config must be a mapping of sections")
        _merge(cfg, loaded, str(path))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item}: expected KEY=VALUE, e.g. train.epochs=3")
        section, _, field = key.strip().partition(".")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _merge(cfg, {section: {field: value}}, f"--set {item}")
    validate_config(cfg)
    return cfg


def _merge(cfg: dict, new: dict, source: str) -> None:
    for section, values in new.items():
        if section not in cfg:
            raise UsageError(
                f"{source}: unknown config section '{section}' (known: {', '.join(cfg)})"
            )
        if not isinstance(values, dict):
            raise UsageError(f"{source}: section '{section}' must be a mapping")
        for key, value in values.items():
            if key not in cfg[section]:
                known = ", ".join(cfg[section])
                raise UsageError(f"{source}: unknown key '{section}.{key}' (known: {known})")
            cfg[section][key] = value


def validate_config(cfg: dict) -> None:
    """Check types and ranges; raise :class:`UsageError` naming the first bad key.

    The ``model`` section is checked by :func:`coolcore.nn.options.check_network_options`,
    the rules the network itself applies.
    """
    for (section, key), choices in _CHOICES.items():
        value = cfg[section][key]
        if str(value) not in choices:
            raise UsageError(
                f"config {section}.{key}={value!r}: must be one of {', '.join(choices)}"
            )
        if section == "train":
            cfg[section][key] = str(value)
    check_network_options(cfg["model"], prefix="config model.")
    for (section, key), (low, high) in _RANGES.items():
        value = cfg[section][key]
        if value is None and key == "size":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"config {section}.{key}={value!r}: must be a number")
        if not low <= value <= high:
            raise UsageError(f"config {section}.{key}={value}: must lie in [{low}, {high}]")
        if isinstance(low, int) and isinstance(high, int) and value != int(value):
            raise UsageError(f"config {section}.{key}={value}: must be an integer")
    alphas = cfg["loss"]["alphas"]
    if (
        not isinstance(alphas, list | tuple)
        or len(alphas) != 4
        or not all(
            isinstance(a, int | float) and not isinstance(a, bool) and a >= 0 for a in alphas
        )
    ):
        raise UsageError(
            f"config loss.alphas={alphas!r}: must be four non-negative numbers (a_p, a_a, a_f, a_r)"
        )
    cfg["loss"]["alphas"] = [float(a) for a in alphas]
    for key in ("deterministic", "compile", "channels_last"):
        if not isinstance(cfg["train"][key], bool):
            raise UsageError(f"config train.{key}={cfg['train'][key]!r}: must be true or false")
    t = cfg["train"]
    if t["warmup_epochs"] >= t["epochs"]:
        raise UsageError(
            f"config train.warmup_epochs={t['warmup_epochs']}: must be less than "
            f"train.epochs={t['epochs']} (the warm-up comes before the schedule)"
        )
    if (
        cfg["preprocess"]["size"] is not None
        and cfg["preprocess"]["size"] > cfg["preprocess"]["crop"]
    ):
        raise UsageError(
            f"config preprocess.size={cfg['preprocess']['size']} exceeds preprocess.crop="
            f"{cfg['preprocess']['crop']}: the resize only shrinks"
        )


def dump_config(cfg: dict) -> str:
    """The config as YAML text (what a run folder records)."""
    return yaml.safe_dump(cfg, sort_keys=False)
