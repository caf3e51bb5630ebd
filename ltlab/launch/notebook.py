"""The one papermill call: every notebook ltlab executes (``python -m ltlab run``, a sweep's runs, notebook 07's
runs) goes through :func:`execute_notebook`, with the same keyword arguments, log silencing and error format.

:func:`run_notebook` is what ``python -m ltlab run`` does with one notebook: the training notebook (01_train)
as a run (parameters validated as a RunConfig, the executed copy in the run directory), any other notebook
with its own parameters (checked against its ``parameters`` cell, the copy under ``runs/notebooks/``).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..runs import project_home, runs_root, timestamp


class NotebookError(RuntimeError):
    """A notebook that raised while papermill ran it: ``ename`` / ``evalue`` (the notebook's own exception) and
    ``notebook`` (the executed copy, with the traceback); the message's first line names all three, the rest
    of the notebook's message follows, indented (e.g. the runs there are, after "run directory ... does not
    exist"; at most ``MORE_LINES`` lines)."""

    MORE_LINES = 25

    def __init__(self, name: str, ename: str, evalue: str, notebook: Path | str):
        self.ename, self.evalue, self.notebook = ename, evalue, str(notebook)
        lines = str(evalue).strip().splitlines() or [""]
        first, more = lines[0].rstrip("."), [ln for ln in lines[1:] if ln.strip()]
        if len(more) > self.MORE_LINES:
            more = more[:self.MORE_LINES] + [f"... ({len(more) - self.MORE_LINES} more lines in the notebook)"]
        super().__init__(f"notebook {name} failed: {ename}: {first}; the executed notebook, with the traceback, "
                         f"is {notebook}" + "".join(f"\n  {ln}" for ln in more))


def notebook_parameters(notebook: str | Path) -> list[str]:
    """The names in a notebook's ``parameters`` cell (papermill's reading of it)."""
    import papermill as pm

    nb = Path(notebook)
    if not nb.is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist; the notebooks are in {project_home() / 'notebooks'}")
    return list(pm.inspect_notebook(str(nb)))


def is_training_notebook(notebook: str | Path) -> bool:
    """Whether the notebook trains a run (its parameters are RunConfig fields: 01_train)."""
    from ..config import RunConfig

    names = set(notebook_parameters(notebook))
    return {"loss", "epochs", "run_dir"} <= names <= set(RunConfig.parameter_names())


def notebook_parameters_of(params: dict[str, Any]) -> dict[str, Any]:
    """The values papermill writes into the injected cell: EVERY parameter of every notebook ltlab runs passes
    here (and only here) on its way to papermill."""
    from ..config import check_plain  # parameters are plain data (issue 25): papermill writes unknown types unescaped
    return check_plain(dict(params), "parameters")


def execute_notebook(nb: str | Path, out: str | Path, params: dict[str, Any], *, kernel: str | None = None,
                     quiet: bool = True) -> Path:
    """Execute ``nb`` into ``out`` with papermill, in the notebook's own folder (as JupyterLab runs it).

    ``quiet``: no cell output. Papermill's warnings ("Passed unknown parameter") and the kernel's own log
    (ipykernel's "TCP without encryption") are off either way, unless the environment sets
    ``LTLAB_VERBOSE=1``. A notebook that raises gives :class:`NotebookError`; ``out`` then holds the executed
    copy with the traceback."""
    import logging
    import os

    import papermill as pm

    nb, out = Path(nb), Path(out)
    verbose = os.environ.get("LTLAB_VERBOSE", "") not in ("", "0")
    log = logging.getLogger("papermill")
    level = log.level
    if not verbose:
        log.setLevel(logging.ERROR)
    try:
        pm.execute_notebook(str(nb), str(out), parameters=notebook_parameters_of(params), cwd=str(nb.parent),
                            kernel_name=kernel, progress_bar=False, log_output=not quiet,
                            **({} if verbose else {"extra_arguments": ["--IPKernelApp.log_level=CRITICAL"]}))
    except Exception as exc:  # papermill's PapermillExecutionError carries the notebook's own error
        if type(exc).__name__ != "PapermillExecutionError" or not out.exists():
            raise
        raise NotebookError(nb.name, exc.ename, str(exc.evalue), out) from None
    finally:
        log.setLevel(level)
    return out


def run_notebook(notebook: str | Path, params: dict[str, Any], *, kernel: str | None = None,
                 quiet: bool = False) -> Path:
    """Execute a notebook with papermill; returns the run directory (training notebook) or the executed notebook
    (any other). Relative paths in ``params`` (``run_dir``, ``root``, ``init_from``, list files; an analysis
    notebook's ``output_dir``, and its ``run_dirs`` where they exist there) are relative to the current folder,
    not to the notebook's (:func:`ltlab.launch.presets.resolve_analysis_paths`). A training notebook without ``run_dir`` gets
    ``runs/<name>`` (:func:`ltlab.launch.identity.fresh_name`).

    A notebook that raises keeps its executed copy (in the run directory when there is one) and raises
    :class:`NotebookError` naming the error and that copy."""
    from ..config import RunConfig
    from .identity import fresh_name
    from .presets import resolve_analysis_paths, resolve_paths

    nb = Path(notebook).resolve()
    training = is_training_notebook(nb)
    # the kernel runs in the notebook's folder: relative paths are made absolute against the folder of the caller
    params = (resolve_paths if training else resolve_analysis_paths)(dict(params), Path.cwd())
    if training:
        RunConfig(**params)  # validate before anything runs (run_dir too: resume=True needs it)
        if not params.get("run_dir"):
            params["run_dir"] = str(runs_root() / (params.get("run_id") or fresh_name([params])))
        run_dir: Path | None = Path(params["run_dir"])
    else:
        names = notebook_parameters(nb)
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"{nb.name} has no parameter(s) {unknown}; its parameters cell has: {', '.join(names)}")
        run_dir = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / nb.name
        try:
            _papermill(nb, out, params, kernel, quiet)
        except NotebookError as exc:
            refused = exc.ename in ("RunDirRefusedError", "RunDirLockedError")  # not ours: keep out of that folder
            raise NotebookError(nb.name, exc.ename, exc.evalue, _keep(out, None if refused else run_dir, nb.name)) \
                from None
        kept = _keep(out, run_dir, nb.name)
    return run_dir if run_dir is not None else kept


def _papermill(nb: Path, out: Path, params: dict[str, Any], kernel: str | None, quiet: bool) -> None:
    execute_notebook(nb, out, params, kernel=kernel, quiet=quiet)


def _keep(executed: Path, run_dir: Path | None, name: str) -> Path:
    """Copy the executed notebook into ``run_dir`` (when it exists), else ``runs/notebooks/<time>_<name>``;
    returns the copy."""
    if run_dir is not None and run_dir.is_dir():
        shutil.copy2(executed, run_dir / name)
        return run_dir / name
    dest = runs_root() / "notebooks" / f"{timestamp()}_{name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, dest)
    return dest
