"""The one stage executor: :func:`execute` runs the unfinished stages of one run, however it was started
(``python -m ltlab train|run``, ``ltlab.batch.sweep``, notebook 07, a local worker, a Slurm job).

A run is a *spec* (:func:`spec`): ``run_id``, ``dirs`` (one per stage), ``stages`` (RunConfig parameters,
with ``run_dir`` and stage two's ``init_from``), ``notebook`` (None: train in this process with
:func:`ltlab.run`; else that notebook through the one papermill call, :mod:`ltlab.launch.notebook`),
``kernel``, ``quiet``, ``resume`` (``"auto"``: continue what is on disk, as a sweep does; True / False: as
the user said) and ``timeout`` (seconds, or None).

A complete stage is skipped, a partial one resumed from its checkpoint, a stage two starts only on a finished
stage one (:func:`ltlab.runs.check_finished`, the one check), and the preset's post-hoc step runs after the
final stage. While it works, ``HEARTBEAT_FILE`` in the run's first directory is touched every
``LTLAB_SWEEP_HEARTBEAT_S`` seconds (default 30) and holds the host and PID; whatever happens (a failing
stage, a timeout, SIGTERM, Ctrl-C) the heartbeat is removed and ``RESULT_FILE`` written in a ``finally``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from ..runs import check_finished, run_state

JOB_FILE, RESULT_FILE, HEARTBEAT_FILE = ".sweep_job.json", ".sweep_result.json", ".sweep_running.json"


class Stopped(BaseException):
    """Raised in the main thread when the run's time is up (``timed_out``) or the process is told to stop
    (SIGTERM): a BaseException, so no ``except Exception`` in training or papermill swallows it."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


# ---------------------------------------------------------------------- heartbeat and result
def heartbeat_seconds() -> float:
    """Seconds between two touches of the heartbeat file (``LTLAB_SWEEP_HEARTBEAT_S``, default 30)."""
    return float(os.environ.get("LTLAB_SWEEP_HEARTBEAT_S", "30"))


class Heartbeat:
    """Writes ``info`` to ``HEARTBEAT_FILE`` and touches it from a daemon thread every :func:`heartbeat_seconds`
    until :meth:`stop`, which removes it. A killed process leaves a stale file (see :func:`alive`)."""

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

    def start(self) -> "Heartbeat":
        from ..runs import write_json
        write_json(self.path, self.info)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.path.unlink(missing_ok=True)


def heartbeat(run_dir: str | os.PathLike) -> tuple[dict, float] | None:
    """``(info, seconds since the last touch)`` of a run's heartbeat file, or None."""
    path = Path(run_dir) / HEARTBEAT_FILE
    try:
        age = time.time() - path.stat().st_mtime
        info = json.loads(path.read_text())
        return (info if isinstance(info, dict) else {}), age
    except (OSError, ValueError):
        return None


def alive(beat: tuple[dict, float] | None) -> bool:
    """Whether a heartbeat belongs to a live run: touched within three beats and, when it was written on this
    host, its process still exists (a killed run is not "running" for three more beats)."""
    if beat is None or beat[1] >= 3 * heartbeat_seconds():
        return False
    info = beat[0]
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def read_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``RESULT_FILE`` of a run's first directory, or None."""
    try:
        res = json.loads((Path(run_dir) / RESULT_FILE).read_text())
        return res if isinstance(res, dict) else None
    except (OSError, ValueError):
        return None


def finalise(home: str | os.PathLike, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result`` to ``home``'s ``RESULT_FILE`` and remove its heartbeat: the end of every run, also
    from outside (a parent whose worker it had to kill)."""
    from ..runs import write_json
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    write_json(home / RESULT_FILE, result)
    (home / HEARTBEAT_FILE).unlink(missing_ok=True)
    return result


def scheduler_job_id() -> str | None:
    """The Slurm (array) job id or submitit local job id of this process, if any."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return env.get("SLURM_JOB_ID") or env.get("SUBMITIT_LOCAL_JOB_ID")


def describe(exc: BaseException) -> str:
    """One line for a failure: a notebook's own ``ename: evalue``, else ``Type: message``."""
    if hasattr(exc, "ename"):
        return f"{exc.ename}: {exc.evalue}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`Stopped` ("timed out after N s") in the main thread after ``seconds`` (no-op for None or
    outside the main thread, where a parent process enforces the limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Stopped(f"timed out after {seconds:g} s", timed_out=True)

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------- the run
def spec(stages: list[dict[str, Any]], dirs: list[str], *, run_id: str | None = None,
         notebook: str | os.PathLike | None = None, kernel: str | None = None, quiet: bool = True,
         resume: bool | Literal["auto"] = "auto", timeout: float | None = None) -> dict[str, Any]:
    """The spec of one run: ``stages`` placed in ``dirs`` (stage two's ``init_from`` = stage one's directory)."""
    staged = [{**st, "run_dir": str(d), **({"init_from": str(dirs[0])} if i else {})}
              for i, (st, d) in enumerate(zip(stages, dirs))]
    return {"run_id": run_id or Path(dirs[-1]).name, "dirs": [str(d) for d in dirs], "stages": staged,
            "notebook": str(notebook) if notebook else None, "kernel": kernel, "quiet": quiet, "resume": resume,
            "timeout": timeout}


def execute(spec: dict[str, Any], *, attempt: int = 1, errors: Literal["record", "raise"] = "record",
            main: bool = True) -> dict[str, Any]:
    """Run the unfinished stages of one run (see the module docstring); returns its result.

    The result (also in ``RESULT_FILE``): ``status`` (done | resumed | skipped | incomplete | failed),
    ``error`` (one line, "stage 2: ..." for a stage of a two-stage run; "timed out after N s" (failed);
    "stopped by SIGTERM", "KeyboardInterrupt" (incomplete: starting it again resumes it)), ``notebook``
    (the executed copy of the stage that failed, or of the final stage), ``stages`` (what happened to each),
    ``attempt``, ``job_id``, ``host``, ``seconds``. ``errors="record"`` (sweeps) records a failure and
    returns; ``"raise"`` (the command line) records it and raises it. ``main``: this process writes the
    heartbeat and result (False on the other ranks under torchrun).
    """
    home = Path(spec["dirs"][0])
    info = {"run_id": spec["run_id"], "host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt,
            "job_id": scheduler_job_id(), "started": time.time()}
    res: dict[str, Any] = {"status": "failed", "error": "", "notebook": "", "stages": [], "where": ""}
    holder = next((h for h in map(busy, spec["dirs"]) if h), None) if main else None
    if holder:  # run busy -> skipped: another process writes it (issue 25); its heartbeat and result stay its own
        if errors == "raise":
            from ..runs import RunDirLockedError
            raise RunDirLockedError(holder)
        res.pop("where")
        return {**res, "status": "skipped", "error": holder, **{k: info[k] for k in ("attempt", "job_id", "host")},
                "seconds": 0.0}
    if main:  # a folder that is not ltlab's gets nothing written into it, not even a heartbeat (issue 25)
        from ..runs import RunDirRefusedError, refuse_foreign
        try:
            for d in spec["dirs"]:
                refuse_foreign(d)
        except RunDirRefusedError as exc:
            if errors == "raise":
                raise
            res.pop("where")
            return {**res, "error": describe(exc), **{k: info[k] for k in ("attempt", "job_id", "host")},
                    "seconds": 0.0}
    beat = None
    created = main and not home.exists()
    t0 = time.perf_counter()
    try:
        if main:
            home.mkdir(parents=True, exist_ok=True)
            (home / RESULT_FILE).unlink(missing_ok=True)
            beat = Heartbeat(home, info).start()
        with deadline(spec.get("timeout")):
            _stages(spec, res, main)
    except Stopped as exc:  # timed out (failed) or told to stop (interrupted, resumable): no stack trace
        res.update(status="failed" if exc.timed_out else "incomplete", error=str(exc))
        if errors == "raise":
            raise
    except BaseException as exc:  # noqa: BLE001 - any failure of this run is recorded; sweeps go on
        # an Exception failed the run; Ctrl-C or SystemExit (a preempted Slurm job requeued) interrupted it; a
        # run another process took between the check above and its start is skipped (run busy)
        locked = "RunDirLockedError" in (type(exc).__name__, getattr(exc, "ename", ""))
        res.update(status="skipped" if locked else "failed" if isinstance(exc, Exception) else "incomplete",
                   error=res["where"] + describe(exc))
        if errors == "raise" or not isinstance(exc, Exception):
            raise
    finally:
        res.pop("where", None)
        res.update({k: info[k] for k in ("attempt", "job_id", "host")}, seconds=time.perf_counter() - t0)
        if beat is not None:
            beat.stop()
        if main and errors == "raise" and created and home.is_dir() and not any(home.iterdir()):
            home.rmdir()  # refused before it wrote anything (by hand: the error line says why): nothing left behind
        elif main:
            finalise(home, res)
    return res


def _stages(spec: dict[str, Any], res: dict[str, Any], main: bool) -> None:
    """Check, then run every unfinished stage and the post-hoc step, keeping ``res`` up to date (so a failure
    at any point is recorded with the stage it happened in)."""
    stages, done = spec["stages"], res["stages"]
    nb = Path(spec["notebook"]) if spec.get("notebook") else None
    resume = spec.get("resume", "auto")
    preflight(spec)
    for i, params in enumerate(stages):
        run_dir = Path(params["run_dir"])
        res.update(where=f"stage {i + 1}: " if len(stages) > 1 else "", notebook=str(run_dir / nb.name) if nb else "")
        before = run_state(run_dir)
        if before == "complete" and resume:
            done.append("skipped")
            continue
        if i:
            check_finished(stages[0]["run_dir"])  # the one "stage one unfinished" check (ltlab.runs)
        _run_stage(spec, _resume(params, before, resume, len(stages)))
        if run_state(run_dir) != "complete" and (i + 1 == len(stages) or resume == "auto"):
            res.update(status="incomplete", stages=done + ["incomplete"])
            return
        done.append("resumed" if before == "partial" else "done")
    res.update(where="post-hoc step: ")
    posthoc(stages[-1], main)
    res.update(where="", error="", status="skipped" if set(done) == {"skipped"} else
               "resumed" if "resumed" in done else "done")


def busy(run_dir: str | os.PathLike) -> str | None:
    """Who holds ``run_dir``'s writer lock (:func:`ltlab.runs.lock_run_dir`) when another process does: the
    refusal naming its host and PID; None when it is free (probed by taking and releasing the lock)."""
    from ..runs import LOCK_FILE, RunDirLockedError, lock_run_dir
    if not (Path(run_dir) / LOCK_FILE).exists():
        return None
    try:
        lock_run_dir(run_dir).release()
    except RunDirLockedError as exc:
        return str(exc)
    return None


def preflight(spec: dict[str, Any]) -> None:
    """Before anything trains: an explicit stage-one ``init_from`` must be finished; with ``resume=False`` no
    stage directory may hold a run already."""
    first = spec["stages"][0]
    if first.get("init_from"):
        check_finished(first["init_from"])
    if spec.get("resume", "auto") is False:
        for params in spec["stages"]:
            if run_state(params["run_dir"]) != "new" or (Path(params["run_dir"]) / "metrics.csv").exists():
                raise ValueError(f"{params['run_dir']} already holds a run; choose another run_dir (or resume=True)")


def _resume(params: dict[str, Any], before: str, resume: bool | str, n_stages: int) -> dict[str, Any]:
    """``resume`` of one stage: with resume allowed, whether it has a checkpoint; a one-stage run started by
    hand with ``resume=True`` keeps it (the engine then says there is nothing to resume)."""
    if resume == "auto" or (resume and n_stages > 1):
        return {**params, "resume": before == "partial"}
    return params


def _run_stage(spec: dict[str, Any], params: dict[str, Any]) -> None:
    """One stage through the run's runner: in-process ``ltlab.run``, or the one papermill call."""
    if not spec.get("notebook"):
        from .. import engine
        engine.run(params)
        return
    from .notebook import run_notebook
    Path(params["run_dir"]).mkdir(parents=True, exist_ok=True)
    run_notebook(spec["notebook"], params, kernel=spec.get("kernel"), quiet=spec.get("quiet", True))


def posthoc(params: dict[str, Any], main: bool = True) -> None:
    """The final stage's post-hoc step (the preset's ``posthoc``), saved as ``posthoc_<method>.json`` in its run
    directory (once: an existing result is kept)."""
    from .. import distributed
    method = (params.get("posthoc") or {}).get("method")
    if not method:
        return
    if main and not (Path(params["run_dir"]) / f"posthoc_{method}.json").exists():
        from ..build import resolve_device
        from ..posthoc import apply_posthoc
        apply_posthoc(params["run_dir"], device=resolve_device(params.get("device", "auto")))
    distributed.barrier()
