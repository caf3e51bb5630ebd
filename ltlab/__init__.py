"""ltlab: long-tailed recognition lab.

Public surface: ``RunConfig``, ``run``, ``load_run``, ``load_runs``, ``create_model``, ``create_loss``,
``get_dataset``. Imports are lazy so ``import ltlab`` stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "RunConfig": ("ltlab.config", "RunConfig"),
    "run": ("ltlab.engine", "run"),
    "load_run": ("ltlab.runs", "load_run"),
    "load_runs": ("ltlab.runs", "load_runs"),
    "create_model": ("ltlab.models", "create_model"),
    "create_loss": ("ltlab.losses", "create_loss"),
    "get_dataset": ("ltlab.data", "get_dataset"),
}

__all__ = list(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ltlab' has no attribute {name!r}")
