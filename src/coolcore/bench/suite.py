"""Speed and memory of coolcore on this machine, measured side by side (``coolcore bench``).

The network is two ResNet-18s, so its cost floor is twice a plain ResNet-18;
everything else (masks, crop, data, loop) must be nearly free.  This module
measures, in one process and one run:

- a training step (forward, loss, backward, Adam) and an inference pass of the
  ``all`` variant against a plain torchvision ResNet-18 at the same input size
  and batch: at the ``paper`` preset's 256 px, batch 16, and at the ``cpu``
  preset's 128 px (auxiliary crop 64 px), batch 32;
- the plain ResNet-18's achieved GFLOP/s in inference against a large fp32
  matrix product's GFLOP/s (the practical peak of the machine);
- the data-loading share of a training epoch (the in-memory loader of
  :func:`coolcore.train.loaders.make_loader` against the whole epoch);
- the simulator's time for the default sample;
- the peak resident memory of a ``cv`` run at 256 px, in a child process;
- cost per result (:mod:`coolcore.bench.cost`), at the ``cpu`` preset's sizes:
  bf16 over fp32 speed-ups of the ``all`` network's training step and inference
  (where bf16 is native), one variant's cross-validation in minutes (an estimate
  from measured step times) and the seconds to prepare one 1000 x 1000 map.

Method: every comparison is interleaved (A B B A A B ..., so neither side
always runs first), after warm-up repetitions; the reported ratio is the median
of the per-round ratios, which cancels slow drifts of a shared machine's load.
FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which
counts 2 FLOPs per multiply-add (ResNet-18 at 224 px: 3.63 GFLOP, i.e. the
1.81 G multiply-adds that torchvision quotes as "GFLOPS").

Reading order: :func:`run_bench` (the whole benchmark), then the measurements
it calls (:mod:`coolcore.bench.networks`, :mod:`coolcore.bench.slow`, with the
timing and FLOP helpers of :mod:`coolcore.bench.timing`), :func:`format_table`
and :data:`TARGETS`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from coolcore.bench.cost import bench_cost, bf16_available, format_cost
from coolcore.bench.networks import bench_data_share, bench_gemm_share, bench_models
from coolcore.bench.slow import bench_cv_memory, bench_simulate
from coolcore.bench.timing import CPU, PAPER, Setting, load_average, machine_info
from coolcore.runs.atomic import atomic_write_text
from coolcore.train.hardware import tune_allocator

__all__ = ["TARGETS", "format_table", "run_bench", "write_json"]

TARGETS: dict[str, tuple[str, float]] = {
    "train_ratio": ("<=", 2.15),
    "infer_ratio": ("<=", 2.10),
    "train_ratio_bf16": ("<=", 2.15),
    "infer_ratio_bf16": ("<=", 2.10),
    "gemm_share": (">=", 0.45),
    "data_share": ("<=", 0.03),
    "simulate_s": ("<=", 120.0),
    "cv_peak_mem_gb": ("<=", 4.0),
}
"""Issue 5's targets (2-core CPU), the ratios also under bf16 (issue 13): key ->
(comparison, bound)."""


# --------------------------------------------------------------------------- all
def run_bench(
    *,
    quick: bool = False,
    repeats: int = 5,
    device: str | torch.device = "cpu",
    settings: Sequence[Setting] = (PAPER, CPU),
    data_setting: Setting = CPU,
    data_batches: int = 8,
    gemm_n: int = 2048,
    cv_data: str | Path | None = None,
    cv_overrides: Sequence[str] = ("train.epochs=1", "cv.folds=3", "train.batch_size=16"),
    simulate_clusters: int = 318,
    simulate_workers: int = 2,
    cost_preset: str = "cpu",
    cost_overrides: Sequence[str] = (),
    prepare_map_px: int = 1000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole benchmark; a JSON-ready dict.

    Parameters
    ----------
    quick : bool
        Skip the slow parts (simulation, cv memory run): their numbers are None.
    repeats : int
        Timed rounds per comparison (inference gets twice as many).
    device : str or torch.device
        ``cpu`` or ``cuda`` (bf16 autocast and channels-last on CUDA).
    settings : sequence of Setting
        Sizes to compare the networks at; the first gives ``train_ratio``,
        ``infer_ratio`` and ``gemm_share``.
    data_setting, data_batches : Setting, int
        The epoch timed for ``data_share``.
    gemm_n : int
        Side of the square fp32 matrix product.
    cv_data : path, optional
        Data for the cv memory run; default: the simulated sample of this run.
    cv_overrides : sequence of str
        ``--set`` overrides of the ``paper`` preset for the cv memory run.
    simulate_clusters, simulate_workers : int
        The simulated sample (default: the default sample, 2 processes).
    cost_preset, cost_overrides : str, sequence of str
        The run config whose cost per result is measured (default: the ``cpu``
        preset as shipped; overrides as ``--set``).  With ``quick`` its steps
        get half the ``repeats`` (at least one).
    prepare_map_px : int
        Side of the map prepared for ``prepare_s_per_map``.
    log : callable, optional
        Progress messages go there (e.g. to stderr).

    Returns
    -------
    dict
        Top level: ``train_ratio``, ``infer_ratio``, ``train_ratio_bf16``,
        ``infer_ratio_bf16`` (the same ratios under bf16 autocast: a second
        measurement on a CPU with native bf16, the same one on CUDA, None
        elsewhere; details in ``models_bf16``), ``gemm_share``,
        ``data_share``, ``simulate_s``, ``cv_peak_mem_gb`` (None when skipped),
        ``bf16_train_speedup``, ``bf16_infer_speedup`` (None where bf16 is
        not native), ``cv_minutes_cpu`` (an estimate) with
        ``cv_minutes_cpu_note``, ``prepare_s_per_map``, ``targets`` (bound and
        whether met), ``machine``, and the details (``models``, ``gemm``,
        ``data``, ``simulate``, ``cv``, ``cost``).
    """
    say = log or (lambda _msg: None)
    tune_allocator()  # as the coolcore command and every training run do
    device = torch.device(device)
    if not settings:
        raise ValueError("run_bench needs at least one Setting")
    started = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_info(device), "quick": bool(quick)}
    models = {}
    for s in settings:
        say(f"networks at {s.describe()} ({s.name}): training and inference, all vs ResNet-18")
        models[s.name] = bench_models(s, repeats=repeats, device=device)
    first = models[settings[0].name]
    bf16 = _bench_bf16_ratios(settings[0], first, repeats, device, say)
    say(f"ResNet-18 inference vs a {gemm_n}-square fp32 matrix product")
    gemm = bench_gemm_share(settings[0], gemm_n=gemm_n, repeats=2 * repeats, device=device)
    say(f"data loading share of an epoch ({data_setting.describe()})")
    data = bench_data_share(data_setting, n_batches=data_batches, device=device)
    cost = _run_cost(cost_preset, cost_overrides, quick, repeats, device, prepare_map_px, say)
    simulate = cv = None
    if not quick:
        with tempfile.TemporaryDirectory(prefix="coolcore-bench-sim-") as tmp:
            say(
                f"simulating the default sample ({simulate_clusters} clusters, {simulate_workers} workers)"
            )
            simulate = bench_simulate(tmp, n_clusters=simulate_clusters, workers=simulate_workers)
            say("peak memory of a cv run at 256 px (child process)")
            cv = bench_cv_memory(cv_data if cv_data is not None else tmp, overrides=cv_overrides)
            cv["data"] = (
                str(cv_data)
                if cv_data is not None
                else f"simulated sample ({simulate['maps']} maps)"
            )
    result.update(
        {
            "train_ratio": first["train_ratio"],
            "infer_ratio": first["infer_ratio"],
            "train_ratio_bf16": None if bf16 is None else bf16["train_ratio"],
            "infer_ratio_bf16": None if bf16 is None else bf16["infer_ratio"],
            "gemm_share": gemm["gemm_share"],
            "data_share": data["data_share"],
            "simulate_s": None if simulate is None else simulate["simulate_s"],
            "cv_peak_mem_gb": None if cv is None else cv["cv_peak_mem_gb"],
        }
    )
    result.update({k: v for k, v in cost.items() if k != "cost"})
    result["targets"] = {
        key: {"bound": f"{op} {bound:g}", "met": _meets(result[key], op, bound)}
        for key, (op, bound) in TARGETS.items()
    }
    result.update(
        {
            "models": models,
            "models_bf16": bf16,
            "gemm": gemm,
            "data": data,
            "simulate": simulate,
            "cv": cv,
        }
    )
    result["cost"] = cost["cost"]
    result["machine"]["load_average_end"] = load_average()
    result["seconds"] = time.perf_counter() - started
    return result


def _bench_bf16_ratios(setting, measured, repeats, device, say) -> dict[str, Any] | None:
    """The network-to-ResNet-18 ratios under bf16 autocast at ``setting``: on CUDA the
    bf16 measurement already made (``measured``); on a CPU with native bf16 a second
    one; None elsewhere (emulated bf16 is slower than fp32 and no run uses it)."""
    if device.type == "cuda":
        return measured if measured.get("precision") == "bf16-mixed" else None
    if not bf16_available(device):
        return None
    say(f"networks at {setting.describe()} ({setting.name}) under bf16 autocast: all vs ResNet-18")
    return bench_models(setting, repeats=repeats, device=device, bf16=True)


def _run_cost(preset, overrides, quick, repeats, device, map_px, say) -> dict[str, Any]:
    """:func:`coolcore.bench.cost.bench_cost` of a preset (half the repeats with ``quick``)."""
    from coolcore.train.config import load_config

    cfg = load_config(preset, list(overrides))
    reps = max(1, repeats // 2) if quick else repeats
    return bench_cost(cfg, repeats=reps, device=device, preset=preset, map_px=map_px, log=say)


def _meets(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value <= bound if op == "<=" else value >= bound


# --------------------------------------------------------------------------- table
def format_table(result: Mapping[str, Any]) -> str:
    """The benchmark as a plain-text table (what ``coolcore bench`` prints)."""
    lines = []
    m = result["machine"]
    lines.append(
        f"machine: {m['cpu']} ({m['cores_usable']} usable cores, torch {m['torch']}, "
        f"{m['torch_threads']} threads, device {m['device']}); load average "
        f"{_fmt_load(m.get('load_average_start'))} at start, {_fmt_load(m.get('load_average_end'))} at end"
    )
    lines.append("")
    head = f"{'measurement':<44} {'all':>10} {'ResNet-18':>10} {'ratio':>7}"
    lines += [head, "-" * len(head)]
    rows = list(result["models"].items())
    extra = result.get("models_bf16")
    if extra and all(r.get("precision") != "bf16-mixed" for _, r in rows):
        rows.append((f"{extra['setting']['name']}, bf16", extra))
    for name, r in rows:
        s = r["setting"]
        aux = "" if s["aux_size_px"] is None else f"/{s['aux_size_px']}"
        what = f"{s['size_px']}{aux} px, batch {s['batch']} ({name})"
        for kind in ("train", "infer"):
            label = "train step" if kind == "train" else "inference"
            t = r[f"{kind}_s"]
            lines.append(
                f"{label + ', ' + what:<44} {t['all']:>9.3f}s {t['resnet18']:>9.3f}s "
                f"{r[f'{kind}_ratio']:>6.2f}x"
            )
    g, d = result["gemm"], result["data"]
    lines += [
        "",
        f"ResNet-18 inference: {g['resnet18_gflop_s']:.1f} GFLOP/s ({g['resnet18_gflop']:.2f} GFLOP "
        f"per {g['setting']['size_px']} px image); fp32 {g['gemm_n']}^2 matrix product: "
        f"{g['gemm_gflop_s']:.1f} GFLOP/s",
        f"data loading: {d['loader_s']:.4f} s of a {d['epoch_s']:.2f} s epoch "
        f"({d['images']} maps, {d['setting']['size_px']} px, batch {d['setting']['batch']})",
    ]
    if result.get("simulate"):
        sim = result["simulate"]
        lines.append(
            f"simulation: {sim['maps']} maps of {sim['size_px']} px in {sim['simulate_s']:.1f} s "
            f"({sim['workers']} workers)"
        )
    if result.get("cv"):
        cv = result["cv"]
        lines.append(
            f"cv at 256 px ({', '.join(cv['overrides'])}, fold {cv['trained_fold']}): "
            f"peak memory {cv['cv_peak_mem_gb']:.2f} GB in {cv['seconds']:.0f} s"
        )
    lines += format_cost(result)
    lines += ["", f"{'target':<16} {'value':>10} {'bound':>10}  status", "-" * 46]
    for key, t in result["targets"].items():
        value = result[key]
        shown = "skipped" if value is None else f"{value:.3f}"
        status = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        lines.append(f"{key:<16} {shown:>10} {t['bound']:>10}  {status}")
    return "\n".join(lines)


def _fmt_load(load: Sequence[float] | None) -> str:
    return "unknown" if not load else "/".join(f"{v:.2f}" for v in load)


def write_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write the result as indented JSON to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(result, indent=2, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
