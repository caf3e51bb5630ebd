"""``python -m ltlab train|run|sweep``: the one command line. ``train`` trains in this process (also under
torchrun), ``run`` executes a notebook with papermill, ``sweep`` runs presets x grid x seeds; every run goes
through :func:`ltlab.launch.execute.execute`. Every failure is one ``ltlab: error: ...`` line on stderr
(exit 2: what was asked is wrong, nothing ran; exit 1: a run failed)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .notebook import NotebookError, is_training_notebook, run_notebook
from .presets import parse_params, read_preset, resolve_paths

TORCHRUN_RUN = ("`python -m ltlab run` executes a notebook in a Jupyter kernel and cannot run under torchrun; use "
                "`torchrun --nproc_per_node=N -m ltlab train --preset ...`")


# ---------------------------------------------------------------------- train / run
def _check(spec: dict[str, Any]) -> None:
    """Everything about a run that can be checked before anything trains (clear errors, nothing written): an
    explicit stage-one ``init_from`` finished, no run in the way (without resume), every stage to run valid,
    runnable here (torchrun) and on data that is there, and stage two able to start from stage one."""
    from .. import distributed
    from ..build import check_data
    from ..config import RunConfig
    from ..runs import run_state
    from ..stages import get_stage
    from .execute import preflight
    from .sweep.plan import check_stages

    preflight(spec)
    configs = []
    for i, params in enumerate(spec["stages"]):
        if spec["resume"] and run_state(params["run_dir"]) == "complete":
            continue  # skipped
        config = RunConfig(**params)
        stage = get_stage(config.stage)
        if distributed.launched_distributed() and not stage.distributed:
            raise ValueError(f"stage={stage.name!r} ({stage.summary}) runs in one process and cannot run under "
                             "torchrun (nothing was trained); run this preset without torchrun, or train stage one "
                             "under torchrun and then this stage without it, with -p init_from <stage-one run "
                             "directory>")
        check_data(config, train=not i)
        configs.append(config)
    if len(configs) == len(spec["stages"]):
        check_stages(configs)  # stage two can start from stage one (same data and model, a head it takes over)


def run_preset(presets: str | Path | list[str | Path], overrides: dict[str, Any] | None = None, *,
               notebook: str | Path | None = None, kernel: str | None = None, quiet: bool = False) -> list[Path]:
    """Run every stage of a preset (:func:`run_stages` of :func:`ltlab.launch.presets.read_preset`)."""
    return run_stages(read_preset(presets, overrides), notebook=notebook, kernel=kernel, quiet=quiet)


def run_stages(stages: list[dict[str, Any]], *, notebook: str | Path | None = None, kernel: str | None = None,
               quiet: bool = False) -> list[Path]:
    """Run the stages of one run through ``notebook`` with papermill, or in this process when None (torchrun:
    on every rank). Returns the run directories, stage one first.

    Named ``runs/<time>_<run name>`` (``_stage1`` / ``_stage2``) unless ``run_dir`` is given. Every stage, its
    data and whether it runs under torchrun are checked before the first one starts. With ``resume=True`` a
    finished stage is skipped and the unfinished one resumed (a stage two that never started starts); a
    stage one stopped early (``epochs_per_call``) ends the command with what to do instead of starting stage
    two. A preset's ``posthoc`` step runs after the final stage and saves ``posthoc_<method>.json`` there.
    """
    from .. import distributed
    from ..build import resolve_device
    from ..runs import runs_root
    from .execute import execute, spec
    from .identity import fresh_name, stage_dirs

    name = fresh_name(stages)
    if distributed.launched_distributed():  # torchrun: every rank must name the same run directories
        if notebook is not None:
            raise ValueError(TORCHRUN_RUN)
        distributed.setup(resolve_device(stages[0].get("device", "auto")))
        name = distributed.all_gather_objects(name)[0]
    dirs = stage_dirs(stages, name, runs_root())
    run = spec(stages, dirs, notebook=notebook, kernel=kernel, quiet=quiet, resume=bool(stages[0].get("resume")))
    _check(run)
    execute(run, errors="raise", main=distributed.context().is_main)
    return [Path(d) for d in dirs]


def export_folder(notebook: str | Path, params: dict) -> Path:
    """Where an analysis notebook run with ``export=True`` wrote its figures: ``output_dir`` as given (made absolute
    against the current folder), else the notebook's default, relative to the project folder."""
    import papermill as pm

    from ..viz.export import resolve_out_dir
    given = params.get("output_dir")
    if given is None:
        given = (pm.inspect_notebook(str(notebook)).get("output_dir") or {}).get("default", "exports")
        given = str(given).strip("\"'")
    return resolve_out_dir(given)


def _print_summary(run_dir: Path) -> None:
    from ..metrics import empty_group_note
    from ..runs import load_run

    r = load_run(run_dir)
    s = r.summary()
    shots = {g: s[f"acc_{g}"] for g in ("many", "medium", "few")}
    print(f"run directory: {r.dir}")
    print(f"epoch {s['epoch']}: overall {s['acc']:.4f} | "
          + " | ".join(f"{g} {'--' if v != v else f'{v:.4f}'}" for g, v in shots.items())
          + "  (balanced test split)")
    for g, v in shots.items():
        if v != v:  # NaN: an empty group
            print(f"  {empty_group_note(g)}")


def _train_or_run(args: argparse.Namespace) -> int:
    from .. import distributed

    params = resolve_paths(parse_params(args.param), Path.cwd())
    if args.cmd == "run" and distributed.launched_distributed():
        raise ValueError(TORCHRUN_RUN)
    training = args.cmd == "train" or is_training_notebook(args.notebook)
    if args.preset and not training:
        raise ValueError(f"--preset trains a run: use it with notebooks/01_train.ipynb (or `python -m ltlab "
                         f"train`), not {Path(args.notebook).name}, which takes its own -p parameters")
    notebook = args.notebook if args.cmd == "run" else None
    kernel, quiet = getattr(args, "kernel", None), getattr(args, "quiet", False)
    if not training:
        print(f"executed notebook: {run_notebook(args.notebook, params, kernel=kernel, quiet=quiet)}")
        if params.get("export"):
            print(f"exports: {export_folder(args.notebook, params)}")
        return 0
    if args.preset:
        run_dirs = run_preset(args.preset, params, notebook=notebook, kernel=kernel, quiet=quiet)
    else:
        run_dirs = run_stages([params], notebook=notebook, kernel=kernel, quiet=quiet)
    if not distributed.context().is_main:
        distributed.cleanup()
        return 0
    for d in run_dirs:
        _print_summary(d)
    distributed.cleanup()
    if args.preset:
        import pandas as pd

        from ..runs import results_table
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print("\n" + results_table(run_dirs).round(2).to_string(index=False, na_rep="--"))
    return 0


# ---------------------------------------------------------------------- sweep
def _print_status(out_root: str) -> int:
    import pandas as pd

    from .sweep.status import counts_line, sweep_status
    status = sweep_status(out_root)
    shown = status.drop(columns=["error", "notebook", "run_dir"]).astype(object)
    shown = shown.where(shown.notna(), "--")  # a job id or heartbeat not known (yet): --, never None
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        print(shown.to_string(index=False))
    for _, r in status[status.status == "failed"].iterrows():
        print(f"FAILED {r.run_id}: {r.error}\n  executed notebook: {r.notebook}", file=sys.stderr)
    print(counts_line(status))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..metrics import empty_group_note
    from .sweep.options import parse_grid, split_options
    from .sweep.run import sweep
    from .sweep.tables import export_runs, export_tables, format_table, summarise

    if args.status:
        return _print_status(args.status)
    grid = parse_grid(args.grid)
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated integers, e.g. 0,1,2; got {args.seeds!r}") from None
    fixed = resolve_paths(parse_params(args.param), Path.cwd())  # -p paths: relative to where you are
    df = sweep(args.notebook, args.presets or None, grid, fixed, args.parallel, args.out_root, seeds,
               kernel=args.kernel, timeout=args.timeout, executor=args.executor,
               slurm=split_options(args.slurm, "--slurm"), per_gpu=args.per_gpu,
               gpus=args.gpus.split(",") if args.gpus else None, wait=not args.no_wait,
               progress=not args.quiet)
    if (df.status == "submitted").any():
        root = Path(df.run_dir.iloc[0]).parent
        print(f"submitted; watch with: python -m ltlab sweep --status {root}  (or tensorboard --logdir {root})")
        return 0
    for _, r in df[df.status == "failed"].iterrows():
        print(f"FAILED {r.run_id}: {r.error}\n  executed notebook: {r.notebook}", file=sys.stderr)
    summary = summarise(df)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
        print("\naccuracy in %, mean ± std over seeds (seeds = finished / all runs of the setting):\n"
              + format_table(summary).to_string(index=False))
    for g in ("many", "medium", "few"):
        if g in df and (df.status != "failed").any() and df.loc[df.status != "failed", g].isna().all():
            print(empty_group_note(g))
    stem = Path(args.table) if args.table else Path(df.run_dir.iloc[0]).parent / "results"
    paths = export_tables(summary, stem)
    per_run = export_runs(df, stem)
    print(f"tables: {paths['csv']} and {paths['tex']} (the summary), {per_run} (one row per run)")
    return 1 if (df.status == "failed").any() else 0


# ---------------------------------------------------------------------- the parser
P_HELP = "a parameter; VALUE is YAML (5e-4, [1, 2], \"{s: 30}\", null, true; quote text that looks like a number)"
DOCS = "Docs: README.md, docs/running.md, docs/sweeps.md, docs/methods.md (python -m ltlab list)."
EPILOG = {
    "main": "examples:\n  python -m ltlab train -p dataset digits_lt -p epochs 3\n"
            "  python -m ltlab run notebooks/01_train.ipynb -p loss gcl -p epochs 30\n"
            "  python -m ltlab list loss gcl\n" + DOCS,
    "run": "examples:\n  python -m ltlab run notebooks/01_train.ipynb -p loss ldam -p loss_params \"{s: 30}\" "
           "-p drw_start 20 -p epochs 30\n  python -m ltlab run notebooks/03_per_class_accuracy.ipynb -p run_dirs "
           "\"[runs/demo]\"\n" + DOCS,
    "train": "examples:\n  python -m ltlab train -p dataset fashion_mnist_lt -p epochs 10\n"
             "  torchrun --standalone --nproc_per_node=4 -m ltlab train --preset notebooks/presets/"
             "gcl_cifar100_if100.yaml\n" + DOCS,
    "sweep": "examples:\n  python -m ltlab sweep -p dataset digits_lt -p epochs 5 --grid loss=ce,ldam --seeds 0,1 "
             "--out-root runs/sweep_demo --table runs/sweep_demo/results\n"
             "  python -m ltlab sweep --status runs/sweep_demo\n" + DOCS,
    "search": "examples:\n  python -m ltlab search gcl -p dataset digits_lt -p epochs 4 --trials 12\n"
              "  python -m ltlab search gcl --objective few --workers 2\nDocs: docs/tuning.md.",
    "list": "examples:\n  python -m ltlab list\n  python -m ltlab list losses\n  python -m ltlab list loss gcl\n"
            "Docs: docs/methods.md.",
}


def parser() -> argparse.ArgumentParser:
    """``python -m ltlab`` with its subcommands ``train``, ``run`` and ``sweep``."""
    from ..runs import project_home
    from .sweep.executors import EXECUTORS

    ap = argparse.ArgumentParser(
        prog="python -m ltlab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ltlab: train long-tailed recognition methods, run the notebooks headless, sweep and search.",
        epilog=EPILOG["main"])
    sub = ap.add_subparsers(dest="cmd", metavar="{train,run,sweep,search,list}")
    r = sub.add_parser("run", help="execute a notebook with papermill (parameters from a preset and -p)",
                       description="Execute a notebook headless with papermill; a training notebook writes a run "
                                   "directory under runs/ (or -p run_dir).",
                       epilog=EPILOG["run"], formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("notebook", help="the notebook to execute, e.g. notebooks/01_train.ipynb")
    r.add_argument("--preset", action="append", default=[],
                   help="YAML preset(s), later wins; a two-stage preset runs both stages")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help=P_HELP + "; KEY applies to every stage, stage_one.KEY / stage_two.KEY to one")
    r.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    r.add_argument("--quiet", action="store_true",
                   help="do not stream the notebook's cell output (papermill and kernel warnings are never shown "
                        "unless LTLAB_VERBOSE=1)")
    t = sub.add_parser("train", help="train in this process (no notebook), e.g. under torchrun",
                       description="Train a run in this process (no notebook; also under torchrun).",
                       epilog=EPILOG["train"], formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--preset", action="append", default=[],
                   help="YAML preset(s), later wins; a two-stage preset runs both stages")
    t.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help=P_HELP + "; KEY applies to every stage, stage_one.KEY / stage_two.KEY to one")
    t.add_argument("--quiet", action="store_true", help="accepted for symmetry with run (train prints no logs)")
    s = sub.add_parser("sweep", help="papermill sweep over presets x grid x seeds into a results table",
                       description="Papermill sweeps: presets x grid x seeds -> one notebook execution per run -> "
                                   "a results table.", epilog=EPILOG["sweep"],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("presets", nargs="*", help="YAML parameter files (one run family each; two-stage ones run both)")
    s.add_argument("--notebook", default=str(project_home() / "notebooks" / "01_train.ipynb"),
                   help="the notebook every run executes (default notebooks/01_train.ipynb)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values to sweep (product); stage_one.KEY / stage_two.KEY set one stage")
    s.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    s.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help=P_HELP + " (the same for every run)")
    s.add_argument("--parallel", type=int, default=None, help="runs at once (local: default 1, or one per GPU)")
    s.add_argument("--out-root", default=None, help="where run directories go (default runs/)")
    s.add_argument("--table", default=None, metavar="STEM",
                   help="where the tables go: STEM.csv / STEM.tex (mean ± std per setting) and STEM_runs.csv (one row "
                        "per run); default OUT_ROOT/results")
    s.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    s.add_argument("--timeout", type=float, default=None,
                   help="local executor: seconds a run may take; it then records 'timed out after N s'")
    s.add_argument("--executor", default="local", help=f"one of {', '.join(EXECUTORS)} (default local)")
    s.add_argument("--slurm", default=None, metavar="KEY=V,...",
                   help="Slurm options, e.g. partition=gpu,gpus_per_node=1,timeout_min=120,mem_gb=16,"
                        "array_parallelism=32")
    s.add_argument("--per-gpu", type=int, default=None, help="local executor: runs at once on each visible GPU")
    s.add_argument("--gpus", default=None,
                   help="local executor: which of the visible GPUs to use, e.g. 0,1 (default: all visible)")
    s.add_argument("--no-wait", action="store_true", help="cluster executors: submit, print the job ids and return")
    s.add_argument("--status", default=None, metavar="OUT", help="print where the sweep in OUT stands and exit")
    s.add_argument("--quiet", action="store_true", help="no progress line per finished run (the summary is printed)")
    from .search import add_arguments as search_arguments
    search_arguments(sub.add_parser(
        "search", help="Optuna search over a loss's hyper-parameters (each trial a run directory)",
        description="Optuna search over a loss's search space (or RunConfig fields), pruned on the per-epoch "
                    "balanced accuracy; the study lives in the out-root and resumes after a kill.",
        epilog=EPILOG["search"], formatter_class=argparse.RawDescriptionHelpFormatter))
    li = sub.add_parser("list", help="methods and their hyper-parameters: losses, samplers, stages, posthoc, presets",
                        description="The methods reference (also docs/methods.md): every loss, sampler, stage and "
                                    "post-hoc method with its hyper-parameters, defaults and meaning.",
                        epilog=EPILOG["list"], formatter_class=argparse.RawDescriptionHelpFormatter)
    li.add_argument("kind", nargs="?", help="losses | samplers | stages | posthoc | presets (or loss, sampler, ...)")
    li.add_argument("name", nargs="?", help="one entry, e.g. gcl: its hyper-parameters with defaults and meaning")
    return ap


def _error(exc: BaseException, code: int) -> int:
    """Print ``exc`` as one ``ltlab: error:`` line (its lines joined), end the process group (under torchrun a
    live one at exit aborts the rank with SIGABRT) and return ``code``."""
    from .. import distributed

    distributed.cleanup()
    if isinstance(exc, NotebookError):  # its first line names the error and the executed copy; what follows
        print(f"ltlab: error: {exc}", file=sys.stderr)  # is the notebook's own message (e.g. the runs there are)
        return code
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    print(f"ltlab: error: {text}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m ltlab train|run|sweep|search|list ...``; returns the exit status (bare: the help)."""
    ap = parser()
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.cmd is None:
        ap.print_help()
        return 0
    try:  # every value (-p, --preset, --grid, --seeds) is read in here: a bad one is one line naming it
        if args.cmd == "list":
            from ..methods_ref import list_text
            print(list_text(args.kind, args.name))
            return 0
        if args.cmd == "search":
            from .search import main as search_main
            return search_main(args)
        return _sweep(args) if args.cmd == "sweep" else _train_or_run(args)
    except (ValueError, FileNotFoundError) as exc:
        return _error(exc, 2)
    except RuntimeError as exc:
        if args.cmd == "sweep" and not isinstance(exc, NotebookError):  # the scheduler refused the jobs
            return _error(exc, 2)
        return _error(exc, 1)  # a notebook that raised
    except (FloatingPointError, OSError) as exc:  # NaN/inf loss; disk full or permissions (the path is named)
        return _error(exc, 1)
