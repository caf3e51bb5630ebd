"""The local executor: one worker process per run (``python -m ltlab.launch.worker FILE``), a few at a time.

Without GPUs, ``parallel`` workers share the CPU cores (``OMP_NUM_THREADS = cores // workers`` unless
set). With GPUs, the workers are spread over them: ``per_gpu=K`` runs at once on each visible GPU, each
worker seeing one GPU through ``CUDA_VISIBLE_DEVICES`` (so ``device="auto"`` lands on it), the CPU
threads split between all workers as without GPUs.

Each worker runs in a process group of its own (with its Jupyter kernel): a timed-out worker is stopped
with SIGTERM (its run records "timed out after N s" and frees its heartbeat), then its whole group killed;
ending the sweep (Ctrl-C, SIGTERM, SIGHUP, an exception) ends every worker's group first, and a worker
whose parent dies is sent SIGTERM by the kernel (Linux ``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..execute import JOB_FILE, RESULT_FILE, finalise, read_result

Slot = dict[str, str]


def visible_gpus(gpus: Sequence[int | str] | None = None) -> list[str]:
    """The GPUs workers may use, as ``CUDA_VISIBLE_DEVICES`` entries of the workers.

    ``gpus`` when given: indices into this process's visible GPUs (with ``CUDA_VISIBLE_DEVICES=2,3``,
    ``gpus=[0, 1]`` are physical GPUs 2 and 3, as torch numbers them here); else ``CUDA_VISIBLE_DEVICES``
    when set; else every device torch sees (none on a CPU-only machine)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = None
    if env is not None:
        ids = [g.strip() for g in env.split(",") if g.strip()]
        visible = ids[:next((i for i, g in enumerate(ids) if g.startswith("-")), len(ids))]  # CUDA stops at -1
    if gpus is None:
        if visible is not None:
            return visible
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    given = [str(g).strip() for g in gpus if str(g).strip()]
    if visible is None:
        return given
    bad = [g for g in given if not g.isdigit() or int(g) >= len(visible)]
    if bad:
        raise ValueError(f"sweep: gpus {bad} are not among the {len(visible)} GPU(s) this process sees "
                         f"(CUDA_VISIBLE_DEVICES={env!r}); gpus index the visible GPUs: 0..{len(visible) - 1}")
    return [visible[int(g)] for g in given]


def worker_slots(gpus: list[str], per_gpu: int | None = None, parallel: int | None = None,
                 cores: int | None = None) -> list[Slot]:
    """Environment additions of each worker, one dict per worker.

    GPUs: ``per_gpu`` workers per GPU (default: enough for ``parallel`` workers, else 1), numbered
    round-robin (worker i gets ``gpus[i % len(gpus)]``) so a sweep with fewer runs than workers still
    uses every GPU; ``parallel`` caps the total. No GPUs: ``parallel`` workers (default 1); ``per_gpu``
    raises. Every worker gets ``OMP_NUM_THREADS = cores // workers`` (at least 1).
    """
    for name, value in (("per_gpu", per_gpu), ("parallel", parallel)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"sweep: {name} must be an integer >= 1, got {value!r}")
    if per_gpu is not None and not gpus:
        raise ValueError(f"sweep: per_gpu={per_gpu} packs runs onto GPUs, but no GPU is visible here "
                         f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); on CPUs use parallel=N")
    if gpus:
        k = per_gpu or -(-(parallel or len(gpus)) // len(gpus))
        devices: list[str | None] = [g for _ in range(k) for g in gpus][:parallel or None]
    else:
        devices = [None] * (parallel or 1)
    threads = str(max(1, (cores or os.cpu_count() or 1) // len(devices)))
    return [{"OMP_NUM_THREADS": threads, **({"CUDA_VISIBLE_DEVICES": d} if d is not None else {})} for d in devices]


def worker_env(slot: Slot) -> dict[str, str]:
    """The full environment of a worker: this process's, no progress bars, the slot's GPU, and its CPU
    threads unless ``OMP_NUM_THREADS`` is already set."""
    env = {**os.environ, "LTLAB_PROGRESS": "0", **{k: v for k, v in slot.items() if k != "OMP_NUM_THREADS"}}
    env.setdefault("OMP_NUM_THREADS", slot["OMP_NUM_THREADS"])
    return env


def run_pool(specs: list[dict], slots: list[Slot], launch: Callable[[dict, Slot], dict]) -> list[dict]:
    """``launch(spec, slot)`` for every spec, one per free slot at a time; results in the order of ``specs``."""
    free: queue.SimpleQueue = queue.SimpleQueue()
    for slot in slots:
        free.put(slot)

    def one(spec: dict) -> dict:
        slot = free.get()
        try:
            return launch(spec, slot)
        finally:
            free.put(slot)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        return list(pool.map(one, specs))


# worker processes alive now (each the leader of its own process group), ended with the sweep
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
GRACE_S = 20.0  # after SIGTERM, how long a worker gets to record its result before its group is killed


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(proc: subprocess.Popen, grace: float = GRACE_S) -> None:
    """SIGTERM to the worker's group (it records how it ended), SIGKILL to what is left after ``grace``."""
    _kill_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc, signal.SIGKILL)
    proc.wait()


def stop_all(grace: float = 5.0) -> None:
    """End every live worker and its kernel (the sweep is ending)."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        _kill_group(proc, signal.SIGTERM)
    end = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _kill_group(proc, signal.SIGKILL)


@contextmanager
def workers_end_with_this_process() -> Iterator[None]:
    """While the pool runs: SIGTERM / SIGHUP / SIGINT to this process first end every worker's group, then
    stop the sweep (KeyboardInterrupt / SystemExit); any exit from the block ends them too."""
    installed = {}

    def on_signal(signum: int, frame: Any) -> None:
        stop_all()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            installed[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        stop_all()
        for sig, old in installed.items():
            signal.signal(sig, old)


def launch(spec: dict, slot: Slot, timeout: float | None = None) -> dict[str, Any]:
    """Run one spec in a fresh worker process (its own process group); never raises (a crash becomes status
    "failed"). A worker past ``timeout`` is stopped and its run records "timed out after N s"."""
    from ...runs import write_json
    home = Path(spec["dirs"][0])
    spec = {**spec, "timeout": timeout}
    job_file = write_json(home / JOB_FILE, spec)
    (home / RESULT_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    env = {**worker_env(slot), "LTLAB_PARENT_PID": str(os.getpid())}
    with open(home / ".sweep_worker.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ltlab.launch.worker", str(job_file)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        timed_out = False
        try:  # the worker stops itself at ``timeout``; this is the backstop when it cannot
            proc.wait(timeout=timeout + GRACE_S if timeout else None)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
        finally:
            _kill_group(proc, signal.SIGKILL)  # a kernel the worker left behind
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    res = read_result(home)
    if timed_out:  # the worker could not stop itself in time: the timeout, not our SIGTERM, is what happened
        res = finalise(home, {"notebook": "", "stages": [], **(res or {}), "status": "failed",
                              "error": f"timed out after {timeout:g} s"})
    elif res is None:
        tail = (home / ".sweep_worker.log").read_text(errors="replace").strip()[-600:]
        res = finalise(home, {"status": "failed", "error": f"worker exited with code {proc.returncode}: {tail}",
                              "notebook": "", "stages": []})
    return {**res, "seconds": time.perf_counter() - t0}


class LocalBackend:
    """``executor="local"``: the runs as worker processes of this one, over :func:`worker_slots`."""

    def __init__(self, parallel: int | None = None, per_gpu: int | None = None,
                 gpus: Sequence[int | str] | None = None, timeout: float | None = None):
        self.slots = worker_slots(visible_gpus(gpus), per_gpu, parallel)
        self.timeout = timeout

    def queued(self, specs: list[dict], root: Path) -> dict[str, str]:
        """Nothing waits in a queue here (a run is running, with a fresh heartbeat, or not)."""
        return {}

    @property
    def width(self) -> int:
        """How many runs go at once."""
        return len(self.slots)

    def run(self, specs: list[dict], root: Path, wait: bool = True,
            on_done: Callable[[dict, dict], None] | None = None) -> dict[str, dict]:
        """Run every spec over the slots; ``on_done(spec, result)`` as each ends."""
        def one(spec: dict, slot: Slot) -> dict:
            res = launch(spec, slot, self.timeout)
            if on_done is not None:
                on_done(spec, res)
            return res

        with workers_end_with_this_process():
            results = run_pool(specs, self.slots, one)
        return {s["run_id"]: r for s, r in zip(specs, results)}
