"""The network measurements of ``coolcore bench``: train and inference ratios, GEMM share,
data-loading share (the ``all`` variant against a plain torchvision ResNet-18)."""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from coolcore.bench.timing import (
    CPU,
    PAPER,
    Setting,
    gemm_flops,
    model_flops,
    paired_ratio,
    resnet18_flops,
    time_interleaved,
)

__all__ = ["bench_data_share", "bench_gemm_share", "bench_models", "network_flops"]


# --------------------------------------------------------------------------- networks
def _autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast where ``bf16`` (None: on CUDA, what ``train.precision: auto`` trains
    in there); fp32 otherwise."""
    if bf16 is None:
        bf16 = device.type == "cuda"
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
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


def _train_steps(setting: Setting, device: torch.device, bf16: bool | None = None):
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
        with _autocast(device, bf16):
            out = net(grey)
            loss, _ = total_loss(out, y, weight, alphas)
        opt_net.zero_grad(set_to_none=True)
        loss.backward()
        opt_net.step()

    def step_plain() -> None:
        with _autocast(device, bf16):
            loss = F.cross_entropy(plain(rgb).float(), y, weight=weight)
        opt_plain.zero_grad(set_to_none=True)
        loss.backward()
        opt_plain.step()

    return step_net, step_plain


def _infer_passes(setting: Setting, device: torch.device, bf16: bool | None = None):
    """Closures doing one inference pass (eval, inference mode) of both networks."""
    net, plain = _networks(setting, device)
    grey, rgb, _ = _inputs(setting, device)
    net.eval()
    plain.eval()

    def infer_net() -> None:
        with torch.inference_mode(), _autocast(device, bf16):
            net(grey)

    def infer_plain() -> None:
        with torch.inference_mode(), _autocast(device, bf16):
            plain(rgb)

    return infer_net, infer_plain


def bench_models(
    setting: Setting,
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str = "cpu",
    bf16: bool | None = None,
) -> dict[str, Any]:
    """Training step and inference of ``all`` against a plain ResNet-18, interleaved.

    Both networks run under bf16 autocast where ``bf16`` is true (None: on CUDA
    only), in fp32 otherwise.

    Returns
    -------
    dict
        ``setting``; ``precision`` (``32-true`` or ``bf16-mixed``); ``train_s`` and ``infer_s`` (median seconds per batch of
        each network); ``train_ratio`` and ``infer_ratio`` (the network over
        the plain ResNet-18, median of per-round ratios); images per second;
        ``rounds_s`` (every timed round); ``gflop_per_image``
        (:func:`network_flops`).
    """
    device = torch.device(device)
    if bf16 is None:
        bf16 = device.type == "cuda"
    step_net, step_plain = _train_steps(setting, device, bf16)
    train = time_interleaved(
        {"all": step_net, "resnet18": step_plain}, repeats=repeats, warmup=warmup, device=device
    )
    del step_net, step_plain
    infer_net, infer_plain = _infer_passes(setting, device, bf16)
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
        "precision": "bf16-mixed" if bf16 else "32-true",
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

    An epoch is the training loop of :func:`coolcore.train.fit.fit_fold` without
    Lightning: iterate :func:`coolcore.train.loaders.make_loader` over in-memory
    maps (shuffled), move each batch to the device, do the ``all`` network's
    Adam step.  The loader alone iterates the same batches and moves them.
    Epochs and loader passes are interleaved; the share is the median loader
    pass over the median epoch.  ``in_loop_share`` is the time the epoch
    itself waited for batches, a cross-check.
    """
    from coolcore.nn.losses import total_loss
    from coolcore.train.loaders import make_loader

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
