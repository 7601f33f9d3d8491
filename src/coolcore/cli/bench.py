"""The ``coolcore bench`` subcommand: speed and memory on this machine, side by side.

:func:`add_bench_command` registers it on the ``coolcore`` parser's subparsers;
:func:`cmd_bench` returns the exit status.  :func:`main` runs the same command
without the ``coolcore`` parser (``benchmarks/bench.py`` calls it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coolcore.cli.args import Parser, formatter, positive_int
from coolcore.errors import CoolcoreError, UsageError
from coolcore.runs.outputs import path_kind

__all__ = ["add_bench_command", "cmd_bench", "main"]

_DESCRIPTION = (
    "Measure, in one process and side by side (interleaved repetitions, medians):\n"
    "  - a training step and inference of the `all` network against a plain ResNet-18\n"
    "    at the same input size and batch (256 px batch 16, and 128 px batch 32 with a\n"
    "    64 px crop, the cpu preset);\n"
    "  - ResNet-18 inference GFLOP/s against a large fp32 matrix product's GFLOP/s;\n"
    "  - the data-loading share of a training epoch;\n"
    "  - the simulator's time for the default sample and the peak memory of a cv run\n"
    "    at 256 px (skipped with --quick);\n"
    "  - cost per result at the cpu preset's sizes (128 px, 64 px crop, batch 16):\n"
    "    bf16 over fp32 speed-ups of a training step and inference (only where bf16 is\n"
    "    native; null elsewhere), one variant's cross-validation in minutes (an\n"
    "    estimate from measured step times) and the seconds to prepare a 1000 x 1000\n"
    "    map for the model (fewer repeats with --quick).\n"
    "Prints a table (with the targets of issue 5) and writes JSON with the machine."
)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    p.add_argument(
        "--quick",
        action="store_true",
        help="skip the slow parts (simulation, cv memory run); they are null in the JSON",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=5,
        metavar="N",
        help="timed rounds per comparison (inference gets 2N; default 5)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda[:k] (bf16 autocast and channels-last on CUDA; default cpu)",
    )
    p.add_argument(
        "--gemm-size",
        type=positive_int,
        default=2048,
        metavar="N",
        help="side of the square fp32 matrix product (default 2048)",
    )
    p.add_argument(
        "--cv-data",
        metavar="DATA",
        help="data for the cv memory run (default: the sample this run simulates)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress messages on stderr")


def _device(text: str):
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text}: not a device name (cpu, cuda, cuda:1 ...)") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {text}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: CUDA is not available on this machine")
    return device


def _check_json_path(path: Path) -> None:
    """Refuse a --json path that cannot be written, before minutes of measuring."""
    if path.is_dir():
        raise UsageError(f"--json {path}: is a folder; name the JSON file to write")
    kind = path_kind(path)
    if kind not in ("nothing", "a regular file"):
        raise UsageError(f"--json {path}: is {kind}; name a regular JSON file to write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            raise UsageError(f"--json {path}: {parent} is a broken or looping symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--json {path}: cannot create the file ({parent} is not a folder)")


def cmd_bench(args) -> int:
    """Run the benchmark, print the table, write ``--json``; exit status 0."""
    from pathlib import Path

    from coolcore.bench.suite import format_table, run_bench, write_json

    device = _device(args.device)
    if args.cv_data is not None and not Path(args.cv_data).exists():
        raise UsageError(f"--cv-data {args.cv_data}: no such file or folder")
    if args.json is not None:
        _check_json_path(Path(args.json))

    def say(text: str) -> None:
        print(f"coolcore bench: {text}", file=sys.stderr, flush=True)

    result = run_bench(
        quick=args.quick,
        repeats=args.repeats,
        device=device,
        gemm_n=args.gemm_size,
        cv_data=args.cv_data,
        log=None if args.no_progress else say,
    )
    print(format_table(result))
    if args.json is not None:
        path = write_json(result, args.json)
        print(f"\n{path}: results and machine description (JSON)")
    return 0


def add_bench_command(subparsers) -> None:
    """Register ``bench`` on ``subparsers`` (what ``parser.add_subparsers(...)`` returned)."""

    p = subparsers.add_parser(
        "bench",
        help="measure speed and memory side by side (the network vs a plain ResNet-18)",
        formatter_class=formatter,
        description=_DESCRIPTION,
        epilog="Example: coolcore bench --json bench.json   (about 15 minutes on 2 cores; "
        "--quick: about 5)",
    )
    _add_arguments(p)
    p.set_defaults(func=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    """``coolcore bench`` as a stand-alone program (for ``benchmarks/bench.py``)."""

    parser = Parser(prog="bench", formatter_class=formatter, description=_DESCRIPTION)
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_bench(args)
    except CoolcoreError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
