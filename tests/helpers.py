"""What several test modules share: a tiny simulated sample, tiny training options,
and the real command line, run in a fresh interpreter (``run_cli``) or in this one
(``run_cli_here``, seconds faster: no new interpreter importing torch)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

# one thread per process: the tests run two workers on two cores
ONE_THREAD_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def tiny_args(*, epochs: int = 1, batch_size: int | None = 16, folds: int = 3) -> list[str]:
    """Training options for seconds-long runs: 64 px maps resized to 32 px, 3 folds
    (``batch_size=None`` keeps the demo preset's)."""
    batch = [] if batch_size is None else ["--set", f"train.batch_size={batch_size}"]
    return [
        "--config",
        "demo",
        "--set",
        "preprocess.crop=64",
        "--set",
        "preprocess.size=32",
        "--set",
        "model.aux_size=32",
        *batch,
        "--epochs",
        str(epochs),
        "--folds",
        str(folds),
        "--no-progress",
    ]


def simulate_tiny(out: Path, n_clusters: int = 18) -> Path:
    """3 x ``n_clusters`` maps of 64 px in equal class shares (seed 3)."""
    from coolcore.sim.simulate import simulate_sample

    simulate_sample(
        out, n_clusters=n_clusters, size=64, class_mix=(0.34, 0.33, 0.33), seed=3, progress=False
    )
    return out


def cli_argv(*args: str) -> list[str]:
    """``coolcore ARGS`` as an argv for a fresh interpreter."""
    return [sys.executable, "-m", "coolcore.cli.main", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``coolcore ARGS`` in a fresh interpreter with one thread; capture the output."""
    return subprocess.run(
        cli_argv(*args),
        cwd=cwd,
        env=ONE_THREAD_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli_here(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``coolcore ARGS`` in this interpreter, as ``run_cli`` does in a new one.

    The exit status, stdout and stderr are those the process would have had: an
    exception that escapes ``main`` is printed as a traceback with status 1, so a
    test that checks for "Traceback" catches it here too. Use ``run_cli`` where the
    process boundary is the point (signals, ``python -m``, DDP workers).
    """
    from coolcore.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except Exception:  # noqa: BLE001 - reported as the process would
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
