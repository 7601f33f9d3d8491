"""Files written through a temporary name and a rename, and SHA-256 checksums."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

__all__ = [
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_torch_save",
    "atomic_write_text",
    "file_sha256",
    "files_checksum",
    "json_sha256",
]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save`` straight to a temporary file beside ``path``, then a rename.

    Lightning's own checkpoint writer serialises into memory first and copies the
    bytes out (a training checkpoint of the ``all`` network with Adam's state is
    about 270 MB); this writes once.  A save that fails or is interrupted removes
    its temporary file and leaves ``path`` as it was.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON (see :func:`atomic_write_text`)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_csv(
    path: str | Path, frame: pd.DataFrame, float_format: str | None = "%.6g"
) -> Path:
    """Write a table as CSV without its index (see :func:`atomic_write_text`).

    ``float_format=None`` writes every float exactly (round-trip precision).
    """
    return atomic_write_text(path, frame.to_csv(index=False, float_format=float_format))


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's content."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def json_sha256(obj) -> str:
    """SHA-256 (hex) of ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_checksum(paths: Iterable[str | Path], base: str | Path | None = None) -> str:
    """SHA-256 over the files' names (relative to ``base``) and contents, in order."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        name = os.path.relpath(p, base) if base is not None else str(p)
        h.update(name.encode())
        h.update(b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
