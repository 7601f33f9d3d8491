"""``coolcore cv``, ``ablation`` and ``demo``: the paper's protocol on a sample."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from coolcore.cli.args import formatter, nonneg_int, positive_int
from coolcore.cli.simulate import print_sample_summary
from coolcore.nn.options import COMBINE_MODES, VARIANTS


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
    if getattr(args, "precision", None):
        overrides.append(f"train.precision={args.precision}")
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
    from coolcore.train.protocol import run_cv

    run_cv(args.data, _load_cfg(args), args.out, fold=args.fold, **_run_options(args))
    return 0


def cmd_ablation(args) -> int:
    from coolcore.train.ablation import run_ablation

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
    from coolcore.train.ablation import run_ablation
    from coolcore.train.config import load_config

    # the demo also shows the cooling-time head (docs/method.md), beside the concentration
    cfg = load_config("demo", ["model.regression=true", *(args.set or [])])
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
        print_sample_summary(catalog, data)
    run = out / "ablation"
    resume = run.with_name(run.name + ".partial").exists() or run.exists()
    run_ablation(data, cfg, run, methods=["all"], resume=resume, progress=not args.no_progress)
    from coolcore.apps.report import write_report

    print(f"report: {write_report(run)}")
    from coolcore.apps.verdict import verdict_lines

    print("\nWhich wins on this small sample (95% intervals over clusters):")
    for line in verdict_lines(run):
        print(f"- {line}")
    return 0


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
        "--precision",
        choices=("auto", "32", "bf16-mixed"),
        help="arithmetic: auto (default) is bf16-mixed on a GPU or a CPU with native bf16 "
        "(AMX or AVX-512 BF16), 32-bit elsewhere",
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


def add_training_commands(sub) -> None:
    """Add ``cv``, ``ablation`` and ``demo`` to the subparsers ``sub``."""
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
        choices=VARIANTS,
        help="network variant (default: the config's, all)",
    )
    p.add_argument("--combine", choices=COMBINE_MODES, help="how the two masks combine")
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
