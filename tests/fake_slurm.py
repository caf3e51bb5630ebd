"""A fake Slurm for tests: ``sbatch``, ``srun``, ``sacct``, ``squeue``, ``scancel`` and ``scontrol`` on PATH.

:func:`install` writes the commands into a bin folder; each one appends its arguments to
``$FAKE_SLURM_DIR/calls.jsonl`` and answers as Slurm does, from state files in ``$FAKE_SLURM_DIR``.
With ``FAKE_SLURM_RUN=1`` sbatch also runs the job: a detached runner executes the batch script once
per array index (``--array=0-N%P``: at most P at once) with the ``SLURM_*`` variables set, ``srun``
redirects to the ``--output``/``--error`` patterns and execs the command, ``scancel --signal SIG``
signals a task's process, and ``scontrol requeue`` makes the runner start that task again once its
process has ended (as Slurm's requeue after a preemption does). Task states (PENDING, RUNNING,
REQUEUED, COMPLETED, FAILED, CANCELLED) are what ``sacct`` reports.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "squeue", "scancel", "scontrol")


def install(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    """Write the fake commands into ``bin_dir``; returns the environment additions (PATH first, state dir)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {name} "$@"\n')
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FAKE_SLURM_DIR": str(state_dir)}


def calls(state_dir: Path) -> list[dict]:
    """Every recorded call: ``{"cmd": name, "argv": [...]}`` in order."""
    path = state_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def directives(script: str) -> dict[str, str]:
    """``#SBATCH --key=value`` lines of a batch script as a dict (a bare flag maps to "")."""
    out = {}
    for m in re.finditer(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.M):
        out[m.group(1)] = (m.group(2) or "").strip("'")
    return out


# ---------------------------------------------------------------------- the commands
def _state() -> Path:
    return Path(os.environ["FAKE_SLURM_DIR"])


def _set(task: str, state: str) -> None:
    (_state() / f"state_{task}").write_text(state)


def sbatch(args: list[str]) -> int:
    script = Path(args[-1]).read_text()
    if directives(script).get("partition") == "nope":
        print("sbatch: error: invalid partition specified: nope", file=sys.stderr)
        return 1
    counter = _state() / "next_id"
    job_id = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(job_id + 1))
    (_state() / f"job_{job_id}.sh").write_text(script)
    d = directives(script)
    m = re.match(r"(\d+)-(\d+)(?:%(\d+))?", d.get("array", "0-0"))
    first, last, par = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
    for i in range(first, last + 1):
        _set(f"{job_id}_{i}", "PENDING")
    if os.environ.get("FAKE_SLURM_RUN") == "1":
        with open(_state() / f"runner_{job_id}.log", "a") as log:
            subprocess.Popen([sys.executable, __file__, "_run", str(job_id), str(first), str(last), str(par)],
                             stdout=log, stderr=log, start_new_session=True)
    print(f"Submitted batch job {job_id}")
    return 0


def _run(args: list[str]) -> int:
    """The cluster: run every array task of a job, ``par`` at a time, requeueing on request."""
    job_id, first, last, par = args[0], int(args[1]), int(args[2]), int(args[3])
    todo = list(range(first, last + 1))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                index = todo.pop(0)
            _run_task(job_id, index)

    threads = [threading.Thread(target=worker) for _ in range(par)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


def _run_task(job_id: str, index: int) -> None:
    task = f"{job_id}_{index}"
    env = {**os.environ, "SLURM_JOB_ID": str(int(job_id) + 1 + index), "SLURM_ARRAY_JOB_ID": job_id,
           "SLURM_ARRAY_TASK_ID": str(index), "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "1",
           "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "fakenode"}
    while True:
        _set(task, "RUNNING")
        proc = subprocess.Popen(["bash", str(_state() / f"job_{job_id}.sh")], env=env, start_new_session=True)
        rc = proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Slurm ends every process of a finished job step
        except OSError:
            pass
        flag = _state() / f"requeue_{task}"
        if not flag.exists():
            _set(task, "COMPLETED" if rc == 0 else "FAILED")
            return
        flag.unlink()
        _set(task, "REQUEUED")
        time.sleep(2.0)  # a requeued job waits in the queue; the old kernel notices its parent is gone


def srun(args: list[str]) -> int:
    out = err = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("--output", "--error"):
            value = args.pop(0)
            for key, var in (("%A", "SLURM_ARRAY_JOB_ID"), ("%a", "SLURM_ARRAY_TASK_ID"), ("%j", "SLURM_JOB_ID")):
                value = value.replace(key, os.environ.get(var, ""))
            value = value.replace("%t", "0")
            out, err = (value, err) if opt == "--output" else (out, value)
    task = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    (_state() / f"pid_{task}").write_text(str(os.getpid()))
    for path, fd in ((out, 1), (err, 2)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), fd)
    os.execvp(args[0], args)
    return 1


def _tasks(ids: list[str]) -> list[str]:
    out = []
    for jid in ids:
        found = sorted(p.name[len("state_"):] for p in _state().glob(f"state_{jid.split('_')[0]}_*"))
        out += [t for t in found if "_" not in jid or t == jid]
    return out


def sacct(args: list[str]) -> int:
    ids = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    for task in _tasks(ids):
        print(f"{task}|{(_state() / f'state_{task}').read_text()}|fakenode")
    return 0


def squeue(args: list[str]) -> int:
    print("JOBID PARTITION NAME USER ST TIME NODES NODELIST(REASON)")
    for path in sorted(_state().glob("state_*")):
        state = path.read_text()
        if state in ("PENDING", "RUNNING", "REQUEUED"):
            print(f"{path.name[len('state_'):]} gpu ltlab-sweep user {state[:2]} 0:01 1 fakenode")
    return 0


def scancel(args: list[str]) -> int:
    sig = args[args.index("--signal") + 1] if "--signal" in args else None
    ids = [a for a in args if not a.startswith("-") and a != sig]
    for task in _tasks(ids):
        pid_file = _state() / f"pid_{task}"
        if pid_file.exists():
            name = sig or "TERM"
            try:
                os.kill(int(pid_file.read_text()), getattr(signal, name if name.startswith("SIG") else "SIG" + name))
            except ProcessLookupError:
                pass
        if sig is None:
            _set(task, "CANCELLED")
    return 0


def scontrol(args: list[str]) -> int:
    if args[:1] == ["requeue"]:
        for task in args[1:]:
            (_state() / f"requeue_{task}").write_text("")
    return 0


if __name__ == "__main__":
    name, rest = sys.argv[1], sys.argv[2:]
    if name != "_run":
        with open(_state() / "calls.jsonl", "a") as fh:
            fh.write(json.dumps({"cmd": name, "argv": rest}) + "\n")
    sys.exit(globals()[name](rest))
