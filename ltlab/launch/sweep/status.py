"""Where a sweep stands, read from its run directories alone (no scheduler query).

done: every stage complete. running: the heartbeat file a job touches every ``LTLAB_SWEEP_HEARTBEAT_S``
seconds is younger than three beats and, on this host, its process is alive. failed: the last attempt wrote a failed result. interrupted:
something is on disk but the run is neither complete, running nor failed (killed, preempted, timed out,
stopped by ``epochs_per_call``); starting the sweep again resumes it from its checkpoint. missing:
nothing on disk yet (not started; a job still queued on the cluster).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ...runs import run_state
from ..execute import alive, heartbeat, read_result

STATES = ("done", "running", "failed", "interrupted", "missing")
SHOTS = {"overall": "acc", "many": "acc_many", "medium": "acc_medium", "few": "acc_few"}


def stage_numbers(run_dir: str | os.PathLike) -> dict[str, float]:
    """``epochs_done`` and overall/many/medium/few ([0, 1]) of a run directory's last evaluated epoch, replaced by
    its saved post-hoc result when its config names one ({} when nothing is readable yet)."""
    d = Path(run_dir)
    try:
        last = pd.read_csv(d / "metrics.csv").iloc[-1]
        out = {"epochs_done": int(last["epoch"]) + 1, **{k: float(last[c]) for k, c in SHOTS.items()}}
        method = (json.loads((d / "config.json").read_text()).get("posthoc") or {}).get("method")
    except (OSError, ValueError, KeyError, IndexError, AttributeError, pd.errors.ParserError,
            pd.errors.EmptyDataError):
        return {}
    saved = d / f"posthoc_{method}.json"
    if method and saved.exists():
        try:
            out.update({k: float(json.loads(saved.read_text())[k]) for k in SHOTS})
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return out


def run_numbers(dirs: list[str]) -> dict[str, float]:
    """Table numbers of a run: its final stage's, and for two stages stage one's as ``stage1_<name>``."""
    out = stage_numbers(dirs[-1])
    if len(dirs) > 1:
        out.update({f"stage1_{k}": v for k, v in stage_numbers(dirs[0]).items() if k in SHOTS})
    return out


def _epochs(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / "config.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_status(dirs: list[str]) -> dict[str, Any]:
    """Status of one run (its stage directories, stage one first); see the module docstring."""
    paths = [Path(d) for d in dirs]
    states = [run_state(p) for p in paths]
    stage = next((i for i, s in enumerate(states) if s != "complete"), len(paths) - 1)
    beat, result = heartbeat(paths[0]), read_result(paths[0])
    info = (beat[0] if beat else None) or result or {}
    if alive(beat):
        status = "running"
    elif result is not None and result.get("status") == "failed":
        status = "failed"
    elif all(s == "complete" for s in states):
        status = "done"
    elif any(p.is_dir() and any(p.iterdir()) for p in paths):
        status = "interrupted"
    else:
        status = "missing"
    numbers = stage_numbers(paths[stage])
    return {"status": status, "stage": f"{stage + 1}/{len(paths)}", "epochs_done": numbers.get("epochs_done", 0),
            "epochs": _epochs(paths[stage]), "overall": numbers.get("overall", float("nan")),
            "job_id": info.get("job_id"), "host": info.get("host"), "attempt": info.get("attempt"),
            "heartbeat_s": round(beat[1], 1) if beat else None,
            "error": (result or {}).get("error", "") if status == "failed" else "",
            "notebook": (result or {}).get("notebook", "") if status == "failed" else "", "run_dir": str(paths[-1])}


def sweep_status(out_root: str | os.PathLike) -> pd.DataFrame:
    """One row per run planned in ``out_root`` (its ``.sweep.json``; else every run directory there).

    Columns: ``run_id``, ``status`` (done | running | failed | interrupted | missing), ``stage`` (the stage
    the run is at, e.g. "2/2"), ``epochs_done`` / ``epochs`` of that stage, ``overall`` (last evaluated
    epoch, [0, 1]), ``job_id``, ``host``, ``attempt`` (> 1 after a preemption or timeout), ``heartbeat_s``
    (seconds since the job last touched its heartbeat), ``error`` and ``notebook`` of a failed run, ``run_dir``.
    """
    from .plan import read_manifest
    root = Path(out_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"sweep_status: {root} does not exist; pass the out_root the sweep wrote to")
    runs = read_manifest(root) or [  # no manifest (a sweep from before manifests): every run directory there
        {"run_id": d.name, "dirs": [str(d)]} for d in sorted(root.iterdir()) if (d / "config.json").exists()]
    rows = []
    for entry in runs:
        row = {"run_id": entry["run_id"], **run_status(entry["dirs"])}
        row["job_id"] = row["job_id"] or entry.get("job_id")  # a queued job has written nothing yet
        rows.append(row)
    columns = ["run_id", "status", "stage", "epochs_done", "epochs", "overall", "job_id", "host", "attempt",
               "heartbeat_s", "error", "notebook", "run_dir"]
    return pd.DataFrame(rows, columns=columns)


def counts_line(status: pd.DataFrame) -> str:
    """``done 3 | running 1 | failed 0 | interrupted 0 | missing 2`` for a :func:`sweep_status` table."""
    return " | ".join(f"{s} {int((status.status == s).sum())}" for s in STATES)
