"""The ``coolcore`` command line.

Every subcommand has ``--help``. A user's mistake (a bad argument, an unreadable
file) ends with one line on stderr naming the input and the problem, exit status
2 for usage errors and 1 for data errors, and no traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from coolcore import __version__
from coolcore.cli.args import Parser, formatter
from coolcore.cli.bench import add_bench_command
from coolcore.cli.compare import add_compare_command
from coolcore.cli.inference import add_inference_commands
from coolcore.cli.simulate import add_simulate_command
from coolcore.cli.train import add_training_commands
from coolcore.errors import CoolcoreError


def build_parser() -> argparse.ArgumentParser:
    """The ``coolcore`` parser: one subcommand per task, each with its ``--help``."""
    parser = Parser(
        prog="coolcore",
        formatter_class=formatter,
        description=(
            "Classify galaxy clusters as cool-core (CC), weak-cool-core (WCC) or non-cool-core (NCC)\n"
            "from X-ray maps with the multi-branch attention network of Zhang et al. (2020)."
        ),
        epilog="Start with `coolcore demo`, or `coolcore simulate data/` then `coolcore cv data/ --config cpu --out runs/cv`.",
    )
    parser.add_argument("--version", action="version", version=f"coolcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    add_simulate_command(sub)
    add_training_commands(sub)
    add_inference_commands(sub)
    add_compare_command(sub)
    add_bench_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    from coolcore.train.hardware import tune_allocator

    tune_allocator()
    from coolcore.runs.interrupts import clear_interrupt

    clear_interrupt()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if previous[signal.SIGINT] is signal.default_int_handler:  # not if ignored (nohup, &)
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        return int(args.func(args) or 0)
    except CoolcoreError as exc:
        print(f"coolcore {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        from coolcore.runs.folder import PARTIAL_SUFFIX
        from coolcore.runs.interrupts import interrupt_requested

        signum = interrupt_requested() or signal.SIGINT
        message = f"coolcore {args.command}: interrupted by {signal.Signals(signum).name}"
        if args.command in ("cv", "ablation"):
            partial = Path(f"{args.out}{PARTIAL_SUFFIX}")
            kept = f" in {partial}" if partial.is_dir() else ""
            message += (
                f"; finished work is kept{kept}, run the same command with --resume to continue"
            )
        elif args.command == "demo":
            message += "; finished work is kept, run the same command again to continue"
        print(message, file=sys.stderr)
        return 128 + int(signum)
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


_MAIN_PID = os.getpid()


def _raise_interrupt(signum, frame):
    """SIGINT or SIGTERM in the main process: stop like Ctrl-C (finished work is kept).

    The request is also recorded (:func:`coolcore.runs.folder.request_interrupt`), so the
    training loop stops at the next batch even if this exception is lost (CPython
    discards exceptions raised while it runs a finaliser). The exit status is
    128 + the signal number (130 for SIGINT, 143 for SIGTERM).

    Worker processes forked from it (the simulator's pool) inherit this handler;
    they go back to the default action, so that a pool shutting down its workers
    stays silent.
    """
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    from coolcore.runs.interrupts import request_interrupt

    request_interrupt(signum)
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
