"""Models: CIFAR ResNets, a small convnet, torchvision ResNets, and the linear / cosine / LWS / Tukey-linear heads.

Every model has ``forward_features(x) -> (B, D)``, ``forward_head(features, pre_logits=False) ->
(B, C)``, ``reset_classifier(num_classes, head=None)``, ``feature_dim``, ``num_classes``,
``head_kind``, a ``head`` submodule and ``backbone_parameters()``.
"""
from __future__ import annotations

from .heads import HEADS, BiasFreeLinearHead, CosineHead, HeadedModel, LinearHead, LWSHead, TukeyHead, create_head
from .registry import MODELS, create_model

__all__ = [
    "MODELS",
    "HEADS",
    "BiasFreeLinearHead",
    "create_model",
    "create_head",
    "HeadedModel",
    "LinearHead",
    "CosineHead",
    "LWSHead",
    "TukeyHead",
]
