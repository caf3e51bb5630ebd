"""The loss registry: one line per loss. ``create_loss`` builds one from class counts."""
from __future__ import annotations

import inspect
import math
from typing import Any, Sequence

from torch import nn

from .ala import ALALoss
from .balanced_softmax import BalancedSoftmaxLoss
from .class_balanced import ClassBalancedLoss
from .ce import CrossEntropyLoss
from .eql import EQLLoss
from .focal import FocalLoss
from .gala import GALALoss
from .gcl import GCLLoss
from .ghm import GHMCLoss
from .ghm_cwap import GHMCWAPLoss
from .graloss import GraLoss
from .las import LabelAwareSmoothingLoss
from .ldam import LDAMLoss
from .logit_adjusted import LogitAdjustedLoss
from .seesaw import SeesawLoss

LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "focal": FocalLoss,
    "class_balanced": ClassBalancedLoss,
    "logit_adjusted": LogitAdjustedLoss,
    "balanced_softmax": BalancedSoftmaxLoss,
    "ldam": LDAMLoss,
    "label_aware_smoothing": LabelAwareSmoothingLoss,
    "eql": EQLLoss,
    "seesaw": SeesawLoss,
    "ghm_c": GHMCLoss,
    "graloss": GraLoss,
    "gcl": GCLLoss,
    "ala": ALALoss,
    "gala": GALALoss,
    "ghm_cwap": GHMCWAPLoss,
}


def loss_hparams(name: str) -> list[str]:
    """Names of the keyword hyper-parameters loss ``name`` accepts."""
    sig = inspect.signature(LOSSES[name].__init__)
    return [p for p in sig.parameters if p not in ("self", "class_counts")]


def create_loss(name: str, class_counts: Sequence[int], **hparams: Any) -> nn.Module:
    """Build loss ``name`` for ``class_counts``; hyper-parameters set to None take the method default.

    Raises a ValueError naming the valid losses for an unknown name and the valid
    hyper-parameters for an unknown or NaN keyword.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}")
    valid = loss_hparams(name)
    given = {k: v for k, v in hparams.items() if v is not None}
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"loss {name!r} has no hyper-parameter(s) {unknown}; valid: {valid}")
    for k, v in given.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"loss {name!r}: hyper-parameter {k}={v} is not a finite number")
    return LOSSES[name](class_counts, **given)
