"""ImageNet-style ResNets from torchvision for large images (ImageNet-LT, Places-LT, iNaturalist).

ResNet-10 (BasicBlock, [1, 1, 1, 1], as in the decoupling / GLAG ImageNet-LT recipes), ResNet-18,
ResNet-50, ResNet-152 and ResNeXt-50 32x4d. Always built with ``weights=None`` (no downloads); pass
``weights_path`` to load a local state_dict into the backbone. x (B, in_channels, H, W) ->
features (B, 512) (BasicBlock nets) or (B, 2048) (bottleneck nets) -> head (B, C).
``trainable="last_block"`` trains only a re-initialised last residual block and the head on a frozen
trunk, as the released Places-LT scripts of GCL and MiSLAS do.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..safe_io import load_torch
from .heads import HeadedModel, HeadKind

Trainable = Literal["all", "last_block"]
TRAINABLE = ("all", "last_block")


def _tv():
    """torchvision.models.resnet, imported on first use (importing torchvision costs seconds)."""
    from torchvision.models import resnet as tv
    return tv


def _resnet10(**kw) -> nn.Module:
    tv = _tv()
    return tv.ResNet(tv.BasicBlock, [1, 1, 1, 1], **kw)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet10": _resnet10,
    "resnet18": lambda **kw: _tv().resnet18(weights=None, **kw),
    "resnet50": lambda **kw: _tv().resnet50(weights=None, **kw),
    "resnet152": lambda **kw: _tv().resnet152(weights=None, **kw),
    "resnext50_32x4d": lambda **kw: _tv().resnext50_32x4d(weights=None, **kw),
}


def _backbone_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Backbone tensors of a local checkpoint, keyed as in torchvision (``fc.*`` / ``head.*`` dropped).

    Accepts a torchvision state_dict, an ltlab model state_dict (``backbone.`` prefix) or either
    wrapped in ``{"state_dict": ...}`` / ``{"model": ...}``; a DDP ``module.`` prefix is stripped.
    """
    state = load_torch(path, fix="Save the weights as a plain state_dict: torch.save(model.state_dict(), path).")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.").removeprefix("backbone.")
        if not (k.startswith("fc.") or k.startswith("head.")):
            out[k] = v
    return out


def reinit_block(block: nn.Module) -> None:
    """Give every layer of ``block`` PyTorch's default initialisation, as a newly built module has.

    Layers are reset in registration order, so under the same seed the result equals a freshly
    constructed block (``Block()`` = ``Bottleneck(2048, 512)`` in GCL's ``Places-LT/models/resnet_places.py``;
    BatchNorm running statistics restart too).
    """
    for m in block.modules():
        if m is not block and hasattr(m, "reset_parameters"):
            m.reset_parameters()


class TorchvisionResNet(HeadedModel):
    """A torchvision ResNet with ``fc`` removed; ``forward_features`` ends at the global average pool."""

    def __init__(
        self,
        arch: str,
        num_classes: int,
        head: HeadKind = "linear",
        in_channels: int = 3,
        weights_path: str | os.PathLike | None = None,
        trainable: Trainable = "all",
    ) -> None:
        super().__init__()
        if arch not in _BUILDERS:
            raise ValueError(f"unknown torchvision architecture {arch!r}; valid: {sorted(_BUILDERS)}")
        if trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}")
        self.trainable = trainable
        net = _BUILDERS[arch]()
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.backbone = net
        self.arch = arch
        self._build_head(head, num_classes)
        if weights_path is not None:
            self.load_backbone(weights_path)
        if trainable == "last_block":
            reinit_block(net.layer4[-1])
            for p in (p for m in self._trunk() for p in m.parameters()):
                p.requires_grad_(False)

    def _trunk(self) -> list[nn.Module]:
        """The layers before the last residual block (frozen with ``trainable="last_block"``)."""
        b = self.backbone
        return [b.conv1, b.bn1, b.layer1, b.layer2, b.layer3, *b.layer4[:-1]]

    def train(self, mode: bool = True) -> TorchvisionResNet:
        """``trainable="last_block"`` keeps the frozen trunk in eval mode (BN statistics fixed), as the
        released scripts call ``model.eval()`` on it while the new block and the classifier train."""
        super().train(mode)
        if self.trainable == "last_block":
            for m in self._trunk():
                m.train(False)
        return self

    def load_backbone(self, path: str | os.PathLike) -> None:
        """Load backbone weights from a local file (strict: missing or unexpected keys raise)."""
        try:
            self.backbone.load_state_dict(_backbone_state(path), strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path} does not match the {self.arch} backbone: {err}") from err

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # conv ... layer4 -> avgpool -> flatten (fc is Identity)


def _factory(arch: str, doc: str) -> Callable[..., TorchvisionResNet]:
    def build(
        num_classes: int,
        head: HeadKind = "linear",
        in_channels: int = 3,
        weights_path: str | os.PathLike | None = None,
        trainable: Trainable = "all",
    ) -> TorchvisionResNet:
        return TorchvisionResNet(arch, num_classes, head, in_channels, weights_path, trainable)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = doc
    return build


resnet10 = _factory("resnet10", "ResNet-10 (BasicBlock, [1, 1, 1, 1]; D = 512), the ImageNet-LT baseline net.")
resnet18 = _factory("resnet18", "torchvision ResNet-18 (D = 512), weights=None.")
resnet50 = _factory("resnet50", "torchvision ResNet-50 (D = 2048), weights=None.")
resnet152 = _factory("resnet152", "torchvision ResNet-152 (D = 2048), weights=None; the Places-LT net.")
resnext50_32x4d = _factory("resnext50_32x4d", "torchvision ResNeXt-50 32x4d (D = 2048), weights=None.")
