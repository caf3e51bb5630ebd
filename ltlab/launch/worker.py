"""A local sweep's worker process: ``python -m ltlab.launch.worker JOB_FILE`` executes the run spec in JOB_FILE
(:func:`ltlab.launch.execute.execute`). SIGTERM (the sweep ending it: timeout, Ctrl-C, its parent killed)
stops the run with its result written and its heartbeat removed.

A module of its own, imported by nothing, so ``-m`` loads it once (no package imports its own ``__main__``).
"""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any


def _stop(signum: int, frame: Any) -> None:
    from .execute import Stopped
    raise Stopped(f"stopped by {signal.Signals(signum).name}")  # interrupted: the next sweep resumes it


def _die_with_parent() -> None:
    """Linux: SIGTERM to this worker when the sweep that started it dies, even by SIGKILL
    (``PR_SET_PDEATHSIG``); and stop at once when it is already gone."""
    import ctypes
    import os

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the sweep ends its workers itself on exit and on SIGTERM / SIGINT / SIGHUP
    parent = os.environ.get("LTLAB_PARENT_PID")
    if parent and parent.isdigit() and os.getppid() != int(parent):
        raise SystemExit(1)  # the sweep is gone already: nothing to run for


def main(argv: list[str] | None = None) -> int:
    """Execute the spec in ``argv[0]``; 0 when the run was recorded (its result file says how it went), else 1
    with the reason on stderr (the sweep shows it as the run's error)."""
    from .execute import execute
    from ..viz.deferred import defer_rfc3987_syntax

    defer_rfc3987_syntax()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m ltlab.launch.worker JOB_FILE", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    _die_with_parent()
    from .execute import read_result
    spec = json.loads(Path(argv[0]).read_text())
    res = execute(spec)
    if read_result(spec["dirs"][0]) is None:  # refused before writing anything (a folder that is not ltlab's,
        print(res.get("error") or res.get("status"), file=sys.stderr)  # a run another process holds): say why
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
