"""``python -m ltlab run|train``: thin wrappers over papermill and :func:`ltlab.run`."""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from .runs import runs_root


def parse_params(pairs: list[list[str]] | None) -> dict[str, Any]:
    """``-p key value`` pairs; each value is read as YAML (numbers, lists, dicts, None/null, True/False)."""
    out: dict[str, Any] = {}
    for key, raw in pairs or []:
        value = yaml.safe_load(raw) if raw not in ("None", "none") else None
        out[key] = value
    return out


def load_preset(path: str | Path) -> dict[str, Any]:
    """Parameters of a YAML preset (keys ``reported``/``description`` are documentation, not parameters)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"preset {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {p} must be a YAML mapping of parameter: value")
    return {k: v for k, v in data.items() if k not in ("reported", "description", "stages")}


def run_notebook(notebook: str | Path, params: dict[str, Any], *, kernel: str | None = None,
                 quiet: bool = False) -> Path:
    """Execute a training notebook with papermill; the executed copy lands in the run directory."""
    import papermill as pm

    from .config import RunConfig

    params = dict(params)
    RunConfig(**{k: v for k, v in params.items() if k != "run_dir"})  # validate before anything runs
    if not params.get("run_dir"):
        rid = params.get("run_id") or "{}_{}_{}_if{:g}_s{}".format(
            time.strftime("%Y%m%d-%H%M%S"), params.get("dataset", "digits_lt"), params.get("loss", "ce"),
            float(params.get("imbalance_factor", 100)), params.get("seed", 0))
        params["run_dir"] = str(runs_root() / rid)
    nb = Path(notebook).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / nb.name
        pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name=kernel,
                            progress_bar=False, log_output=not quiet)
        run_dir = Path(params["run_dir"])
        if run_dir.is_dir():
            shutil.copy2(out, run_dir / nb.name)
    return run_dir


def _print_summary(run_dir: Path) -> None:
    from .runs import load_run

    r = load_run(run_dir)
    s = r.summary()
    print(f"\nrun directory: {r.dir}")
    print(f"epoch {int(s['epoch']) + 1}: overall {s['acc']:.4f} | many {s['acc_many']:.4f} | "
          f"medium {s['acc_medium']:.4f} | few {s['acc_few']:.4f}  (balanced test split)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ltlab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute a notebook with papermill (parameters from a preset and -p)")
    r.add_argument("notebook")
    r.add_argument("--preset", action="append", default=[], help="YAML parameter file(s), later wins")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    r.add_argument("--kernel", default=None)
    r.add_argument("--quiet", action="store_true")
    t = sub.add_parser("train", help="train in this process (no notebook), e.g. under torchrun")
    t.add_argument("--preset", action="append", default=[])
    t.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    args = ap.parse_args(argv)
    params: dict[str, Any] = {}
    for preset in args.preset:
        params.update(load_preset(preset))
    params.update(parse_params(args.param))
    try:
        if args.cmd == "run":
            run_dir = run_notebook(args.notebook, params, kernel=args.kernel, quiet=args.quiet)
        else:
            from .engine import run as run_training
            run_dir = run_training(params).dir
    except (ValueError, FileNotFoundError) as exc:
        print(f"ltlab: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # papermill's PapermillExecutionError carries the notebook's own error
        if type(exc).__name__ != "PapermillExecutionError":
            raise
        print(f"ltlab: the notebook failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
        return 1
    _print_summary(run_dir)
    return 0
