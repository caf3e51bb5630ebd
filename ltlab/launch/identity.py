"""The identity of a run, computed once, here: what it is (:func:`run_key`) and what it is called.

A run is one or two stages (RunConfig parameter dicts, stage one first). Its key holds everything that changes
its outputs: every stage's resolved RunConfig (flat stage keywords such as ``classifier_init`` folded into
``stage_params`` and the stage's defaults filled in first, so the two spellings are one run) without the
fields that may change between attempts (``RESUME_FREE_FIELDS``: device, progress, run_dir, ...), plus the
final stage's ``posthoc`` step, whose result the run reports.

One naming scheme, ``<dataset>_<loss>_if<IF>_s<seed>_<hash of the key>``: :func:`run_name` (a sweep's
run directory, found again when the sweep starts again) and :func:`fresh_name` (the same with the time in
front: ``python -m ltlab`` and a notebook without ``run_dir``, a new directory every time). A two-stage run
lives in ``<name>_stage1`` / ``<name>_stage2`` (:func:`stage_dirs`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

STAGE_ONE_PLACEHOLDER = "<stage one>"  # a stage two's init_from before stage one has a directory


def _stages(params_or_stages: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [params_or_stages] if isinstance(params_or_stages, dict) else list(params_or_stages)


def run_key(stages: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What makes the outputs of a run (one parameter dict, or its stages): per stage, the resolved RunConfig
    without its resume-free fields, ``posthoc`` kept; a stage two's ``init_from`` (its stage one, already in
    the key) left out. Invalid parameters raise RunConfig's ValueError."""
    from ..config import RESUME_FREE_FIELDS, RunConfig

    out = []
    for i, params in enumerate(_stages(stages)):
        given = {k: v for k, v in params.items() if k not in ("run_dir", "run_id", "resume")}
        if i:
            given["init_from"] = STAGE_ONE_PLACEHOLDER
        config = RunConfig(**given)
        key = {k: v for k, v in config.fingerprint().items() if k not in RESUME_FREE_FIELDS}
        if i:
            key.pop("init_from", None)
        key["posthoc"] = config.posthoc
        out.append(key)
    return out


def run_hash(stages: dict[str, Any] | list[dict[str, Any]]) -> str:
    """10 hex digits of the SHA-1 of :func:`run_key` (canonical JSON)."""
    text = json.dumps(run_key(stages), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def run_label(params: dict[str, Any]) -> str:
    """``<dataset>_<loss>_if<IF>_s<seed>`` (RunConfig defaults for what is not given): the readable part."""
    from ..runs import run_label as label

    return label(params)


def run_name(stages: dict[str, Any] | list[dict[str, Any]]) -> str:
    """The deterministic name of a run: ``<label of stage one>_<run_hash>``."""
    stages = _stages(stages)
    return f"{run_label(stages[0])}_{run_hash(stages)}"


def fresh_name(stages: dict[str, Any] | list[dict[str, Any]]) -> str:
    """``<YYYYmmdd-HHMMSS>_<run_name>``: a new name each second, for runs started by hand."""
    from ..runs import timestamp

    return f"{timestamp()}_{run_name(stages)}"


def stage_dirs(stages: list[dict[str, Any]], name: str, root: Path) -> list[str]:
    """The run directory of each stage: ``<root>/<name>`` for one stage, ``<root>/<name>_stage1`` / ``_stage2``
    for two, where a stage gives no ``run_dir``. With one ``run_dir`` X given for both stages (``-p run_dir X``),
    stage one is X and stage two ``X_stage2`` (``<Y>_stage2`` when X is ``<Y>_stage1``); an X that does not
    exist while ``X_stage1`` does (a named pair given by its base) means that pair."""
    dirs = [s.get("run_dir") for s in stages]
    one = dirs[0]
    if len(stages) > 1 and one and dirs[1] == one and not Path(one).exists() \
            and Path(one.rstrip("/") + "_stage1").is_dir():
        dirs = [one.rstrip("/") + "_stage1"] * len(stages)
    out = []
    for i, given in enumerate(dirs):
        suffix = "" if len(stages) == 1 else f"_stage{i + 1}"
        if not given:
            out.append(str(root / ((stages[i].get("run_id") or name) + suffix)))
        elif i > 0 and given == out[0]:
            first = given.rstrip("/")
            out.append((first[:-len("_stage1")] if first.endswith("_stage1") else first) + suffix)
        else:
            out.append(str(given))
    return out
