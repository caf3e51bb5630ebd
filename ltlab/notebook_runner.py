"""Executing a notebook with papermill for ``python -m ltlab run``: the training notebook (01_train) as a run,
any other notebook with its own parameters; a notebook that raises keeps its executed copy."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .runs import new_run_id, project_home, runs_root, timestamp


class NotebookError(RuntimeError):
    """A notebook that raised while papermill ran it; the message names the error and the executed copy."""


def notebook_parameters(notebook: str | Path) -> list[str]:
    """The names in a notebook's ``parameters`` cell (papermill's reading of it)."""
    import papermill as pm

    nb = Path(notebook)
    if not nb.is_file():
        raise FileNotFoundError(f"notebook {notebook} does not exist; the notebooks are in {project_home() / 'notebooks'}")
    return list(pm.inspect_notebook(str(nb)))


def is_training_notebook(notebook: str | Path) -> bool:
    """Whether the notebook trains a run (its parameters are RunConfig fields: 01_train)."""
    from .config import RunConfig

    names = set(notebook_parameters(notebook))
    return {"loss", "epochs", "run_dir"} <= names <= set(RunConfig.parameter_names())


def run_notebook(notebook: str | Path, params: dict[str, Any], *, kernel: str | None = None,
                 quiet: bool = False) -> Path:
    """Execute a notebook with papermill; returns the run directory (training notebook, 01_train: parameters
    validated as a RunConfig, the executed copy in the run directory) or the executed notebook (any other:
    parameters checked against that notebook's ``parameters`` cell, the copy under ``runs/notebooks/``).

    A notebook that raises keeps its executed copy (in the run directory when there is one) and raises
    :class:`NotebookError` naming the error and that copy."""
    from .config import RunConfig, check_plain

    params, nb = check_plain(dict(params), "parameters"), Path(notebook).resolve()  # data only: papermill writes
    # any other type into the notebook unescaped (issue 25)
    if is_training_notebook(nb):
        RunConfig(**params)  # validate before anything runs (run_dir too: resume=True needs it)
        if not params.get("run_dir"):
            params["run_dir"] = str(runs_root() / (params.get("run_id") or new_run_id(params)))
        run_dir = Path(params["run_dir"])
    else:
        names = notebook_parameters(nb)
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"{nb.name} has no parameter(s) {unknown}; its parameters cell has: {', '.join(names)}")
        run_dir = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / nb.name
        try:
            _execute(nb, out, params, kernel, quiet)
        except Exception as exc:  # papermill's PapermillExecutionError carries the notebook's own error
            if type(exc).__name__ != "PapermillExecutionError" or not out.exists():
                raise
            kept = _keep(out, None if exc.ename in ("RunDirRefusedError", "RunDirLockedError") else run_dir, nb.name)
            first = (str(exc.evalue).strip().splitlines() or [""])[0].rstrip(".")
            raise NotebookError(f"notebook {nb.name} failed: {exc.ename}: {first}; the executed notebook, with the "
                                f"traceback, is {kept}") from None
        return _keep(out, run_dir, nb.name)


def _keep(executed: Path, run_dir: Path | None, name: str) -> Path:
    """Copy the executed notebook into ``run_dir`` (when it exists), else ``runs/notebooks/<time>_<name>``;
    returns the run directory when it went there, else the copy."""
    if run_dir is not None and run_dir.is_dir():
        shutil.copy2(executed, run_dir / name)
        return run_dir
    dest = runs_root() / "notebooks" / f"{timestamp()}_{name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, dest)
    return dest


def _execute(nb: Path, out: Path, params: dict[str, Any], kernel: str | None, quiet: bool) -> None:
    """papermill in the notebook's folder; ``quiet``: no cell output, no papermill warnings ("Passed unknown
    parameter"), the kernel's own log (ipykernel's "TCP without encryption") off."""
    import logging

    import papermill as pm

    log = logging.getLogger("papermill")
    level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name=kernel,
                            progress_bar=False, log_output=not quiet,
                            **({"extra_arguments": ["--IPKernelApp.log_level=CRITICAL"]} if quiet else {}))
    finally:
        log.setLevel(level)
