"""Shared pieces of the command line: the parser class, the help formatter and the
argument types that turn a bad value into a one-line usage error (exit status 2)."""

from __future__ import annotations

import argparse
import math
import sys

__all__ = [
    "Parser",
    "class_mix",
    "formatter",
    "int_at_least",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "redshift",
    "stderr_printer",
]


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit status 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def int_at_least(low: int, high: int | None = None):
    """An argparse type: an integer no smaller than ``low`` (and at most ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            if low == 0:
                raise argparse.ArgumentTypeError(f"{text} must not be negative")
            raise argparse.ArgumentTypeError(f"{text} must be at least {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} must be at most {high}")
        return value

    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def redshift(text: str) -> float:
    """An argparse type: a redshift, a number between 0 and 10 (exclusive)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 < value < 10):
        raise argparse.ArgumentTypeError(f"{text} is not a redshift between 0 and 10")
    return value


def class_mix(text: str) -> tuple[float, float, float]:
    """Three class fractions ``CC,WCC,NCC`` (commas or slashes)."""
    parts = text.replace("/", ",").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected three numbers like 0.1,0.6,0.3"
        ) from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three numbers (CC,WCC,NCC)")
    return values  # type: ignore[return-value]


def stderr_printer(prefix: str):
    """A callback printing ``prefix + text`` on stderr (warnings, per-file errors)."""

    def say(text: str) -> None:
        print(f"{prefix}{text}", file=sys.stderr, flush=True)

    return say
