"""GLAG stage two, by its import path before issue 15: the stage now lives in :mod:`ltlab.stages.afg` and its head
in :mod:`ltlab.models.heads`."""
from .models.heads import TukeyHead
from .stages.afg import AFG_DEFAULTS, AFGLoader, AFGLoss, AFGStage, FeatureLoader

__all__ = ["AFG_DEFAULTS", "AFGLoader", "AFGLoss", "AFGStage", "FeatureLoader", "TukeyHead"]
