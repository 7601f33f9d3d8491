"""Where training runs: Lightning's hardware options and precision, the launcher's rank,
quiet logs.

Precision (``train.precision``, one of :data:`PRECISIONS`): ``32`` is fp32,
``bf16-mixed`` autocasts to bfloat16 (on a GPU or a CPU), ``16-mixed`` to
float16 (GPUs); ``auto`` (the default) chooses ``bf16-mixed`` on a CUDA GPU
that supports bfloat16 and on an x86 CPU with native bfloat16 arithmetic (the
``amx_bf16`` or ``avx512_bf16`` flag of Linux's ``/proc/cpuinfo``: Intel
Sapphire Rapids and later, AMD Zen 4 and later), and fp32 everywhere else
(other CPUs, where bfloat16 runs but is emulated and slower; CPUs whose flags
cannot be read, e.g. outside Linux; Apple GPUs).  :func:`resolve_precision`
makes that choice.

Memory (:func:`tune_allocator`): with ``COOLCORE_MALLOC=reuse``, on Linux with
glibc, ``malloc`` keeps freed memory for reuse instead of handing large blocks
back to the kernel (off by default: a small gain in speed for more memory;
docs/performance.md, "Where the time goes").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from coolcore.errors import UsageError

PRECISIONS: tuple[str, ...] = ("auto", "32", "bf16-mixed", "16-mixed")
"""The values of ``train.precision`` (and ``--precision``)."""

NATIVE_BF16_FLAGS: frozenset[str] = frozenset({"amx_bf16", "avx512_bf16"})
"""CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic that oneDNN uses."""

_CPUINFO = Path("/proc/cpuinfo")


@dataclass
class Hardware:
    """Where and how to train: Lightning's accelerator, devices, strategy, nodes."""

    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1


def launched_rank() -> int:
    """This process's rank as its launcher set it: 0 for the main process.

    Lightning's DDP launcher starts workers with ``LOCAL_RANK`` (and ``NODE_RANK``)
    set; ``srun`` sets ``SLURM_PROCID``. Workers re-run the same command and
    must neither check nor write the run folder.
    """
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"])
    return int(os.environ.get("LOCAL_RANK", "0")) + int(os.environ.get("NODE_RANK", "0"))


def cpu_has_native_bf16(cpuinfo_text: str | None = None) -> bool:
    """Whether the CPU computes in bfloat16 natively (AMX or AVX-512 BF16).

    Parameters
    ----------
    cpuinfo_text : str, optional
        The text of Linux's ``/proc/cpuinfo``; None reads it.  Where it cannot
        be read (not Linux) the answer is False.

    Returns
    -------
    bool
        True when a ``flags`` line lists ``amx_bf16`` or ``avx512_bf16``
        (:data:`NATIVE_BF16_FLAGS`).

    Examples
    --------
    >>> cpu_has_native_bf16("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    True
    >>> cpu_has_native_bf16("flags\t\t: fpu sse2 avx2\n")
    False
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = _CPUINFO.read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo_text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "flags" and NATIVE_BF16_FLAGS & set(value.split()):
            return True
    return False


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
ALLOCATOR_TRIM_BYTES = 1 << 30
"""Free memory that glibc keeps at the top of the heap before returning it (1 GiB)."""
ALLOCATOR_ENV = "COOLCORE_MALLOC"
"""Set to ``reuse`` to have :func:`tune_allocator` keep freed memory (off by default)."""
_ALLOCATOR: dict[str, object] = {"tuned": False, "how": "system default"}


def tune_allocator() -> dict[str, object]:
    """Keep freed memory in the process for reuse (glibc), where asked; what was done.

    Off unless the environment variable ``COOLCORE_MALLOC`` is ``reuse``.  glibc
    serves an allocation above its mmap threshold (128 KiB at first, raised
    adaptively up to 32 MiB) with a fresh ``mmap`` that ``free`` returns to the
    kernel, and trims free memory at the top of its heap, so a training step's
    activations and gradients of 16-64 MiB can come back as new pages that the
    kernel zero-fills.  ``reuse`` sets ``mallopt(M_MMAP_MAX, 0)`` (large blocks
    from the heap) and ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` (freed memory kept).
    Measured on a 2-core Zen 4 EPYC (docs/performance.md): the ``all`` training
    step 0-8% faster, within the run-to-run spread, and the peak memory of a
    ``cv`` at 256 px 0.6-1.2 GB higher (3.8-4.1 GB against 3.0 GB, over the
    4 GB target), so it is not the default.  Does nothing off Linux or without
    glibc.  Idempotent.

    Returns
    -------
    dict
        ``tuned`` (bool) and ``how`` (a line for run records and ``coolcore bench``).
    """
    if _ALLOCATOR["tuned"]:
        return dict(_ALLOCATOR)
    if os.environ.get(ALLOCATOR_ENV, "").strip().lower() != "reuse":
        return dict(_ALLOCATOR)
    if not sys.platform.startswith("linux"):
        return dict(_ALLOCATOR)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        gnu = libc.gnu_get_libc_version
        gnu.restype = ctypes.c_char_p
        version = gnu().decode()
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return dict(_ALLOCATOR)
    if mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, ALLOCATOR_TRIM_BYTES) == 1:
        _ALLOCATOR.update(
            tuned=True,
            how=f"glibc {version} malloc: no mmap for large blocks, 1 GiB kept for reuse",
        )
    return dict(_ALLOCATOR)


def allocator_state() -> dict[str, object]:
    """What :func:`tune_allocator` did in this process (``tuned``, ``how``)."""
    return dict(_ALLOCATOR)


def resolve_precision(requested: str, accelerator: str) -> str:
    """Lightning's ``precision`` for a ``train.precision`` value on an accelerator.

    Parameters
    ----------
    requested : str
        One of :data:`PRECISIONS`: ``"32"``, ``"bf16-mixed"``, ``"16-mixed"``
        (kept as asked) or ``"auto"``.
    accelerator : str
        Lightning's accelerator option (``"auto"``, ``"cpu"``, ``"gpu"``,
        ``"cuda"``, ``"mps"`` ...); ``"auto"`` means a CUDA GPU when one is
        visible, else the CPU (or an Apple GPU).

    Returns
    -------
    str
        ``"32-true"``, ``"bf16-mixed"`` or ``"16-mixed"``.  ``"auto"`` gives
        ``"bf16-mixed"`` on a CUDA GPU that supports bfloat16 and on a CPU with
        :func:`cpu_has_native_bf16`, ``"32-true"`` elsewhere.

    Raises
    ------
    coolcore.errors.UsageError
        ``requested`` not in :data:`PRECISIONS`.
    """
    requested = str(requested)
    if requested not in PRECISIONS:
        raise UsageError(f"precision {requested!r}: must be one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return "32-true" if requested == "32" else requested
    import torch

    cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda):
        return "bf16-mixed" if cuda and torch.cuda.is_bf16_supported() else "32-true"
    on_cpu = accelerator == "cpu" or (
        accelerator == "auto" and not torch.backends.mps.is_available()
    )
    return "bf16-mixed" if on_cpu and cpu_has_native_bf16() else "32-true"


def quiet_lightning() -> None:
    """Silence Lightning's tips and banners; keep warnings that matter."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("POSSIBLE_USER_WARNING", "off")
    for pattern in (
        ".*does not have many workers.*",
        ".*num_workers.*",
        ".*LeafSpec.*",
        ".*is deprecated.*",
        ".*sync_dist.*",
        ".*Checkpoint directory.*exists and is not empty.*",
        ".*Experiment logs directory.*exists and is not empty.*",
        ".*GPU available but not used.*",
        ".*Trying to infer the `batch_size`.*",
        ".*treespec.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def check_hardware(hardware: Hardware | None) -> None:
    """Check Lightning's hardware options before anything is written.

    Builds (and drops) a Trainer with the options, so that ``--accelerator gpu``
    on a machine without one, or ``--devices abc``, fails at once with a
    :class:`~coolcore.errors.UsageError` instead of after the run folder exists.
    """
    import lightning.pytorch as pl

    hw = hardware or Hardware()
    quiet_lightning()
    try:
        pl.Trainer(
            accelerator=hw.accelerator,
            devices=hw.devices,
            strategy=hw.strategy,
            num_nodes=hw.num_nodes,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"--accelerator {hw.accelerator} --devices {hw.devices} --strategy {hw.strategy} "
            f"--num-nodes {hw.num_nodes}: not usable here ({first})"
        ) from None
