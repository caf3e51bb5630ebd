"""GALA: gradient-aware logit adjustment loss (GALA paper 003; official ``lt-peoject``)."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase, all_reduce_sum_, world_size
from .param import Param, fixed


class GALALoss(LossBase):
    """Gradient-aware logit adjustment ``CE(F, y)`` with F from accumulated logit gradients (GALA paper 003, Eq. 6).

    State (registered buffers, float64, all zero at start), row j = classifier,
    column k = sample class:
      * ``A`` (C, C): ``A[j, k] += sum_{i: y_i = k} |dL/dz_ij|``, L = batch-mean CE on the adjusted
        logits, so ``|dL/dz| = |softmax(F) - onehot| / B`` (computed analytically, detached);
      * ``P += A * I`` and ``N += A * (1 - I)`` after each A update (cumulative sums of cumulative
        sums: early batches weigh more), never reset in the "code" variant;
      * ``theta = diag(P)`` (C,), ``phi[k] = sum_{j != k} N[j, k]`` (C,), both without the eps guard.
    Batch t uses the state of batches < t: ``forward`` computes the loss from the current state and
    then (training mode only) adds the batch's increment. Evaluation mode computes the same adjusted
    loss and leaves the state alone. For plain CE, theta == phi exactly.

    Args:
        class_counts: training count per class (only C is used).
        lambda1, lambda2: weights of ``log(theta + eps)`` and ``log(phi_y + eps)`` (official code;
            ``gala`` config 1 / 1, ``gala_pn`` 1.2 / 0.9).
        variant: "code" (default, official): adjustment on all columns, whole-run accumulation.
            "paper": Eq. 6 on non-target columns only, accumulation restarted by ``set_epoch`` at
            every new epoch (the paper's "accumulating ... of each epoch").
        eps: guard inside both logs (official code: 1e-3).

    Input logits (B, C) from a linear classifier; predictions at test time use plain ``z``.
    """

    def __init__(self, class_counts: Sequence[int], lambda1: float = 1.0, lambda2: float = 1.0,
                 variant: Literal["code", "paper"] = "code", eps: float = 1e-3):
        super().__init__(class_counts)
        if variant not in ("code", "paper"):
            raise ValueError(f"GALALoss: variant must be 'code' or 'paper', got {variant!r}")
        if not eps > 0:
            raise ValueError(f"GALALoss: eps must be > 0, got {eps}")
        self.lambda1, self.lambda2, self.variant, self.eps = float(lambda1), float(lambda2), variant, float(eps)
        c = self.num_classes
        self.register_buffer("A", torch.zeros(c, c, dtype=torch.float64))
        self.register_buffer("P", torch.zeros(c, c, dtype=torch.float64))
        self.register_buffer("N", torch.zeros(c, c, dtype=torch.float64))
        self.register_buffer("state_epoch", torch.zeros((), dtype=torch.long))

    @property
    def theta(self) -> Tensor:
        """Accumulated positive gradient per classifier ``diag(P)`` (C,), without eps."""
        return self.P.diagonal().clone()

    @property
    def phi(self) -> Tensor:
        """Accumulated negative gradient produced by each sample class ``sum_{j != k} N[j, k]`` (C,), without eps."""
        return self.N.sum(dim=0) - self.N.diagonal()

    def reset_state(self) -> None:
        for buf in (self.A, self.P, self.N):
            buf.zero_()

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        super().set_epoch(epoch, num_epochs)
        # Paper variant: restart the accumulation at every new epoch; idempotent for a repeated call
        # (resume), so a second set_epoch(e) does not wipe what epoch e has accumulated.
        if self.variant == "paper" and int(self.state_epoch) != int(epoch):
            self.reset_state()
        self.state_epoch.fill_(int(epoch))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(logits, labels)
        adjusted = F.gala_logits(logits, labels, self.theta, self.phi, self.lambda1, self.lambda2,
                                 self.variant, self.eps)
        loss = torch.nn.functional.cross_entropy(adjusted, labels)
        if self.training:
            self._accumulate(adjusted, labels)
        return loss

    @torch.no_grad()
    def _accumulate(self, adjusted: Tensor, labels: Tensor) -> None:
        grad_abs = F.gala_grad_abs(adjusted, labels).to(self.A.dtype)
        ws = world_size()
        if ws > 1:
            # DDP: each rank's increment is its local batch mean; summing over ranks and dividing by
            # the world size gives the gradient of the global-batch mean (equal local batches), so
            # every rank holds the same state.
            inc = F.gala_increment(grad_abs, labels, self.num_classes)
            self.A.add_(all_reduce_sum_(inc).div_(ws))
        else:
            self.A.index_add_(1, labels, grad_abs.t())  # same as A += gala_increment(...), no (C, C) temporary
        self.P.diagonal().add_(self.A.diagonal())
        self.N.add_(self.A)
        self.N.diagonal().sub_(self.A.diagonal())

    def state_summary(self) -> dict[str, Tensor]:
        return {"theta": self.theta, "phi": self.phi}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, lambda1={self.lambda1}, lambda2={self.lambda2}, "
                f"variant={self.variant!r}, eps={self.eps}")


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("lambda1", "float", 1.0, low=0.0, high=2.0, source="GALA code configs 1.0 (gala) / 1.2 (gala_pn)"),
    Param("lambda2", "float", 1.0, low=0.0, high=2.0, source="GALA code configs 1.0 / 0.9 (inert in the code "
          "variant)"),
    Param("variant", "choice", "code", choices=("code", "paper"), source="GALA code vs paper Eq. 6"),
    fixed("eps", 0.001, "the code's 1e-3 guard inside log(theta + eps)"),
)
