"""What a sweep says while it runs: one line when it starts (how many runs, how many already finished), one
line per finished run (its status, the varying parameters, seconds, overall / many / medium / few, elapsed time
and an estimate of the time left), nothing else. Printed by :func:`ltlab.batch.sweep` and ``python -m ltlab
sweep`` (``progress=False`` / ``--quiet-progress`` silences it)."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

_SHOWN = ("overall", "many", "medium", "few")


def clock(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour)."""
    s = int(round(max(seconds, 0.0)))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def label(row: dict[str, Any], varying: list[str]) -> str:
    """The run's varying parameters as ``k=v`` (the run id when none vary)."""
    return " ".join(f"{k}={row[k]}" for k in varying if k in row)


class Progress:
    """Counts finished runs and prints a line for each (thread-safe: local workers finish in parallel).

    ``total``: runs of the sweep; ``to_run``: how many go to the executor (the rest were skipped as finished,
    running elsewhere or queued); ``varying``: parameter names that differ between runs (shown per line)."""

    def __init__(self, total: int, to_run: int, varying: list[str], *, parallel: int = 1,
                 stream: TextIO | None = None, enabled: bool = True):
        self.total, self.to_run, self.varying, self.parallel = total, to_run, varying, max(1, parallel)
        self.stream, self.enabled = stream, enabled
        self.finished = 0
        self.durations: list[float] = []
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream or sys.stdout, flush=True)

    def start(self, skipped: int, out_root: str) -> None:
        """The opening line."""
        already = f", {skipped} already finished (skipped)" if skipped else ""
        at_once = f", {self.parallel} at a time" if self.parallel > 1 and self.to_run > 1 else ""
        self._print(f"sweep: {self.total} run(s){already}; running {self.to_run}{at_once} into {out_root}")

    def done(self, spec: dict[str, Any], result: dict[str, Any], numbers: dict[str, float]) -> None:
        """One line for a run that ended (any status)."""
        with self._lock:
            self.finished += 1
            elapsed = time.perf_counter() - self.t0
            left = self.to_run - self.finished
            secs = result.get("seconds")
            if isinstance(secs, (int, float)):
                self.durations.append(float(secs))
            # the runs left at the mean run time so far, ``parallel`` at a time (the elapsed time per finished run
            # when no run said how long it took)
            per_run = sum(self.durations) / len(self.durations) if self.durations else elapsed / self.finished * \
                self.parallel
            eta = f", about {clock(per_run * left / min(self.parallel, left))} left" if left else ""
            status = result.get("status", "?")
            shown = "  ".join(f"{k} {100 * numbers[k]:.1f}" for k in _SHOWN
                              if isinstance(numbers.get(k), float) and numbers[k] == numbers[k])
            name = label(spec.get("row", {}), self.varying) or spec["run_id"]
            took = f", {secs:.0f} s" if isinstance(secs, (int, float)) else ""
            parts = [f"[{self.finished}/{self.to_run}] {status:<10}", name + took, shown,
                     f"({str(result.get('error', ''))[:160]})" if status == "failed" and result.get("error") else "",
                     f"(elapsed {clock(elapsed)}{eta})"]
            self._print("  ".join(p for p in parts if p))
