"""Moved to :mod:`ltlab.launch.notebook`; this path warns once and is removed in ltlab 0.3."""
import warnings

from .launch.notebook import (NotebookError, execute_notebook, is_training_notebook,  # noqa: F401
                              notebook_parameters, run_notebook)

warnings.warn(
    "ltlab.notebook_runner moved to ltlab.launch.notebook; the old path is removed in ltlab 0.3",
    DeprecationWarning, stacklevel=2)
