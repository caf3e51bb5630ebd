"""CIFAR ResNets of He et al. (2016, Sec. 4.2) as in the LDAM-DRW code (``models/resnet_cifar.py``).

3x3 conv 16 -> three stages of n basic blocks (16/32/64 channels, stride 1/2/2) with option-A
shortcuts -> global average pool -> 64-d features (LDAM-DRW / MiSLAS code). ResNet-(6n+2):
n = 3, 5, 7, 9, 18 gives ResNet-20/32/44/56/110. Kaiming-normal init on conv and linear weights as
in the official code; ResNet-32 with a 10-class linear head has 464,154 parameters (0.46 M).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .heads import HeadedModel, HeadKind


class PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero-padded channels, no parameters.

    (B, C, H, W) -> (B, C + 2 * (planes // 4), ceil(H / 2), ceil(W / 2)); official code pads
    ``planes // 4`` zero channels on each side (so it assumes ``planes == 2 * in_planes``).
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"zero channels each side={self.pad}"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus shortcut, ReLU after the sum (He et al. 2016, Fig. 2)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            if planes != 2 * in_planes:
                raise ValueError(f"option-A shortcut needs planes == 2 * in_planes, got {in_planes} -> {planes}")
            self.shortcut: nn.Module = PadShortcut(planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on fresh BN outputs (BN's backward needs its input, ReLU's its output): same values
        # and gradients as relu(bn2(...) + shortcut(x)), two fewer activation tensors per block
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out, inplace=True)


class ResNetCifar(HeadedModel):
    """ResNet-(6n+2) for 32x32 inputs; x (B, in_channels, H, W) -> features (B, 64) -> (B, C)."""

    def __init__(self, num_blocks: int, num_classes: int, head: HeadKind = "linear", in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, 16, num_blocks, stride=1)
        self.layer2 = self._make_layer(16, 32, num_blocks, stride=2)
        self.layer3 = self._make_layer(32, 64, num_blocks, stride=2)
        self.feature_dim = 64
        self._build_head(head, num_classes)
        # official code: kaiming_normal_ (fan_in, gain sqrt(2)) on every Conv2d and nn.Linear weight;
        # the cosine head (NormedLinear) is not an nn.Linear and keeps its own init.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def resnet20(num_classes: int, head: HeadKind = "linear", in_channels: int = 3) -> ResNetCifar:
    """ResNet-20 (n = 3, 0.27 M parameters)."""
    return ResNetCifar(3, num_classes, head, in_channels)


def resnet32(num_classes: int, head: HeadKind = "linear", in_channels: int = 3) -> ResNetCifar:
    """ResNet-32 (n = 5, 0.46 M parameters), the CIFAR-LT backbone of every seed paper."""
    return ResNetCifar(5, num_classes, head, in_channels)


def resnet44(num_classes: int, head: HeadKind = "linear", in_channels: int = 3) -> ResNetCifar:
    """ResNet-44 (n = 7, 0.66 M parameters)."""
    return ResNetCifar(7, num_classes, head, in_channels)


def resnet56(num_classes: int, head: HeadKind = "linear", in_channels: int = 3) -> ResNetCifar:
    """ResNet-56 (n = 9, 0.85 M parameters)."""
    return ResNetCifar(9, num_classes, head, in_channels)


def resnet110(num_classes: int, head: HeadKind = "linear", in_channels: int = 3) -> ResNetCifar:
    """ResNet-110 (n = 18, 1.7 M parameters)."""
    return ResNetCifar(18, num_classes, head, in_channels)
