"""Stop requests (SIGINT, SIGTERM) recorded for the training and fold loops."""

from __future__ import annotations

__all__ = ["clear_interrupt", "interrupt_requested", "raise_if_interrupted", "request_interrupt"]

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
