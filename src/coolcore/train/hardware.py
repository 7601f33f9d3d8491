"""Where training runs: Lightning's hardware options, the launcher's rank, quiet logs."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

from coolcore.errors import UsageError


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
