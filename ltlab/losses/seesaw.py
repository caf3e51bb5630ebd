"""Seesaw loss (Wang et al. 2021; mmdetection ``SeesawLoss``) for classification."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase, all_reduce_sum_
from .param import Param, fixed


class SeesawLoss(LossBase):
    """Seesaw loss (Wang et al. 2021; mmdetection's ``seesaw_loss.py``). Input logits (B, C).

    Keeps the cumulative per-class label counts ``N_c`` in the buffer ``cum_samples`` (C,), starting
    at 0 and incremented with the current batch *before* the loss, in training mode only. For j != y
    the logit of class j is shifted by ``log(M_ij C_ij)``: mitigation ``(N_j/N_y)^p`` when
    ``N_j < N_y``, compensation ``(s_j/s_y)^q`` when ``s_j > s_y`` (``s`` = detached softmax,
    ``s_y`` >= eps). mmdet's objectness logits and background slot are dropped for classification.

    Args:
        class_counts: training count per class (C,); only its length is used (counts are learnt
            from the batches).
        p: mitigation exponent ``p`` >= 0; 0.8 (paper, mmdet default).
        q: compensation exponent ``q`` >= 0; 2.0 (paper, mmdet default).
        eps: lower clamp of ``s_y``; 1e-2 (mmdet default).
    """

    def __init__(self, class_counts: Sequence[int], p: float = 0.8, q: float = 2.0, eps: float = 1e-2):
        super().__init__(class_counts)
        if p < 0 or q < 0:
            raise ValueError(f"SeesawLoss: p and q must be >= 0, got p={p}, q={q}")
        if eps <= 0:
            raise ValueError(f"SeesawLoss: eps must be > 0, got {eps}")
        self.p, self.q, self.eps = float(p), float(q), float(eps)
        # float64 (mmdet: float32) so counts stay exact beyond 2^24 samples (long iNat runs).
        self.register_buffer("cum_samples", torch.zeros(self.num_classes, dtype=torch.float64))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        if self.training:
            inc = torch.bincount(labels, minlength=self.num_classes).to(self.cum_samples)
            # DDP: add every rank's batch so all ranks hold the same (global) counts; mmdet keeps
            # per-rank counts instead. Only runs in training, where every rank calls forward.
            self.cum_samples.add_(all_reduce_sum_(inc))
        return F.seesaw_loss(logits, labels, self.cum_samples, self.p, self.q, self.eps)

    def reset_state(self) -> None:
        self.cum_samples.zero_()

    def state_summary(self) -> dict[str, Tensor]:
        return {"cum_samples": self.cum_samples.clone()}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, p={self.p}, q={self.q}, eps={self.eps}"


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("p", "float", 0.8, low=0.0, high=1.5, source="Seesaw paper ablates p; mmdet default 0.8"),
    Param("q", "float", 2.0, low=0.0, high=3.0, source="Seesaw paper ablates q; mmdet default 2.0"),
    fixed("eps", 0.01, "numerical guard on sigma_y (mmdet 1e-2)"),
)
