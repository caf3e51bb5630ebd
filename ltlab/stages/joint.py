"""Joint training: the whole model learns, from scratch or fine-tuned from an ``init_from`` run."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..stage_options import STAGE_OPTIONS
from .base import Stage, StageData, StageParts

if TYPE_CHECKING:
    from ..config import RunConfig


class JointStage(Stage):
    """Every parameter trains (the usual stage one). With ``init_from`` the model starts from that run, its head
    shaped by ``classifier_init`` / ``head='lws'`` as in a second stage, nothing frozen."""

    options = STAGE_OPTIONS["joint"]

    def build(self, config: RunConfig, data: StageData, device: torch.device) -> StageParts:
        return StageParts(self.build_model(config, data.train).to(device), self.loss(config, data, device))
