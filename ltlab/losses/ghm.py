"""GHM-C loss (Li et al. 2019; mmdetection ``GHMC``), sigmoid-only."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase, all_reduce_sum_
from .param import Param


class GHMCLoss(LossBase):
    """Gradient harmonizing classification loss (Li et al. 2019, GHM-C).

    Sigmoid BCE over the (B, C) one-hot binary problem; each element is weighted by the inverse
    density of its gradient norm ``g = |sigmoid(z) - y|`` over ``bins`` equal bins: ``tot / n_b``
    (momentum 0) or ``tot / acc_b`` with ``acc_b <- mu acc_b + (1 - mu) n_b`` (non-empty bins only,
    no bias correction, as the code), divided by the number of non-empty bins; weights are
    constants; loss ``sum w BCE / (B C)``. Input logits (B, C).

    State: buffer ``acc_sum`` (bins,) (updated only with momentum > 0, as in mmdet) and
    ``last_counts`` (bins,), the histogram of the last training batch (for probes). Both are
    updated only in training mode; in eval mode the weights are computed from the batch without
    touching the state.

    Args:
        class_counts: training count per class (C,); only its length is used.
        bins: number of gradient-norm bins ``M``; 10 (mmdet ``GHMC`` default; paper uses 30).
        momentum: ``mu`` in [0, 1); 0.0 (mmdet default; paper uses 0.75).
    """

    def __init__(self, class_counts: Sequence[int], bins: int = 10, momentum: float = 0.0):
        super().__init__(class_counts)
        if int(bins) != bins or bins < 1:
            raise ValueError(f"GHMCLoss: bins must be a positive integer, got {bins}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"GHMCLoss: momentum must be in [0, 1), got {momentum}")
        self.bins, self.momentum = int(bins), float(momentum)
        self.register_buffer("acc_sum", torch.zeros(self.bins, dtype=torch.float64))
        self.register_buffer("last_counts", torch.zeros(self.bins, dtype=torch.float64))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        idx, counts = F.ghmc_histogram(logits, labels, self.bins)
        counts = counts.to(self.acc_sum)
        if self.training:
            # DDP: weights use the histogram of the global batch (all ranks' elements). The loss
            # divides by the local B*C, so the DDP gradient average equals one big-batch step.
            all_reduce_sum_(counts)
        bin_weight, new_acc = F.ghmc_bin_weights(counts, self.acc_sum, self.momentum)
        if self.training:
            self.acc_sum.copy_(new_acc)
            self.last_counts.copy_(counts)
        return F.ghmc_loss(logits, labels, idx, bin_weight)

    def reset_state(self) -> None:
        self.acc_sum.zero_()
        self.last_counts.zero_()

    def state_summary(self) -> dict[str, Tensor]:
        return {"acc_sum": self.acc_sum.clone(), "last_counts": self.last_counts.clone()}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, bins={self.bins}, momentum={self.momentum}"


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("bins", "int", 10, low=5, high=50, source="GHMC class default M=10; GHM paper config M=30 (ablated "
          "over several M)"),
    Param("momentum", "float", 0.0, low=0.0, high=0.9, source="GHMC class default 0; paper config 0.75"),
)
