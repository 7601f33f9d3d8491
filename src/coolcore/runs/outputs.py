"""Outputs apart from inputs, and what ``--force`` may replace.

Every command that writes checks its output path with :func:`check_output_apart`
before anything is written: an output that is, contains or lies inside one of
the command's inputs (the data folder, the catalogue, the maps' folder, a run
folder, a model folder) is refused, with or without ``--force``.
:func:`check_replaceable` says whether ``--force`` may delete what is at an
output path: a regular file, an empty folder, or a folder the same command
recognisably wrote (it holds the command's marker file, e.g. ``run.json``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from coolcore.errors import UsageError

__all__ = ["check_output_apart", "check_replaceable", "path_kind"]


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def check_output_apart(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output path that is, contains or lies inside any input.

    Parameters
    ----------
    out : path
        The output (file or folder) the command is about to write; it need not exist.
    inputs : paths
        The command's inputs (``None`` entries are skipped). Symbolic links are
        resolved on both sides.

    Raises
    ------
    UsageError
        ``OUT: the output lies inside the input INPUT; ...`` (or "is", "contains").
    """
    target = _real(out)
    for item in inputs:
        if item is None:
            continue
        source = _real(item)
        if target == source:
            how = "is"
        elif target.is_relative_to(source):
            how = "lies inside"
        elif source.is_relative_to(target):
            how = "contains"
        else:
            continue
        raise UsageError(
            f"{out}: the output {how} the input {item}; outputs never go into inputs, "
            "choose an --out apart from them"
        )


def path_kind(path: str | Path) -> str:
    """What is at ``path``, in words: 'a regular file', 'a folder', 'a FIFO', ..."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "nothing"
    except OSError:  # e.g. a symbolic-link loop on the way
        return "a path through a symbolic-link loop"
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def check_replaceable(
    path: str | Path, *, markers: Iterable[str], what: str, allow_file: bool = True
) -> None:
    """Refuse ``--force`` over anything but what the command recognisably wrote.

    Parameters
    ----------
    path : path
        The output path ``--force`` would replace (nothing there is fine).
    markers : names
        Files one of which a folder must hold to be replaceable (``run.json``
        for a run folder, ``model.json`` for a model folder); an empty folder is
        replaceable too.
    what : str
        The output's name in the message, e.g. ``"run folder"``.
    allow_file : bool
        Whether a regular file may be replaced.

    Raises
    ------
    UsageError
        A folder without any marker (e.g. a data folder), a FIFO, a device, a
        socket or a symbolic link.
    """
    path = Path(path)
    kind = path_kind(path)
    if kind == "nothing" or (kind == "a regular file" and allow_file):
        return
    if kind == "a folder":
        markers = list(markers)
        if any((path / m).is_file() for m in markers) or not any(path.iterdir()):
            return
        found = f"no {' or '.join(markers)}"
        kind = f"a folder that is not a {what} ({found})"
    raise UsageError(
        f"{path}: is {kind}; --force replaces only a {what} that coolcore wrote, "
        "so choose another --out"
    )
