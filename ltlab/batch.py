"""Papermill sweeps, public surface: presets x grid x seeds -> one notebook execution per run -> a tidy table.

Each run executes in its own process with its own run directory ``<out_root>/<run_name>`` (two-stage
presets: ``<name>_stage1`` and ``<name>_stage2``, one after the other in the same job); the name is the run's
identity (:mod:`ltlab.launch.identity`), so a sweep started again finds its runs: complete ones are skipped,
interrupted ones resumed, failed ones reported without stopping the others. The work is done in
:mod:`ltlab.launch.sweep` (plan, executors, status) and :mod:`ltlab.launch.execute` (one run); this module
names what a notebook or script calls. ``python -m ltlab sweep`` is the command line.
"""
from __future__ import annotations

from .launch.identity import run_name
from .launch.sweep.run import expand, find_notebook, sweep, validate
from .launch.sweep.status import sweep_status
from .launch.sweep.tables import METRICS, export_tables, format_table, summarise
from .runs import run_state

__all__ = ["sweep", "sweep_status", "expand", "validate", "find_notebook", "summarise", "format_table",
           "export_tables", "run_name", "run_state", "METRICS"]
