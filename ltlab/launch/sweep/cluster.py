"""Sweeps through submitit: ``slurm`` (one job array, a job per run) and ``submitit_local`` (the same jobs as
processes on this machine).

Each job is a :class:`SweepJob`, which calls :func:`ltlab.launch.execute.execute` (what a local worker runs).
Slurm signals a job before its time limit or when it is preempted; submitit then calls
:meth:`SweepJob.checkpoint`, writes the returned resubmission next to the job's pickle and requeues the
job (``scontrol requeue``; up to ``max_num_timeout`` times after timeouts). The requeued job runs the
same spec again: complete stages are skipped and the interrupted one resumes from the checkpoint the
training loop writes every epoch (and every ``checkpoint_every_steps`` steps), not from epoch 0.
submitit keeps its pickles and logs in ``<out_root>/.submitit/<job id>/``.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import submitit
from submitit.slurm.slurm import SlurmExecutor, _convert_mem, _get_default_parameters, _make_sbatch_string

from ..execute import execute, read_result

# submitit's executor-independent names (mapped to sbatch's by SlurmExecutor._equivalence_dict) and ours
SLURM_DEFAULTS = {"timeout_min": 60, "name": "ltlab-sweep"}
OWN_OPTIONS = ("max_num_timeout",)
IN_QUEUE = ("PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "COMPLETING")
LOCAL_OPTIONS = ("timeout_min", "gpus_per_node", "max_num_timeout")  # submitit_local: submitit's LocalExecutor
_NUMBERS = ("timeout_min", "mem_gb", "gpus_per_node", "cpus_per_task", "array_parallelism", "signal_delay_s",
            "max_num_timeout", "nodes", "tasks_per_node")


def poll_seconds() -> float:
    """How often a waiting sweep looks at its jobs (``LTLAB_SWEEP_POLL_S``, default 10)."""
    return float(os.environ.get("LTLAB_SWEEP_POLL_S", "10"))


class SweepJob(submitit.helpers.Checkpointable):
    """One run of a sweep as a submitit job: ``job()`` executes its spec; ``checkpoint()`` (called by submitit
    on preemption or timeout) returns the same job, attempt + 1, to run again from the run's checkpoint."""

    def __init__(self, spec: dict[str, Any]):
        self.spec, self.attempt = spec, 1

    def __call__(self) -> dict[str, Any]:
        return execute(self.spec, attempt=self.attempt)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        self.attempt += 1  # the training loop's own checkpoint is on disk; the next attempt resumes from it
        return submitit.helpers.DelayedSubmission(self)


def slurm_options(options: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``(SlurmExecutor parameters, max_num_timeout)`` from submitit's generic names (``timeout_min``,
    ``mem_gb``, ``gpus_per_node``, ``cpus_per_task``, ``name``) or sbatch's own (``partition``, ``account``,
    ``qos``, ``constraint``, ``array_parallelism``, ...). Unknown names and non-numbers raise, listing the
    valid ones."""
    rename = SlurmExecutor._equivalence_dict()
    valid = sorted({*rename, *_get_default_parameters(), *OWN_OPTIONS} - {"num_gpus", "ntasks_per_node", "nodes",
                                                                        "tasks_per_node"})
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"sweep: unknown Slurm option(s) {unknown}; valid options: {', '.join(valid)}")
    for key in set(options) & set(_NUMBERS):
        if isinstance(options[key], bool) or not isinstance(options[key], (int, float)) or options[key] <= 0:
            raise ValueError(f"sweep: Slurm option {key}={options[key]!r} must be a positive number")
    opts = {**SLURM_DEFAULTS, **options}
    max_timeout = int(opts.pop("max_num_timeout", 3))
    params = {rename.get(k, k): v for k, v in opts.items() if k != "mem_gb"}
    if "mem_gb" in opts:
        params["mem"] = _convert_mem(opts["mem_gb"])
    try:  # submitit's own check of the values (what update_parameters runs), before anything is submitted
        _make_sbatch_string(command="true", folder="/tmp", **params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sweep: invalid Slurm options {options}: {exc}") from exc
    return params, max_timeout


def check_slurm_commands() -> None:
    """Slurm's ``sbatch`` and ``srun`` must be on PATH (submitit submits with the one and runs jobs with the other)."""
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if missing:
        raise ValueError(f"sweep: executor='slurm' needs Slurm's {' and '.join(missing)} on PATH; run the sweep on "
                         "the cluster's login node, or use executor='local' (or 'submitit_local') on this machine")


class SubmititBackend:
    """``executor="slurm"`` (one array; ``options`` as :func:`slurm_options`) or ``"submitit_local"`` (processes
    here, ``parallel`` at a time, sharing the CPU cores; only ``LOCAL_OPTIONS`` apply)."""

    def __init__(self, kind: str, options: dict[str, Any], parallel: int | None = None):
        self.kind, self.parallel = kind, parallel or 1
        if kind == "slurm":
            self.params, self.max_timeout = slurm_options(options)
            check_slurm_commands()
        else:
            extra = sorted(set(options) - set(LOCAL_OPTIONS))
            if extra:
                raise ValueError(f"sweep: executor='submitit_local' takes only {', '.join(LOCAL_OPTIONS)}, got "
                                 f"{extra}; the other Slurm options need executor='slurm'")
            threads = max(1, (os.cpu_count() or 1) // self.parallel)  # runs side by side share the cores
            setup = [] if "OMP_NUM_THREADS" in os.environ else [f"export OMP_NUM_THREADS={threads}"]
            self.params = {"timeout_min": 24 * 60, **{k: v for k, v in options.items() if k != "max_num_timeout"},
                           **({"setup": setup} if setup else {})}
            self.max_timeout = int(options.get("max_num_timeout", 3))

    def queued(self, specs: list[dict], root: Path) -> dict[str, str]:
        """Run id -> job id of the runs an earlier sweep submitted to Slurm whose job is still queued or running
        (one ``sacct`` call), so starting the sweep again does not submit them twice."""
        from .plan import read_manifest
        if self.kind != "slurm":
            return {}
        ids = {r["run_id"]: r["job_id"] for r in read_manifest(root) if r.get("job_id")}
        jobs = {s["run_id"]: submitit.SlurmJob(folder=root / ".submitit" / "%j", job_id=ids[s["run_id"]])
                for s in specs if s["run_id"] in ids}
        return {rid: job.job_id for rid, job in jobs.items() if job.state.upper() in IN_QUEUE}

    def _executor(self, root: Path):
        folder = root / ".submitit" / "%j"
        cls = SlurmExecutor if self.kind == "slurm" else submitit.LocalExecutor
        ex = cls(folder, max_num_timeout=self.max_timeout)
        ex.update_parameters(**self.params)
        return ex

    @property
    def width(self) -> int:
        """How many runs go at once here (submitit_local); the scheduler decides for Slurm."""
        return self.parallel if self.kind != "slurm" else 1

    def run(self, specs: list[dict], root: Path, wait: bool = True,
            on_done: Callable[[dict, dict], None] | None = None) -> dict[str, dict]:
        """Submit ``specs`` (Slurm: one array); with ``wait``, poll until every job has ended and read the results
        from the run directories (``on_done(spec, result)`` as each ends), else return them as "submitted" with
        their job ids."""
        from .plan import update_manifest
        ex = self._executor(root)
        self._reported: set[int] = set()  # jobs already passed to on_done
        try:
            if self.kind == "slurm" or not wait:
                jobs = ex.submit_array([SweepJob(s) for s in specs])
                update_manifest(root, specs, {s["run_id"]: j.job_id for s, j in zip(specs, jobs)})
            else:
                jobs = self._throttled(ex, specs, root, on_done)
        except submitit.core.utils.FailedJobError as exc:  # sbatch said no: its own message says why
            raise RuntimeError(f"sweep: the scheduler refused the jobs: {exc}") from exc
        if not wait:
            return {s["run_id"]: {"status": "submitted", "error": "", "job_id": j.job_id} for s, j in zip(specs, jobs)}
        while True:
            self._report(specs, jobs, on_done)
            if len(self._reported) == len(jobs):
                break
            time.sleep(poll_seconds())
        return {s["run_id"]: self._outcome(s, j) for s, j in zip(specs, jobs)}

    def _report(self, specs: list[dict], jobs: list, on_done: Callable[[dict, dict], None] | None) -> None:
        """``on_done`` once for every job that has ended since the last look (``self._reported``: those seen)."""
        for i, (spec, job) in enumerate(zip(specs, jobs)):
            if i not in self._reported and job.done():
                self._reported.add(i)
                if on_done is not None:
                    on_done(spec, self._outcome(spec, job))

    def _throttled(self, ex, specs: list[dict], root: Path,
                   on_done: Callable[[dict, dict], None] | None = None) -> list:
        """submitit's local executor starts every job at once: submit ``parallel`` at a time instead."""
        from .plan import update_manifest
        jobs: list = []
        for spec in specs:
            while sum(not j.done() for j in jobs) >= self.parallel:
                self._report(specs, jobs, on_done)
                time.sleep(min(1.0, poll_seconds()))
            jobs.append(ex.submit(SweepJob(spec)))
            update_manifest(root, [spec], {spec["run_id"]: jobs[-1].job_id})
        return jobs

    @staticmethod
    def _outcome(spec: dict, job) -> dict[str, Any]:
        res = read_result(spec["dirs"][0])
        if res is None:
            from .status import run_status
            cut = run_status(spec["dirs"])["status"] == "interrupted"
            res = {"status": "incomplete" if cut else "failed", "notebook": "",
                   "error": f"job {job.job_id} ended without a result (killed, out of memory or out of time?); "
                            f"its log: {job.paths.stderr}"}
        return {**res, "job_id": job.job_id}
