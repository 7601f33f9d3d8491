"""``coolcore compare``: several runs' methods on the same clusters, with intervals."""

from __future__ import annotations

from pathlib import Path

from coolcore.cli.args import formatter, nonneg_int, positive_int


def cmd_compare(args) -> int:
    from coolcore.apps.comparison import collect_methods
    from coolcore.errors import UsageError
    from coolcore.evaluate.compare import compare_methods, comparison_markdown
    from coolcore.runs.atomic import atomic_write_text

    results = collect_methods(args.sources)
    if args.reference is not None and args.reference not in results:
        raise UsageError(
            f"--reference {args.reference!r}: not among the methods ({', '.join(results)})"
        )
    table = compare_methods(results, reference=args.reference, n_boot=args.boot, seed=args.seed)
    text = comparison_markdown(table, reference=args.reference)
    print(text, end="")
    if args.out:
        atomic_write_text(Path(args.out), text)
    return 0


def add_compare_command(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="score methods of several runs on the same clusters (intervals, differences)",
        formatter_class=formatter,
        description="Macro-F1 (mean +- std over seeds, 95% interval over clusters and seeds),\n"
        "balanced accuracy and the recall of each class for every method of the sources,\n"
        "and each method's difference to --reference, paired on the same clusters.\n"
        "SOURCE: a cv run folder, an ablation run folder (all its methods), a predictions\n"
        "CSV, or NAME=SOURCE; a name given more than once is one method with several\n"
        "training seeds. All sources must hold the same maps.",
        epilog="Examples:\n"
        "  coolcore compare results/recipe-cpu/default-s0 results/recipe-cpu/default-s1 "
        "--reference 'c_SB (fit)'\n"
        "  coolcore compare results/recipe-cpu/default-s0/profile_fit_predictions.csv "
        "dataset=results/scaling-cpu/baseline-dataset-s0 --reference profile_fit",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="run folders or CSVs")
    p.add_argument("--reference", metavar="NAME", help="the method the others are compared with")
    p.add_argument(
        "--boot", type=positive_int, default=1000, metavar="N", help="bootstrap replicates"
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", metavar="FILE.md", help="also write the table here")
    p.set_defaults(func=cmd_compare)
