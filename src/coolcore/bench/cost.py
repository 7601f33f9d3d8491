"""Cost per result in ``coolcore bench``: bf16 speed-ups, one cross-validation's minutes, and
the time to prepare one observation.

Everything here is measured on the ``all`` network that a run config (by
default the ``cpu`` preset) builds, at the config's input size, auxiliary crop
and batch:

- :func:`bench_step_times`: a training step (forward, loss, backward, Adam) and
  an inference pass in fp32 and, where bf16 is native (a CUDA GPU that supports
  it, or a CPU with :func:`coolcore.train.hardware.cpu_has_native_bf16`), under
  bf16 autocast, interleaved in one run; the bf16 speed-ups are the medians of
  the per-round fp32 / bf16 ratios.  Where bf16 is not native it is not
  measured (emulated bf16 is slower than fp32 and no run would use it).
- :func:`coolcore.bench.cvestimate.bench_fold_overhead`: what a fold costs
  besides its steps: building the network twice (training, then reloading the
  best epoch), saving a full checkpoint (weights and Adam's state,
  ``last.ckpt``) and a weights-only one (``best.ckpt``) every epoch, reading
  the best one back.
- :func:`coolcore.bench.cvestimate.estimate_cv_minutes`: one variant's whole
  cross-validation from those measurements and the fold arithmetic (an
  ESTIMATE, not a timed run).
- :func:`bench_prepare`: reading a 1000 x 1000 observation (counts, exposure and
  background FITS files) and bringing it to the model input through
  :func:`coolcore.apps.batches.prepare_maps` (the path of
  ``coolcore predict``).

:func:`bench_cost` runs them all; :func:`format_cost` gives the table's lines.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coolcore.bench.cvestimate import bench_fold_overhead, estimate_cv_minutes
from coolcore.bench.timing import Setting, median_wall_s, paired_ratio, time_interleaved
from coolcore.data.transforms import DEFAULT_FIELD_KPC
from coolcore.sim.projection import AXES
from coolcore.train import hardware

__all__ = [
    "bench_cost",
    "bench_prepare",
    "bench_step_times",
    "bf16_available",
    "format_cost",
    "precision_context",
    "preset_setting",
]

FP32, BF16 = "32-true", "bf16-mixed"


# --------------------------------------------------------------------------- settings
def preset_setting(cfg: Mapping[str, Any], name: str = "preset") -> Setting:
    """The input size, batch and auxiliary crop of a run config as a :class:`Setting`."""
    p = cfg["preprocess"]
    size = p["size"] if p.get("size") is not None else p["crop"]
    return Setting(name, int(size), int(cfg["train"]["batch_size"]), cfg["model"]["aux_size"])


def bf16_available(device: torch.device | str) -> bool:
    """Whether bf16 is native on ``device``: a CUDA GPU that supports it, or a CPU with
    :func:`coolcore.train.hardware.cpu_has_native_bf16` (AMX or AVX-512 BF16)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return hardware.cpu_has_native_bf16()


def precision_context(device: torch.device | str, precision: str):
    """The autocast of Lightning's ``precision`` on ``device`` (nothing for ``32-true``)."""
    device = torch.device(device)
    if precision == BF16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def _accelerator(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


# --------------------------------------------------------------------------- steps
def _closures(cfg: Mapping[str, Any], device: torch.device, precision: str):
    """A training step and an inference pass of the config's network, in ``precision``.

    As :class:`coolcore.train.module.ClusterClassifier` trains: the network of
    :func:`coolcore.nn.model.build_network` (channels-last where the config says
    so), :func:`coolcore.nn.losses.total_loss`, Adam at the config's rate.
    """
    from coolcore.nn.losses import total_loss
    from coolcore.nn.model import build_network

    s = preset_setting(cfg)
    torch.manual_seed(0)
    net = build_network(cfg, weights="none", variant="all")
    fmt = torch.channels_last if cfg["train"]["channels_last"] else torch.contiguous_format
    net = net.to(device=device, memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["train"]["lr"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(s.batch, 1, s.size_px, s.size_px, generator=g).to(device)
    full = None  # crop_source "full": the maps before the resize, as the loaders bring them
    if net.crop_source == "full":
        crop = int(cfg["preprocess"]["crop"])
        full = torch.rand(s.batch, 1, crop, crop, generator=g).to(device)
    y = (torch.arange(s.batch) % 3).to(device)
    weight = torch.ones(3, device=device)
    alphas = tuple(cfg["loss"]["alphas"])

    def train() -> None:
        net.train()
        with precision_context(device, precision):
            loss, _ = total_loss(net(x, full), y, weight, alphas)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer() -> None:
        net.eval()
        with torch.inference_mode(), precision_context(device, precision):
            net(x, full)

    return train, infer


def bench_step_times(
    cfg: Mapping[str, Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Training step and inference of the config's network in fp32 and, where native, bf16.

    Parameters
    ----------
    cfg : mapping
        A run config (:func:`coolcore.train.config.load_config`).
    repeats : int
        Timed rounds of the training step (inference gets twice as many).
    warmup : int
        Untimed rounds first.
    device : torch.device or str
        Where to run.

    Returns
    -------
    dict
        ``setting``; ``precisions`` measured (``32-true`` and, where
        :func:`bf16_available`, ``bf16-mixed``); ``auto_precision`` (what
        ``train.precision: auto`` trains in here); ``train_step_s`` and
        ``infer_step_s`` (precision -> median seconds per batch);
        ``bf16_train_speedup`` and ``bf16_infer_speedup`` (median of per-round
        fp32 / bf16 ratios; None where bf16 was not measured); ``bf16_how``.
    """
    device = torch.device(device)
    s = preset_setting(cfg)
    precisions = [FP32, BF16] if bf16_available(device) else [FP32]
    arms = {p: _closures(cfg, device, p) for p in precisions}
    train = time_interleaved(
        {p: arm[0] for p, arm in arms.items()}, repeats=repeats, warmup=warmup, device=device
    )
    infer = time_interleaved(
        {p: arm[1] for p, arm in arms.items()}, repeats=2 * repeats, warmup=warmup, device=device
    )
    del arms
    measured = BF16 in precisions
    if not measured and device.type == "cuda":
        how = "not measured: this GPU does not support bf16"
    elif not measured:
        how = "not measured: this CPU lacks native bf16 (no amx_bf16 or avx512_bf16 flag)"
    elif device.type == "cuda":
        how = "bf16 autocast on CUDA"
    else:
        how = "bf16 autocast on a CPU with native bf16"
    return {
        "setting": {"size_px": s.size_px, "batch": s.batch, "aux_size_px": s.aux_size_px},
        "precisions": precisions,
        "auto_precision": hardware.resolve_precision("auto", _accelerator(device)),
        "train_step_s": {p: statistics.median(t) for p, t in train.items()},
        "infer_step_s": {p: statistics.median(t) for p, t in infer.items()},
        "bf16_train_speedup": paired_ratio(train[FP32], train[BF16]) if measured else None,
        "bf16_infer_speedup": paired_ratio(infer[FP32], infer[BF16]) if measured else None,
        "bf16_how": how,
        "repeats": {"train": repeats, "infer": 2 * repeats},
    }


# --------------------------------------------------------------------------- preparation
def _observation(size_px: int, seed: int = 0) -> np.ndarray:
    """A ``size_px``-square float32 map: a beta-model cluster on a flat background, Poisson counts."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size_px, :size_px] - (size_px - 1) / 2
    model = 50.0 * (1 + (yy**2 + xx**2) / (0.05 * size_px) ** 2) ** -1.5 + 0.2
    return rng.poisson(model).astype(np.float32)


def _observation_files(folder: Path, map_px: int) -> tuple[Path, Path, Path]:
    """A ``map_px``-square counts image with a WCS (4" pixels, z = 0.1), its exposure map
    (vignetting, a chip gap, zero off a circular detector) and a flat background map."""
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [(map_px + 1) / 2, (map_px + 1) / 2]
    wcs.wcs.cdelt = [-4.0 / 3600, 4.0 / 3600]
    header = wcs.to_header()
    header["REDSHIFT"] = 0.1
    yy, xx = np.mgrid[:map_px, :map_px] - (map_px - 1) / 2
    r = np.hypot(xx, yy) / (map_px / 2)
    exposure = 5e4 * np.clip(1 - 0.5 * r**2, 0, None) * (r < 0.95)
    exposure[:, map_px // 2 + 20 : map_px // 2 + 26] = 0.0  # a chip gap
    background = 0.02 * exposure / 5e4
    counts = _observation(map_px) * (exposure > 0)
    paths = folder / "counts.fits", folder / "exposure.fits", folder / "background.fits"
    for path, data in zip(paths, (counts, exposure, background), strict=True):
        fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path)
    return paths


def bench_prepare(
    cfg: Mapping[str, Any], *, map_px: int = 1000, repeats: int = 10
) -> dict[str, Any]:
    """Seconds to bring one ``map_px``-square observation to the model input.

    ``coolcore predict``'s path for an observation: the counts image (WCS,
    redshift), its exposure map and background map are read from FITS files and
    brought to the model input by :func:`coolcore.apps.batches.prepare_maps`:
    pixel scale, centre found on the smoothed exposure-corrected map, background
    subtraction, exposure correction, masked pixels filled, the 1000 kpc field
    rebinned conserving flux (:mod:`coolcore.data.observation`), then log,
    normalisation and resize, for a model of the config's ``preprocess`` section.
    """
    from coolcore.apps.batches import prepare_maps
    from coolcore.apps.export import preprocess_meta
    from coolcore.data.inputs import MapInput

    p = cfg["preprocess"]
    size = p["size"] if p.get("size") is not None else p["crop"]
    field_kpc = float(p.get("field_kpc", DEFAULT_FIELD_KPC))
    meta = {
        "preprocess": preprocess_meta(p, None),
        "training_data": {"pixel_kpc": field_kpc / int(p["crop"]), "kind": "observations"},
    }
    with tempfile.TemporaryDirectory(prefix="coolcore-bench-prepare-") as tmp:
        counts, exposure, background = _observation_files(Path(tmp), map_px)
        item = MapInput(
            file=str(counts),
            image_id="observation",
            exposure=str(exposure),
            background=str(background),
        )
        shape: list[tuple[int, ...]] = []

        def prepare() -> None:
            out = prepare_maps([item], meta)
            if out.errors:
                raise RuntimeError(f"prepare_maps failed: {out.errors}")
            shape[:] = [out.images.shape]

        prepare()  # warm-up: imports, the first read
        seconds = median_wall_s(prepare, repeats)
    return {
        "prepare_s_per_map": seconds,
        "map_px": map_px,
        "input_px": int(size),
        "crop_px": int(p["crop"]),
        "field_kpc": field_kpc,
        "output_shape": list(shape[0]),
        "repeats": repeats,
        "path": "FITS read of counts, exposure and background + coolcore.apps.batches."
        "prepare_maps (observation path: centre, background, exposure, fill, rebin; "
        "then log, normalise, resize)",
    }


# --------------------------------------------------------------------------- all
def bench_cost(
    cfg: Mapping[str, Any],
    *,
    repeats: int = 5,
    device: torch.device | str = "cpu",
    preset: str = "cpu",
    n_maps: int | None = None,
    map_px: int = 1000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The cost-per-result keys of ``coolcore bench`` and their details.

    Parameters
    ----------
    cfg : mapping
        The run config measured (``coolcore bench``: the ``cpu`` preset).
    repeats : int
        Timed rounds of the training steps (inference and preparation get twice as many).
    device : torch.device or str
        Where the network runs.
    preset : str
        The config's name, for the table.
    n_maps : int, optional
        Maps of the cross-validated sample; default: the config's
        ``sample.clusters`` x 3 projections (the default sample: 954).
    map_px : int
        Side of the map prepared for ``prepare_s_per_map``.
    log : callable, optional
        Progress messages go there.

    Returns
    -------
    dict
        Top-level keys ``bf16_train_speedup``, ``bf16_infer_speedup`` (None where
        bf16 is not native), ``cv_minutes_cpu`` (an estimate),
        ``cv_minutes_cpu_note``, ``prepare_s_per_map``, and ``cost`` (the
        details: ``steps``, ``fold_overhead``, ``cv_estimate``, ``prepare``).
    """
    say = log or (lambda _msg: None)
    device = torch.device(device)
    s = preset_setting(cfg, preset)
    if n_maps is None:
        n_maps = int(cfg["sample"]["clusters"]) * len(AXES)
    say(f"cost per result at {s.describe()} ({s.name}): fp32 and bf16 steps of the all network")
    steps = bench_step_times(cfg, repeats=repeats, device=device)
    say("per-fold overhead: building the network, saving and reading checkpoints")
    overhead = bench_fold_overhead(cfg, repeats=max(1, min(3, repeats)), device=device)
    auto = steps["auto_precision"] if steps["auto_precision"] in steps["precisions"] else FP32

    def estimate_in(precision: str) -> dict[str, Any]:
        out = estimate_cv_minutes(
            n_maps=n_maps,
            folds=int(cfg["cv"]["folds"]),
            epochs=int(cfg["train"]["epochs"]),
            batch_size=s.batch,
            train_step_s=steps["train_step_s"][precision],
            infer_step_s=steps["infer_step_s"][precision],
            test_infer_step_s=steps["infer_step_s"][FP32],
            fold_overhead_s=overhead["fold_overhead_s"],
        )
        return {**out, "precision": precision}

    estimate = estimate_in(auto)
    # where bf16 was measured, the same estimate in fp32 beside it
    estimate["fp32"] = estimate_in(FP32) if auto != FP32 else None
    note = (
        f"ESTIMATE, not a timed run: {estimate['folds']} folds x {estimate['epochs']} epochs on "
        f"{n_maps} maps from step times measured on {device.type} in {auto} "
        "(what train.precision auto chooses here) plus the measured per-fold overhead; "
        "Lightning's loop and reading the data are not included"
    )
    say(f"bringing a {map_px} x {map_px} FITS map to the model input")
    prepare = bench_prepare(cfg, map_px=map_px, repeats=2 * repeats)
    return {
        "bf16_train_speedup": steps["bf16_train_speedup"],
        "bf16_infer_speedup": steps["bf16_infer_speedup"],
        "cv_minutes_cpu": estimate["cv_minutes"],
        "cv_minutes_cpu_note": note,
        "prepare_s_per_map": prepare["prepare_s_per_map"],
        "cost": {
            "preset": preset,
            "steps": steps,
            "fold_overhead": overhead,
            "cv_estimate": estimate,
            "prepare": prepare,
        },
    }


def format_cost(result: Mapping[str, Any]) -> list[str]:
    """The table's lines for :func:`bench_cost`'s keys (empty where they are missing)."""
    cost = result.get("cost")
    if not cost:
        return []
    st, est, prep = cost["steps"], cost["cv_estimate"], cost["prepare"]
    s = st["setting"]
    lines = [
        "",
        f"cost per result ({cost['preset']} preset: {s['size_px']}/{s['aux_size_px']} px, "
        f"batch {s['batch']}, the all network):",
    ]
    times = ", ".join(
        f"{p} train step {st['train_step_s'][p]:.3f} s, inference {st['infer_step_s'][p]:.3f} s"
        for p in st["precisions"]
    )
    lines.append(f"  {times}")
    if result["bf16_train_speedup"] is None:
        lines.append(f"  bf16 over fp32: {st['bf16_how']}")
    else:
        lines.append(
            f"  bf16 over fp32 ({st['bf16_how']}): train step {result['bf16_train_speedup']:.2f}x, "
            f"inference {result['bf16_infer_speedup']:.2f}x"
        )
    lines.append(
        f"  cv of one variant, ESTIMATED (not timed): {result['cv_minutes_cpu']:.1f} min = "
        f"{est['folds']} folds x ({est['epochs']} epochs x {est['epoch_s']:.1f} s + test + "
        f"{est['fold_overhead_s']:.1f} s overhead); {est['train_maps']}/{est['val_maps']}/"
        f"{est['test_maps']} maps, {est['train_steps_per_epoch']} steps per epoch, "
        f"{est['precision']}"
    )
    if est.get("fp32"):
        fp = est["fp32"]["cv_minutes"]
        lines.append(
            f"  the same in fp32, ESTIMATED: {fp:.1f} min, so {est['precision']} "
            f"{fp / result['cv_minutes_cpu']:.2f}x faster"
        )
    lines.append(
        f"  preparing a {prep['map_px']} x {prep['map_px']} observation (counts, exposure and "
        f"background FITS; centre, background, exposure, fill, rebin of the "
        f"{prep['field_kpc']:g} kpc field to {prep['crop_px']} px, input {prep['input_px']} px): "
        f"{result['prepare_s_per_map']:.4f} s per map"
    )
    return lines
