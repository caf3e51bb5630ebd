"""GCL: Gaussian clouded logit loss (GCL paper 001; official ``Keke921/GCLLoss``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import functional as F
from .base import CosineMarginLoss
from .param import Param


class GCLLoss(CosineMarginLoss):
    """Gaussian clouded logit loss ``CE(s*(cos - noise_mul*|eps|*delta_hat - m*onehot), y)`` (GCL 001, Eq. 9-12).

    ``delta_c = log n_max - log n_c``, ``delta_hat = delta / max(delta)`` (0 on balanced data);
    ``eps`` (B, C) is drawn per element from N(0, std 1/3), clamped to [-1, 1], absolute value taken,
    fresh at every call (a mixup step calls the loss twice -> two draws). Evaluation uses plain cosine.

    Args:
        class_counts: training count per class ``n_c``.
        s: scale (official code: 30 stage one; 20 CIFAR / 15 Places stage two).
        m: extra target margin (official code, not in the paper: 0 stage one, 0.1 stage two).
        noise_mul: cloud size multiplier (official code: 0.5 CIFAR, 1.0 Places-LT; paper: 1).
        gamma: focal exponent of the stage-two loss ``mean((1 - e^{-l_i})**gamma * l_i)`` with the
            factor detached (official code: 0 stage one, 1 stage two); 0 is the plain batch mean.

    Called ``loss(cosine, labels, noise=None, generator=None)``: cosine (B, C) in [-1, 1]; ``noise``
    (B, C) is the raw N(0, 1/3) draw before clamp and abs, drawn inside (input's device and dtype,
    optional ``generator``) when None.
    """

    def __init__(self, class_counts: Sequence[int], s: float = 30.0, m: float = 0.0,
                 noise_mul: float = 0.5, gamma: float = 0.0):
        super().__init__(class_counts, s=s, drw_start=None)
        if gamma < 0:
            raise ValueError(f"GCLLoss: gamma must be >= 0, got {gamma}")
        self.m, self.noise_mul, self.gamma = float(m), float(noise_mul), float(gamma)
        self.register_buffer("delta_hat", F.gcl_delta_hat(self.class_counts), persistent=False)

    def draw_noise(self, cosine: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The raw N(0, std 1/3) draw (B, C), one per element (official code: ``Normal(0, 1/3)``)."""
        return torch.randn(cosine.shape, generator=generator, device=cosine.device, dtype=cosine.dtype) / 3.0

    def adjust(self, cosine: Tensor, labels: Tensor, noise: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Clouded cosine (B, C) before scaling; draws the noise when ``noise`` is None."""
        if noise is None:
            noise = self.draw_noise(cosine, generator)
        elif noise.shape != cosine.shape:
            raise ValueError(f"GCLLoss: noise must have the shape of cosine {tuple(cosine.shape)}, "
                             f"got {tuple(noise.shape)}")
        return F.gcl_logits(cosine, labels, noise, self.delta_hat, self.noise_mul, self.m)

    def forward(self, cosine: Tensor, labels: Tensor, noise: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        self.check_inputs(cosine, labels)
        logits = self.s * self.adjust(cosine, labels, noise, generator)
        if self.gamma == 0:
            return torch.nn.functional.cross_entropy(logits, labels)
        per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        return F.detached_focal_mean(per_sample, self.gamma)

    def state_summary(self) -> dict[str, Tensor]:
        return {"cloud_width": self.delta_hat * self.noise_mul}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, s={self.s}, m={self.m}, noise_mul={self.noise_mul}, "
                f"gamma={self.gamma}")


# the search space (ltlab.space): type, default, sensible range, scale, source
SEARCH_SPACE = (
    Param("s", "float", 30.0, low=8.0, high=64.0, scale="log", source="GCL code: 30 stage one, 20 / 15 stage two"),
    Param("m", "float", 0.0, low=0.0, high=0.3, source="GCL code: 0 stage one, 0.1 stage two"),
    Param("noise_mul", "float", 0.5, low=0.0, high=1.5, source="GCL code 0.5 CIFAR, 1.0 Places-LT; paper 1 "
          "(official code vs paper)"),
    Param("gamma", "float", 0.0, low=0.0, high=2.0, source="GCL code: 0 stage one, 1 stage two"),
)
