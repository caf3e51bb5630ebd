"""Label-aware smoothing (MiSLAS, Zhong et al. 2021)."""
from __future__ import annotations

from typing import Literal, Sequence

from torch import Tensor

from . import functional as F
from .base import LossBase
from .param import Param

_SHAPES = ("concave", "linear", "convex")


class LabelAwareSmoothingLoss(LossBase):
    """Label-aware smoothing CE (Zhong et al. 2021, MiSLAS). Logits (B, C).

    Per-class smoothing ``eps_c`` from the counts (head ``n_1`` = max gets ``smooth_head``, tail
    ``n_K`` = min gets ``smooth_tail``, in between by ``shape``); per sample
    ``(1 - eps_y)(-log p_y) + eps_y mean_j(-log p_j)`` (mean over all C classes); batch mean.

    Args:
        class_counts: training count per class ``n_c`` (C,).
        shape: "concave" (official default), "linear" or "convex".
        smooth_head: ``eps_1`` in [0, 1]; 0.4 (official CIFAR-100-LT IF100 / Places-LT configs).
        smooth_tail: ``eps_K`` in [0, 1]; 0.1 (same configs). Other configs: MiSLAS's config files.
    """

    def __init__(self, class_counts: Sequence[int],
                 shape: Literal["concave", "linear", "convex"] = "concave",
                 smooth_head: float = 0.4, smooth_tail: float = 0.1):
        super().__init__(class_counts)
        if shape not in _SHAPES:
            raise ValueError(f"LabelAwareSmoothingLoss: shape must be one of {_SHAPES}, got {shape!r}")
        for name, v in (("smooth_head", smooth_head), ("smooth_tail", smooth_tail)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"LabelAwareSmoothingLoss: {name} must be in [0, 1], got {v}")
        self.shape, self.smooth_head, self.smooth_tail = shape, float(smooth_head), float(smooth_tail)
        eps = F.las_smoothing(self.class_counts, shape, self.smooth_head, self.smooth_tail)
        # A constant of (counts, hyper-parameters): kept out of the state dict, moved by .to().
        self.register_buffer("smoothing", eps, persistent=False)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        return F.label_aware_smoothing_loss(logits, labels, self.smoothing)

    def state_summary(self) -> dict[str, Tensor]:
        return {"smoothing": self.smoothing.clone()}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, shape={self.shape!r}, smooth_head={self.smooth_head}, "
                f"smooth_tail={self.smooth_tail}")


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("shape", "choice", "concave", choices=("concave", "linear", "convex"), source="MiSLAS code (concave default)"),
    Param("smooth_head", "float", 0.4, low=0.0, high=0.5, source="MiSLAS configs eps_1 in 0.1-0.4"),
    Param("smooth_tail", "float", 0.1, low=0.0, high=0.3, source="MiSLAS configs eps_K in 0.0-0.1"),
)
