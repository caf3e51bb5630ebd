"""Moved to :mod:`ltlab.launch.presets`; this path warns once and is removed in ltlab 0.3."""
import warnings

from .launch.presets import (EPOCH_FIELDS, INHERITED, PRESET_META, STAGE_TWO, load_preset, parse_params,  # noqa: F401
                             preset_keys, read_preset, resolve_paths, shorten_schedule, stage_two_config)

warnings.warn(
    "ltlab.presets moved to ltlab.launch.presets; the old path is removed in ltlab 0.3",
    DeprecationWarning, stacklevel=2)
