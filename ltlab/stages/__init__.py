"""Stages: what a run of the one training loop trains, picked by ``RunConfig.stage`` from :data:`STAGES`.

``joint`` (the whole model; :mod:`.joint`), ``classifier`` (the head on a frozen stage-one backbone: cRT,
LWS, GCL stage two; :mod:`.classifier`) and ``afg`` (GLAG stage two; :mod:`.afg`). Each is a
:class:`~ltlab.stages.base.Stage`; its options live in ``RunConfig.stage_params`` and are declared as plain
data in :mod:`ltlab.stage_options` (what RunConfig checks without importing this package). Adding a stage
takes an entry there, a file with a Stage subclass and one entry here.
"""
from __future__ import annotations

from .afg import AFGStage
from .base import Stage, StageData, StageParts
from .classifier import ClassifierStage
from .joint import JointStage

STAGES: dict[str, Stage] = {s.name: s for s in (JointStage(), ClassifierStage(), AFGStage())}

__all__ = ["STAGES", "Stage", "StageData", "StageParts", "get_stage"]


def get_stage(name: str) -> Stage:
    """The registered stage ``name``; ValueError listing the valid ones."""
    if name not in STAGES:
        raise ValueError(f"RunConfig.stage={name!r}: must be one of {', '.join(STAGES)}")
    return STAGES[name]
