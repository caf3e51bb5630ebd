"""Moved to :mod:`ltlab.launch.cli`; this path warns once and is removed in ltlab 0.3."""
import warnings

from .launch.cli import _print_summary, main, parser, run_preset, run_stages  # noqa: F401

warnings.warn(
    "ltlab.cli moved to ltlab.launch.cli; the old path is removed in ltlab 0.3",
    DeprecationWarning, stacklevel=2)
