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
  :func:`coolcore.train.training.make_loader` against the whole epoch);
- the simulator's time for the default sample;
- the peak resident memory of a ``cv`` run at 256 px, in a child process.

Method: every comparison is interleaved (A B B A A B ..., so neither side
always runs first), after warm-up repetitions; the reported ratio is the median
of the per-round ratios, which cancels slow drifts of a shared machine's load.
FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which
counts 2 FLOPs per multiply-add (ResNet-18 at 224 px: 3.63 GFLOP, i.e. the
1.81 G multiply-adds that torchvision quotes as "GFLOPS").

Reading order: :func:`run_bench` (the whole benchmark), then the measurements
it calls, :func:`format_table` and :data:`TARGETS`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "TARGETS",
    "Setting",
    "bench_cv_memory",
    "bench_data_share",
    "bench_gemm_share",
    "bench_models",
    "bench_simulate",
    "format_table",
    "gemm_flops",
    "machine_info",
    "model_flops",
    "network_flops",
    "paired_ratio",
    "resnet18_flops",
    "run_bench",
    "time_interleaved",
    "write_json",
]

TARGETS: dict[str, tuple[str, float]] = {
    "train_ratio": ("<=", 2.15),
    "infer_ratio": ("<=", 2.10),
    "gemm_share": (">=", 0.45),
    "data_share": ("<=", 0.03),
    "simulate_s": ("<=", 120.0),
    "cv_peak_mem_gb": ("<=", 4.0),
}
"""Issue 5's targets (2-core CPU): key -> (comparison, bound)."""


@dataclass(frozen=True)
class Setting:
    """An input size, batch and auxiliary crop size to compare the networks at.

    Attributes
    ----------
    name : str
        A label (``paper``, ``cpu``).
    size_px : int
        Input side in pixels.
    batch : int
        Images per step.
    aux_size_px : int or None
        Auxiliary crop side; None crops at the input size (the paper).
    """

    name: str
    size_px: int
    batch: int
    aux_size_px: int | None = None

    def describe(self) -> str:
        aux = "" if self.aux_size_px is None else f", crop {self.aux_size_px} px"
        return f"{self.size_px} px{aux}, batch {self.batch}"


PAPER = Setting("paper", 256, 16, None)
CPU = Setting("cpu", 128, 32, 64)


# --------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """Wall times of several functions, interleaved round by round.

    Each of ``warmup`` rounds calls every function once, untimed.  Then each of
    ``repeats`` rounds calls every function once and times it; even rounds go
    in the mapping's order, odd rounds in reverse (A B, B A, A B ...), so that
    neither side always follows the other.

    Parameters
    ----------
    fns : mapping of str to callable
        Name -> function of no argument.
    repeats : int
        Timed rounds (>= 1).
    warmup : int
        Untimed rounds first.
    device : torch.device or str
        On CUDA the device is synchronised around each call.

    Returns
    -------
    dict of str to list of float
        Name -> the ``repeats`` wall times in seconds, in round order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = torch.device(device)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of ``numerator[r] / denominator[r]``.

    Pairing the two measurements of one round cancels load that changes slowly
    between rounds; the median drops rounds disturbed by a burst.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired_ratio needs two non-empty sequences of equal length")
    return float(statistics.median(a / b for a, b in zip(numerator, denominator, strict=True)))


# --------------------------------------------------------------------------- FLOPs
def model_flops(fn: Callable[[], object]) -> int:
    """FLOPs that :class:`~torch.utils.flop_counter.FlopCounterMode` counts while ``fn`` runs.

    The counter covers matrix products and convolutions (forward and, when
    ``fn`` calls ``backward``, backward) at 2 FLOPs per multiply-add; batch
    norm, activations and pooling are not counted (under 1% of ResNet-18).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def resnet18_flops(size_px: int, batch: int = 1) -> int:
    """Inference FLOPs of a torchvision ResNet-18 (3-class head) on (batch, 3, size, size)."""
    from torchvision.models import resnet18

    net = resnet18(num_classes=3).eval()
    x = torch.zeros(batch, 3, size_px, size_px)
    with torch.no_grad():
        return model_flops(lambda: net(x))


def gemm_flops(n: int) -> int:
    """FLOPs of an ``n`` x ``n`` by ``n`` x ``n`` matrix product: ``2 n^3``."""
    return 2 * n**3


# --------------------------------------------------------------------------- machine
def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> tuple[str, list[str]]:
    """CPU model name and the vector-instruction flags that matter for fp32 GEMM."""
    model, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("unknown", "", platform.processor()):
            model = value.strip()
        if key.strip() == "flags":
            have = set(value.split())
            flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in have]
            break
    return model, flags


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, torch, threads, GPU, load."""
    import torchvision

    device = torch.device(device)
    model, flags = _cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": model,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average_start": _load_average(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return info


# --------------------------------------------------------------------------- networks
def _autocast(device: torch.device):
    """bf16 autocast on CUDA (what ``train.precision: auto`` trains in); fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _networks(setting: Setting, device: torch.device, seed: int = 0):
    """The ``all`` network and a plain ResNet-18 (3 classes), channels-last, on ``device``."""
    from torchvision.models import resnet18

    from coolcore.nn.model import MultiBranchAttentionNet

    torch.manual_seed(seed)
    net = MultiBranchAttentionNet("all", aux_size=setting.aux_size_px)
    plain = resnet18(num_classes=3)
    net = net.to(device=device, memory_format=torch.channels_last)
    plain = plain.to(device=device, memory_format=torch.channels_last)
    return net, plain


def _inputs(setting: Setting, device: torch.device, seed: int = 0):
    """Grey maps for the network, the same maps as 3 channels for the plain ResNet, labels."""
    g = torch.Generator().manual_seed(seed)
    grey = torch.rand(setting.batch, 1, setting.size_px, setting.size_px, generator=g)
    rgb = grey.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(setting.batch) % 3
    return grey.to(device), rgb.to(device), labels.to(device)


def _train_steps(setting: Setting, device: torch.device):
    """Closures doing one Adam training step of the network and of the plain ResNet-18."""
    from coolcore.nn.losses import total_loss

    net, plain = _networks(setting, device)
    grey, rgb, y = _inputs(setting, device)
    weight = torch.ones(3, device=device)
    alphas = (0.8, 0.1, 0.1, 0.1)
    opt_net = torch.optim.Adam(net.parameters(), lr=1e-4)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-4)
    net.train()
    plain.train()

    def step_net() -> None:
        with _autocast(device):
            out = net(grey)
            loss, _ = total_loss(out, y, weight, alphas)
        opt_net.zero_grad(set_to_none=True)
        loss.backward()
        opt_net.step()

    def step_plain() -> None:
        with _autocast(device):
            loss = F.cross_entropy(plain(rgb).float(), y, weight=weight)
        opt_plain.zero_grad(set_to_none=True)
        loss.backward()
        opt_plain.step()

    return step_net, step_plain


def _infer_passes(setting: Setting, device: torch.device):
    """Closures doing one inference pass (eval, inference mode) of both networks."""
    net, plain = _networks(setting, device)
    grey, rgb, _ = _inputs(setting, device)
    net.eval()
    plain.eval()

    def infer_net() -> None:
        with torch.inference_mode(), _autocast(device):
            net(grey)

    def infer_plain() -> None:
        with torch.inference_mode(), _autocast(device):
            plain(rgb)

    return infer_net, infer_plain


def bench_models(
    setting: Setting,
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Training step and inference of ``all`` against a plain ResNet-18, interleaved.

    Returns
    -------
    dict
        ``setting``; ``train_s`` and ``infer_s`` (median seconds per batch of
        each network); ``train_ratio`` and ``infer_ratio`` (the network over
        the plain ResNet-18, median of per-round ratios); images per second;
        ``rounds_s`` (every timed round); ``gflop_per_image``
        (:func:`network_flops`).
    """
    device = torch.device(device)
    step_net, step_plain = _train_steps(setting, device)
    train = time_interleaved(
        {"all": step_net, "resnet18": step_plain}, repeats=repeats, warmup=warmup, device=device
    )
    del step_net, step_plain
    infer_net, infer_plain = _infer_passes(setting, device)
    infer = time_interleaved(
        {"all": infer_net, "resnet18": infer_plain},
        repeats=2 * repeats,
        warmup=warmup,
        device=device,
    )
    b = setting.batch
    med = {
        k: {n: statistics.median(t) for n, t in d.items()}
        for k, d in (("train", train), ("infer", infer))
    }
    return {
        "setting": {
            "name": setting.name,
            "size_px": setting.size_px,
            "batch": b,
            "aux_size_px": setting.aux_size_px,
        },
        "train_s": med["train"],
        "infer_s": med["infer"],
        "train_img_s": {n: b / t for n, t in med["train"].items()},
        "infer_img_s": {n: b / t for n, t in med["infer"].items()},
        "train_ratio": paired_ratio(train["all"], train["resnet18"]),
        "infer_ratio": paired_ratio(infer["all"], infer["resnet18"]),
        "repeats": {"train": repeats, "infer": 2 * repeats},
        "rounds_s": {"train": train, "infer": infer},
        "gflop_per_image": network_flops(setting),
    }


def network_flops(setting: Setting) -> dict[str, float]:
    """GFLOP per image of ``all`` and of the plain ResNet-18, inference and training step.

    Counted with :func:`model_flops` on a batch of two (batch norm in training
    mode needs two values per channel) and halved: convolutions and matrix
    products, forward and backward; the optimiser step is not counted.
    """
    batch = 2
    two = Setting(setting.name, setting.size_px, batch, setting.aux_size_px)
    device = torch.device("cpu")
    net, plain = _networks(two, device)
    grey, rgb, _ = _inputs(two, device)
    out: dict[str, float] = {}
    for name, model, x in (("all", net, grey), ("resnet18", plain, rgb)):
        model.eval()
        with torch.no_grad():
            out[f"{name}_infer"] = model_flops(lambda m=model, x=x: m(x)) / batch / 1e9
    step_net, step_plain = _train_steps(two, device)
    out["all_train"] = model_flops(step_net) / batch / 1e9
    out["resnet18_train"] = model_flops(step_plain) / batch / 1e9
    return out


def bench_gemm_share(
    setting: Setting = PAPER,
    *,
    gemm_n: int = 2048,
    repeats: int = 10,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Plain ResNet-18 inference GFLOP/s against an fp32 ``gemm_n``-square ``torch.mm``.

    Both run interleaved in fp32 (the matrix product is the machine's practical
    peak for dense arithmetic); the share is the median of per-round ratios of
    the two rates.
    """
    from torchvision.models import resnet18

    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(gemm_n, gemm_n, generator=g).to(device)
    b = torch.rand(gemm_n, gemm_n, generator=g).to(device)
    out = torch.empty(gemm_n, gemm_n, device=device)
    torch.manual_seed(0)
    plain = resnet18(num_classes=3).to(device=device, memory_format=torch.channels_last).eval()
    _, rgb, _ = _inputs(setting, device)

    def gemm() -> None:
        torch.mm(a, b, out=out)

    def infer() -> None:
        with torch.inference_mode():
            plain(rgb)

    times = time_interleaved(
        {"gemm": gemm, "resnet18": infer}, repeats=repeats, warmup=warmup, device=device
    )
    net_flops = resnet18_flops(setting.size_px, setting.batch)
    mm_flops = gemm_flops(gemm_n)
    net_rate = [net_flops / t / 1e9 for t in times["resnet18"]]
    mm_rate = [mm_flops / t / 1e9 for t in times["gemm"]]
    return {
        "setting": {"size_px": setting.size_px, "batch": setting.batch},
        "gemm_n": gemm_n,
        "gemm_gflop_s": statistics.median(mm_rate),
        "resnet18_gflop": net_flops / setting.batch / 1e9,
        "resnet18_gflop_s": statistics.median(net_rate),
        "gemm_share": paired_ratio(net_rate, mm_rate),
    }


def bench_data_share(
    setting: Setting = CPU,
    *,
    n_batches: int = 8,
    repeats: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Share of a training epoch spent loading batches.

    An epoch is the training loop of :func:`coolcore.train.training.fit_fold` without
    Lightning: iterate :func:`coolcore.train.training.make_loader` over in-memory
    maps (shuffled), move each batch to the device, do the ``all`` network's
    Adam step.  The loader alone iterates the same batches and moves them.
    Epochs and loader passes are interleaved; the share is the median loader
    pass over the median epoch.  ``in_loop_share`` is the time the epoch
    itself waited for batches, a cross-check.
    """
    from coolcore.nn.losses import total_loss
    from coolcore.train.training import make_loader

    device = torch.device(device)
    n = n_batches * setting.batch
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n, 1, setting.size_px, setting.size_px, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    loader = make_loader(images, labels, setting.batch, shuffle_seed=0)
    net, _ = _networks(setting, device)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    weight = torch.ones(3, device=device)
    waited = [0.0]

    def epoch() -> None:
        waited[0] = 0.0
        it = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            waited[0] += time.perf_counter() - start
            with _autocast(device):
                loss, _ = total_loss(net(x), y, weight, (0.8, 0.1, 0.1, 0.1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def load_only() -> None:
        for x, y in loader:
            x.to(device, non_blocking=True)
            y.to(device, non_blocking=True)

    in_loop: list[float] = []

    def timed_epoch() -> None:
        epoch()
        in_loop.append(waited[0])

    times = time_interleaved(
        {"epoch": timed_epoch, "loader": load_only}, repeats=repeats, warmup=1, device=device
    )
    epoch_s = statistics.median(times["epoch"])
    loader_s = statistics.median(times["loader"])
    return {
        "setting": {
            "name": setting.name,
            "size_px": setting.size_px,
            "batch": setting.batch,
            "aux_size_px": setting.aux_size_px,
        },
        "images": n,
        "epoch_s": epoch_s,
        "loader_s": loader_s,
        "data_share": loader_s / epoch_s,
        "in_loop_share": statistics.median(in_loop[-repeats:]) / epoch_s,
    }


# --------------------------------------------------------------------------- slow parts
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
from coolcore.train.experiments import run_cv
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
    log : callable, optional
        Progress messages go there (e.g. to stderr).

    Returns
    -------
    dict
        Top level: ``train_ratio``, ``infer_ratio``, ``gemm_share``,
        ``data_share``, ``simulate_s``, ``cv_peak_mem_gb`` (None when skipped),
        ``targets`` (bound and whether met), ``machine``, and the details
        (``models``, ``gemm``, ``data``, ``simulate``, ``cv``).
    """
    say = log or (lambda _msg: None)
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
    say(f"ResNet-18 inference vs a {gemm_n}-square fp32 matrix product")
    gemm = bench_gemm_share(settings[0], gemm_n=gemm_n, repeats=2 * repeats, device=device)
    say(f"data loading share of an epoch ({data_setting.describe()})")
    data = bench_data_share(data_setting, n_batches=data_batches, device=device)
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
            "gemm_share": gemm["gemm_share"],
            "data_share": data["data_share"],
            "simulate_s": None if simulate is None else simulate["simulate_s"],
            "cv_peak_mem_gb": None if cv is None else cv["cv_peak_mem_gb"],
        }
    )
    result["targets"] = {
        key: {"bound": f"{op} {bound:g}", "met": _meets(result[key], op, bound)}
        for key, (op, bound) in TARGETS.items()
    }
    result.update({"models": models, "gemm": gemm, "data": data, "simulate": simulate, "cv": cv})
    result["machine"]["load_average_end"] = _load_average()
    result["seconds"] = time.perf_counter() - started
    return result


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
    for name, r in result["models"].items():
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
    path.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
