"""ALA: adaptive logit adjustment loss (ALA paper 002)."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import CosineMarginLoss, all_reduce_sum_
from .param import Param, drw


class ALALoss(CosineMarginLoss):
    """Adaptive logit adjustment ``CE(s * (cos - onehot * DF_i * QF_y), y)`` (ALA paper 002, Eq. 4-8).

    Only the target logit moves: ``z_y = s * (cos_y - DF_i * QF_y)``, ``z_j = s * cos_j`` otherwise.
    ``DF_i = (1 - cos_{i,y_i}) / 2`` is detached (Eq. 6); ``QF_c`` (Eq. 7) is constant.

    Args:
        class_counts: training count per class ``n_c``.
        s: scale (paper: 30).
        qf: "paper" ``1/log(n_c/n_min + 1)`` (default; no code ties the numbers to the other form) or
            "code" ``log 2/log(n_c/n_min + 1)`` (third-party OpenLT).
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
        # the epoch's DF per class (rows: sum, count) for ALA Fig. 4; training mode only, summed over DDP ranks
        self.register_buffer("df_sums", torch.zeros(2, self.num_classes, dtype=torch.float64))
        self.register_buffer("df_epoch", torch.zeros((), dtype=torch.long))

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        super().set_epoch(epoch, num_epochs)
        if int(self.df_epoch) != int(epoch):  # a repeated call (resume) keeps what the epoch has counted
            self.df_sums.zero_()
        self.df_epoch.fill_(int(epoch))

    def reset_state(self) -> None:
        self.df_sums.zero_()

    def adjust(self, cosine: Tensor, labels: Tensor) -> Tensor:
        """Cosine with the target shifted by ``DF_i * QF_y`` (B, C), before scaling."""
        if self.training:
            with torch.no_grad():
                df = F.ala_difficulty_factor(cosine, labels).to(self.df_sums)
                inc = torch.zeros_like(self.df_sums)
                inc[0].index_add_(0, labels, df)
                inc[1].index_add_(0, labels, torch.ones_like(df))
                self.df_sums.add_(all_reduce_sum_(inc))
        return F.ala_adjust(cosine, labels, self.quantity_factor)

    def state_summary(self) -> dict[str, Tensor]:
        """``quantity_factor`` (C,); ``difficulty_factor`` (C,): mean DF of the class's training samples over
        the epoch so far (NaN: none seen)."""
        total, count = self.df_sums
        df = torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))
        return {"quantity_factor": self.quantity_factor.clone(), "difficulty_factor": df}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for k in ("df_sums", "df_epoch"):  # checkpoints written before the epoch-mean DF lack them
            state_dict.setdefault(prefix + k, getattr(self, k).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, s={self.s}, qf={self.qf!r}, drw_start={self.drw_start}"


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("s", "float", 30.0, low=8.0, high=64.0, scale="log", source="ALA paper / OpenLT s=30"),
    Param("qf", "choice", "paper", choices=("paper", "code"), source="ALA paper QF vs OpenLT log 2 form"),
    drw("OpenLT: DRW after epoch 160 of 200; None = no DRW"),
)
