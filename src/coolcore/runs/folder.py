"""Run folders: written atomically, never overwritten by accident, resumable.

A run is built in ``RUN.partial/`` and renamed to ``RUN/`` when complete, so a
folder named ``RUN`` is always a finished run. Every file inside is written to a
temporary name and renamed into place, so an interrupted write leaves nothing
half-written. ``--resume`` continues a ``RUN.partial``; ``--force`` starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from coolcore.errors import UsageError

PARTIAL_SUFFIX = ".partial"

_interrupt_signal: int | None = None


def request_interrupt(signum: int) -> None:
    """Record that the user asked the run to stop (SIGINT or SIGTERM)."""
    global _interrupt_signal
    _interrupt_signal = int(signum)


def clear_interrupt() -> None:
    """Forget a recorded stop request (at the start of a command)."""
    global _interrupt_signal
    _interrupt_signal = None


def interrupt_requested() -> int | None:
    """The signal number of a requested stop, or None."""
    return _interrupt_signal


def raise_if_interrupted() -> None:
    """Raise :class:`KeyboardInterrupt` again if a stop was requested.

    The CLI's signal handler raises at once, but CPython discards an exception
    raised while it runs a finaliser (for example a file object that Lightning's
    checkpoint writer lets go of), so the training loop and the fold loop also
    check the recorded request at every batch and fold boundary.
    """
    if _interrupt_signal is not None:
        raise KeyboardInterrupt


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.6g"))


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


def prepare_run_dir(out: str | Path, *, resume: bool, force: bool) -> tuple[Path, Path, bool]:
    """Decide where a run is built; change nothing on disk yet.

    Returns ``(final, partial, done)``: ``done`` is True when ``final`` already
    holds a finished run and ``resume`` was asked (nothing to do). Call
    :func:`open_run_dir` once the inputs are validated, so that a bad input
    neither deletes an old run nor leaves an empty new one.

    Raises
    ------
    UsageError
        When the run exists and neither ``--resume`` nor ``--force`` says what to do,
        or the parent folder cannot be written.
    """
    final = Path(out)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    if resume and force:
        raise UsageError("--resume and --force contradict each other: pick one")
    if final.exists() and not force:
        if resume:
            return final, partial, True
        raise UsageError(
            f"{final}: a run folder already exists; pass --force to overwrite it "
            "or choose another --out"
        )
    if partial.exists() and not (force or resume):
        raise UsageError(
            f"{partial}: an unfinished run is there; pass --resume to continue it "
            "or --force to start over"
        )
    parent = final.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{final}: cannot create the run folder ({parent} is not writable)")
    return final, partial, False


def open_run_dir(final: Path, partial: Path, *, force: bool) -> Path:
    """Create ``RUN.partial`` (after removing old runs when ``force``); return it."""
    if force:
        for path in (final, partial):
            if path.exists() or path.is_symlink():
                _remove(path)
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{final}: cannot create the run folder ({exc.strerror})") from None
    return partial


def finish_run_dir(partial: Path, final: Path) -> Path:
    """Rename the finished ``RUN.partial`` to ``RUN``."""
    os.replace(partial, final)
    return final


def check_same_config(partial: Path, recorded: dict, key: str = "config") -> None:
    """On resume, the config must be the one the run started with."""
    path = partial / "run.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text()).get(key)
    if old is not None and old != recorded:
        raise UsageError(
            f"{partial}: this unfinished run was started with another config; "
            "resume it with the same options or pass --force to start over"
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
