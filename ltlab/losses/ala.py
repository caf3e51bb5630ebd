"""ALA: adaptive logit adjustment loss, reference/methods.md section 3."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import CosineMarginLoss


class ALALoss(CosineMarginLoss):
    """Adaptive logit adjustment ``CE(s * (cos - onehot * DF_i * QF_y), y)`` (ALA paper 002, Eq. 4-8).

    Only the target logit moves: ``z_y = s * (cos_y - DF_i * QF_y)``, ``z_j = s * cos_j`` otherwise.
    ``DF_i = (1 - cos_{i,y_i}) / 2`` is detached (Eq. 6); ``QF_c`` (Eq. 7) is constant.

    Args:
        class_counts: training count per class ``n_c``.
        s: scale (paper: 30).
        qf: "paper" ``1/log(n_c/n_min + 1)`` (default; no code ties the numbers to the other form) or
            "code" ``log 2/log(n_c/n_min + 1)`` (third-party OpenLT; methods.md calls it ``qf_scale="log2"``).
        drw_start: 0-based epoch from which deferred re-weighting with effective-number weights
            (beta = 0.9999, PyTorch weighted mean) switches on; None: never (OpenLT CIFAR: 160 of 200).

    Input cosine (B, C) in [-1, 1]; gradient flows only through the cosine.
    """

    def __init__(self, class_counts: Sequence[int], s: float = 30.0, qf: Literal["paper", "code"] = "paper",
                 drw_start: int | None = None):
        super().__init__(class_counts, s=s, drw_start=drw_start)
        if qf not in ("paper", "code"):
            raise ValueError(f"ALALoss: qf must be 'paper' or 'code', got {qf!r}")
        self.qf = qf
        self.register_buffer("quantity_factor", F.ala_quantity_factor(self.class_counts, qf), persistent=False)
        self._last_df: Tensor | None = None
        self._last_labels: Tensor | None = None

    def adjust(self, cosine: Tensor, labels: Tensor) -> Tensor:
        """Cosine with the target shifted by ``DF_i * QF_y`` (B, C), before scaling."""
        self._last_df, self._last_labels = F.ala_difficulty_factor(cosine, labels), labels.detach()
        return F.ala_adjust(cosine, labels, self.quantity_factor)

    def state_summary(self) -> dict[str, Tensor]:
        """``quantity_factor`` (C,); ``difficulty_factor`` (C,): mean DF per class in the last batch (NaN: absent)."""
        out = {"quantity_factor": self.quantity_factor.clone()}
        if self._last_df is not None:
            df, y = self._last_df.double(), self._last_labels
            total = torch.zeros(self.num_classes, dtype=torch.float64, device=df.device).index_add_(0, y, df)
            count = torch.zeros_like(total).index_add_(0, y, torch.ones_like(df))
            nan = torch.full_like(total, float("nan"))
            out["difficulty_factor"] = torch.where(count > 0, total / count.clamp(min=1), nan)
        return out

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, s={self.s}, qf={self.qf!r}, drw_start={self.drw_start}"
