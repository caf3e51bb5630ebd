"""Presets: YAML parameter files (one per paper recipe) read into RunConfig parameters, and two-stage recipes.

A preset holds RunConfig parameters, documentation keys (``PRESET_META``) and optionally ``stage_two:``,
the parameters of a second stage that inherits ``INHERITED`` from the first (docs/presets.md).
:func:`read_preset` gives the stages of one or more presets with overrides applied; ``python -m ltlab``
and sweeps read presets through it. :func:`stage_two_config` builds a
second stage on a finished run the same way.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..config import RunConfig, load_yaml_file, parse_value
from ..runs import as_run, project_home

if TYPE_CHECKING:
    from ..runs import Run

# what a stage two takes over from its stage one (it must see the same data through the same model)
INHERITED = ("dataset", "root", "imbalance_factor", "imbalance_profile", "data_seed", "dataset_params",
             "val_per_class", "model", "model_params", "seed", "device", "precision", "channels_last", "compile",
             "num_workers", "eval_every", "progress", "method", "preset", "sync_bn",
             "checkpoint_every_steps")
STAGE_TWO = "classifier"  # the stage a second stage is unless it says otherwise


def parse_params(pairs: list[list[str]] | None, flag: str = "-p") -> dict[str, Any]:
    """``-p key value`` pairs; each value is read as YAML (numbers, lists, dicts, None/null, True/False), every
    float spelling a float (``5e-4``; :func:`ltlab.config.parse_value`). A value that is not valid YAML gives
    one ValueError naming the option."""
    out = {}
    for key, raw in pairs or []:
        try:
            out[key] = parse_value(raw, key)  # YAML 1.2 core schema, no aliases or tags; errors name -p KEY
        except ValueError as exc:
            msg = str(exc)
            msg = f"{flag}{msg[2:]}" if flag != "-p" and msg.startswith("-p ") else msg
            raise ValueError(msg) from None
    return out


# keys a preset file may hold besides RunConfig fields (documentation and the second stage)
PRESET_META = ("description", "stage_one_reported", "stage_two")
_PATH_KEYS = ("train_list", "val_list", "test_list", "list_file", "weights_path")


def preset_keys() -> list[str]:
    """Every key a preset file may hold: the RunConfig parameters plus ``PRESET_META``."""
    return RunConfig.parameter_names() + list(PRESET_META)


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    data = load_yaml_file(p)  # YAML 1.2 core schema; no aliases, duplicate keys or tags; a regular file only
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"preset {p} must be a YAML mapping of parameter: value")
    valid = preset_keys()
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"preset {p}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")
    two = data.get("stage_two")
    if two is not None:
        if not isinstance(two, dict):
            raise ValueError(f"preset {p}: stage_two must be a mapping of RunConfig parameters")
        bad = sorted(set(two) - set(valid) | set(two) & {"init_from", "reported", "posthoc", *PRESET_META})
        if bad:
            raise ValueError(f"preset {p}: stage_two may not hold {bad} (init_from is set to the stage-one run; "
                             f"reported/posthoc/description are top-level); valid keys: {', '.join(valid)}")
    return data


def _absolute(v: Any, base: str | Path) -> Any:
    """A relative path string made absolute against ``base`` (``~`` expanded); anything else as it is."""
    if not isinstance(v, str) or not v or Path(v).expanduser().is_absolute():
        return v
    return str(Path(base) / Path(v).expanduser())


def resolve_paths(params: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """``root``, ``run_dir``, ``init_from`` and the list / weights paths in ``dataset_params`` /
    ``model_params`` made absolute against ``base`` (a notebook's kernel runs in ``notebooks/``)."""
    out = dict(params)
    climbs = out.get("run_dir")
    if isinstance(climbs, str) and not Path(climbs).expanduser().is_absolute() and ".." in Path(climbs).parts:
        raise ValueError(f"run_dir={climbs!r}: a relative run_dir may not climb out with '..'; give an absolute "
                         "path to write there")
    for key in ("root", "run_dir", "init_from"):
        if out.get(key) is not None:
            out[key] = _absolute(out[key], base)
    for key in ("dataset_params", "model_params"):
        if isinstance(out.get(key), dict):
            out[key] = {k: _absolute(v, base) if k in _PATH_KEYS else v for k, v in out[key].items()}
    return out


def resolve_analysis_paths(params: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """An analysis notebook's paths, by the rule training uses (relative to the folder the command runs in,
    ``base``): ``output_dir`` always; ``run_dirs`` entries and ``*run_dir`` values when that path exists
    there (else left as given: a run name under ``runs/``, which :func:`ltlab.load_runs` finds)."""
    def run_path(v):
        found = _absolute(v, base)
        return found if found != v and Path(found).exists() else v

    out = dict(params)
    for key, v in out.items():
        if key == "output_dir":
            out[key] = _absolute(v, base)
        elif key == "run_dirs":
            out[key] = [run_path(x) for x in v] if isinstance(v, list) else run_path(v)
        elif key.endswith("run_dir"):
            out[key] = run_path(v)
    return out


def read_preset(paths: str | Path | list[str | Path], overrides: dict[str, Any] | None = None, *,
                announce: bool = True) -> list[dict[str, Any]]:
    """The stages of one or more presets (later files win) as RunConfig parameter dicts, overrides applied.

    A preset holds the parameters of its (first) stage, documentation keys and optionally
    ``stage_two:``, the second stage's parameters: it inherits ``INHERITED`` from stage one (data,
    model, execution), starts as ``stage: classifier`` (``STAGE_TWO``) and gets ``init_from`` when stage one
    has run. Top-level ``reported``/``posthoc`` belong to the final stage; ``stage_one_reported`` to
    stage one. Relative data paths are relative to the project folder. ``overrides``: a plain key
    applies to every stage, ``stage_one.KEY`` / ``stage_two.KEY`` to one. An ``epochs`` override below the
    preset's scales the stage's warm-up, milestones and DRW start (:func:`shorten_schedule`), printing one
    line per stage to stderr when ``announce``.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("read_preset needs at least one preset file")
    data: dict[str, Any] = {}
    for path in paths:
        d = _read_yaml(path)
        two = {**(data.get("stage_two") or {}), **(d.get("stage_two") or {})}
        data.update(d)
        if two:
            data["stage_two"] = two
    data = resolve_paths(data, project_home())
    data.pop("description", None)
    two, s1_reported = data.pop("stage_two", None), data.pop("stage_one_reported", None)
    data.setdefault("preset", Path(paths[-1]).name)
    stages = [data]
    if two is not None:
        stage_two = {**{k: data[k] for k in INHERITED if k in data}, "stage": STAGE_TWO,
                     **resolve_paths(two, project_home()), "reported": data.get("reported", {}),
                     "posthoc": data.get("posthoc", {})}
        stages = [{**data, "reported": s1_reported or {}, "posthoc": {}}, stage_two]
    return _apply_overrides(stages, overrides or {}, announce)


def _apply_overrides(stages: list[dict[str, Any]], overrides: dict[str, Any], announce: bool) -> list[dict[str, Any]]:
    fields = RunConfig.parameter_names()
    names = ["stage_one", "stage_two"][:len(stages)]
    out = [dict(s) for s in stages]
    given: list[set[str]] = [set() for _ in out]
    for key, value in overrides.items():
        prefix, _, name = key.rpartition(".")
        if name not in fields or (prefix and prefix not in names):
            where = " or ".join(f"{n}.KEY" for n in names)
            raise ValueError(f"unknown parameter {key!r}: use a RunConfig field (every stage) or {where}; "
                             f"valid fields: {', '.join(fields)}")
        for i, stage in enumerate(out):
            if not prefix or names[i] == prefix:
                stage[name] = value
                given[i].add(name)
    for i, (old, stage) in enumerate(zip(stages, out)):
        note = shorten_schedule(stage, old.get("epochs", RunConfig.defaults()["epochs"]), given[i])
        if note and announce:
            where = f"{names[i]}: " if len(out) > 1 else ""
            print(f"ltlab: {where}{note}", file=sys.stderr)
    return out


# epoch-valued schedule fields a shortened run scales with its epochs (loss_params['drw_start'] too)
EPOCH_FIELDS = ("warmup_epochs", "milestones", "drw_start")


def shorten_schedule(stage: dict[str, Any], preset_epochs: Any, given: set[str]) -> str:
    """Scale the epoch-valued schedule fields of ``stage`` (``EPOCH_FIELDS``, ``loss_params['drw_start']``) by
    ``epochs / preset_epochs`` when ``epochs`` was given (``-p epochs 2``) below the preset's and the field was
    not: ``floor(v * epochs / preset_epochs)``, warm-up kept below ``epochs``, milestones deduplicated. Changes
    ``stage`` in place; returns the line saying what changed ("" when nothing did). A value given with ``-p``
    is kept as given (RunConfig refuses it when invalid)."""
    new = stage.get("epochs")
    if "epochs" not in given or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1
                                        for e in (new, preset_epochs)) or new >= preset_epochs:
        return ""

    def scale(v: Any) -> Any:
        return min(v * new // preset_epochs, new - 1) if isinstance(v, int) and not isinstance(v, bool) else v

    changes = []
    for key in EPOCH_FIELDS:
        v = stage.get(key)
        if key in given or v in (None, 0, []):
            continue
        stage[key] = sorted({scale(m) for m in v}) if isinstance(v, list) else scale(v)
        changes.append(f"{key} {v} -> {stage[key]}")
    lp = stage.get("loss_params")
    if "loss_params" not in given and isinstance(lp, dict) and isinstance(lp.get("drw_start"), int):
        stage["loss_params"] = {**lp, "drw_start": scale(lp["drw_start"])}
        changes.append(f"loss_params['drw_start'] {lp['drw_start']} -> {stage['loss_params']['drw_start']}")
    if not changes:
        return ""
    return (f"epochs {preset_epochs} -> {new}: scaled {', '.join(changes)} (x {new}/{preset_epochs}; "
            "give them with -p to choose)")


def load_preset(path: str | Path) -> dict[str, Any]:
    """Parameters of a one-stage YAML preset (documentation keys dropped; ``reported`` kept as a field).

    Two-stage presets raise: run them with :func:`ltlab.launch.cli.run_preset` or read them with :func:`read_preset`.
    """
    stages = read_preset(path)
    if len(stages) > 1:
        raise ValueError(f"preset {path} has two stages; use ltlab.launch.cli.run_preset (or read_preset) to run both")
    return stages[0]


def stage_two_config(stage_one: Run | str | os.PathLike, **params: Any) -> RunConfig:
    """Config of a second stage on the finished run ``stage_one``: its ``INHERITED`` fields, ``init_from`` = its
    directory, ``stage=STAGE_TWO`` unless given, then ``params``."""
    src = as_run(stage_one)
    base = {k: src.config[k] for k in INHERITED if k in src.config}
    return RunConfig(**{**base, "stage": STAGE_TWO, "init_from": str(src.dir), **params})
