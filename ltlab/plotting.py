"""Moved to :mod:`ltlab.viz.plotting`; this path warns once and is removed in ltlab 0.3.

The old name is the very same module object as the new one, so monkeypatching either path patches both."""
import importlib
import sys
import warnings

warnings.warn(
    "ltlab.plotting moved to ltlab.viz.plotting; the old path is removed in ltlab 0.3",
    DeprecationWarning, stacklevel=2)

sys.modules[__name__] = importlib.import_module("ltlab.viz.plotting")
