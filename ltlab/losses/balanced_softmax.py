"""Balanced Softmax (Ren et al. 2020)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase


class BalancedSoftmaxLoss(LossBase):
    """Balanced Softmax CE (Ren et al. 2020): ``CE(z + log n_c, y)``.

    Raw training counts ``n_c``, no epsilon (official BALMS code); identical to the logit-adjusted
    loss with tau = 1 because ``log N`` cancels. Input logits (B, C); predict with raw ``z``.
    No hyper-parameters.

    Args:
        class_counts: training count per class ``n_c`` (C,).
    """

    def __init__(self, class_counts: Sequence[int]):
        super().__init__(class_counts)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        return F.balanced_softmax_loss(logits, labels, self.class_counts)

    def state_summary(self) -> dict[str, Tensor]:
        return {"adjustment": torch.log(self.class_counts)}


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE: tuple = ()  # Ren et al.: no hyper-parameter
