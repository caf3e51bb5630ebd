"""Moved to :mod:`ltlab.launch.search`; this path warns once and is removed in ltlab 0.3."""
import importlib
import sys
import warnings

warnings.warn("ltlab.search moved to ltlab.launch.search; the old path is removed in ltlab 0.3",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("ltlab.launch.search")
