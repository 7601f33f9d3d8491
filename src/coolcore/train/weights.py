"""Pretrained trunk weights: where they are found and how they are read.

A run config's ``model.weights`` names the source of both trunks' starting
weights: ``"none"`` (random initialisation), ``"imagenet"`` (torchvision's
``ResNet18_Weights.IMAGENET1K_V1``) or a file.  :func:`read_trunk_state` turns
that into the tensors :func:`coolcore.nn.model.build_network` takes as
``trunk_state``; the network package itself reads no file.
"""

from __future__ import annotations

import os
import socket
import urllib.error
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor
from torchvision.models import ResNet18_Weights, resnet18

from coolcore.errors import UsageError

__all__ = ["imagenet_checkpoint", "read_trunk_state"]

DOWNLOAD_TIMEOUT_S = 20.0
"""How long a download of the ImageNet weights may wait for the network."""


def imagenet_checkpoint() -> Path:
    """Path of torchvision's cached ImageNet ResNet-18 file, downloading it if absent.

    Returns
    -------
    Path
        ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``.

    Raises
    ------
    coolcore.errors.UsageError
        Not cached and not downloadable (offline): at once, after at most
        :data:`DOWNLOAD_TIMEOUT_S` of waiting, never a silent fallback.
    """
    url = ResNet18_Weights.IMAGENET1K_V1.url
    filename = url.rsplit("/", 1)[-1]  # resnet18-f37072fd.pth
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    message = (
        f"ImageNet weights for ResNet-18 are not available offline: put {filename} in "
        f"{cached.parent} (or set $TORCH_HOME) or pass --weights none / a file path"
    )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no long hang on a dead network
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # The file name's hash part is the SHA-256 prefix torchvision checks.
        hash_prefix = filename.rsplit("-", 1)[-1].split(".")[0]
        torch.hub.download_url_to_file(url, str(cached), hash_prefix=hash_prefix, progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise UsageError(f"{message} (download failed: {exc})") from exc
    finally:
        socket.setdefaulttimeout(previous)
    return cached


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save``'d state dict (no pickled code)."""
    if not path.is_file():
        raise UsageError(
            f"weights file {path} does not exist (use 'none', 'imagenet' or a path to a "
            "ResNet-18 state dict)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: corrupt, wrong format, pickled code
        raise UsageError(f"cannot read weights file {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UsageError(f"weights file {path} does not hold a state dict of tensors")
    return state


def _check_fits_resnet18(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """The state without ``fc.*``, after checking it is a whole torchvision ResNet-18 trunk."""
    trunk_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    with torch.device("meta"):  # shapes only: no memory, and no draw from the seeded RNG
        net = resnet18(weights=None)
    try:
        missing, unexpected = net.load_state_dict(trunk_state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatch
        first_line = str(exc).strip().splitlines()[-1].strip()
        raise UsageError(f"weights {source} do not fit ResNet-18: {first_line}") from exc
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise UsageError(
            f"weights {source} are not a torchvision ResNet-18 state dict: "
            f"{len(missing)} missing and {len(unexpected)} unexpected keys (e.g. {example!r})"
        )
    return trunk_state


def read_trunk_state(weights: str | os.PathLike[str]) -> dict[str, Tensor] | None:
    """The trunk tensors a ``model.weights`` source names (None for ``"none"``).

    Parameters
    ----------
    weights : str or path
        ``"none"``: random initialisation, nothing to read.  ``"imagenet"``:
        ``ResNet18_Weights.IMAGENET1K_V1``, read from the torch hub cache
        (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``) or downloaded
        if absent (:func:`imagenet_checkpoint`).  Otherwise a path to a
        ResNet-18 state dict in torchvision's key names: ``.safetensors``, or
        ``.pt``/``.pth`` read with ``weights_only=True``; ``fc.*`` keys are
        ignored.

    Returns
    -------
    dict of str to Tensor, or None
        A ResNet-18 state dict without ``fc.*``, for
        :func:`coolcore.nn.model.build_network`'s ``trunk_state``.

    Raises
    ------
    coolcore.errors.UsageError
        ImageNet weights unavailable, or a file that is missing, unreadable or
        not a ResNet-18 state dict (the message names it).
    """
    if isinstance(weights, str) and weights == "none":
        return None
    if isinstance(weights, str) and weights == "imagenet":
        path = imagenet_checkpoint()
    else:
        path = Path(weights)
    return _check_fits_resnet18(_read_state_dict(path), f"file {path}")
