"""``python -m ltlab run|train``: thin wrappers over papermill and :func:`ltlab.run`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .notebook_runner import NotebookError, is_training_notebook, run_notebook
from .presets import load_preset, parse_params, read_preset, resolve_paths  # noqa: F401 - also their old path
from .runs import runs_root, timestamp
from .sweeps.plan import check_stages


def _check_stage(params: dict[str, Any], init_from: str | None, planned: bool = False) -> Any:
    """Validate a stage and its data before anything runs (clear errors, nothing written). ``planned``: its
    ``init_from`` is a stage one this command trains first (checked as finished only when it is not)."""
    from . import distributed
    from .build import check_data
    from .config import RunConfig
    from .stages import get_stage

    config = RunConfig(**{**params, **({"init_from": init_from} if init_from else {})})
    stage = get_stage(config.stage)
    if distributed.launched_distributed() and not stage.distributed:
        raise ValueError(f"stage={stage.name!r} ({stage.summary}) runs in one process and cannot run under torchrun "
                         "(nothing was trained); run this preset without torchrun, or train stage one under torchrun "
                         "and then this stage without it, with -p init_from <stage-one run directory>")
    if config.init_from and not planned:
        check_finished(config.init_from)
    check_data(config, train=not init_from)
    run_dir = params.get("run_dir")
    if run_dir and not config.resume and ((Path(run_dir) / "metrics.csv").exists()
                                          or (Path(run_dir) / "checkpoint.pt").exists()):
        raise ValueError(f"{run_dir} already holds a run; choose another run_dir (or resume=True)")
    return config


def check_finished(init_from: str | Path) -> None:
    """Refuse an ``init_from`` run that has not trained all its epochs (e.g. stopped by ``epochs_per_call``)."""
    from .sweeps.job import run_state

    d = Path(init_from)
    state = run_state(d) if d.is_dir() else "missing"
    if state == "missing":
        raise FileNotFoundError(f"init_from={init_from}: no such run directory; point init_from at a finished "
                                "stage-one run directory")
    if state != "complete":
        raise ValueError(f"init_from={init_from}: stage one is unfinished ({_progress(d)}); finish it first with "
                         f"-p run_dir {init_from} -p resume True (and no epochs_per_call), then run this stage")


def _progress(run_dir: Path) -> str:
    """``"k of N epochs done"`` from a run directory's metrics.csv and config.json."""
    import json

    import pandas as pd
    try:
        epochs = json.loads((run_dir / "config.json").read_text()).get("epochs", "?")
    except (OSError, ValueError):
        epochs = "?"
    try:
        done = int(pd.read_csv(run_dir / "metrics.csv")["epoch"].iloc[-1]) + 1
    except (OSError, ValueError, KeyError, IndexError, pd.errors.EmptyDataError):
        done = 0
    return f"{done} of {epochs} epochs done"


def _stage_dirs(stages: list[dict[str, Any]], base: str) -> None:
    """Name each stage's run directory: ``runs/<base>_stage1`` / ``_stage2`` when auto-named; with one given
    ``run_dir`` X (every stage), stage two gets ``X_stage2``, or ``<Y>_stage2`` when X is ``<Y>_stage1``; an X
    that does not exist while ``X_stage1`` does (an auto-named pair given by its base name) means that pair."""
    one = stages[0].get("run_dir")
    if len(stages) > 1 and one and stages[1].get("run_dir") == one and not Path(one).exists() \
            and Path(one.rstrip("/") + "_stage1").is_dir():
        for stage in stages:
            stage["run_dir"] = one.rstrip("/") + "_stage1"
    for i, stage in enumerate(stages):
        suffix = "" if len(stages) == 1 else f"_stage{i + 1}"
        if not stage.get("run_dir"):
            stage["run_dir"] = str(runs_root() / ((stage.get("run_id") or base) + suffix))
        elif i > 0 and stage["run_dir"] == stages[0]["run_dir"]:
            first = stage["run_dir"].rstrip("/")
            stage["run_dir"] = (first[:-len("_stage1")] if first.endswith("_stage1") else first) + suffix


def _resume_plan(stages: list[dict[str, Any]]) -> list[bool]:
    """With ``resume=True`` on a two-stage preset: which stages still train (a complete one is skipped) and,
    for each that does, ``resume`` set to whether it has a checkpoint (an unstarted stage two starts fresh). A
    one-stage run is left to the engine's resume (its checkpoint decides)."""
    from .sweeps.job import run_state

    if len(stages) == 1:
        return [True]
    todo = []
    for stage in stages:
        state = run_state(Path(stage["run_dir"])) if stage.get("resume") else "new"
        if stage.get("resume"):
            stage["resume"] = state == "partial"
        todo.append(state != "complete")
    return todo


def run_preset(presets: str | Path | list[str | Path], overrides: dict[str, Any] | None = None, *,
               notebook: str | Path | None = None, kernel: str | None = None, quiet: bool = False) -> list[Path]:
    """Run every stage of a preset: through ``notebook`` with papermill, or in this process when None.

    Stage two gets ``init_from`` = stage one's run directory. Both stages (and their data, and whether they
    run under torchrun) are validated before the first one starts. With ``resume=True`` a finished stage is
    skipped and the unfinished one resumed (a stage two that never started starts). A stage one stopped
    early (``epochs_per_call``) ends the command with what to do instead of starting stage two. A preset's
    ``posthoc`` step runs after the final stage and saves ``posthoc_<method>.json`` there. Returns the run
    directories, stage one first.
    """
    from . import distributed
    from .build import resolve_device
    from .engine import run as run_training
    from .posthoc import apply_posthoc

    stages = read_preset(presets, overrides)
    stem = Path(presets if isinstance(presets, (str, Path)) else list(presets)[-1]).stem
    base = f"{timestamp()}_{stem}"
    if distributed.launched_distributed():  # torchrun: every rank must name the same run directories
        if notebook is not None:
            raise ValueError("`python -m ltlab run` executes a notebook in a Jupyter kernel and cannot run under "
                             "torchrun; use `torchrun --nproc_per_node=N -m ltlab train --preset ...`")
        distributed.setup(resolve_device(stages[0].get("device", "auto")))
        base = distributed.all_gather_objects(base)[0]
    _stage_dirs(stages, base)
    todo = _resume_plan(stages)
    configs = [_check_stage(stage, stages[0]["run_dir"] if i else None, planned=bool(i and todo[0]))
               for i, stage in enumerate(stages) if todo[i]]
    if all(todo):
        check_stages(configs)  # stage two can start from stage one (same data and model, a head it takes over)
    dirs: list[Path] = []
    for i, stage in enumerate(stages):
        params = {**stage, **({"init_from": str(dirs[0])} if i else {})}
        if not todo[i]:
            dirs.append(Path(stage["run_dir"]))
        elif notebook is None:
            dirs.append(run_training(params).dir)
        else:
            dirs.append(run_notebook(notebook, params, kernel=kernel, quiet=quiet))
        if i + 1 < len(stages) and todo[i]:
            check_finished(dirs[i])
    if stages[-1].get("posthoc"):
        if distributed.context().is_main:
            apply_posthoc(dirs[-1], device=resolve_device(stages[-1].get("device", "auto")))
        distributed.barrier()
    return dirs


def _print_summary(run_dir: Path) -> None:
    from .metrics import empty_group_note
    from .runs import load_run

    r = load_run(run_dir)
    s = r.summary()
    shots = {g: s[f"acc_{g}"] for g in ("many", "medium", "few")}
    print(f"\nrun directory: {r.dir}")
    print(f"epoch {int(s['epoch']) + 1}: overall {s['acc']:.4f} | "
          + " | ".join(f"{g} {'--' if v != v else f'{v:.4f}'}" for g, v in shots.items())
          + "  (balanced test split)")
    for g, v in shots.items():
        if v != v:  # NaN: an empty group
            print(f"  {empty_group_note(g)}")


def _error(exc: BaseException, code: int) -> int:
    """Print ``exc`` as one ``ltlab: error:`` line (its lines joined), end the process group (under torchrun a
    live one at exit aborts the rank with SIGABRT) and return ``code``."""
    from . import distributed

    distributed.cleanup()
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    print(f"ltlab: error: {text}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:  # papermill sweeps have their own parser
        from .sweeps.cli import main as sweep_main
        return sweep_main(argv[1:])
    if argv[:1] == ["search"]:  # Optuna search (ltlab.search owns its arguments)
        from .search import add_arguments, main as search_main
        return search_main(add_arguments(argparse.ArgumentParser(prog="python -m ltlab search")).parse_args(argv[1:]))
    ap = argparse.ArgumentParser(prog="python -m ltlab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute a notebook with papermill (parameters from a preset and -p)")
    r.add_argument("notebook")
    r.add_argument("--preset", action="append", default=[],
                   help="YAML preset(s), later wins; a two-stage preset runs both stages")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override; KEY applies to every stage, stage_one.KEY / stage_two.KEY to one")
    r.add_argument("--kernel", default=None)
    r.add_argument("--quiet", action="store_true")
    sub.add_parser("sweep", help="papermill sweep over presets x grid x seeds (see `python -m ltlab sweep -h`)",
                   add_help=False)
    sub.add_parser("search", help="Optuna search over a loss's hyper-parameters (`python -m ltlab search -h`)",
                   add_help=False)
    t = sub.add_parser("train", help="train in this process (no notebook), e.g. under torchrun")
    t.add_argument("--preset", action="append", default=[])
    t.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    args = ap.parse_args(argv)
    params = resolve_paths(parse_params(args.param), Path.cwd())
    from . import distributed
    try:
        if args.cmd == "run" and distributed.launched_distributed():
            raise ValueError("`python -m ltlab run` executes a notebook in a Jupyter kernel and cannot run under "
                             "torchrun; use `torchrun --nproc_per_node=N -m ltlab train --preset ...`")
        training = args.cmd == "train" or is_training_notebook(args.notebook)
        if args.preset and not training:
            raise ValueError(f"--preset trains a run: use it with notebooks/01_train.ipynb (or `python -m ltlab "
                             f"train`), not {Path(args.notebook).name}, which takes its own -p parameters")
        if args.preset:
            notebook = args.notebook if args.cmd == "run" else None
            run_dirs = run_preset(args.preset, params, notebook=notebook, kernel=getattr(args, "kernel", None),
                                  quiet=getattr(args, "quiet", False))
        elif args.cmd == "run":
            run_dirs = [run_notebook(args.notebook, params, kernel=args.kernel, quiet=args.quiet)]
        else:
            from .engine import run as run_training
            run_dirs = [run_training(params).dir]
    except (ValueError, FileNotFoundError) as exc:
        return _error(exc, 2)
    except (FloatingPointError, OSError, NotebookError) as exc:  # NaN/inf loss; disk full or permissions (the
        return _error(exc, 1)                                    # path is named); a notebook that raised
    if not distributed.context().is_main:
        distributed.cleanup()
        return 0
    if not training:
        print(f"executed notebook: {run_dirs[0]}")
        return 0
    for d in run_dirs:
        _print_summary(d)
    distributed.cleanup()
    if args.preset:
        from .runs import results_table
        with __import__("pandas").option_context("display.width", 200, "display.max_columns", 30):
            print("\n" + results_table(run_dirs).round(2).to_string(index=False, na_rep="--"))
    return 0
