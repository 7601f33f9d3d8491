"""Errors a user can cause, and the exit status each one gets.

Every error that comes from a user's input (a file, an argument, a config) is a
subclass of :class:`CoolcoreError`.  The command line prints its message on one
line, without a traceback, and exits with :attr:`CoolcoreError.exit_code`:
2 for usage errors (bad arguments, configs), 1 for data errors (unreadable
maps, bad catalogues).
"""

from __future__ import annotations


class CoolcoreError(ValueError):
    """Base class of the errors a user can cause; the message names the input."""

    exit_code = 1


class UsageError(CoolcoreError):
    """A bad command-line argument, option value or config: exit status 2."""

    exit_code = 2


class DataError(CoolcoreError):
    """An input file or catalogue that cannot be used: exit status 1."""

    exit_code = 1


class ImageError(DataError):
    """A map that cannot be read or used; the message names the file."""


class CatalogError(DataError):
    """A catalogue that cannot be used; the message names the file and column."""
