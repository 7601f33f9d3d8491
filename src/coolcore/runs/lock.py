"""A lock file in an unfinished run folder: one process writes a run at a time.

``RUN.partial/.lock`` holds the owner's process id and host name as JSON. A
second process that wants to write the same run is refused with a one-line
:class:`~coolcore.errors.UsageError`; a lock whose process is gone (a dead
process id on this host, e.g. after ``kill -9`` or a power cut) is stale and
is taken over with a notice on stderr.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from coolcore.errors import UsageError

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


class RunLock:
    """The lock of the run folder ``folder`` (its file is ``folder/.lock``).

    Parameters
    ----------
    folder : path
        The unfinished run folder (``RUN.partial``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.held = False

    def owner(self) -> dict | None:
        """``{"pid": int, "host": str}`` of the lock's holder, or None when unlocked."""
        try:
            owner = json.loads(self.path.read_text())
            return {"pid": int(owner["pid"]), "host": str(owner["host"])}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return {"pid": -1, "host": "?"}  # unreadable: treated as stale on this host

    def stale(self, owner: dict) -> bool:
        """True when ``owner``'s process is dead (only decidable on this host)."""
        if owner["host"] not in (socket.gethostname(), "?"):
            return False
        return owner["pid"] <= 0 or not _pid_alive(owner["pid"])

    def check(self) -> None:
        """Refuse when another live process holds the lock; change nothing.

        Raises
        ------
        UsageError
            The lock belongs to a live process other than this one, or to a
            process on another host (whose state cannot be checked from here).
        """
        owner = self.owner()
        if owner is None or owner["pid"] == os.getpid() and owner["host"] == socket.gethostname():
            return
        if self.stale(owner):
            return
        raise UsageError(
            f"{self.folder}: another coolcore process (pid {owner['pid']} on {owner['host']}) "
            f"is writing this run; wait for it to end or choose another --out "
            f"(remove {self.path} only if that process is gone)"
        )

    def acquire(self) -> None:
        """Take the lock (a stale one is taken over with a notice on stderr).

        Raises
        ------
        UsageError
            Another live process holds it.
        """
        self.check()
        owner = self.owner()
        if owner is not None and not (
            owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        ):
            print(
                f"{self.folder}: taking over the stale lock of process {owner['pid']} "
                f"on {owner['host']} (it is not running)",
                file=sys.stderr,
                flush=True,
            )
            self.path.unlink(missing_ok=True)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if (self.owner() or {}).get("pid") == os.getpid():
                self.held = True
                return
            self.check()  # another process won the race
            raise UsageError(f"{self.folder}: another process took the lock {self.path}") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(me + "\n")
        self.held = True

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self.held:
            owner = self.owner()
            if owner is not None and owner["pid"] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
