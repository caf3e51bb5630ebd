"""Classifier re-training on a frozen backbone: cRT, LWS (Kang et al. 2020) and GCL's stage two (paper 001).

The stage-one run (``init_from``) gives the backbone, frozen; the head trains with the run's loss and
sampler. Recipes as options: cRT ``classifier_init='reset'`` (a fresh linear head, class-aware sampler,
``backbone_mode='train'``: the decoupling code keeps the frozen backbone in ``train()``, so BN statistics
follow the balanced batches); LWS ``head='lws'`` (the stage-one W, b frozen, per-class scales trained;
``lws_freeze_linear=False`` trains them too, MiSLAS); GCL stage two ``classifier_init='stage_one'`` with
``backbone_mode='eval'`` (BN statistics fixed, as its code's ``model.eval()``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..stage_options import STAGE_OPTIONS
from .base import Stage, StageData, StageParts, freeze_backbone, head_only, train_all

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data import LTDataset
    from ..models import HeadedModel


class ClassifierStage(Stage):
    """A frozen stage-one backbone and a head that trains (see the module docstring)."""

    options = STAGE_OPTIONS["classifier"]

    def build_model(self, config: RunConfig, train_ds: LTDataset) -> HeadedModel:
        return freeze_backbone(super().build_model(config, train_ds))

    def build(self, config: RunConfig, data: StageData, device: torch.device) -> StageParts:
        model = self.build_model(config, data.train).to(device)
        mode = head_only if self.params(config)["backbone_mode"] == "eval" else train_all
        return StageParts(model, self.loss(config, data, device), train_mode=mode)
