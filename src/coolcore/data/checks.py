"""Small checks shared by the readers of maps and catalogues (validation at the edge).

Each returns the words that go after ``PATH: `` in a one-line error message, or
None when the input is fine, so the readers can put the file, row or keyword in
front of them.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["first_line", "missing_file_problem", "pixel_kpc_problem"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, with its type when it is bare.

    Examples
    --------
    >>> first_line(ValueError("bad value\\nmore detail"))
    'bad value'
    >>> first_line(EOFError())
    'EOFError'
    """
    text = str(exc).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def missing_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a readable regular file, or None if it is one.

    Returns
    -------
    str or None
        ``"symlink loop"`` (a chain of symbolic links that leads back to itself),
        ``"broken symlink (to TARGET)"``, ``"is a folder, not a file"``,
        ``"no such file"``, ``"not a regular file"`` (a device, a FIFO, a socket),
        ``"cannot open (...)"``; None for a regular file.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (a chain of symbolic links that leads back to itself)"
        if path.is_symlink():
            return f"broken symlink (to {os.readlink(path)})"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "no such file"
        return f"cannot open ({exc.strerror or first_line(exc)})"
    import stat

    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def pixel_kpc_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable pixel scale in kpc (positive and finite), or None.

    The caller puts the source (file and header keyword, catalogue row, option)
    and the value in front of the words returned.

    Examples
    --------
    >>> pixel_kpc_problem(3.9) is None
    True
    >>> pixel_kpc_problem(0)
    'must be a positive, finite number of kpc'
    >>> pixel_kpc_problem("abc")
    'not a number (expected a positive number of kpc)'
    """
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, bool):
        return "must be a positive, finite number of kpc"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "not a number (expected a positive number of kpc)"
    if not (math.isfinite(number) and number > 0):
        return "must be a positive, finite number of kpc"
    return None
