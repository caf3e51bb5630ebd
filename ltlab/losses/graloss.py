"""GraLoss: GLAG's gradual balanced loss (stage one) (GLAG paper 000, Eq. 2-4)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .. import schedules
from . import functional as F
from .base import LossBase
from .param import Param


class GraLoss(LossBase):
    """Gradual balanced loss ``CE(z + alpha(T) * log(pi), y)`` on all columns (GLAG paper 000, Eq. 2-3).

    Menon's logit-adjusted loss with tau replaced by ``alpha(T) = s * (c ** (T / Tmax) - 1)``
    (:func:`ltlab.schedules.glag_alpha`), constant within an epoch and set by
    ``set_epoch(epoch, num_epochs)`` (alpha = 0 before the first call). Inference uses plain ``z``.

    Args:
        class_counts: training count per class ``n_c``; prior ``pi_c = n_c / sum n``.
        s: scale of alpha (paper: 1 for CIFAR / ImageNet-LT, 0.5 for iNat).
        c: base of alpha (paper Tab. 5: convex c = 2 is best).

    Input logits (B, C) from a linear classifier with bias; returns the batch-mean scalar.
    """

    def __init__(self, class_counts: Sequence[int], s: float = 1.0, c: float = 2.0):
        super().__init__(class_counts)
        if not c > 0:
            raise ValueError(f"GraLoss: c must be > 0, got {c}")
        self.s, self.c = float(s), float(c)
        self.alpha = 0.0

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        super().set_epoch(epoch, num_epochs)
        self.alpha = schedules.glag_alpha(epoch, num_epochs, self.s, self.c)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        return torch.nn.functional.cross_entropy(F.graloss_logits(logits, self.prior(logits), self.alpha), labels)

    def state_summary(self) -> dict[str, Tensor]:
        return {"alpha": torch.tensor(self.alpha, dtype=torch.float64)}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, s={self.s}, c={self.c}, alpha={self.alpha:.4g}"


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("s", "float", 1.0, low=0.1, high=2.0, source="GLAG paper: s=1 CIFAR / ImageNet-LT, 0.5 iNat"),
    Param("c", "float", 2.0, low=1.0, high=4.0, source="GLAG paper Tab. 5: convex c=2 best"),
)
