"""LDAM loss with optional deferred re-weighting (Cao et al. 2019)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from . import functional as F
from .base import CosineMarginLoss
from .param import Param, drw


class LDAMLoss(CosineMarginLoss):
    """Label-distribution-aware margin loss (Cao et al. 2019, Eq. 13; official ``kaidic/LDAM-DRW``).

    ``CE(s (cos - m_y onehot_y), y)`` with margins ``m_c = max_m (n_min / n_c)^(1/4)`` (constants;
    the code's ``n^-1/4`` rescaled so the largest is ``max_m``). Input: cosine (B, C) in [-1, 1]
    from a cosine head (``NormedLinear``); the loss applies ``s``. With DRW the effective-number
    weights (beta=0.9999) enter PyTorch's weighted mean (÷ sum_i w_{y_i}) from ``drw_start``.

    Args:
        class_counts: training count per class ``n_c`` (C,).
        max_m: largest margin ``C`` of the paper (the rarest class); 0.5 (official code).
        s: logit scale ``s``; 30 (official code).
        drw_start: 0-based epoch at which DRW switches on (160 in the LDAM-DRW CIFAR recipe);
            None (LIB default): plain LDAM.
    """

    def __init__(self, class_counts: Sequence[int], max_m: float = 0.5, s: float = 30.0,
                 drw_start: int | None = None):
        super().__init__(class_counts, s=s, drw_start=drw_start)
        if max_m < 0:
            raise ValueError(f"LDAMLoss: max_m must be >= 0, got {max_m}")
        if self.s <= 0:
            raise ValueError(f"LDAMLoss: s must be > 0, got {s}")
        self.max_m = float(max_m)
        # Constants of (counts, max_m): kept out of the state dict, moved by .to().
        self.register_buffer("margins", F.ldam_margins(self.class_counts, self.max_m), persistent=False)

    def adjust(self, cosine: Tensor, labels: Tensor) -> Tensor:
        """``cos - m_y onehot_y`` (B, C): only the target column moves."""
        return F.ldam_adjust(cosine, labels, self.margins)

    def state_summary(self) -> dict[str, Tensor]:
        return {"margins": self.margins.clone(), "class_weight": self.class_weight.clone()}

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, max_m={self.max_m}, s={self.s}, drw_start={self.drw_start}"


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("max_m", "float", 0.5, low=0.05, high=1.0, source="LDAM-DRW code max_m=0.5 (Cao et al. tune C so "
          "the largest margin is 0.5)"),
    Param("s", "float", 30.0, low=8.0, high=64.0, scale="log", source="LDAM-DRW code s=30; cosine scales "
          "15-64 in GCL / CosFace"),
    drw(),
)
