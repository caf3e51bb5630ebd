"""Logit-adjusted loss (Menon et al. 2021)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase
from .param import Param, fixed


class LogitAdjustedLoss(LossBase):
    """Logit-adjusted softmax CE (Menon et al. 2021, Eq. 10).

    ``CE(z + tau log pi, y)`` with ``pi_c = n_c / N`` the training label prior, applied to every
    column. Only training logits move; predict with raw ``z``. Input logits (B, C).

    Args:
        class_counts: training count per class ``n_c`` (C,).
        tau: temperature ``tau`` of the adjustment; 1.0 (paper and official code default).
        eps: 0.0 (LIB default) computes ``tau * log(pi)`` exactly. The official TF code evaluates
            ``log(pi^tau + 1e-12)`` (in float32); ``eps=1e-12`` reproduces that form.
    """

    def __init__(self, class_counts: Sequence[int], tau: float = 1.0, eps: float = 0.0):
        super().__init__(class_counts)
        if eps < 0:
            raise ValueError(f"LogitAdjustedLoss: eps must be >= 0, got {eps}")
        self.tau, self.eps = float(tau), float(eps)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        return F.logit_adjusted_loss(logits, labels, self.prior(logits), self.tau, self.eps)

    def state_summary(self) -> dict[str, Tensor]:
        pi = self.class_counts / self.class_counts.sum()
        adj = self.tau * torch.log(pi) if self.eps == 0 else torch.log(pi ** self.tau + self.eps)
        return {"adjustment": adj}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}, eps={self.eps}"


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("tau", "float", 1.0, low=0.0, high=3.0, source="Menon et al.: tau=1 default, Fig. 3 sweeps tau; "
          "oracle grid 0-2"),
    fixed("eps", 0.0, "numerical guard inside log(prior^tau + eps)"),
)
