"""A small fast convnet for smoke tests and CPU notebooks (LIB design, not from a paper).

Three conv3x3-BN-ReLU blocks of width (w, 2w, 4w) with 2x2 max-pooling after the first two,
then global average pooling: x (B, in_channels, H, W) -> features (B, 4w) -> (B, C). Works
for 8x8 digits (1 channel), 28x28 Fashion-MNIST (1 channel) and 32x32x3 CIFAR; any H, W >= 4.
Default w = 32 gives D = 128 and about 93 k backbone parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .heads import HeadedModel, HeadKind


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))  # in place on the BN output: same values, one tensor fewer


class ConvNetSmall(HeadedModel):
    """conv-BN-ReLU x3 (+ max-pool) -> global average pool -> (B, 4 * width) features."""

    def __init__(self, num_classes: int, head: HeadKind = "linear", in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        self.block1 = _block(in_channels, width)
        self.block2 = _block(width, 2 * width)
        self.block3 = _block(2 * width, 4 * width)
        self.feature_dim = 4 * width
        # LIB: torchvision's conv init (Kaiming-normal, fan_out); BN starts at identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._build_head(head, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(self.block1(x), 2)
        out = F.max_pool2d(self.block2(out), 2)
        out = self.block3(out)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def convnet_small(num_classes: int, head: HeadKind = "linear", in_channels: int = 3, width: int = 32) -> ConvNetSmall:
    """Small convnet (LIB) with (B, 4 * width) features; default width 32 -> D = 128."""
    return ConvNetSmall(num_classes, head, in_channels, width)
