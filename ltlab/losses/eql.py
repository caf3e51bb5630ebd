"""Equalization loss (Tan et al. 2020): sigmoid (official) and softmax forms."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import LossBase
from .param import Param

_FORMS = ("sigmoid", "softmax")
_DEFAULT_LAMBDA = {"sigmoid": 0.00177, "softmax": 0.005}


class EQLLoss(LossBase):
    """Equalization loss (Tan et al. 2020). Input logits (B, C).

    ``T_lambda(f_j) = [f_j < lambda]`` with class frequency ``f_j = n_j / N`` marks rare classes.
    ``form="sigmoid"`` (official ``eql.detectron2``, E = 1): ``sum_ij w_ij BCE_ij / B``,
    ``w_ij = 1 - T_lambda(f_j)(1 - y_ij)``. ``form="softmax"`` (the paper's classification variant,
    as in BagofTricks-LT SEQL): ``-log(e^{z_y} / sum_k w_k e^{z_k})`` with
    ``w_k = 1 - beta_k T_lambda(f_k)(1 - y_k)``, ``beta`` ~ Bernoulli(gamma) per (sample, class)
    and call; batch mean.

    Args:
        class_counts: training count per class ``n_c`` (C,).
        lambda_: frequency threshold ``lambda``. None: the form's default, 0.00177 for sigmoid
            (official LVIS config) and 0.005 for softmax (BagofTricks-LT CIFAR-100 configs; they
            use 0.05 on CIFAR-10).
        form: "sigmoid" (official code) or "softmax".
        gamma: softmax form only, Bernoulli probability ``gamma`` in [0, 1]; None -> 0.9
            (BagofTricks-LT configs).

    ``forward(logits, labels, beta_mask=None, generator=None)``: ``beta_mask`` (B, C) bool/0-1 is the
    softmax form's Bernoulli(gamma) draw; drawn inside from ``generator`` (or the global RNG) when None.
    """

    def __init__(self, class_counts: Sequence[int], lambda_: float | None = None,
                 form: Literal["sigmoid", "softmax"] = "sigmoid", gamma: float | None = None):
        super().__init__(class_counts)
        if form not in _FORMS:
            raise ValueError(f"EQLLoss: form must be one of {_FORMS}, got {form!r}")
        if form == "sigmoid" and gamma is not None:
            raise ValueError("EQLLoss: gamma applies only to form='softmax' "
                             "(the sigmoid form has no random mask)")
        self.form = form
        self.lambda_ = float(_DEFAULT_LAMBDA[form] if lambda_ is None else lambda_)
        self.gamma = float(0.9 if gamma is None else gamma)
        if self.lambda_ < 0:
            raise ValueError(f"EQLLoss: lambda_ must be >= 0, got {self.lambda_}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"EQLLoss: gamma must be in [0, 1], got {self.gamma}")
        # A constant of (counts, lambda_): kept out of the state dict, moved by .to().
        self.register_buffer("tail_mask", F.eql_tail_mask(self.class_counts, self.lambda_), persistent=False)

    def forward(self, logits: Tensor, labels: Tensor, beta_mask: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        self.check_inputs(logits, labels)
        if self.form == "sigmoid":
            if beta_mask is not None:
                raise ValueError("EQLLoss: beta_mask applies only to form='softmax'")
            return F.eql_sigmoid_loss(logits, labels, self.tail_mask)
        if beta_mask is None:
            u = torch.rand(logits.shape, device=logits.device, generator=generator)
            beta_mask = u < self.gamma
        elif beta_mask.shape != logits.shape:
            raise ValueError(f"EQLLoss: beta_mask must have shape {tuple(logits.shape)}, "
                             f"got {tuple(beta_mask.shape)}")
        return F.eql_softmax_loss(logits, labels, self.tail_mask, beta_mask)

    def state_summary(self) -> dict[str, Tensor]:
        return {"tail_mask": self.tail_mask.to(torch.float64)}

    def extra_repr(self) -> str:
        extra = f", gamma={self.gamma}" if self.form == "softmax" else ""
        return f"num_classes={self.num_classes}, form={self.form!r}, lambda_={self.lambda_}" + extra


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("lambda_", "float", 0.00177, low=1e-4, high=0.1, scale="log", source="EQL code 1.77e-3 (sigmoid); "
          "BoT-LT softmax 5e-3 (CIFAR-100) / 5e-2 (CIFAR-10)"),
    Param("form", "choice", "sigmoid", choices=("sigmoid", "softmax"), source="EQL code (sigmoid); BoT-LT (softmax)"),
    Param("gamma", "float", 0.9, low=0.5, high=1.0, source="BoT-LT softmax EQL gamma=0.9",
          when=(("form", "softmax"),)),
)
