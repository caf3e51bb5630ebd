"""Cross-entropy with optional class weights and deferred re-weighting (DRW)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import DRWMixin, LossBase
from .param import fixed, drw


class CrossEntropyLoss(DRWMixin, LossBase):
    """Softmax cross-entropy, batch mean (weighted: PyTorch's ``sum w_y CE / sum w_y``).

    Args:
        class_counts: training count per class ``n_c``.
        weight: optional fixed per-class weights ``w_c`` (C,); PyTorch weighted mean
            ``sum_i w_{y_i} CE_i / sum_i w_{y_i}``.
        drw_start: 0-based epoch from which effective-number weights (beta=0.9999) replace the
            weights (LDAM-DRW's "CE-DRW"; Cao et al. 2019, Sec. 3.3). None: never.
    """

    def __init__(self, class_counts: Sequence[int], weight: Sequence[float] | None = None,
                 drw_start: int | None = None):
        super().__init__(class_counts)
        self._init_drw(drw_start)
        w = torch.ones(self.num_classes, dtype=torch.float64) if weight is None else \
            torch.as_tensor(weight, dtype=torch.float64)
        if w.shape != (self.num_classes,):
            raise ValueError(f"CrossEntropyLoss: weight must have {self.num_classes} entries, got {tuple(w.shape)}")
        self.has_weight = weight is not None
        self.register_buffer("weight", w)

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        super().set_epoch(epoch, num_epochs)
        self._update_drw(epoch)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        w = self.drw_weight(logits)
        if w is None and self.has_weight:
            w = self.weight.to(device=logits.device, dtype=logits.dtype)
        return F.cross_entropy(logits, labels, weight=w)


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    fixed("weight", None, "per-class weights are data (set from class counts), not a scalar knob"),
    drw(),
)
