"""Model registry: ``MODELS`` dict and ``create_model`` (docs/architecture.md)."""
from __future__ import annotations

import inspect
from collections.abc import Callable

from .convnet import convnet_small
from .heads import HEADS, HeadedModel, HeadKind
from .resnet_cifar import resnet20, resnet32, resnet44, resnet56, resnet110
from .torchvision_nets import resnet10, resnet18, resnet50, resnet152, resnext50_32x4d

MODELS: dict[str, Callable[..., HeadedModel]] = {
    # CIFAR ResNets (He et al. 2016, LDAM-DRW code): 64-d features
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    # small fast convnet (LIB): digits, Fashion-MNIST, CIFAR on CPU
    "convnet_small": convnet_small,
    # torchvision ImageNet-style nets, weights=None
    "resnet10": resnet10,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet152": resnet152,
    "resnext50_32x4d": resnext50_32x4d,
}


def create_model(name: str, num_classes: int, head: HeadKind = "linear", in_channels: int = 3, **kw) -> HeadedModel:
    """Build model ``name`` with a fresh ``head`` ("linear" | "linear_nobias" | "cosine" | "lws") for ``num_classes``.

    x (B, in_channels, H, W) -> ``forward_features`` (B, D) -> ``forward_head`` (B, C). Extra
    keywords go to the builder (``width`` for convnet_small, ``weights_path`` and ``trainable`` for the
    torchvision nets); unknown names, heads or keywords raise ValueError listing the valid options.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {sorted(MODELS)}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; valid heads: {sorted(HEADS)}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    builder = MODELS[name]
    extra = [p for p in inspect.signature(builder).parameters if p not in ("num_classes", "head", "in_channels")]
    unknown = sorted(set(kw) - set(extra))
    if unknown:
        raise ValueError(f"model {name!r} got unknown keyword(s) {unknown}; it accepts {extra}")
    return builder(num_classes, head=head, in_channels=in_channels, **kw)
