"""Class-Balanced loss: effective-number class weights (Cui et al. 2019)."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from .. import schedules
from . import functional as F
from .base import LossBase
from .param import Param

_TYPES = ("softmax", "sigmoid", "focal")


class ClassBalancedLoss(LossBase):
    """Class-balanced loss (Cui et al. 2019, Eq. 5-7). Input logits (B, C).

    Class weight ``w_c = (1 - beta) / (1 - beta^{n_c})`` rescaled so ``sum_c w_c = C``; the weight of
    a sample's class multiplies its whole loss (all C binary terms for sigmoid/focal). Reductions are
    the official TF code's: softmax ``mean_i w_{y_i} CE_i`` (not PyTorch's ÷ sum w); sigmoid and focal
    ``sum_ij w_{y_i} (.)_ij / B``; focal has no alpha and a stable, non-detached modulator.

    Args:
        class_counts: training count per class ``n_c`` (C,).
        beta: effective-number ``beta`` in [0, 1); 0.9999 (the official CIFAR-LT scripts; paper's
            usual best). 0 gives plain (unweighted) losses.
        loss_type: "softmax" (official code default), "sigmoid" or "focal".
        gamma: focal ``gamma`` >= 0, used by loss_type="focal" only; 1.0 (official code default and
            ``cifar_im_trainval_cb.sh``).
    """

    def __init__(self, class_counts: Sequence[int], beta: float = 0.9999,
                 loss_type: Literal["softmax", "sigmoid", "focal"] = "softmax", gamma: float = 1.0):
        super().__init__(class_counts)
        if loss_type not in _TYPES:
            raise ValueError(f"ClassBalancedLoss: loss_type must be one of {_TYPES}, got {loss_type!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"ClassBalancedLoss: beta must be in [0, 1), got {beta}")
        if gamma < 0:
            raise ValueError(f"ClassBalancedLoss: gamma must be >= 0, got {gamma}")
        self.beta, self.loss_type, self.gamma = float(beta), loss_type, float(gamma)
        w = schedules.effective_number_weights(self.class_counts.cpu().numpy(), self.beta)
        # A constant of (counts, beta): kept out of the state dict, moved by .to().
        self.register_buffer("class_weight", torch.as_tensor(w, dtype=torch.float64), persistent=False)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        return F.class_balanced_loss(logits, labels, self.class_weight, self.loss_type, self.gamma)

    def state_summary(self) -> dict[str, Tensor]:
        return {"class_weight": self.class_weight.clone()}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, beta={self.beta}, loss_type={self.loss_type!r}, "
                f"gamma={self.gamma}")


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("beta", "choice", 0.9999, choices=(0.9, 0.99, 0.999, 0.9999), source="Cui et al.: beta grid "
          "{0.9, 0.99, 0.999, 0.9999}"),
    Param("loss_type", "choice", "softmax", choices=("softmax", "sigmoid", "focal"), source="Cui et al."),
    Param("gamma", "choice", 1.0, choices=(0.5, 1.0, 2.0), source="Cui et al.: gamma in {0.5, 1, 2} (focal type)"),
)
