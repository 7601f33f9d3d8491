"""The torch device a trained model runs on, checked once at the edge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coolcore.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to run on, checked: a usable device or a one-line UsageError.

    Parameters
    ----------
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ...; None: CUDA when
        available, else the CPU.

    Raises
    ------
    coolcore.errors.UsageError
        Not a device name, or a device this machine cannot use (e.g. ``cuda``
        without a GPU).
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"--device {device}: not a device name (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "meta":  # holds no data: nothing could be computed on it
        raise UsageError(f"--device {device}: not a device that computes (cpu, cuda, cuda:N, mps)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no usable CUDA GPU here; use --device cpu")
    try:
        torch.zeros(1, device=dev)
    except Exception as exc:  # torch raises RuntimeError, AssertionError ... by backend
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"--device {device}: not usable here ({reason})") from None
    return dev
