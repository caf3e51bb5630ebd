"""A sweep: presets x grid x seeds -> one run per combination, each through :func:`ltlab.launch.execute.execute`
on an executor (:mod:`ltlab.launch.sweep.executors`) -> a tidy results table. The public entry points are
:func:`ltlab.batch.sweep` (this :func:`sweep`) and ``python -m ltlab sweep``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import pandas as pd

from .tables import METRICS

def expand(presets: Sequence[str | os.PathLike | dict] | None = None, grid: dict[str, Sequence] | None = None,
           base_params: dict | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """Parameter dicts of a one-stage sweep: ``base_params`` < preset < grid point < seed (later wins).

    presets: one-stage YAML presets or dicts (a two-stage preset raises: :func:`ltlab.launch.sweep.plan.expand_stages`
    gives the stages of every run); grid: name -> list of values (product).
    """
    from .plan import expand_stages
    combos = expand_stages(presets, grid, base_params, seeds)
    if any(len(stages) > 1 for stages in combos):
        raise ValueError("expand: a preset has two stages; use ltlab.launch.sweep.plan.expand_stages (sweep runs both)")
    return [stages[0] for stages in combos]


def validate(combos: list[dict]) -> list:
    """RunConfig of every combination; one ValueError listing every bad combination (nothing has run)."""
    from .plan import validate_stages
    return [cfgs[0] for cfgs in validate_stages([[c] for c in combos])]


def find_notebook(notebook: str | os.PathLike) -> Path:
    """``notebook`` relative to the cwd (or absolute), else under the project's ``notebooks/`` (so ``"01_train.ipynb"``
    works from any folder, e.g. the 07_sweep notebook under plain papermill from the project root)."""
    from ...runs import project_home
    given = Path(notebook).expanduser()
    looked = [given.resolve()] + ([] if given.is_absolute() else [project_home() / "notebooks" / given])
    for nb in looked:
        if nb.is_file():
            return nb
    raise FileNotFoundError(f"sweep: notebook {notebook} does not exist (looked in {' and '.join(map(str, looked))})")


def sweep(notebook: str | os.PathLike, presets: Sequence[str | os.PathLike | dict] | None = None,
          grid: dict[str, Sequence] | None = None, base_params: dict | None = None, parallel: int | None = None,
          out_root: str | os.PathLike | None = None, seeds: Sequence[int] | None = None,
          kernel: str | None = None, timeout: float | None = None, *,
          executor: Literal["local", "submitit_local", "slurm"] = "local", slurm: dict[str, Any] | None = None,
          per_gpu: int | None = None, gpus: Sequence[int | str] | None = None, wait: bool = True,
          progress: bool = True) -> pd.DataFrame:
    """Execute ``notebook`` once per parameter combination (both stages of a two-stage preset in one job).

    Combinations: presets x grid x seeds over ``base_params`` (:func:`ltlab.launch.sweep.plan.expand_stages`; a grid
    key ``stage_two.KEY`` sets stage two only); every stage is validated with RunConfig and every stage two
    against its stage one first (ValueError, nothing runs or is submitted). Run directories
    ``<out_root>/<run_name>`` (out_root default ``runs/``) hold the run and the executed notebook.

    executor: ``"local"`` runs ``parallel`` worker processes here (default 1), or with GPUs ``per_gpu``
    per visible GPU (``gpus`` overrides which); ``"slurm"`` submits one job array through submitit with
    ``slurm`` options (``partition``, ``gpus_per_node``, ``timeout_min``, ``mem_gb``, ``array_parallelism``,
    ...; preempted or timed-out jobs are requeued and resume from the run's checkpoint);
    ``"submitit_local"`` runs the same jobs as processes here, ``parallel`` at a time. ``wait=False``
    (cluster executors) returns after submitting; watch with :func:`sweep_status`, start the sweep
    again for the table. ``progress``: print a line when the sweep starts and one per finished run (status,
    the parameters that vary, seconds, overall / many / medium / few, elapsed, time left).

    Returns one row per run: ``run_id``, the parameters (two-stage runs: stage one's, and
    ``stage_two.KEY`` for stage two's own), ``status`` (done | skipped | resumed | incomplete | failed |
    running: elsewhere, its heartbeat is fresh | queued: an earlier Slurm job still waits | submitted),
    ``overall``/``many``/``medium``/``few`` (final stage's last evaluated epoch or its post-hoc result,
    [0, 1]), ``stage1_<metric>`` for two-stage runs, ``epochs_done``, ``seconds``, ``attempt`` and
    ``job_id`` (cluster executors), ``notebook`` (the executed copy), ``error``, ``run_dir``.
    """
    from ...runs import runs_root
    from . import executors, plan
    from .status import run_numbers
    nb = find_notebook(notebook)
    backend = executors.make_executor(executor, parallel=parallel, per_gpu=per_gpu, gpus=gpus, slurm=slurm,
                                      timeout=timeout, wait=wait)
    try:
        combos = plan.expand_stages(presets, grid, base_params, seeds)
    except ValueError as exc:
        raise ValueError(f"sweep: invalid parameters, nothing was run:\n  {exc}") from exc
    configs = plan.validate_stages(combos)
    if executor != "slurm":
        plan.check_data(configs)
    root = Path(out_root).expanduser().resolve() if out_root else runs_root()
    specs = plan.plan_runs(combos, root, nb, kernel)
    results = executors.dispatch(backend, specs, root, wait, progress=progress, varying=varying_params(specs))
    keep = ("status", "error", "notebook", "seconds", "attempt", "job_id")
    rows = [{"run_id": s["run_id"], **s["row"], **{k: v for k, v in results[s["run_id"]].items() if k in keep},
             **run_numbers(s["dirs"]), "run_dir": s["dirs"][-1]} for s in specs]
    return _tidy(pd.DataFrame(rows), list(dict.fromkeys(k for s in specs for k in s["row"])))


def varying_params(specs: list[dict]) -> list[str]:
    """The parameter names whose values differ between the runs of a sweep (what tells its runs apart)."""
    keys = list(dict.fromkeys(k for s in specs for k in s["row"]))
    seen = {k: {json.dumps(s["row"].get(k), sort_keys=True, default=str) for s in specs} for k in keys}
    return [k for k in keys if len(seen[k]) > 1]


def _tidy(df: pd.DataFrame, param_cols: list[str]) -> pd.DataFrame:
    for c in param_cols:  # dict / list parameters as JSON text, so the table groups and exports cleanly
        df[c] = df[c].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
    for c in ("epochs_done", *METRICS, "seconds"):
        if c not in df:
            df[c] = float("nan")
    for c in ("notebook", "error"):
        df[c] = df[c].fillna("") if c in df else ""
    stage1 = [f"stage1_{m}" for m in METRICS if f"stage1_{m}" in df]
    cluster = "job_id" in df and df["job_id"].notna().any()
    extra = [c for c in ("attempt", "job_id") if c in df] if cluster else []
    front = ["run_id", *param_cols, "status", *METRICS, *stage1, "epochs_done", "seconds", *extra, "notebook", "error",
             "run_dir"]
    return df[list(dict.fromkeys(front))]
