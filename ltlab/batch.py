"""Papermill sweeps: presets x grid x seeds -> one notebook execution per run -> a tidy results table.

Each run executes in its own process (papermill, which starts its own kernel) with its own run
directory ``<out_root>/<name>`` (two-stage presets: ``<name>_stage1`` and ``<name>_stage2``, run one
after the other in the same job); the name is derived from the parameters, so a sweep started again
finds its runs: complete ones are skipped, interrupted ones (checkpoint present) are resumed, failed
ones are reported (notebook path + error) without stopping the others. Every parameter combination is
validated with RunConfig before anything runs. Executors (:mod:`ltlab.sweeps`): ``local`` worker
processes spread over the visible GPUs, ``slurm`` (one job array through submitit, requeued on
preemption) and ``submitit_local``; :func:`sweep_status` reads where a sweep stands from its run
directories alone.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal, Sequence

import pandas as pd

from .sweeps.job import run_state  # noqa: F401 - public: complete / partial / new, from a run directory
from .sweeps.plan import run_name  # noqa: F401 - public: the deterministic directory name of a run
from .sweeps.status import sweep_status  # noqa: F401 - public: where a sweep stands, per run

METRICS = {"overall": "acc", "many": "acc_many", "medium": "acc_medium", "few": "acc_few"}
# table columns that are documentation, not something to group results by
_DOC_COLUMNS = ("method", "preset", "reported", "posthoc", "description")


def expand(presets: Sequence[str | os.PathLike | dict] | None = None, grid: dict[str, Sequence] | None = None,
           base_params: dict | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """Parameter dicts of a one-stage sweep: ``base_params`` < preset < grid point < seed (later wins).

    presets: one-stage YAML presets or dicts (a two-stage preset raises: :func:`ltlab.sweeps.plan.expand_stages`
    gives the stages of every run); grid: name -> list of values (product).
    """
    from .sweeps.plan import expand_stages
    combos = expand_stages(presets, grid, base_params, seeds)
    if any(len(stages) > 1 for stages in combos):
        raise ValueError("expand: a preset has two stages; use ltlab.sweeps.plan.expand_stages (sweep runs both)")
    return [stages[0] for stages in combos]


def validate(combos: list[dict]) -> list:
    """RunConfig of every combination; one ValueError listing every bad combination (nothing has run)."""
    from .sweeps.plan import validate_stages
    return [cfgs[0] for cfgs in validate_stages([[c] for c in combos])]


def find_notebook(notebook: str | os.PathLike) -> Path:
    """``notebook`` relative to the cwd (or absolute), else under the project's ``notebooks/`` (so ``"01_train.ipynb"``
    works from any folder, e.g. the 07_sweep notebook under plain papermill from the project root)."""
    from .runs import project_home
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
          per_gpu: int | None = None, gpus: Sequence[int | str] | None = None, wait: bool = True) -> pd.DataFrame:
    """Execute ``notebook`` once per parameter combination (both stages of a two-stage preset in one job).

    Combinations: presets x grid x seeds over ``base_params`` (:func:`ltlab.sweeps.plan.expand_stages`; a grid
    key ``stage_two.KEY`` sets stage two only); every stage is validated with RunConfig and every stage two
    against its stage one first (ValueError, nothing runs or is submitted). Run directories
    ``<out_root>/<run_name>`` (out_root default ``runs/``) hold the run and the executed notebook.

    executor: ``"local"`` runs ``parallel`` worker processes here (default 1), or with GPUs ``per_gpu``
    per visible GPU (``gpus`` overrides which); ``"slurm"`` submits one job array through submitit with
    ``slurm`` options (``partition``, ``gpus_per_node``, ``timeout_min``, ``mem_gb``, ``array_parallelism``,
    ...; preempted or timed-out jobs are requeued and resume from the run's checkpoint);
    ``"submitit_local"`` runs the same jobs as processes here, ``parallel`` at a time. ``wait=False``
    (cluster executors) returns after submitting; watch with :func:`sweep_status`, start the sweep
    again for the table.

    Returns one row per run: ``run_id``, the parameters (two-stage runs: stage one's, and
    ``stage_two.KEY`` for stage two's own), ``status`` (done | skipped | resumed | incomplete | failed |
    running: elsewhere, its heartbeat is fresh | queued: an earlier Slurm job still waits | submitted),
    ``overall``/``many``/``medium``/``few`` (final stage's last evaluated epoch or its post-hoc result,
    [0, 1]), ``stage1_<metric>`` for two-stage runs, ``epochs_done``, ``seconds``, ``attempt`` and
    ``job_id`` (cluster executors), ``notebook`` (the executed copy), ``error``, ``run_dir``.
    """
    from .runs import runs_root
    from .sweeps import executors, plan
    from .sweeps.job import run_numbers
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
    results = executors.dispatch(backend, specs, root, wait)
    keep = ("status", "error", "notebook", "seconds", "attempt", "job_id")
    rows = [{"run_id": s["run_id"], **s["row"], **{k: v for k, v in results[s["run_id"]].items() if k in keep},
             **run_numbers(s["dirs"]), "run_dir": s["dirs"][-1]} for s in specs]
    return _tidy(pd.DataFrame(rows), list(dict.fromkeys(k for s in specs for k in s["row"])))


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


# ---------------------------------------------------------------------- summaries
_FINISHED = ("done", "skipped", "resumed")
_NOT_PARAMETERS = ("run_id", "status", "error", "notebook", "run_dir", "seconds", "epochs_done", "seed", "attempt",
                   "job_id", *_DOC_COLUMNS)


def _metric_columns(df: pd.DataFrame) -> list[str]:
    """The final stage's metrics, then stage one's (``stage1_<metric>``) where a two-stage run reported them."""
    return [*METRICS, *(c for c in (f"stage1_{m}" for m in METRICS) if c in df and df[c].notna().any())]


def _reported(value: Any) -> dict:
    if isinstance(value, str):
        value = json.loads(value) if value.startswith("{") else {}
    return value if isinstance(value, dict) else {}


def summarise(df: pd.DataFrame, by: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1; 0 for a single seed) over seeds of each group of ``by``.

    ``by`` defaults to the parameter columns that vary, except ``seed``. Only finished runs (done,
    skipped, resumed) count. Returns ``by``, ``n`` (finished runs), ``n_runs`` (all runs of the setting),
    ``<metric>_mean`` / ``<metric>_std`` per metric (default: overall/many/medium/few, plus
    ``stage1_<metric>`` of two-stage runs) and ``reported_<metric>`` (the preset's ``reported`` numbers,
    where given). All fractions in [0, 1] (reported numbers divided by 100).
    """
    metrics = _metric_columns(df) if metrics is None else list(metrics)
    if by is None:
        skip = {*_NOT_PARAMETERS, *metrics, *METRICS}
        by = [c for c in df.columns
              if c not in skip and not c.startswith("stage1_") and df[c].astype(str).nunique() > 1]
    by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"summarise: unknown column(s) {missing}; columns: {list(df.columns)}")
    rep = df["reported"].map(_reported) if "reported" in df else pd.Series([{}] * len(df), index=df.index)
    df = df.assign(_all="all", **{f"reported_{m}": rep.map(lambda d, m=m: d.get(m)).astype(float) / 100.0
                                  for m in METRICS})
    keys = by or ["_all"]
    ok = df[df["status"].isin(_FINISHED)] if "status" in df else df
    g = ok.groupby(keys, dropna=False, sort=True)
    out = df.groupby(keys, dropna=False, sort=True).size().rename("n_runs").to_frame()
    out.insert(0, "n", g.size().reindex(out.index, fill_value=0).astype(int))
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean().reindex(out.index)
        out[f"{m}_std"] = g[m].std(ddof=1).reindex(out.index).fillna(0.0)
    for m in METRICS:
        first = df.groupby(keys, dropna=False, sort=True)[f"reported_{m}"].first()
        if first.notna().any():
            out[f"reported_{m}"] = first
    return out.reset_index().drop(columns=["_all"], errors="ignore")


def format_table(summary: pd.DataFrame, metrics: Sequence[str] | None = None, percent: bool = True,
                 digits: int = 1) -> pd.DataFrame:
    """``mean ± std`` strings (percent by default) per metric with the preset's reported number beside it
    (``<metric> (reported)``), ``seeds`` = finished / all runs of the setting; grouping columns unchanged."""
    candidates = (*METRICS, *(f"stage1_{m}" for m in METRICS)) if metrics is None else metrics
    metrics = [m for m in candidates if f"{m}_mean" in summary]
    scale = 100.0 if percent else 1.0

    def num(v: float) -> str:
        return "–" if pd.isna(v) else f"{scale * v:.{digits}f}"

    derived = {"n", "n_runs", *(f"reported_{m}" for m in METRICS),
               *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))}
    out = summary[[c for c in summary.columns if c not in derived]].copy()
    if "n" in summary:
        out["seeds"] = [f"{a}/{b}" for a, b in zip(summary["n"], summary["n_runs"])] if "n_runs" in summary \
            else summary["n"]
    for m in metrics:
        out[m] = [f"{num(a)} ± {num(b)}" if pd.notna(a) else "–" for a, b in
                  zip(summary[f"{m}_mean"], summary[f"{m}_std"])]
        if f"reported_{m}" in summary:
            out[f"{m} (reported)"] = [num(v) for v in summary[f"reported_{m}"]]
    return out


def export_tables(summary: pd.DataFrame, stem: str | os.PathLike, caption: str | None = None) -> dict[str, Path]:
    """Write ``<stem>.csv`` (numbers) and ``<stem>.tex`` (``mean $\\pm$ std`` in %, booktabs); returns the paths."""
    from .runs import atomic_write_bytes
    stem = Path(stem)
    csv = atomic_write_bytes(stem.with_suffix(".csv"), summary.to_csv(index=False).encode())
    table = format_table(summary)
    table = table.map(lambda v: v.replace("±", "$\\pm$").replace("_", "\\_").replace("–", "--")
                      if isinstance(v, str) else v)  # "--": a group no class falls in (no accuracy)
    table.columns = [str(c).replace("_", "\\_") for c in table.columns]
    tex = table.to_latex(index=False, escape=False, caption=caption, label=f"tab:{stem.name}")
    return {"csv": csv, "tex": atomic_write_bytes(stem.with_suffix(".tex"), tex.encode())}


def __getattr__(name: str) -> Any:
    """``main``: the sweep command line (``ltlab.sweeps.cli.main``, which calls this module), resolved on use."""
    if name == "main":
        return importlib.import_module("ltlab.sweeps.cli").main
    raise AttributeError(f"module 'ltlab.batch' has no attribute {name!r}")


if __name__ == "__main__":  # ``--job FILE``: one run of a sweep (internal); otherwise the sweep command line
    from ltlab.sweeps.cli import main
    from ltlab.sweeps.job import worker_main
    sys.exit(worker_main(sys.argv[2]) if sys.argv[1:2] == ["--job"] else main(sys.argv[1:]))
