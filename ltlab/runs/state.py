"""How far a run directory got (``run_state``: new, partial or complete) and the one "stage one is unfinished"
check (``check_finished``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd


def run_state(run_dir: str | os.PathLike) -> str:
    """``"complete"``, ``"partial"`` (``checkpoint.pt``, not finished) or ``"new"``.

    Complete: ``checkpoint.pt`` exists and ``metrics.csv`` ends at epoch ``epochs - 1`` of the run's own
    ``config.json`` (the epochs the run actually used)."""
    d = Path(run_dir)
    if not (d / "checkpoint.pt").exists():
        return "new"
    return "complete" if _epochs_done(d) == _epochs_planned(d) else "partial"


def _epochs_planned(d: Path) -> int | None:
    try:
        return int(json.loads((d / "config.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _epochs_done(d: Path) -> int:
    try:
        return int(pd.read_csv(d / "metrics.csv")["epoch"].iloc[-1]) + 1
    except (OSError, ValueError, KeyError, IndexError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return 0


def check_finished(init_from: str | os.PathLike) -> None:
    """Refuse a stage-one run (``init_from``) that has not trained all its epochs (stopped by
    ``epochs_per_call``, killed, ...): the one check every second stage goes through, whether started by
    ``ltlab.run``, ``python -m ltlab`` or a sweep. FileNotFoundError when it does not exist."""
    d = Path(init_from)
    if not d.is_dir():
        raise FileNotFoundError(f"init_from={init_from}: no such run directory; point init_from at a finished "
                                "stage-one run directory")
    if run_state(d) != "complete":
        raise ValueError(f"init_from={init_from}: stage one is unfinished ({_epochs_done(d)} of "
                         f"{_epochs_planned(d) or '?'} epochs done); finish it first with -p run_dir {init_from} "
                         "-p resume True (and no epochs_per_call), then run this stage")
