"""Choosing an executor and handing it the runs that still need running.

``local``: worker processes of this one, spread over the visible GPUs (:mod:`ltlab.launch.sweep.local`).
``slurm``: one Slurm job array through submitit, a job per run, requeued on preemption or timeout
(:mod:`ltlab.launch.sweep.cluster`). ``submitit_local``: the same submitit job code as processes on this
machine (a dry run of the cluster path, and what the tests use). Every check happens here, before
anything is written or submitted.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

EXECUTORS = ("local", "submitit_local", "slurm")


def make_executor(name: str, *, parallel: int | None = None, per_gpu: int | None = None,
                  gpus: Sequence[int | str] | None = None, slurm: dict[str, Any] | None = None,
                  timeout: float | None = None, wait: bool = True):
    """The backend for ``executor=name``; a ValueError says what is wrong (and what to install or use)."""
    if name not in EXECUTORS:
        raise ValueError(f"sweep: unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")
    if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
        raise ValueError(f"sweep: parallel must be an integer >= 1, got {parallel!r}")
    if name == "local" and not wait:
        raise ValueError("sweep: wait=False (--no-wait) needs a cluster executor ('slurm' or 'submitit_local'); the "
                         "local executor's workers end with this process")
    if name == "local":
        if slurm:
            raise ValueError("sweep: Slurm options were given but executor='local'; pass executor='slurm' to submit "
                             "to a cluster")
        from .local import LocalBackend
        return LocalBackend(parallel, per_gpu, gpus, timeout)
    if per_gpu is not None or gpus is not None:
        raise ValueError(f"sweep: per_gpu / gpus pack runs onto this machine's GPUs (executor='local'); with "
                         f"executor={name!r} ask the scheduler for GPUs, e.g. slurm={{'gpus_per_node': 1}}")
    if importlib.util.find_spec("submitit") is None:
        raise ValueError(f"sweep: executor={name!r} needs the submitit package: pip install submitit (or "
                         f"pip install 'ltlab[cluster]'); without a cluster use executor='local'")
    from .cluster import SubmititBackend
    return SubmititBackend(name, dict(slurm or {}), parallel)


def dispatch(backend, specs: list[dict], root: Path, wait: bool = True, progress: bool = True,
             varying: list[str] | None = None) -> dict[str, dict]:
    """Results per run id: complete runs are "skipped", runs with a fresh heartbeat (running elsewhere) are left
    alone as "running", runs whose earlier job still waits in the scheduler's queue as "queued", the rest go
    to ``backend``. Writes the sweep manifest of ``root`` first. ``progress``: a line when the sweep starts and
    one per finished run (:class:`ltlab.launch.sweep.progress.Progress`; ``varying`` names the parameters shown)."""
    from .progress import Progress
    from .status import run_numbers
    from .plan import update_manifest
    from .status import run_status
    results, todo = {}, []
    for spec in specs:
        state = run_status(spec["dirs"])
        notebook = str(Path(spec["dirs"][-1]) / Path(spec["notebook"]).name)
        if state["status"] == "done":
            results[spec["run_id"]] = {"status": "skipped", "error": "", "notebook": notebook}
        elif state["status"] == "running":
            results[spec["run_id"]] = {"status": "running", "notebook": notebook, "job_id": state["job_id"],
                                       "error": f"running on {state['host']} (job {state['job_id']}): not started "
                                                "twice"}
        else:
            todo.append(spec)
    root.mkdir(parents=True, exist_ok=True)
    queued = backend.queued(todo, root)
    results.update({rid: {"status": "queued", "error": "", "job_id": jid} for rid, jid in queued.items()})
    todo = [s for s in todo if s["run_id"] not in queued]
    update_manifest(root, specs)
    report = Progress(len(specs), len(todo), list(varying or []), parallel=getattr(backend, "width", 1),
                      enabled=progress and wait)
    report.start(sum(r["status"] == "skipped" for r in results.values()), str(root))
    if todo:
        results.update(backend.run(todo, root, wait,
                                   on_done=lambda spec, res: report.done(spec, res, run_numbers(spec["dirs"]))))
    return results
