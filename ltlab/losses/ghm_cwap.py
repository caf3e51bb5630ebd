"""GHM-CWAP: category-wise gradient harmonising with adaptive unit regions (paper 004; docs/ghm_cwap.md)."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase, all_reduce_sum_, world_size
from .param import Param


class GHMCWAPLoss(LossBase):
    """Category-wise GHM with asymmetric margins ``sum_i W_i CE_i(z + M[y_i, :]) / sum_i W_i`` (GHM-CWAP Eq. 1-3).

    The paper has no code; every rule the paper leaves open is ours (docs/ghm_cwap.md).
      * ``g = 1 - softmax(F)_y`` (detached) of the margin-adjusted logits F (the paper does not define g
        for softmax).
      * Per class c: current widths ``d_c`` (N, sum 1, init 1/N) and counts ``v_c`` (init 0); each
        training sample adds ``1/(N * d_{c,i})`` to its bin i (Algorithm 1).
      * ``set_epoch(e)`` at the start of every epoch closes the previous epoch's histogram:
        ``vbar <- v``, ``dbar <- d``, ``d ∝ 1/log(e + v)`` (normalised; ``+e`` is our guard), ``v <- 0``.
      * ``S_c = sum vbar_{c,i}**alpha`` (non-empty bins); ``M[m, n] = gamma * log(min(1, S_n / S_m))``.
        A class absent from the frozen epoch (S = 0) is neutral: W = 1, no margin to or from it.
      * ``W = S_y / vbar_{y,i}**alpha`` (bin i by ``dbar``), see :func:`functional.ghm_cwap_bin_weights`.
      * Until a histogram has been closed (epoch 0): W = 1, M = 0, i.e. plain CE.
    State lives in buffers; ``hist_epoch`` is the epoch whose histogram is open, so a repeated
    ``set_epoch(e)`` (resume) is a no-op, and ``set_epoch(0)`` on a fresh loss does nothing. Counting
    happens in training mode only. Under DDP the histogram increments and, for ``reduction="weighted"``,
    the batch's ``sum_i W_i`` are summed over ranks, so the loss is the global-batch weighted mean
    (every rank must call the loss once per step, as the training loop does).

    Args:
        class_counts: training count per class (only C is used).
        bins: number of unit regions N (paper: 30).
        alpha: effectiveness exponent (paper: 0.9).
        gamma: margin scale (paper: 0.8, Seesaw's value).
        weight_norm: "bins" (ours, default: divide W by the class's number of non-empty bins, the GHM-C
            convention) or "none" (Eq. 1 literally). None = "bins".
        empty_bin: "unit" (ours, default: a sample whose frozen bin is empty gets W = 1) or "density"
            (our first rule: ``vbar = 1/(N * dbar)`` for an empty bin, S clamped at 1e-12, which also
            sets the margins of an absent class). None = "unit".
        reduction: "weighted" (ours, default: ``sum W CE / sum W``; the weights average to one over the
            batch, as GHM-C's sum to the batch size) or "mean" (``mean W CE``, our first rule). None = "weighted".
        use_weights: False sets W = 1 everywhere: the margins only (closest paper row: Table 3 "A^URA", whose bins are equal-width, not adaptive).
            ``weight_norm``, ``empty_bin`` and ``reduction`` must then be left unset.

    Input logits (B, C); returns a scalar.
    """

    def __init__(self, class_counts: Sequence[int], bins: int = 30, alpha: float = 0.9, gamma: float = 0.8,
                 weight_norm: Literal["bins", "none"] | None = None,
                 empty_bin: Literal["unit", "density"] | None = None,
                 reduction: Literal["weighted", "mean"] | None = None, use_weights: bool = True):
        super().__init__(class_counts)
        if int(bins) != bins or bins < 1:
            raise ValueError(f"GHMCWAPLoss: bins must be a positive integer, got {bins}")
        if not isinstance(use_weights, bool):
            raise ValueError(f"GHMCWAPLoss: use_weights must be True or False, got {use_weights!r}")
        given = {"weight_norm": weight_norm, "empty_bin": empty_bin, "reduction": reduction}
        set_ = [k for k, v in given.items() if v is not None]
        if not use_weights and set_:
            raise ValueError(f"GHMCWAPLoss: use_weights=False (margins only) has no per-sample weights, so "
                             f"{', '.join(f'{k}={given[k]!r}' for k in set_)} would do nothing; leave "
                             f"{', '.join(F.GHM_CWAP_OPTIONS)} unset (None) or set use_weights=True")
        for k, v in given.items():
            if v is not None:
                F.check_ghm_cwap_option(k, v, "GHMCWAPLoss")
        self.bins, self.alpha, self.gamma, self.use_weights = int(bins), float(alpha), float(gamma), use_weights
        self.weight_norm, self.empty_bin, self.reduction = (v if v is not None else F.GHM_CWAP_OPTIONS[k][0]
                                                            for k, v in given.items())
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
        """Effective sample size ``S_c`` (C,) of the frozen histogram as the margins use it.

        0 for a class absent from the frozen epoch; clamped at 1e-12 under ``empty_bin="density"``."""
        s = F.ghm_cwap_class_sum(self.frozen_counts, self.alpha)
        return s.clamp(min=1e-12) if self.empty_bin == "density" else s

    def margins(self, rows: Tensor | None = None) -> Tensor:
        """Margins in use: ``M`` (C, C), or ``M[rows, :]`` (R, C); zeros until a histogram has been closed."""
        m = F.ghm_cwap_margins(self.class_sum(), self.gamma, rows)
        return torch.where(self.has_frozen, m, torch.zeros_like(m))

    def bin_weights(self) -> Tensor:
        """Weight (C, N) a sample gets in each bin of the frozen histogram (all ones without weights or histogram)."""
        w = F.ghm_cwap_bin_weights(self.frozen_widths, self.frozen_counts, self.alpha, self.weight_norm,
                                   self.empty_bin)
        on = self.has_frozen & self.use_weights
        return torch.where(on, w, torch.ones_like(w))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        adjusted = logits + self.margins(labels).to(logits.dtype)
        g = 1.0 - torch.softmax(adjusted.detach(), dim=1).gather(1, labels[:, None]).squeeze(1)
        ce = torch.nn.functional.cross_entropy(adjusted, labels, reduction="none")
        if self.training:
            with torch.no_grad():
                inc = F.ghm_cwap_count_increment(g.to(self.widths.dtype), labels, self.widths)
                self.counts.add_(all_reduce_sum_(inc))
        if not self.use_weights:
            return ce.mean()
        w = F.ghm_cwap_sample_weight(g, labels, self.frozen_widths, self.frozen_counts, self.alpha,
                                     self.weight_norm, self.empty_bin)
        w = torch.where(self.has_frozen, w, torch.ones_like(w))  # no host sync on has_frozen
        if self.reduction == "mean":
            return (w * ce).mean()
        # sum W CE / sum W over the global batch: each rank's share, DDP then averages over ranks
        ws = world_size()
        total = all_reduce_sum_(w.sum().detach().clone()) if ws > 1 else w.sum()
        return (w * ce).sum() * ws / total

    def state_summary(self) -> dict[str, Tensor]:
        """``S`` (C,), current and frozen ``bin_widths``/``bin_counts`` (C, N), margin row/column sums (C,)."""
        m = self.margins()
        return {"S": self.class_sum(), "bin_widths": self.widths.clone(), "bin_counts": self.counts.clone(),
                "frozen_bin_widths": self.frozen_widths.clone(), "frozen_bin_counts": self.frozen_counts.clone(),
                "margin_row_sum": m.sum(dim=1), "margin_col_sum": m.sum(dim=0),
                "has_frozen": self.has_frozen.to(torch.float64)}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, bins={self.bins}, alpha={self.alpha}, gamma={self.gamma}, "
                f"weight_norm={self.weight_norm!r}, empty_bin={self.empty_bin!r}, reduction={self.reduction!r}, "
                f"use_weights={self.use_weights}")


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("bins", "int", 30, low=5, high=60, source="GHM-CWAP paper N=30 (following GHM-C's M=30)"),
    Param("alpha", "float", 0.9, low=0.5, high=1.0, source="GHM-CWAP paper alpha=0.9"),
    Param("gamma", "float", 0.8, low=0.0, high=2.0, source="GHM-CWAP paper gamma=0.8"),
    Param("weight_norm", "choice", "bins", choices=("bins", "none"), source="ours (docs/ghm_cwap.md)"),
    Param("empty_bin", "choice", "unit", choices=("unit", "density"), source="ours (docs/ghm_cwap.md)"),
    Param("reduction", "choice", "weighted", choices=("weighted", "mean"), source="ours (docs/ghm_cwap.md)"),
    Param("use_weights", "choice", True, choices=(True, False), source="paper Tab. 3 row A: margins only"),
)
