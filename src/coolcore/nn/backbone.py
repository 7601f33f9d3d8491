"""The ResNet-18 backbone both branches of the network use, cut after its last block."""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn as nn
from torch import Tensor
from torchvision.models import resnet18

__all__ = ["ResNetTrunk", "build_resnet18"]


def build_resnet18() -> nn.Module:
    """A torchvision ResNet-18 at random initialisation (torchvision's), with its
    1000-class ``fc``, which the network drops.

    Pretrained weights are read by :func:`coolcore.train.weights.read_trunk_state`
    and handed to the network as ``trunk_state``: this module reads no file.
    """
    return resnet18(weights=None)


class ResNetTrunk(nn.Module):
    """A ResNet-18 cut after its last residual block: (B, 3, H, W) -> M (B, 512, H/32, W/32).

    Keeps torchvision's module names (``conv1``, ``layer1`` ...), so state-dict
    keys read ``primary.layer4.1.conv2.weight``.  ``state``, if given, is a
    ResNet-18 state dict without ``fc.*`` (torchvision's key names), loaded
    strictly.
    """

    out_channels = 512

    def __init__(self, resnet: nn.Module, state: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        if state is not None:
            self.load_state_dict(state, strict=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
