"""The slow parts of ``coolcore bench``: the simulator's time and a cv run's peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["bench_cv_memory", "bench_simulate"]


def bench_simulate(
    out_dir: str | Path, *, n_clusters: int = 318, size_px: int = 256, workers: int = 2
) -> dict[str, Any]:
    """Wall time of :func:`coolcore.sim.simulate.simulate_sample` (default sample) into ``out_dir``."""
    from coolcore.sim.simulate import simulate_sample

    start = time.perf_counter()
    catalog = simulate_sample(
        out_dir, n_clusters=n_clusters, size=size_px, workers=workers, progress=False
    )
    seconds = time.perf_counter() - start
    return {
        "simulate_s": seconds,
        "clusters": n_clusters,
        "maps": len(catalog),
        "size_px": size_px,
        "workers": workers,
    }


_CV_CHILD = r"""
import json, sys
from pathlib import Path
from coolcore.train.config import load_config
from coolcore.train.protocol import run_cv
data, out, overrides, fold = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
cfg = load_config("paper", overrides)
run_cv(data, cfg, out, fold=fold, progress=False, quiet=True, keep_checkpoints=False)
hwm_kb = None
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
        hwm_kb = int(line.split()[1])
print("COOLCORE_BENCH " + json.dumps({"vmhwm_kb": hwm_kb}))
"""


def bench_cv_memory(
    data: str | Path,
    *,
    overrides: Sequence[str] = ("train.epochs=1", "cv.folds=3", "train.batch_size=16"),
    fold: int = 0,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Peak resident memory of a ``cv`` run of the ``paper`` preset, in a child process.

    The child loads and preprocesses ``data`` (all maps in memory, at the
    preset's 256 px), builds the folds and trains fold ``fold`` for the given
    overrides (default one epoch of 3 folds, batch 16), then predicts its test
    set.  Folds run one after another, so one fold's peak is the run's peak.

    Returns
    -------
    dict
        ``cv_peak_mem_gb`` (the larger of the child's ``VmHWM`` and its
        ``ru_maxrss`` from ``wait4``, in GB = 1e9 bytes), the seconds, the
        overrides.

    Raises
    ------
    RuntimeError
        The child failed (its last lines of output are in the message).
    """
    with tempfile.TemporaryDirectory(prefix="coolcore-bench-cv-") as tmp:
        cmd = [
            sys.executable,
            "-c",
            _CV_CHILD,
            str(data),
            str(Path(tmp) / "run"),
            json.dumps(list(overrides)),
            str(fold),
        ]
        start = time.perf_counter()
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            deadline = start + timeout_s
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.2)
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - start
            log.seek(0)
            text = log.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise RuntimeError(f"cv memory run failed (exit {proc.returncode}): {tail}")
    hwm_kb = None
    for line in text.splitlines():
        if line.startswith("COOLCORE_BENCH "):
            hwm_kb = json.loads(line.split(" ", 1)[1])["vmhwm_kb"]
    maxrss_kb = usage.ru_maxrss  # kilobytes on Linux
    peak_kb = max(v for v in (hwm_kb, maxrss_kb) if v is not None)
    return {
        "cv_peak_mem_gb": peak_kb * 1024 / 1e9,
        "vmhwm_kb": hwm_kb,
        "ru_maxrss_kb": maxrss_kb,
        "seconds": seconds,
        "preset": "paper",
        "overrides": list(overrides),
        "trained_fold": fold,
    }
