"""Classifier heads (linear, cosine, LWS, GLAG's Tukey-linear) and the model base class every ltlab model shares.

A model is ``backbone -> forward_features (B, D) -> head -> (B, C)``. The head is always the
submodule named ``head``; every other parameter is backbone, so a second stage can freeze it
(Kang et al. 2020: cRT, LWS, tau-normalisation).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HeadKind = Literal["linear", "linear_nobias", "cosine", "lws", "tukey_linear"]


def tukey(features, lam: float = 0.5):
    """Tukey's ladder of powers ``x ** lam`` (lam != 0) or ``log x`` (lam = 0) (GLAG Eq. 5; DC code).

    Features are post-ReLU, so they are clamped at 0 first (lam = 0: at 1e-6).
    lam = 0.5 is DC's value (LIB; the GLAG paper gives none). numpy or torch in, same type out.
    """
    lam = float(lam)
    if isinstance(features, torch.Tensor):
        x = features if features.is_floating_point() else features.to(torch.float64)
        return torch.log(x.clamp(min=1e-6)) if lam == 0 else x.clamp(min=0.0) ** lam
    x = np.asarray(features)
    x = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)
    return np.log(np.maximum(x, 1e-6)) if lam == 0 else np.maximum(x, 0.0) ** lam


class LinearHead(nn.Linear):
    """Linear classifier with bias: ``logits = f W^T + b``; f (B, D) -> logits (B, C).

    Default ``nn.Linear`` init (the cRT re-initialisation, Kang et al. 2020); the
    CIFAR ResNets overwrite the weight with Kaiming-normal as LDAM-DRW does.
    """

    kind = "linear"

    def __init__(self, feature_dim: int, num_classes: int, device=None, dtype=None) -> None:
        super().__init__(feature_dim, num_classes, bias=True, device=device, dtype=dtype)

    @property
    def feature_dim(self) -> int:
        return self.in_features

    @property
    def num_classes(self) -> int:
        return self.out_features

    def weight_matrix(self) -> torch.Tensor:
        """Classifier weights (C, D)."""
        return self.weight


class BiasFreeLinearHead(LinearHead):
    """Linear classifier without bias: ``logits = f W^T``; f (B, D) -> logits (B, C).

    Several long-tailed methods train bias-free classifiers, and without a bias a per-class logit shift can
    only show up in the weight norms (GALA 003, Fig. 1(a) compares the norms ``||W_c||``). Same init as
    :class:`LinearHead`; ``bias`` is None.
    """

    kind = "linear_nobias"

    def __init__(self, feature_dim: int, num_classes: int, device=None, dtype=None) -> None:
        nn.Linear.__init__(self, feature_dim, num_classes, bias=False, device=device, dtype=dtype)


class CosineHead(nn.Module):
    """Cosine classifier ("NormedLinear" of the LDAM-DRW / GCL code).

    ``cosine = normalize(f, dim=1) @ normalize(W, dim=0)`` with W stored (D, C) and no bias;
    f (B, D) -> cosine (B, C) in [-1, 1]. The head never applies the scale s: the loss does.
    Init (official code): W ~ uniform(-1, 1), then every column rescaled to unit norm.
    """

    kind = "cosine"

    def __init__(self, feature_dim: int, num_classes: int, device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(feature_dim, num_classes, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0).renorm_(2, 1, 1e-5).mul_(1e5)

    @property
    def feature_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def num_classes(self) -> int:
        return self.weight.shape[1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=0)

    def weight_matrix(self) -> torch.Tensor:
        """Classifier weights (C, D) (the stored (D, C) weight transposed, not normalised)."""
        return self.weight.t()

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, num_classes={self.num_classes}"


class LWSHead(LinearHead):
    """Learnable weight scaling (Kang et al. 2020, Sec. 4; classifier-balancing code).

    ``logits = scale * (f W^T + b)``; f (B, D) -> logits (B, C); ``scale`` (C,) starts at 1 and
    multiplies the bias too, as in the official code. Built fresh, W and b are trainable (LIB);
    ``from_linear`` copies a stage-one linear head and by default freezes W and b (Kang's LWS;
    pass ``freeze_linear=False`` for MiSLAS, which keeps training the classifier).
    """

    kind = "lws"

    def __init__(self, feature_dim: int, num_classes: int, device=None, dtype=None) -> None:
        super().__init__(feature_dim, num_classes, device=device, dtype=dtype)
        self.scale = nn.Parameter(torch.ones(num_classes, device=device, dtype=dtype))

    @classmethod
    def from_linear(cls, linear: nn.Linear, freeze_linear: bool = True) -> LWSHead:
        """LWS head whose W and b are copies of ``linear`` (bias 0 if it has none), scale = 1."""
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"from_linear needs an nn.Linear / LinearHead, got {type(linear).__name__}")
        w = linear.weight.detach()
        head = cls(w.shape[1], w.shape[0], device=w.device, dtype=w.dtype)
        with torch.no_grad():
            head.weight.copy_(w)
            head.bias.copy_(linear.bias.detach() if linear.bias is not None else torch.zeros_like(head.bias))
        head.weight.requires_grad_(not freeze_linear)
        head.bias.requires_grad_(not freeze_linear)
        return head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * super().forward(features)

    def weight_matrix(self) -> torch.Tensor:
        """Effective classifier weights ``scale[:, None] * W`` (C, D)."""
        return self.scale[:, None] * self.weight


class TukeyHead(nn.Module):
    """Linear classifier on Tukey-transformed features (GLAG stage two): ``linear(tukey(f, lam))``; f (B, D) -> (B, C).

    GLAG trains its stage-two classifier on Tukey-space features (GLAG Eq. 5), so the saved model
    applies the transform in its head and ``model(x)`` on images equals what the AFG stage evaluated.
    ``linear`` holds W (C, D) and b; ``tukey_lambda`` is a buffer, so it is saved with the weights. The
    transform's gradient is infinite at 0: the head is trained on pre-transformed features (AFG) and
    used for inference, not trained end to end.
    """

    kind = "tukey_linear"

    def __init__(self, feature_dim: int, num_classes: int, device=None, dtype=None, tukey_lambda: float = 0.5) -> None:
        super().__init__()
        self.linear = LinearHead(feature_dim, num_classes, device=device, dtype=dtype)
        self.register_buffer("tukey_lambda", torch.tensor(float(tukey_lambda), device=device, dtype=dtype))

    @classmethod
    def from_linear(cls, linear: nn.Linear, tukey_lambda: float = 0.5) -> TukeyHead:
        """Tukey head around ``linear`` itself (the stage-one classifier, trained further by the AFG stage)."""
        if not isinstance(linear, LinearHead) or isinstance(linear, LWSHead):
            raise ValueError(f"TukeyHead.from_linear needs a LinearHead, got {type(linear).__name__}")
        w = linear.weight
        head = cls(w.shape[1], w.shape[0], device=w.device, dtype=w.dtype, tukey_lambda=tukey_lambda)
        head.linear = linear
        return head

    @property
    def feature_dim(self) -> int:
        return self.linear.in_features

    @property
    def num_classes(self) -> int:
        return self.linear.out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(tukey(features, float(self.tukey_lambda)))

    def weight_matrix(self) -> torch.Tensor:
        """Classifier weights (C, D), acting on Tukey-space features."""
        return self.linear.weight


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "linear_nobias": BiasFreeLinearHead, "cosine": CosineHead,
                                     "lws": LWSHead, "tukey_linear": TukeyHead}


def create_head(kind: HeadKind, feature_dim: int, num_classes: int, device=None, dtype=None) -> nn.Module:
    """Fresh head of ``kind`` mapping (B, feature_dim) features to (B, num_classes) outputs."""
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; valid heads: {sorted(HEADS)}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return HEADS[kind](feature_dim, num_classes, device=device, dtype=dtype)


class HeadedModel(nn.Module):
    """Base of every ltlab model: ``forward(x) = forward_head(forward_features(x))``.

    Subclasses build their backbone, set ``feature_dim`` (D) and call ``_build_head``; they
    implement ``forward_features(x) -> (B, D)`` (pooled, post-ReLU, so >= 0).
    ``num_classes`` and ``head_kind`` are read from the current head, so swapping the head
    (``reset_classifier`` / ``set_head``) keeps them right.
    """

    feature_dim: int

    def _build_head(self, kind: HeadKind, num_classes: int) -> None:
        self.head = create_head(kind, self.feature_dim, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def head_kind(self) -> str:
        return self.head.kind

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Head outputs (B, C) from features (B, D); ``pre_logits=True`` returns the features."""
        return features if pre_logits else self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, head: HeadKind | None = None) -> None:
        """Replace the head by a freshly initialised one (``head=None`` keeps the current kind).

        The new head has the device and dtype of the old one (cRT re-initialises the classifier,
        Kang et al. 2020).
        """
        old = next(self.head.parameters())
        kind = self.head_kind if head is None else head
        self.head = create_head(kind, self.feature_dim, num_classes, device=old.device, dtype=old.dtype)

    def set_head(self, head: nn.Module) -> None:
        """Install a ready-made head of a ``HEADS`` kind (e.g. ``LWSHead.from_linear(model.head)``)."""
        if type(head) not in HEADS.values():
            raise ValueError(f"head must be one of {[c.__name__ for c in HEADS.values()]}, got {type(head).__name__}")
        if head.feature_dim != self.feature_dim:
            raise ValueError(f"head expects {head.feature_dim}-d features, the backbone gives {self.feature_dim}")
        self.head = head

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter outside ``self.head`` (what a second stage freezes)."""
        head_ids = {id(p) for p in self.head.parameters()}
        return (p for p in self.parameters() if id(p) not in head_ids)
