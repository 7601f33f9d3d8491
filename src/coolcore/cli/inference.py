"""The subcommands that use trained models: ``export``, ``predict``, ``explain``, ``report``.

:func:`add_inference_commands` registers them on the ``coolcore`` parser's
subparsers; each ``cmd_*`` function returns the exit status.  User errors raise
:class:`coolcore.errors.CoolcoreError` subclasses, which ``coolcore.cli.main.main``
prints on one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coolcore import CLASS_NAMES
from coolcore.cli.args import (
    formatter,
    int_at_least,
    nonneg_int,
    positive_float,
    positive_int,
    redshift,
    stderr_printer,
)
from coolcore.errors import UsageError
from coolcore.runs.outputs import check_output_apart, check_replaceable

__all__ = ["add_inference_commands", "cmd_explain", "cmd_export", "cmd_predict", "cmd_report"]


_min2_int = int_at_least(2)


def _print_metrics(metrics: dict, n: int) -> None:
    lo, hi = metrics["macro_f1_ci"] or (float("nan"), float("nan"))
    print(
        f"{metrics['n_images']} of {n} maps have labels: macro-F1 {metrics['macro_f1']:.3f} "
        f"(95% cluster-bootstrap interval {lo:.3f}-{hi:.3f}), accuracy {metrics['accuracy']:.3f}, "
        f"mean |class error| {metrics['mean_abs_class_error']:.3f}"
    )
    for c in CLASS_NAMES:
        print(
            f"  {c:>3}: precision {metrics['precision'][c]:.3f}  recall {metrics['recall'][c]:.3f}  "
            f"F1 {metrics['f1'][c]:.3f}  ({metrics['support'][c]} maps)"
        )
    cm = metrics["confusion_matrix"]
    print("  confusion matrix (rows true, columns predicted " + "/".join(CLASS_NAMES) + "):")
    for c, row in zip(CLASS_NAMES, cm, strict=True):
        print(f"  {c:>5} " + " ".join(f"{v:5d}" for v in row))
    reg = metrics.get("regression")
    if reg and reg["n"] > 1:
        print(
            f"  log10 t_cool ({reg['n']} maps): scatter {reg['scatter_dex']:.3f} dex, bias "
            f"{reg['bias_dex']:+.3f} dex, coverage {100 * reg['coverage_68']:.0f}% of 68%, "
            f"{100 * reg['coverage_95']:.0f}% of 95%"
        )


# --------------------------------------------------------------------------- commands
def cmd_export(args) -> int:
    from coolcore.apps.export import export_model
    from coolcore.apps.inference import load_model

    out = export_model(args.run, args.out, fold=args.fold, force=args.force)
    model = load_model(out, device="cpu")  # proves the folder loads and its hashes match
    print(f"{out}: {model}")
    return 0


def _input_paths(args) -> list:
    """The command's inputs as paths: the model or run, the maps, the catalogue."""
    first = getattr(args, "model", None) or getattr(args, "source", None)
    return [first, *(getattr(args, "inputs", None) or []), getattr(args, "catalog", None)]


def _check_output_file(out: Path, args) -> None:
    """Refuse an --out file that lies among the inputs, exists (without --force), is not a
    regular file, or cannot be created, before any work."""
    check_output_apart(out, _input_paths(args))
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; --out names the CSV file to write")
    if out.exists() and not args.force:
        raise UsageError(f"{out}: already exists; pass --force to overwrite it")
    check_replaceable(out, markers=(), what="CSV file")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{out}: cannot create the file ({parent} is not a folder)")


def _map_options(args) -> dict:
    if args.crop_px is not None and args.crop_kpc is not None:
        raise UsageError("--crop-px and --crop-kpc exclude each other: pick one")
    if args.cosmology is not None:
        from astropy.cosmology import realizations

        if args.cosmology not in realizations.available:
            raise UsageError(
                f"--cosmology {args.cosmology}: unknown; one of "
                + ", ".join(sorted(realizations.available))
            )
    return {
        "crop_px": args.crop_px,
        "crop_kpc": args.crop_kpc,
        "pixel_kpc": args.pixel_kpc,
        "cosmology": args.cosmology,
    }


def _observation_options(args) -> dict:
    """The one-observation options (--exposure, --background, --redshift, --center), checked."""
    center = None
    if args.center is not None:
        ra, dec = args.center
        if not (0 <= ra < 360 and -90 <= dec <= 90):
            raise UsageError(
                f"--center {ra:g} {dec:g}: RA must lie in [0, 360) and Dec in [-90, 90] degrees"
            )
        center = (ra, dec)
    for flag, value in (("--exposure", args.exposure), ("--background", args.background)):
        if value is not None and not Path(value).is_file():
            raise UsageError(f"{flag} {value}: no such file")
    return {
        "exposure": args.exposure,
        "background": args.background,
        "redshift": args.redshift,
        "center": center,
        "bin_size": args.bin,
    }


def cmd_predict(args) -> int:
    from coolcore.apps.inference import load_model
    from coolcore.apps.predictions import catalog_metrics, write_predictions
    from coolcore.data.inputs import collect_inputs

    out = Path(args.out)
    _check_output_file(out, args)
    options = _map_options(args)
    items = collect_inputs(args.inputs, args.catalog, **_observation_options(args))
    model = load_model(args.model, device=args.device)
    frame = model.predict(
        items,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        on_warning=stderr_printer("coolcore predict: warning: "),
        on_error=stderr_printer("coolcore predict: error: "),
        **options,
    )
    write_predictions(frame, out, force=args.force)
    failed = int((frame["error"] != "").sum())
    counts = frame.loc[frame["error"] == "", "predicted"].value_counts()
    mix = ", ".join(f"{c} {counts.get(c, 0)}" for c in CLASS_NAMES)
    print(f"{out}: {len(frame) - failed} maps predicted ({mix}) by {model}")
    if args.catalog is not None:  # as TrainedModel.evaluate
        metrics = catalog_metrics(items, frame)
        if metrics is not None:
            _print_metrics(metrics, len(frame))
    if failed:
        print(
            f"coolcore predict: {failed} of {len(frame)} maps failed (see the error column of {out})",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_explain(args) -> int:
    from coolcore.apps.explain import explain_maps, explain_run
    from coolcore.apps.export import MODEL_FILE
    from coolcore.apps.inference import load_model
    from coolcore.data.inputs import collect_inputs

    source = Path(args.source)
    out = Path(args.out)
    is_run = (
        source.is_dir() and (source / "run.json").is_file() and not (source / MODEL_FILE).is_file()
    )
    grid = is_run and not args.inputs and args.catalog is None
    if grid:  # a run's own figures may go inside it (as its report does), not over it
        if source.resolve().is_relative_to(out.resolve()):
            raise UsageError(f"{out}: would hold or replace the run {source}; choose another --out")
    else:
        check_output_apart(out, _input_paths(args))
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: is a file; --out names the folder for the PNGs")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UsageError(f"{out}: folder exists and is not empty; pass --force to write into it")
    check_replaceable(
        out, markers=("explanations.csv", "grid.csv"), what="folder of explain figures"
    )
    if grid:
        path = explain_run(source, out, per_class=args.per_class, progress=not args.no_progress)
        print(f"{path}: correct and wrong test images per class ({out / 'grid.csv'} lists them)")
        return 0
    options = _map_options(args)
    items = collect_inputs(args.inputs, args.catalog, **_observation_options(args))
    model = load_model(source, device=args.device)
    frame = explain_maps(
        model,
        items,
        out,
        fold=args.fold,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        on_warning=stderr_printer("coolcore explain: warning: "),
        on_error=stderr_printer("coolcore explain: error: "),
        **options,
    )
    failed = int((frame["error"] != "").sum())
    print(f"{out}: {len(frame) - failed} explained maps (one PNG each) and explanations.csv")
    if failed:
        print(f"coolcore explain: {failed} of {len(frame)} maps failed", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from coolcore.apps.report import write_report

    md = write_report(args.run, explain=not args.no_explain, progress=not args.no_progress)
    print(md)
    print(md.with_suffix(".html"))
    return 0


# --------------------------------------------------------------------------- parser
def _add_map_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "bringing a map to the model input",
        "Default: the central window of the training field of view (model crop x training "
        "pixel scale, in kpc) when the map's pixel scale is known, else the training crop "
        "in pixels; the window is then resized to the model input.",
    )
    g.add_argument(
        "--crop-px", type=_min2_int, metavar="N", help="central window of N x N map pixels"
    )
    g.add_argument(
        "--crop-kpc",
        type=positive_float,
        metavar="X",
        help="central window of X kpc (needs the pixel scale)",
    )
    g.add_argument(
        "--pixel-kpc",
        type=positive_float,
        metavar="P",
        help="pixel scale of every map in kpc (default: catalogue pixel_kpc, header "
        "PIXKPC, or WCS + REDSHIFT)",
    )
    o = p.add_argument_group(
        "observations (counts + exposure [+ background]; docs/observations.md)",
        "A map given with --exposure, --background, --center or --bin is an observation: its pixel\n"
        "scale comes from the WCS and the redshift, the centre is found on the exposure-\n"
        "corrected map (or given), the background is subtracted, masked pixels are filled,\n"
        "and the training field (kpc) is cut and rebinned conserving flux. --crop-kpc sets\n"
        "another field. For many observations, use the catalogue columns instead.",
    )
    o.add_argument("--exposure", metavar="FITS", help="exposure map (s) of the one map given")
    o.add_argument(
        "--background", metavar="FITS", help="background map (expected counts) of the map"
    )
    o.add_argument(
        "--redshift",
        type=redshift,
        metavar="Z",
        help="the cluster's redshift (else header REDSHIFT)",
    )
    o.add_argument(
        "--center",
        type=float,
        nargs=2,
        metavar=("RA", "DEC"),
        help="cluster centre in degrees (default: found on the map)",
    )
    o.add_argument(
        "--bin",
        type=positive_float,
        metavar="N",
        help="bin event lists on sky X/Y in N-pixel bins (0.5-2 keV); every map then "
        "takes the observation path",
    )
    o.add_argument(
        "--cosmology",
        metavar="NAME",
        help="astropy cosmology for kpc per arcsec (default Planck18; e.g. WMAP9)",
    )
    p.add_argument(
        "--catalog",
        metavar="CSV",
        help="catalogue CSV (image_id, cluster_id, file [, label, t_cool_gyr, pixel_kpc, "
        "exposure, background, redshift, ra, dec]); with labels the metrics are printed",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        metavar="N",
        help="maps per forward pass (default 32)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_predict_parser(sub) -> None:
    """Register ``predict`` on ``sub``."""
    p = sub.add_parser(
        "predict",
        help="classify maps with a trained model (CSV of probabilities)",
        formatter_class=formatter,
        description="Classify maps (files, folders, or --catalog CSV) with MODEL_DIR's ensemble.\n"
        "Writes one row per map: file, image_id, p_CC, p_WCC, p_NCC, predicted,\n"
        "ordinal_score (sum_k k p_k), spread (std over folds of p of the predicted class),\n"
        "box_x0..box_y1 (crop box in model-input pixels), the map's diagnostics\n"
        "(center_ra, center_dec, pixel_kpc, field_kpc, counts, masked_fraction, warning),\n"
        "log10_tcool, log10_tcool_sigma, predicted_from_tcool (models with the cooling-time\n"
        "head, model.regression=true), t_cool_gyr (catalogue), error. A map that cannot\n"
        "be read gets an error row; the exit status is 1 when any failed.",
        epilog="Examples:\n"
        "  coolcore predict model/ maps/ --out preds.csv --crop-kpc 1000\n"
        "  coolcore predict model/ examples/a1835/a1835_xmm_img.fits.gz \\\n"
        "      --exposure examples/a1835/a1835_xmm_exp.fits.gz --redshift 0.2532 --out a1835.csv",
    )
    p.add_argument(
        "model", metavar="MODEL_DIR", help="a folder from `coolcore export` (or a cv run)"
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="map files or folders of maps")
    p.add_argument("--out", required=True, metavar="CSV", help="predictions CSV to write")
    _add_map_options(p)
    p.set_defaults(func=cmd_predict)


def add_inference_commands(sub) -> None:
    """Register ``export``, ``predict``, ``explain`` and ``report`` on ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        What ``parser.add_subparsers(...)`` returned in :func:`coolcore.cli.main.build_parser`.
    """

    p = sub.add_parser(
        "export",
        help="make a model folder from a cv run (all folds as an ensemble)",
        formatter_class=formatter,
        description="Write MODEL_DIR: model.json (config, variant, preprocessing, class names,\n"
        "training pixel scale, versions, SHA-256 of each weight file) and one\n"
        "fold_XX.safetensors per fold. Loading never unpickles code.",
    )
    p.add_argument("run", metavar="RUN", help="a finished cv run folder (or ABLATION/all/rep_00)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write")
    p.add_argument("--fold", type=nonneg_int, metavar="K", help="export only fold K's model")
    p.add_argument("--force", action="store_true", help="replace an existing MODEL_DIR")
    p.set_defaults(func=cmd_export)

    _add_predict_parser(sub)

    p = sub.add_parser(
        "explain",
        help="draw what the network looked at (CAM, Gaussian, mask, box, crop)",
        formatter_class=formatter,
        description="With MODEL_DIR and maps: one six-panel PNG per map in DIR (input, CAM heat\n"
        "map, Gaussian heat map, mask and box, crop, class probabilities).\n"
        "With a cv (or ablation) RUN folder alone: DIR/grid.png, test images correct and\n"
        "wrong per class, each explained by the model of the fold that tested it.",
    )
    p.add_argument(
        "source", metavar="MODEL_DIR|RUN", help="model folder, or a run folder for the grid"
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="map files or folders of maps")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument(
        "--fold",
        type=nonneg_int,
        metavar="K",
        help="draw the maps of fold K's model (default: the first)",
    )
    p.add_argument(
        "--per-class",
        type=positive_int,
        default=3,
        metavar="N",
        help="grid: correct and wrong images per class (default 3)",
    )
    _add_map_options(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "report",
        help="write RUN/report.md and RUN/report.html",
        formatter_class=formatter,
        description="Markdown and self-contained HTML report of a cv or ablation run: results,\n"
        "confusion matrices, learning curves, explained examples, config, data, versions.",
    )
    p.add_argument("run", metavar="RUN", help="a finished cv or ablation run folder")
    p.add_argument(
        "--no-explain",
        action="store_true",
        help="do not draw the grid of explained test images (it reads the maps again)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)
