"""What a run records about what made it (``run.json``), and the resume check.

A run records its full config, the SHA-256 of its catalogue file
(``catalog_checksum``), the checksum of its maps and their preprocessing
(``data_checksum``: :attr:`coolcore.data.cache.Dataset.cache_key`, over
every file's content), the package versions and the code's git commit.
``--resume`` compares them with what the resumed command would record
(:func:`resume_changes`), so a run is never continued on other inputs.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["code_version", "config_changes", "make_run_record", "resume_changes", "versions"]


def versions() -> dict:
    """Versions of what made a run: Python, the platform and the key packages."""
    import lightning
    import numpy
    import sklearn
    import torch
    import torchvision

    import coolcore

    return {
        "coolcore": coolcore.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "cuda": torch.cuda.is_available(),
    }


def _git(folder: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def code_version(package_file: str | Path | None = None) -> dict:
    """The git commit of the code and whether its working tree was dirty.

    Both are None when the package does not lie in a git checkout (an installed
    wheel) or git is not available. ``git_dirty`` counts tracked files only.

    Parameters
    ----------
    package_file : path, optional
        A file of the package (default ``coolcore/__init__.py``); it must be
        tracked by the checkout for the commit to count.
    """
    if package_file is None:
        import coolcore

        package_file = coolcore.__file__
    package_file = Path(package_file).resolve()
    folder = package_file.parent
    none = {"git_commit": None, "git_dirty": None}
    if _git(folder, "ls-files", "--error-unmatch", package_file.name) is None:
        return none
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return none
    return {"git_commit": commit, "git_dirty": bool(status)}


def make_run_record(
    cfg: dict,
    dataset,
    data: str | Path | None,
    *,
    kind: str,
    catalog_checksum: str | None,
    extra: dict | None = None,
) -> dict:
    """The content of ``run.json`` for a run of ``kind`` (``"cv"`` or ``"ablation"``).

    Parameters
    ----------
    cfg : the full run config.
    dataset : the :class:`coolcore.data.cache.Dataset` the run trains on.
    data : DATA as given (recorded as an absolute path).
    kind : ``"cv"`` or ``"ablation"``.
    catalog_checksum : SHA-256 of the catalogue file's bytes.
    extra : more keys (the ablation's repeats, methods and sweep).
    """
    record = {
        "kind": kind,
        "command": " ".join(sys.argv),
        "data": str(Path(data).resolve()) if data is not None else None,
        "data_checksum": dataset.cache_key,
        "catalog_checksum": catalog_checksum,
        "log_range": None if dataset.log_range is None else [float(v) for v in dataset.log_range],
        "n_images": int(len(dataset.labels)),
        "n_clusters": int(len(set(dataset.cluster_ids))),
        "seed": int(cfg["train"]["seed"]),
        "cv_seed": int(cfg["cv"]["seed"]),
        "config": json.loads(json.dumps(cfg, default=str)),
        "versions": versions(),
        **code_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        record.update(extra)
    return record


def _flat(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


def config_changes(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two configs (sorted)."""
    a, b = _flat(old), _flat(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, object()) != b.get(k, object()))


def resume_changes(old: dict, new: dict, defaults: dict | None = None) -> list[str]:
    """What changed between a run's record and the record of the command resuming it.

    Returns
    -------
    list of str
        Phrases for the message: ``"another catalogue"``, ``"other maps"`` (their
        bytes, when the catalogue is the same), ``"another config (keys train.epochs)"``;
        empty when the run may be resumed. A config key that a record made by an
        older coolcore lacks is no change when the new value is its default in
        ``defaults`` (the config defaults, given by the caller).
    """
    changes = []
    keys = config_changes(old["config"], new["config"]) if old.get("config") is not None else []
    if keys and defaults is not None:  # a key added after the run started, at its default
        recorded, flat_defaults, now = _flat(old["config"]), _flat(defaults), _flat(new["config"])
        keys = [
            k
            for k in keys
            if k in recorded or k not in flat_defaults or now.get(k) != flat_defaults[k]
        ]
    old_cat, new_cat = old.get("catalog_checksum"), new.get("catalog_checksum")
    if old_cat and new_cat and old_cat != new_cat:
        changes.append("another catalogue")
    same_preprocess = not any(k.startswith("preprocess.") for k in keys)
    old_maps, new_maps = old.get("data_checksum"), new.get("data_checksum")
    if not changes and same_preprocess and old_maps and new_maps and old_maps != new_maps:
        changes.append("other maps")
    if keys:
        changes.append(f"another config (keys {', '.join(keys)})")
    return changes
