"""Sweeps beyond one process pool: run plans, the per-run job, executors (local processes with GPU
packing, submitit's local and Slurm executors) and the status of a sweep read from its run directories.

The public entry points stay :func:`ltlab.batch.sweep` and ``python -m ltlab sweep``; this package holds
what they delegate to. :func:`sweep_status` is re-exported by :mod:`ltlab.batch`.
"""
from __future__ import annotations

from .status import sweep_status

__all__ = ["sweep_status"]
