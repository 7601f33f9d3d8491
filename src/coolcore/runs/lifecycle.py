"""A run's life: decided, opened (locked), resumed only on the same inputs, finished.

A run is built in ``RUN.partial/`` and renamed to ``RUN/`` when complete, so a
folder named ``RUN`` is always a finished run. Every file inside is written to
a temporary name and renamed into place, so an interrupted write leaves nothing
half-written. ``--resume`` continues a ``RUN.partial`` made from the same
catalogue, maps and config (:func:`check_resume`); ``--force`` starts over, but
replaces only what a run recognisably is (:func:`coolcore.runs.outputs.check_replaceable`).
While a process writes ``RUN.partial`` it holds its lock (:class:`coolcore.runs.lock.RunLock`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from coolcore.errors import UsageError
from coolcore.runs.folder import PARTIAL_SUFFIX, RECORD_FILE, RunFolder
from coolcore.runs.lock import LOCK_FILE, RunLock
from coolcore.runs.outputs import check_replaceable, path_kind
from coolcore.runs.record import resume_changes

__all__ = ["check_resume", "finish_run_dir", "open_run_dir", "prepare_run_dir"]


def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (path / RECORD_FILE).is_file()


def prepare_run_dir(
    out: str | Path, *, resume: bool, force: bool, check_lock: bool = True
) -> tuple[Path, Path, bool]:
    """Decide where a run is built; change nothing on disk yet.

    Returns ``(final, partial, done)``: ``done`` is True when ``final`` already
    holds a finished run and ``resume`` was asked (nothing to do). Call
    :func:`open_run_dir` once the inputs are validated, so that a bad input
    neither deletes an old run nor leaves an empty new one.

    Parameters
    ----------
    out : the run folder.
    resume, force : the command's ``--resume`` and ``--force``.
    check_lock : refuse when another live process holds ``RUN.partial``'s lock
        (False for DDP workers, whose rank 0 holds it).

    Raises
    ------
    UsageError
        When the run exists and neither ``--resume`` nor ``--force`` says what to do;
        ``--force`` over something that is not a run folder (a data folder, a FIFO,
        a device); another process writing the run; the parent folder not writable.
    """
    final = Path(out)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    if resume and force:
        raise UsageError("--resume and --force contradict each other: pick one")
    if os.path.lexists(final):
        if force:
            check_replaceable(final, markers=[RECORD_FILE], what="run folder")
        elif _is_run_folder(final):
            if resume:
                return final, partial, True
            raise UsageError(
                f"{final}: a run folder already exists; pass --force to overwrite it "
                "or choose another --out"
            )
        else:
            raise UsageError(
                f"{final}: already exists and is {path_kind(final)}, not a run folder "
                "(no run.json); choose another --out (--force replaces only a run folder)"
            )
    if os.path.lexists(partial):
        if not (force or resume):
            raise UsageError(
                f"{partial}: an unfinished run is there; pass --resume to continue it "
                "or --force to start over"
            )
        if force:
            check_replaceable(
                partial, markers=[RECORD_FILE, LOCK_FILE], what="unfinished run folder"
            )
        elif not partial.is_dir() or partial.is_symlink():
            raise UsageError(f"{partial}: is {path_kind(partial)}, not an unfinished run folder")
        if check_lock:
            RunLock(partial).check()
    parent = final.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{final}: cannot create the run folder ({parent} is not writable)")
    return final, partial, False


def open_run_dir(final: Path, partial: Path, *, force: bool) -> Path:
    """Create ``RUN.partial`` (after removing old runs when ``force``); return it.

    Only what :func:`prepare_run_dir` let through is removed.
    """
    if force:
        for path in (final, partial):
            if os.path.lexists(path):
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


def check_resume(partial: str | Path, record: dict, defaults: dict | None = None) -> None:
    """On resume, the run must continue on the catalogue, maps and config it started with.

    Parameters
    ----------
    partial : the unfinished run folder (nothing to check when it has no record).
    record : what the resuming command would record
        (:func:`coolcore.runs.record.make_run_record`).

    Raises
    ------
    UsageError
        One line naming what changed: the catalogue, the maps, the config keys.
    """
    folder = RunFolder(partial)
    if not folder.has_record():
        return
    changes = resume_changes(folder.read_record(), record, defaults)
    if changes:
        raise UsageError(
            f"{folder.path}: this unfinished run was started with {' and '.join(changes)}; "
            "resume it with the same data and options or pass --force to start over"
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
