"""Timing, FLOP counting and the machine's description for ``coolcore bench``.

Every comparison is interleaved (A B B A A B ..., so neither side always runs
first), after warm-up repetitions; the reported ratio is the median of the
per-round ratios (:func:`paired_ratio`), which cancels slow drifts of a shared
machine's load.  FLOPs are counted with
:class:`torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per multiply-add).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from coolcore.train.hardware import allocator_state

__all__ = [
    "CPU",
    "PAPER",
    "Setting",
    "gemm_flops",
    "load_average",
    "machine_info",
    "median_wall_s",
    "model_flops",
    "paired_ratio",
    "resnet18_flops",
    "synchronize",
    "time_interleaved",
]


@dataclass(frozen=True)
class Setting:
    """An input size, batch and auxiliary crop size to compare the networks at.

    Attributes
    ----------
    name : str
        A label (``paper``, ``cpu``).
    size_px : int
        Input side in pixels.
    batch : int
        Images per step.
    aux_size_px : int or None
        Auxiliary crop side; None crops at the input size (the paper).
    """

    name: str
    size_px: int
    batch: int
    aux_size_px: int | None = None

    def describe(self) -> str:
        aux = "" if self.aux_size_px is None else f", crop {self.aux_size_px} px"
        return f"{self.size_px} px{aux}, batch {self.batch}"


PAPER = Setting("paper", 256, 16, None)
CPU = Setting("cpu", 128, 32, 64)


# --------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """Wall times of several functions, interleaved round by round.

    Each of ``warmup`` rounds calls every function once, untimed.  Then each of
    ``repeats`` rounds calls every function once and times it; even rounds go
    in the mapping's order, odd rounds in reverse (A B, B A, A B ...), so that
    neither side always follows the other.

    Parameters
    ----------
    fns : mapping of str to callable
        Name -> function of no argument.
    repeats : int
        Timed rounds (>= 1).
    warmup : int
        Untimed rounds first.
    device : torch.device or str
        On CUDA the device is synchronised around each call.

    Returns
    -------
    dict of str to list of float
        Name -> the ``repeats`` wall times in seconds, in round order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = torch.device(device)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            synchronize(device)
            start = time.perf_counter()
            fns[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median_wall_s(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in seconds of ``repeats`` calls of ``fn`` (no warm-up)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of ``numerator[r] / denominator[r]``.

    Pairing the two measurements of one round cancels load that changes slowly
    between rounds; the median drops rounds disturbed by a burst.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired_ratio needs two non-empty sequences of equal length")
    return float(statistics.median(a / b for a, b in zip(numerator, denominator, strict=True)))


# --------------------------------------------------------------------------- FLOPs
def model_flops(fn: Callable[[], object]) -> int:
    """FLOPs that :class:`~torch.utils.flop_counter.FlopCounterMode` counts while ``fn`` runs.

    The counter covers matrix products and convolutions (forward and, when
    ``fn`` calls ``backward``, backward) at 2 FLOPs per multiply-add; batch
    norm, activations and pooling are not counted (under 1% of ResNet-18).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def resnet18_flops(size_px: int, batch: int = 1) -> int:
    """Inference FLOPs of a torchvision ResNet-18 (3-class head) on (batch, 3, size, size)."""
    from torchvision.models import resnet18

    net = resnet18(num_classes=3).eval()
    x = torch.zeros(batch, 3, size_px, size_px)
    with torch.no_grad():
        return model_flops(lambda: net(x))


def gemm_flops(n: int) -> int:
    """FLOPs of an ``n`` x ``n`` by ``n`` x ``n`` matrix product: ``2 n^3``."""
    return 2 * n**3


# --------------------------------------------------------------------------- machine
def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> tuple[str, list[str]]:
    """CPU model name and the vector-instruction flags that matter for fp32 GEMM."""
    model, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("unknown", "", platform.processor()):
            model = value.strip()
        if key.strip() == "flags":
            have = set(value.split())
            flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in have]
            break
    return model, flags


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, torch, threads, GPU, load."""
    import torchvision

    device = torch.device(device)
    model, flags = _cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": model,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "allocator": allocator_state()["how"],
        "load_average_start": load_average(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return info
