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
from coolcore.cli.args import Parser, class_mix, formatter, nonneg_int, positive_int
from coolcore.errors import CoolcoreError, UsageError

# ----------------------------------------------------------------------------- commands


def cmd_simulate(args) -> int:
    from coolcore.sim.simulate import simulate_sample

    out = Path(args.out_dir)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UsageError(f"{out}: folder exists and is not empty; pass --force to overwrite")
    kwargs = {}
    if args.exposure_ks is not None:
        kwargs["exposure_ks"] = args.exposure_ks
    catalog = simulate_sample(
        out,
        n_clusters=args.clusters,
        size=args.size,
        fov_kpc=args.fov_kpc,
        class_mix=args.class_mix,
        seed=args.seed,
        workers=args.workers,
        observed=args.observed,
        progress=not args.no_progress,
        **kwargs,
    )
    _print_sample_summary(catalog, out)
    return 0


def _print_sample_summary(catalog, out: Path) -> None:
    counts = catalog["label"].value_counts()
    n = len(catalog)
    mix = ", ".join(
        f"{c} {counts.get(c, 0)} ({100 * counts.get(c, 0) / n:.0f}%)" for c in ("CC", "WCC", "NCC")
    )
    print(f"{out}: {n} maps of {catalog['cluster_id'].nunique()} clusters; {mix}")
    if "m500_msun" in catalog:
        m = catalog["m500_msun"]
        print(
            f"  M500 {m.min():.2e} - {m.max():.2e} Msun; t_cool {catalog['t_cool_gyr'].min():.2f} - "
            f"{catalog['t_cool_gyr'].max():.1f} Gyr; catalogue {out / 'catalog.csv'}"
        )


def _load_cfg(args):
    from coolcore.train.config import load_config

    overrides = list(args.set or [])
    if getattr(args, "variant", None):
        overrides.append(f"model.variant={args.variant}")
    if getattr(args, "combine", None):
        overrides.append(f"model.combine={args.combine}")
    if getattr(args, "weights", None):
        overrides.append(f"model.weights={args.weights}")
    if getattr(args, "epochs", None):
        overrides.append(f"train.epochs={args.epochs}")
    if getattr(args, "seed", None) is not None:
        overrides.append(f"train.seed={args.seed}")
    if getattr(args, "folds", None):
        overrides.append(f"cv.folds={args.folds}")
    if getattr(args, "deterministic", False):
        overrides.append("train.deterministic=true")
    return load_config(args.config, overrides)


def _run_options(args) -> dict:
    """The options ``cv`` and ``ablation`` share: resume/force, hardware, progress."""
    from coolcore.train.hardware import Hardware

    devices: int | str = args.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    hardware = Hardware(
        accelerator=args.accelerator,
        devices=devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
    )
    return {
        "resume": args.resume,
        "force": args.force,
        "hardware": hardware,
        "progress": not args.no_progress,
    }


def cmd_cv(args) -> int:
    from coolcore.train.experiments import run_cv

    run_cv(args.data, _load_cfg(args), args.out, fold=args.fold, **_run_options(args))
    return 0


def cmd_ablation(args) -> int:
    from coolcore.train.experiments import run_ablation

    run_ablation(
        args.data,
        _load_cfg(args),
        args.out,
        repeats=args.repeats,
        methods=args.methods,
        sweep=args.sweep,
        **_run_options(args),
    )
    return 0


def cmd_demo(args) -> int:
    from coolcore.sim.simulate import simulate_sample
    from coolcore.train.config import load_config
    from coolcore.train.experiments import run_ablation

    cfg = load_config("demo", args.set)
    out = Path(args.out)
    data = out / "data"
    if not (data / "catalog.csv").is_file():
        print(f"simulating {cfg['sample']['clusters']} clusters x 3 projections into {data}")
        catalog = simulate_sample(
            data,
            n_clusters=cfg["sample"]["clusters"],
            seed=cfg["sample"]["seed"],
            workers=args.workers,
            progress=not args.no_progress,
        )
        _print_sample_summary(catalog, data)
    run = out / "ablation"
    resume = run.with_name(run.name + ".partial").exists() or run.exists()
    run_ablation(data, cfg, run, methods=["all"], resume=resume, progress=not args.no_progress)
    from coolcore.apps.report import write_report

    print(f"report: {write_report(run)}")
    return 0


# ----------------------------------------------------------------------------- parser


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="a folder holding catalog.csv, or a catalogue CSV")
    p.add_argument(
        "--config",
        default="paper",
        metavar="PRESET|YAML",
        help="preset (paper, cpu, demo) or a YAML file (default: paper)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5 (repeatable)",
    )
    p.add_argument("--epochs", type=positive_int, help="shortcut for --set train.epochs=N")
    p.add_argument("--folds", type=positive_int, help="shortcut for --set cv.folds=K")
    p.add_argument(
        "--seed", type=nonneg_int, help="training seed (shortcut for --set train.seed=N)"
    )
    p.add_argument(
        "--weights",
        metavar="none|imagenet|FILE",
        help="backbone initialisation (default none: random; imagenet needs the cached weights)",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms: the same seed gives the same predictions",
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an unfinished run; finished folds are not recomputed",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    hw = p.add_argument_group("hardware (Lightning)")
    hw.add_argument("--accelerator", default="auto", help="auto, cpu, gpu (default auto)")
    hw.add_argument("--devices", default="1", help="devices per node, e.g. 4 (default 1)")
    hw.add_argument("--strategy", default="auto", help="auto, ddp, ddp_spawn ... (default auto)")
    hw.add_argument("--num-nodes", type=positive_int, default=1, help="nodes, for multi-node DDP")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
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

    p = sub.add_parser(
        "simulate",
        help="simulate cluster X-ray emissivity maps (the built-in sample)",
        formatter_class=formatter,
        description="Simulate X-ray emissivity maps of galaxy clusters from a physical gas model,\n"
        "labelled by their computed central cooling time; one FITS file per projection\n"
        "and a catalog.csv in OUT_DIR.",
    )
    p.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder to write the FITS maps and catalog.csv"
    )
    p.add_argument(
        "--clusters", type=positive_int, default=318, help="number of clusters (default 318)"
    )
    p.add_argument(
        "--size", type=positive_int, default=256, help="map size in pixels (default 256)"
    )
    p.add_argument(
        "--fov-kpc", type=float, default=1000.0, help="field of view in kpc (default 1000)"
    )
    p.add_argument(
        "--class-mix",
        type=class_mix,
        default=(0.1, 0.6, 0.3),
        metavar="CC,WCC,NCC",
        help="fractions of the three classes (default 0.1,0.6,0.3)",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="processes (default: up to 2); the output does not depend on it",
    )
    p.add_argument(
        "--observed",
        action="store_true",
        help="Poisson photon counts for an exposure plus a flat background",
    )
    p.add_argument("--exposure-ks", type=float, default=None, help="exposure in ks for --observed")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "cv",
        help="cross-validate one variant (the paper's 10-fold protocol)",
        formatter_class=formatter,
        description="Train and test one variant on every cluster-grouped fold; writes RUN/ with\n"
        "predictions.csv, metrics.json, confusion_matrix.png and learning_curves.png.",
    )
    _add_training_options(p)
    p.add_argument(
        "--variant",
        choices=("baseline", "att", "gauss", "att+gauss", "all"),
        help="network variant (default: the config's, all)",
    )
    p.add_argument("--combine", choices=("union", "intersection"), help="how the two masks combine")
    p.add_argument(
        "--fold", type=nonneg_int, help="train only fold K (0-based), e.g. one job per fold"
    )
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser(
        "ablation",
        help="the paper's Table I: all variants and the concentration baselines",
        formatter_class=formatter,
        description="Run the variants baseline, att, gauss, att+gauss, all and all (intersection), and\n"
        "the concentration baselines, on identical folds and seeds; writes RUN/table.md.",
    )
    _add_training_options(p)
    p.add_argument(
        "--repeats", type=positive_int, default=1, help="repeats with seeds seed..seed+R-1"
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="only these methods (baseline is always included)",
    )
    p.add_argument("--sweep", choices=("loss-weights",), help="the paper's Table II grid instead")
    p.set_defaults(func=cmd_ablation)

    p = sub.add_parser(
        "demo",
        help="simulate a small sample and compare baseline with all (a few minutes)",
        formatter_class=formatter,
        description="The whole path on a small simulated sample: simulate, cross-validate the\n"
        "baseline and the full network and the concentration baselines, print the table.",
    )
    p.add_argument(
        "--out", default="runs/demo", metavar="DIR", help="folder for the sample and runs"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the demo preset")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="simulation processes",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    from coolcore.cli.inference import add_inference_commands

    add_inference_commands(sub)

    from coolcore.cli.bench import add_bench_command

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
    from coolcore.runs.folder import clear_interrupt

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
        from coolcore.runs.folder import PARTIAL_SUFFIX, interrupt_requested

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
    from coolcore.runs.folder import request_interrupt

    request_interrupt(signum)
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
