"""The plan of a sweep: presets x grid x seeds -> runs of one or two stages, validated before anything runs.

A run of a two-stage preset (GLAG, GCL, cRT, LWS, ...) is one job: stage one, then stage two with
``init_from`` = stage one's directory, in ``<name>_stage1`` / ``<name>_stage2``. Presets are read
through :func:`ltlab.launch.presets.read_preset`, so the grid and seeds apply as its overrides do: a plain key
to every stage, ``stage_one.KEY`` / ``stage_two.KEY`` to one stage.
"""
from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

MANIFEST = ".sweep.json"  # in out_root: every run a sweep planned there (for sweep_status)
_DOC = ("reported", "posthoc", "preset", "method")


def _preset_file(preset: str | os.PathLike | dict, tmp: str, i: int) -> Path:
    """A preset file for :func:`ltlab.launch.presets.read_preset` (a dict preset is written to ``tmp`` first)."""
    if not isinstance(preset, dict):
        return Path(preset)
    path = Path(tmp) / f"preset{i}.yaml"
    from ...config import check_plain
    path.write_text(yaml.safe_dump(check_plain(dict(preset), "preset"), sort_keys=False))  # fresh copies: no &aliases
    return path


def _check_grid(grid: dict[str, Sequence], base_params: dict) -> None:
    for k, v in grid.items():
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            raise ValueError(f"grid[{k!r}] must be a list of values, got {v!r}")
    staged = sorted(k for k in base_params if "." in k)
    if staged:
        raise ValueError(f"base_params {staged}: stage_one.KEY / stage_two.KEY belong in the grid (base_params are "
                         "defaults under every preset and stage)")


def _check_stage_keys(stages: list[dict], grid: dict[str, Sequence], preset: Any) -> None:
    two = sorted(k for k in grid if k.startswith("stage_two."))
    if len(stages) == 1 and two:
        raise ValueError(f"the grid sets {two} but preset {preset} has one stage; sweep one-stage and two-stage "
                         "presets separately (or use plain keys, which set every stage)")


def expand_stages(presets: Sequence[str | os.PathLike | dict] | None = None, grid: dict[str, Sequence] | None = None,
                  base_params: dict | None = None, seeds: Sequence[int] | None = None) -> list[list[dict]]:
    """The stages of every run: ``base_params`` < preset < grid point < seed (later wins).

    presets: YAML files or dicts in the same format (``stage_two:`` makes a two-stage run); grid: name ->
    list of values (product), where ``stage_one.KEY`` / ``stage_two.KEY`` set one stage and a plain key
    every stage. Returns one list of stage parameter dicts per run, presets outermost, seeds innermost.
    """
    from ..presets import read_preset
    grid, base = dict(grid or {}), dict(base_params or {})
    _check_grid(grid, base)
    points = [dict(zip(grid, vals)) for vals in itertools.product(*(list(v) for v in grid.values()))]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, preset in enumerate(presets or [{}]):
            path = _preset_file(preset, tmp, i)
            _check_stage_keys(read_preset(path), grid, preset if isinstance(preset, dict) else path)
            for g in points:
                for s in (list(seeds) if seeds is not None else [None]):
                    over = {**g, **({"seed": int(s)} if s is not None else {})}
                    try:
                        stages = read_preset(path, over, announce=not out)
                    except ValueError as exc:
                        raise ValueError(f"preset {preset if isinstance(preset, dict) else path}: {exc}") from exc
                    if isinstance(preset, dict) and "preset" not in preset:
                        for st in stages:
                            st.pop("preset", None)
                    out.append([{**base, **st} for st in stages])
    return out


def check_stages(configs: list) -> None:
    """Refuse a stage two that cannot start from its stage one (``RunConfig`` objects, stage one first):
    ``Stage.check_stage_one`` of stage two's stage, the checks ``ltlab.run`` makes when stage two starts,
    so a bad grid fails before stage one trains."""
    from ...stages import get_stage
    if len(configs) < 2:
        return
    one, two = configs
    get_stage(two.stage).check_stage_one(one, two)


def validate_stages(combos: list[list[dict]]) -> list[list]:
    """RunConfig of every stage of every run; one ValueError listing every bad run (nothing has run)."""
    from ...config import RunConfig
    configs, errors = [], []
    for i, stages in enumerate(combos):
        where = ""
        try:
            cfgs = []
            for j, params in enumerate(stages):
                where = "stage two: " if j else ("stage one: " if len(stages) > 1 else "")
                extra = {"init_from": params.get("init_from") or "<stage one>"} if j else {}
                cfgs.append(RunConfig(**{**{k: v for k, v in params.items() if k != "run_dir"}, **extra}))
            where = ""
            check_stages(cfgs)
            configs.append(cfgs)
        except ValueError as exc:
            errors.append(f"  combination {i} {table_row(stages)}: {where}{exc}")
    if errors:
        raise ValueError("sweep: invalid parameters, nothing was run:\n" + "\n".join(errors))
    return configs


def check_data(configs: list[list]) -> None:
    """:func:`ltlab.build.check_data` once per distinct (dataset, root, dataset_params) of the runs' first stages,
    so a sweep whose data is missing stops here instead of starting every run to fail alike. For executors
    that run here; a cluster job checks on its node."""
    from ...build import check_data as check_stage_data
    seen = set()
    for cfgs in configs:
        first = cfgs[0]
        key = json.dumps([first.dataset, first.root, first.dataset_params], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            check_stage_data(first, note=", nothing was run")


def table_row(stages: list[dict]) -> dict[str, Any]:
    """The parameter columns of a run: stage one's parameters, then ``stage_two.KEY`` for stage two's own
    (those it does not inherit from stage one, ``ltlab.launch.presets.INHERITED``); ``reported`` / ``posthoc`` are
    the final stage's (the preset's numbers)."""
    from ..presets import INHERITED
    row = dict(stages[0])
    if len(stages) > 1:
        two = stages[1]
        row.update({k: two.get(k, {}) for k in ("reported", "posthoc")})
        own = [k for k in two if k not in (*_DOC, *INHERITED, "run_dir", "init_from")]
        row.update({f"stage_two.{k}": two[k] for k in own})
    return row


def plan_runs(combos: list[list[dict]], root: Path, notebook: Path, kernel: str | None = None) -> list[dict]:
    """One job spec per run: ``run_id``, ``dirs`` (one per stage), ``stages`` (with ``run_dir`` and stage two's
    ``init_from``), ``notebook``, ``kernel`` and ``row`` (the table's parameter columns). Repeats raise."""
    from ..execute import spec
    from ..identity import run_name, stage_dirs
    specs = []
    for stages in combos:
        name = run_name(stages)  # the run's identity (ltlab.launch.identity): post-hoc included, aliases folded
        dirs = stage_dirs([{k: v for k, v in st.items() if k != "run_dir"} for st in stages], name, root)
        specs.append({**spec(stages, dirs, run_id=name, notebook=notebook, kernel=kernel), "row": table_row(stages)})
    names = [s["run_id"] for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"sweep: combinations repeat (same parameters twice): {dup}")
    return specs


# ---------------------------------------------------------------------- manifest
def read_manifest(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run planned in ``root`` (its ``.sweep.json``), in planning order: ``run_id``, ``dirs``, ``row``,
    ``notebook`` and, once submitted to a scheduler, ``job_id``. [] without a manifest."""
    path = Path(root) / MANIFEST
    if not path.exists():
        return []
    try:
        runs = json.loads(path.read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is corrupt ({exc}); delete it and start the sweep again to rewrite it") from exc
    return [r for r in runs if isinstance(r, dict) and "run_id" in r and "dirs" in r]


def update_manifest(root: Path, specs: list[dict], job_ids: dict[str, str] | None = None) -> Path:
    """Add (or update) ``specs`` and their scheduler job ids in ``root``'s manifest, atomically."""
    from ...runs import write_json
    runs = {r["run_id"]: r for r in read_manifest(root)}
    for s in specs:
        entry = runs.setdefault(s["run_id"], {"run_id": s["run_id"]})
        entry.update({"dirs": s["dirs"], "row": s["row"], "notebook": s["notebook"]})
        if job_ids and s["run_id"] in job_ids:
            entry["job_id"] = job_ids[s["run_id"]]
    return write_json(root / MANIFEST, {"runs": list(runs.values())})
