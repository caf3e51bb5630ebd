"""Run directories: the only contract between training and analysis (docs/architecture.md, "Run directory").

The package owns the run-directory contract, one concern per submodule:

- :mod:`~ltlab.runs.paths`: where runs live (``project_home``, ``runs_root``) and the ``metrics.csv`` columns;
- :mod:`~ltlab.runs.errors`: ``RunFileError`` and the refused / locked / not-found errors built on it;
- :mod:`~ltlab.runs.files`: atomic writes (every file goes to a temporary name in the same folder, is fsynced and
  renamed, so a crash never leaves a half-written file), JSON / CSV / ``.npz`` / torch files, checkpoints;
- :mod:`~ltlab.runs.lock`: one writer per run directory (the OS lock, ltlab's own files only, stale temporary
  files, claiming a directory before writing);
- :mod:`~ltlab.runs.read`: safe reading (regular files, bounded sizes, ``.npz`` headers checked before any array
  is read, values validated against the run's config) and ``NpzArrays`` (arrays read on first use);
- :mod:`~ltlab.runs.run`: :class:`Run`, ``load_run`` / ``load_runs`` (lazily), run names, listing runs under
  ``runs/`` and ``results_table``;
- :mod:`~ltlab.runs.state`: how far a run got (``run_state``) and ``check_finished``.

Every name is importable from ``ltlab.runs`` itself, as when it was one module; ``rebuild_model``
(:mod:`ltlab.build`, the way back from a run directory to its model) too, loaded on first use. To patch a function
that the package's own modules call (``atomic_write_bytes``, ``read_metrics``, ...), patch the submodule that
defines it (``ltlab.runs.files.atomic_write_bytes``): the name here is a re-export.
"""
from __future__ import annotations

from typing import Any

from .errors import RunDirLockedError, RunDirRefusedError, RunFileError, RunNotFoundError
from .paths import METRIC_COLUMNS, project_home, runs_root
from .files import (CHECKPOINT_FILE_KEY, CHECKPOINTS, CONVERT_HINT, TEMP_PREFIX, TEMP_SUFFIX, _CKPT_KEYS,
                    _keep_previous, _umask, _warn_older, _write_error, atomic_write_bytes, convert_checkpoint,
                    fsync_dir, load_checkpoint, path_error, save_torch, write_csv, write_json, write_npz)
from .lock import (_HELD, LOCK_FILE, RUN_FILES, RunDirLock, _holder, _is_ltlab_config, checkpoint_stamp,
                   claim_run_dir, foreign_files, is_ltlab_temp, is_run_file, lock_run_dir, refuse_foreign,
                   remove_stale_temps)
from .read import (MAX_NPZ_BYTES, MAX_NPZ_MEMBERS, MAX_TEST_ROWS, MAX_TEXT_BYTES, MMAP_MIN_BYTES, NpzArrays,
                   _config_int, _describe, _nbytes, _need, _probe_limit, lazy_npz, npz_headers, open_regular,
                   read_config, read_json, read_metrics, read_npz, read_per_class, read_probes, validate_metrics,
                   validate_per_class, validate_probes)
from .run import (MAKE_A_RUN, SHOTS, Run, _probe_not_recorded, as_run, find_runs, list_runs, load_run, load_runs,
                  new_run_id, resolve_run_dir, results_table, run_label, runs_hint, timestamp)
from .state import _epochs_done, _epochs_planned, check_finished, run_state

# names defined above this package (it may not import them at load time: ltlab.build imports ltlab.runs)
_LAZY = {"rebuild_model": "ltlab.build"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
