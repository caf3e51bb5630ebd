"""GHM-CWAP: category-wise gradient harmonising with adaptive unit regions, reference/methods.md section 5."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase, all_reduce_sum_


class GHMCWAPLoss(LossBase):
    """Category-wise GHM with asymmetric margins ``mean_i W_i * CE_i(z + M[y_i, :])`` (GHM-CWAP paper 004, Eq. 1-3).

    No official code; every rule below is the LIB reading of methods.md 5.
      * ``g = 1 - softmax(F)_y`` (detached) of the margin-adjusted logits F.
      * Per class c: current widths ``d_c`` (N, sum 1, init 1/N) and counts ``v_c`` (init 0); each
        training sample adds ``1/(N * d_{c,i})`` to its bin i (interior edges of ``d_c``).
      * ``set_epoch(e)`` at the start of every epoch closes the previous epoch's histogram:
        ``vbar <- v``, ``dbar <- d``, ``d ∝ 1/log(e + v)`` (normalised), ``v <- 0``.
      * ``S_c = sum vbar_{c,i}**alpha`` (non-empty bins, >= 1e-12); ``W = S_y / vbar_{y,i}**alpha`` with
        bin i by ``dbar``, empty bin ``vbar = 1/(N*dbar)``, divided by the number of non-empty bins
        when ``weight_norm="bins"``; ``M[m, n] = gamma * log(min(1, S_n / S_m))``.
      * Until a histogram has been closed (epoch 0): W = 1, M = 0, i.e. plain CE.
    State lives in buffers; ``hist_epoch`` is the epoch whose histogram is open, so a repeated
    ``set_epoch(e)`` (resume) is a no-op, and ``set_epoch(0)`` on a fresh loss does nothing.
    Counting happens in training mode only; under DDP the per-batch increments are summed over ranks.
    Without any ``set_epoch`` call the loss stays plain CE (the histogram is never closed).

    Args:
        class_counts: training count per class (only C is used).
        bins: number of unit regions N (paper: 30).
        alpha: effectiveness exponent (paper: 0.9).
        gamma: margin scale (paper: 0.8).
        weight_norm: "bins" (LIB default, GHM-C convention, mean weight ≈ 1) or "none" (paper-literal).

    Input logits (B, C); returns the batch-mean scalar.
    """

    def __init__(self, class_counts: Sequence[int], bins: int = 30, alpha: float = 0.9, gamma: float = 0.8,
                 weight_norm: Literal["bins", "none"] = "bins"):
        super().__init__(class_counts)
        if int(bins) != bins or bins < 1:
            raise ValueError(f"GHMCWAPLoss: bins must be a positive integer, got {bins}")
        if weight_norm not in ("bins", "none"):
            raise ValueError(f"GHMCWAPLoss: weight_norm must be 'bins' or 'none', got {weight_norm!r}")
        self.bins, self.alpha, self.gamma, self.weight_norm = int(bins), float(alpha), float(gamma), weight_norm
        shape = (self.num_classes, self.bins)
        self.register_buffer("widths", torch.full(shape, 1.0 / self.bins, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("frozen_widths", torch.full(shape, 1.0 / self.bins, dtype=torch.float64))
        self.register_buffer("frozen_counts", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("has_frozen", torch.zeros((), dtype=torch.bool))
        self.register_buffer("hist_epoch", torch.zeros((), dtype=torch.long))

    def reset_state(self) -> None:
        self.widths.fill_(1.0 / self.bins)
        self.frozen_widths.fill_(1.0 / self.bins)
        self.counts.zero_()
        self.frozen_counts.zero_()
        self.has_frozen.fill_(False)
        self.hist_epoch.zero_()

    @torch.no_grad()
    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        super().set_epoch(epoch, num_epochs)
        if int(self.hist_epoch) == int(epoch):
            return  # same epoch again (start of training, resume): nothing to close
        if bool(self.counts.sum() > 0):
            self.frozen_counts.copy_(self.counts)
            self.frozen_widths.copy_(self.widths)
            self.widths.copy_(F.ghm_cwap_new_widths(self.counts))
            self.counts.zero_()
            self.has_frozen.fill_(True)
        self.hist_epoch.fill_(int(epoch))

    def class_sum(self) -> Tensor:
        """Effective sample size ``S_c`` (C,) of the frozen histogram."""
        return F.ghm_cwap_class_sum(self.frozen_counts, self.alpha)

    def margins(self, rows: Tensor | None = None) -> Tensor:
        """Margins in use: ``M`` (C, C), or ``M[rows, :]`` (R, C); zeros until a histogram has been closed."""
        m = F.ghm_cwap_margins(self.class_sum(), self.gamma, rows)
        return torch.where(self.has_frozen, m, torch.zeros_like(m))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        adjusted = logits + self.margins(labels).to(logits.dtype)
        g = 1.0 - torch.softmax(adjusted.detach(), dim=1).gather(1, labels[:, None]).squeeze(1)
        w = F.ghm_cwap_sample_weight(g, labels, self.frozen_widths, self.frozen_counts, self.alpha, self.weight_norm)
        w = torch.where(self.has_frozen, w, torch.ones_like(w))
        loss = (w * torch.nn.functional.cross_entropy(adjusted, labels, reduction="none")).mean()
        if self.training:
            with torch.no_grad():
                inc = F.ghm_cwap_count_increment(g.to(self.widths.dtype), labels, self.widths)
                self.counts.add_(all_reduce_sum_(inc))
        return loss

    def state_summary(self) -> dict[str, Tensor]:
        """``S`` (C,), current and frozen ``bin_widths``/``bin_counts`` (C, N), margin row/column sums (C,)."""
        m = self.margins()
        return {"S": self.class_sum(), "bin_widths": self.widths.clone(), "bin_counts": self.counts.clone(),
                "frozen_bin_widths": self.frozen_widths.clone(), "frozen_bin_counts": self.frozen_counts.clone(),
                "margin_row_sum": m.sum(dim=1), "margin_col_sum": m.sum(dim=0),
                "has_frozen": self.has_frozen.to(torch.float64)}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, bins={self.bins}, alpha={self.alpha}, gamma={self.gamma}, "
                f"weight_norm={self.weight_norm!r}")
