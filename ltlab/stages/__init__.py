"""Stages: what a run of the one training loop trains, picked by ``RunConfig.stage`` from :data:`STAGES`.

``joint`` (the whole model; :mod:`.joint`), ``classifier`` (the head on a frozen stage-one backbone: cRT,
LWS, GCL stage two; :mod:`.classifier`) and ``afg`` (GLAG stage two; :mod:`.afg`). Each is a
:class:`~ltlab.stages.base.Stage`; its options live in ``RunConfig.stage_params``. Adding a stage takes a
file with a Stage subclass and one entry here.
"""
from __future__ import annotations

import importlib
from typing import Any

from ..posthoc import (apply_posthoc, logit_adjust_accuracy, pn_accuracy,  # noqa: F401 - their import path
                       scaled_test_logits, shot_scores, tau_normalization)  # before issue 15 (now ltlab.posthoc)
from .afg import AFGStage
from .base import Stage, StageData, StageParts
from .classifier import ClassifierStage
from .joint import JointStage

STAGES: dict[str, Stage] = {s.name: s for s in (JointStage(), ClassifierStage(), AFGStage())}

__all__ = ["STAGES", "Stage", "StageData", "StageParts", "get_stage", "alias_names", "fold_aliases"]


def get_stage(name: str) -> Stage:
    """The registered stage ``name``; ValueError listing the valid ones."""
    if name not in STAGES:
        raise ValueError(f"RunConfig.stage={name!r}: must be one of {', '.join(STAGES)}")
    return STAGES[name]


def alias_names() -> list[str]:
    """Flat RunConfig keywords that set ``stage_params``: ``classifier_init``, ``backbone_mode``, ``afg_params``, ..."""
    return list(dict.fromkeys(a for s in STAGES.values() for a in s.aliases))


def _alias_default(flat: str) -> Any:
    for s in STAGES.values():
        if flat in s.aliases:
            key = s.aliases[flat]
            return {} if key is None else s.defaults[key]
    raise KeyError(flat)


def fold_aliases(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with flat stage keywords moved into ``stage_params`` (RunConfig keyword dicts).

    A keyword of the run's stage sets its ``stage_params`` entry (``afg_params``, a dict, sets several); one
    that belongs to other stages is dropped when it holds their default (so every old config.json reads
    back) and refused otherwise, as is a value that contradicts ``stage_params``.
    """
    flat = [k for k in params if k in alias_names()]
    if not flat or not isinstance(params.get("stage_params", {}), dict):
        return params  # nothing to fold, or a stage_params RunConfig.validate refuses anyway
    out = dict(params)
    stage = STAGES.get(out.get("stage", "joint"))
    folded = dict(out.get("stage_params") or {})
    for name in flat:
        value = out.pop(name)
        if stage is None or name not in stage.aliases:
            if value != _alias_default(name):
                owners = [s.name for s in STAGES.values() if name in s.aliases]
                raise ValueError(f"RunConfig.{name}={value!r}: an option of stage {' / '.join(owners)}; this run "
                                 f"has stage={out.get('stage', 'joint')!r}")
            continue
        key = stage.aliases[name]
        if key is None and not isinstance(value, dict):
            raise ValueError(f"RunConfig.{name}={value!r}: must be a dict of stage options, e.g. {{'k': 3}}")
        for k, v in (value.items() if key is None else [(key, value)]):
            if k in folded and folded[k] != v:
                raise ValueError(f"RunConfig.{name} sets {k}={v!r} but stage_params has {k}={folded[k]!r}; "
                                 "give it once")
            folded[k] = v
    out["stage_params"] = folded
    return out


_MOVED = {"stage_two_config": "ltlab.launch.presets", "INHERITED": "ltlab.launch.presets", "run_config": "ltlab.config"}


def __getattr__(name: str) -> Any:
    """Names ``ltlab.stages`` held before issue 15, resolved on first use: RunConfig imports this package to
    validate stages, so this package cannot import ``ltlab.config`` (or ``ltlab.presets``) itself."""
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'ltlab.stages' has no attribute {name!r}")
