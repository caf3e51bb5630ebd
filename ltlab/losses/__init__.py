"""Losses for long-tailed recognition: a registry of baselines and the five seed methods."""
from . import functional
from .base import CosineMarginLoss, LossBase
from .registry import LOSSES, create_loss, loss_hparams

__all__ = ["LOSSES", "create_loss", "loss_hparams", "functional", "LossBase", "CosineMarginLoss"]
