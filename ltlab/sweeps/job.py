"""One run of a sweep, in whatever process an executor gives it (a local worker process or a submitit job).

:func:`execute` runs every unfinished stage of a run through papermill (the executed notebook lands in
the stage's run directory): a complete stage is skipped, an interrupted one resumes from its
checkpoint, stage two starts once stage one is complete, and a preset's post-hoc step runs after the
final stage. While it works, ``.sweep_running.json`` in the run's first directory is touched every
``LTLAB_SWEEP_HEARTBEAT_S`` seconds (default 30), so :func:`ltlab.batch.sweep_status` can tell a running
run from a dead one without asking the scheduler; at the end ``.sweep_result.json`` holds the outcome.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

JOB_FILE, RESULT_FILE, HEARTBEAT_FILE = ".sweep_job.json", ".sweep_result.json", ".sweep_running.json"
SHOTS = {"overall": "acc", "many": "acc_many", "medium": "acc_medium", "few": "acc_few"}


def heartbeat_seconds() -> float:
    """Seconds between two touches of the heartbeat file (``LTLAB_SWEEP_HEARTBEAT_S``, default 30)."""
    return float(os.environ.get("LTLAB_SWEEP_HEARTBEAT_S", "30"))


class Heartbeat:
    """``with Heartbeat(run_dir, info):`` writes ``info`` to ``HEARTBEAT_FILE`` and touches it from a daemon
    thread every :func:`heartbeat_seconds`; removes it on exit. A killed process leaves a stale file."""

    def __init__(self, run_dir: Path, info: dict[str, Any]):
        self.path, self.info = Path(run_dir) / HEARTBEAT_FILE, info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_seconds()):
            try:
                os.utime(self.path)
            except OSError:
                pass  # a full or flaky disk must not kill the run; the status then reads "interrupted"

    def __enter__(self) -> "Heartbeat":
        from ..runs import write_json
        write_json(self.path, self.info)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)


def heartbeat(run_dir: str | os.PathLike) -> tuple[dict, float] | None:
    """``(info, seconds since the last touch)`` of a run's heartbeat file, or None."""
    path = Path(run_dir) / HEARTBEAT_FILE
    try:
        age = time.time() - path.stat().st_mtime
        return json.loads(path.read_text()), age
    except (OSError, ValueError):
        return None


def scheduler_job_id() -> str | None:
    """The Slurm (array) job id or submitit local job id of this process, if any."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID")


def notebook_error(exc: BaseException) -> str:
    """``ename: evalue`` of a papermill execution error (the notebook's own exception), else the exception."""
    return f"{exc.ename}: {exc.evalue}" if hasattr(exc, "ename") else f"{type(exc).__name__}: {exc}"


def execute(spec: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    """Run the unfinished stages of one run (a spec from :func:`ltlab.sweeps.plan.plan_runs`).

    Never raises for a failing run: returns (and writes to ``RESULT_FILE``) ``status`` (done | resumed |
    skipped | incomplete | failed), ``error``, ``notebook`` (the executed copy of the stage that failed, or
    of the final stage), ``stages`` (what happened to each), ``attempt``, ``job_id``, ``host``, ``seconds``.
    """
    from ..runs import write_json
    os.environ.setdefault("LTLAB_PROGRESS", "0")
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        os.environ.setdefault("OMP_NUM_THREADS", os.environ["SLURM_CPUS_PER_TASK"])
    home = Path(spec["dirs"][0])
    home.mkdir(parents=True, exist_ok=True)
    (home / RESULT_FILE).unlink(missing_ok=True)
    info = {"run_id": spec["run_id"], "host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt,
            "job_id": scheduler_job_id(), "started": time.time()}
    t0 = time.perf_counter()
    with Heartbeat(home, info):
        res = _run_stages(spec)
    res.update({k: info[k] for k in ("attempt", "job_id", "host")}, seconds=time.perf_counter() - t0)
    write_json(home / RESULT_FILE, res)
    return res


def _run_stages(spec: dict[str, Any]) -> dict[str, Any]:
    import logging

    import papermill as pm

    from ..config import check_plain
    logging.getLogger("papermill").setLevel(logging.ERROR)  # no "Passed unknown parameter" lines per run

    nb, done = Path(spec["notebook"]), []
    for i, params in enumerate(spec["stages"]):
        run_dir = Path(params["run_dir"])
        out, before = run_dir / nb.name, run_state(run_dir)
        if before == "complete":
            done.append("skipped")
            continue
        where = f"stage {i + 1}: " if len(spec["stages"]) > 1 else ""
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            pm.execute_notebook(str(nb), str(out), parameters=check_plain({**params, "resume": before == "partial"}),
                                cwd=str(nb.parent), kernel_name=spec.get("kernel"), progress_bar=False,
                                log_output=False, extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        except Exception as exc:  # noqa: BLE001 - any failure of this run is reported, the sweep goes on
            return {"status": "failed", "error": where + notebook_error(exc), "notebook": str(out), "stages": done}
        if run_state(run_dir) != "complete":
            return {"status": "incomplete", "error": "", "notebook": str(out), "stages": done + ["incomplete"]}
        done.append("resumed" if before == "partial" else "done")
    final = Path(spec["stages"][-1]["run_dir"])
    try:
        _posthoc(spec["stages"][-1])
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "error": f"post-hoc step: {notebook_error(exc)}", "notebook": str(final / nb.name),
                "stages": done}
    status = "skipped" if set(done) == {"skipped"} else "resumed" if "resumed" in done else "done"
    return {"status": status, "error": "", "notebook": str(final / nb.name), "stages": done}


def _posthoc(params: dict[str, Any]) -> None:
    """The final stage's post-hoc step (``posthoc`` of the preset), as ``python -m ltlab run --preset`` runs it."""
    method = (params.get("posthoc") or {}).get("method")
    if not method or (Path(params["run_dir"]) / f"posthoc_{method}.json").exists():
        return
    from ..build import resolve_device
    from ..posthoc import apply_posthoc
    apply_posthoc(params["run_dir"], device=resolve_device(params.get("device", "auto")))


# ---------------------------------------------------------------------- reading a run back
def run_state(run_dir: Path) -> str:
    """"complete", "partial" (checkpoint.pt, not finished) or "new".

    Complete: checkpoint.pt exists and metrics.csv ends at epoch ``epochs - 1`` of the run's own
    config.json (the epochs the notebook actually used, whether or not the sweep set them).
    """
    import pandas as pd
    metrics, ckpt, cfg = run_dir / "metrics.csv", run_dir / "checkpoint.pt", run_dir / "config.json"
    if not ckpt.exists():
        return "new"
    try:
        epochs = int(json.loads(cfg.read_text())["epochs"])
        last = pd.read_csv(metrics)["epoch"]
        if len(last) and int(last.iloc[-1]) == epochs - 1:
            return "complete"
    except (OSError, ValueError, KeyError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        pass
    return "partial"


def read_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``RESULT_FILE`` of a run's first directory, or None."""
    try:
        return json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


def stage_numbers(run_dir: str | os.PathLike) -> dict[str, float]:
    """``epochs_done`` and overall/many/medium/few ([0, 1]) of a run directory's last evaluated epoch, replaced by
    its saved post-hoc result when its config names one ({} when nothing is readable yet)."""
    import pandas as pd
    d = Path(run_dir)
    try:
        last = pd.read_csv(d / "metrics.csv").iloc[-1]
        out = {"epochs_done": int(last["epoch"]) + 1, **{k: float(last[c]) for k, c in SHOTS.items()}}
        method = (json.loads((d / "config.json").read_text()).get("posthoc") or {}).get("method")
    except (OSError, ValueError, KeyError, IndexError, pd.errors.ParserError, pd.errors.EmptyDataError):
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


def worker_main(job_file: str) -> int:
    """``python -m ltlab.batch --job FILE``: execute the spec in FILE (a local executor's worker process)."""
    spec = json.loads(Path(job_file).read_text())
    execute(spec)
    return 0
