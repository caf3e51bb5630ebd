"""Moved to :mod:`ltlab.viz.paper_numbers`; this path warns once and is removed in ltlab 0.3.

The old name is the very same module object as the new one, so monkeypatching either path patches both."""
import importlib
import sys
import warnings

warnings.warn(
    "ltlab.paper_numbers moved to ltlab.viz.paper_numbers; the old path is removed in ltlab 0.3",
    DeprecationWarning, stacklevel=2)

sys.modules[__name__] = importlib.import_module("ltlab.viz.paper_numbers")
