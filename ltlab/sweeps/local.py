"""The local executor: one worker process per run (``python -m ltlab.batch --job FILE``), a few at a time.

Without GPUs, ``parallel`` workers share the CPU cores (``OMP_NUM_THREADS = cores // workers`` unless
set). With GPUs, the workers are spread over them: ``per_gpu=K`` runs at once on each visible GPU, each
worker seeing one GPU through ``CUDA_VISIBLE_DEVICES`` (so ``device="auto"`` lands on it), the CPU
threads split between all workers as without GPUs.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from .job import JOB_FILE, RESULT_FILE, read_result

Slot = dict[str, str]


def visible_gpus(gpus: Sequence[int | str] | None = None) -> list[str]:
    """The GPUs workers may use: ``gpus`` when given, else ``CUDA_VISIBLE_DEVICES`` when set, else every
    device torch sees (none on a CPU-only machine)."""
    if gpus is not None:
        return [str(g).strip() for g in gpus if str(g).strip()]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [g.strip() for g in env.split(",") if g.strip()]
        return ids[:next((i for i, g in enumerate(ids) if g.startswith("-")), len(ids))]  # CUDA stops at -1
    import torch
    return [str(i) for i in range(torch.cuda.device_count())]


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


def launch(spec: dict, slot: Slot, timeout: float | None = None) -> dict[str, Any]:
    """Run one spec in a fresh worker process; never raises (a crash becomes status "failed")."""
    from ..runs import write_json
    home = Path(spec["dirs"][0])
    job_file = write_json(home / JOB_FILE, spec)
    (home / RESULT_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "ltlab.batch", "--job", str(job_file)], capture_output=True,
                              text=True, timeout=timeout, env=worker_env(slot))
        res = read_result(home) or {
            "status": "failed", "error": f"worker exited with code {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    except subprocess.TimeoutExpired:
        res = {"status": "failed", "error": f"timed out after {timeout} s"}
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

    def run(self, specs: list[dict], root: Path, wait: bool = True) -> dict[str, dict]:
        results = run_pool(specs, self.slots, lambda spec, slot: launch(spec, slot, self.timeout))
        return {s["run_id"]: r for s, r in zip(specs, results)}
