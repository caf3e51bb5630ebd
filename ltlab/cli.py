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


# keys a preset file may hold besides RunConfig fields (documentation and the second stage)
PRESET_META = ("description", "stage_one_reported", "stage_two")
_PATH_KEYS = ("train_list", "val_list", "test_list", "list_file", "weights_path")


def preset_keys() -> list[str]:
    """Every key a preset file may hold: the RunConfig fields plus ``PRESET_META``."""
    from .config import RunConfig
    return RunConfig.field_names() + list(PRESET_META)


def _read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"preset {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {p} must be a YAML mapping of parameter: value")
    valid = preset_keys()
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"preset {p}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")
    two = data.get("stage_two")
    if two is not None:
        if not isinstance(two, dict):
            raise ValueError(f"preset {p}: stage_two must be a mapping of RunConfig parameters")
        bad = sorted(set(two) - set(valid) | set(two) & {"init_from", "reported", "posthoc", *PRESET_META})
        if bad:
            raise ValueError(f"preset {p}: stage_two may not hold {bad} (init_from is set to the stage-one run; "
                             f"reported/posthoc/description are top-level); valid keys: {', '.join(valid)}")
    return data


def resolve_paths(params: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """``root``, ``run_dir``, ``init_from`` and the list / weights paths in ``dataset_params`` /
    ``model_params`` made absolute against ``base`` (a notebook's kernel runs in ``notebooks/``)."""
    def fix(v):
        if not isinstance(v, str) or not v or Path(v).expanduser().is_absolute():
            return v
        return str(Path(base) / Path(v).expanduser())

    out = dict(params)
    for key in ("root", "run_dir", "init_from"):
        if out.get(key) is not None:
            out[key] = fix(out[key])
    for key in ("dataset_params", "model_params"):
        if isinstance(out.get(key), dict):
            out[key] = {k: fix(v) if k in _PATH_KEYS else v for k, v in out[key].items()}
    return out


def read_preset(paths: str | Path | list[str | Path], overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The stages of one or more presets (later files win) as RunConfig parameter dicts, overrides applied.

    A preset holds the parameters of its (first) stage, documentation keys and optionally
    ``stage_two:``, the second stage's parameters: it inherits ``ltlab.stages.INHERITED`` from stage
    one (data, model, execution), starts as ``stage: classifier`` and gets ``init_from`` when stage one
    has run. Top-level ``reported``/``posthoc`` belong to the final stage; ``stage_one_reported`` to
    stage one. Relative data paths are relative to the project folder. ``overrides``: a plain key
    applies to every stage, ``stage_one.KEY`` / ``stage_two.KEY`` to one.
    """
    from .runs import project_home
    from .stages import INHERITED

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("read_preset needs at least one preset file")
    data: dict[str, Any] = {}
    for path in paths:
        d = _read_yaml(path)
        two = {**(data.get("stage_two") or {}), **(d.get("stage_two") or {})}
        data.update(d)
        if two:
            data["stage_two"] = two
    data = resolve_paths(data, project_home())
    data.pop("description", None)
    two, s1_reported = data.pop("stage_two", None), data.pop("stage_one_reported", None)
    data.setdefault("preset", Path(paths[-1]).name)
    stages = [data]
    if two is not None:
        stage_two = {**{k: data[k] for k in INHERITED if k in data}, "stage": "classifier",
                     **resolve_paths(two, project_home()), "reported": data.get("reported", {}),
                     "posthoc": data.get("posthoc", {})}
        stages = [{**data, "reported": s1_reported or {}, "posthoc": {}}, stage_two]
    return _apply_overrides(stages, overrides or {})


def _apply_overrides(stages: list[dict[str, Any]], overrides: dict[str, Any]) -> list[dict[str, Any]]:
    from .config import RunConfig

    fields = RunConfig.field_names()
    names = ["stage_one", "stage_two"][:len(stages)]
    out = [dict(s) for s in stages]
    for key, value in overrides.items():
        prefix, _, name = key.rpartition(".")
        if name not in fields or (prefix and prefix not in names):
            where = " or ".join(f"{n}.KEY" for n in names)
            raise ValueError(f"unknown parameter {key!r}: use a RunConfig field (every stage) or {where}; "
                             f"valid fields: {', '.join(fields)}")
        for i, stage in enumerate(out):
            if not prefix or names[i] == prefix:
                stage[name] = value
    return out


def load_preset(path: str | Path) -> dict[str, Any]:
    """Parameters of a one-stage YAML preset (documentation keys dropped; ``reported`` kept as a field).

    Two-stage presets raise: run them with :func:`run_preset` or read them with :func:`read_preset`.
    """
    stages = read_preset(path)
    if len(stages) > 1:
        raise ValueError(f"preset {path} has two stages; use ltlab.cli.run_preset (or read_preset) to run both")
    return stages[0]


def _check_stage(params: dict[str, Any], init_from: str | None) -> None:
    """Validate a stage and its data before anything runs (clear errors, nothing written)."""
    from .config import RunConfig
    from .engine import load_datasets, load_val_dataset

    config = RunConfig(**{**params, **({"init_from": init_from} if init_from else {})})
    try:
        if not init_from:
            load_datasets(config)
        load_val_dataset(config)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"data for dataset={config.dataset!r} is not on disk: {exc}") from exc
    run_dir = params.get("run_dir")
    if run_dir and not config.resume and ((Path(run_dir) / "metrics.csv").exists()
                                          or (Path(run_dir) / "checkpoint.pt").exists()):
        raise ValueError(f"{run_dir} already holds a run; choose another run_dir (or resume=True)")


def run_preset(presets: str | Path | list[str | Path], overrides: dict[str, Any] | None = None, *,
               notebook: str | Path | None = None, kernel: str | None = None, quiet: bool = False) -> list[Path]:
    """Run every stage of a preset: through ``notebook`` with papermill, or in this process when None.

    Stage two gets ``init_from`` = stage one's run directory. Both stages (and their data) are
    validated before the first one starts; a preset's ``posthoc`` step runs after the final stage and
    saves ``posthoc_<method>.json`` there. Returns the run directories, stage one first.
    """
    from .engine import resolve_device, run as run_training
    from .stages import apply_posthoc

    from . import distributed

    stages = read_preset(presets, overrides)
    stem = Path(presets if isinstance(presets, (str, Path)) else list(presets)[-1]).stem
    base = "{}_{}".format(time.strftime("%Y%m%d-%H%M%S"), stem)
    if distributed.launched_distributed():  # torchrun: every rank must name the same run directories
        if notebook is not None:
            raise ValueError("`python -m ltlab run` executes a notebook in a Jupyter kernel and cannot run under "
                             "torchrun; use `torchrun --nproc_per_node=N -m ltlab train --preset ...`")
        distributed.setup(resolve_device(stages[0].get("device", "auto")))
        base = distributed.all_gather_objects(base)[0]
    for i, stage in enumerate(stages):
        suffix = "" if len(stages) == 1 else f"_stage{i + 1}"
        if not stage.get("run_dir"):
            stage["run_dir"] = str(runs_root() / ((stage.get("run_id") or base) + suffix))
        elif i > 0 and stage["run_dir"] == stages[0]["run_dir"]:
            stage["run_dir"] = stage["run_dir"].rstrip("/") + suffix
    for i, stage in enumerate(stages):
        _check_stage(stage, stages[0]["run_dir"] if i else None)
    dirs: list[Path] = []
    for i, stage in enumerate(stages):
        params = {**stage, **({"init_from": str(dirs[0])} if i else {})}
        if notebook is None:
            dirs.append(run_training(params).dir)
        else:
            dirs.append(run_notebook(notebook, params, kernel=kernel, quiet=quiet))
    if stages[-1].get("posthoc"):
        if distributed.context().is_main:
            apply_posthoc(dirs[-1], device=resolve_device(stages[-1].get("device", "auto")))
        distributed.barrier()
    return dirs


def run_notebook(notebook: str | Path, params: dict[str, Any], *, kernel: str | None = None,
                 quiet: bool = False) -> Path:
    """Execute a training notebook with papermill; the executed copy lands in the run directory."""
    import papermill as pm

    from .config import RunConfig

    params = dict(params)
    RunConfig(**params)  # validate before anything runs (run_dir too: resume=True needs it)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:  # papermill sweeps have their own parser (ltlab.batch)
        from .batch import main as sweep_main
        return sweep_main(argv[1:])
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
        print(f"ltlab: error: {exc}", file=sys.stderr)
        return 2
    except (FloatingPointError, OSError) as exc:  # NaN/inf loss; disk full or permissions (the path is named)
        print(f"ltlab: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # papermill's PapermillExecutionError carries the notebook's own error
        if type(exc).__name__ != "PapermillExecutionError":
            raise
        print(f"ltlab: the notebook failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
        return 1
    if not distributed.context().is_main:
        distributed.cleanup()
        return 0
    for d in run_dirs:
        _print_summary(d)
    distributed.cleanup()
    if args.preset:
        from .runs import results_table
        with __import__("pandas").option_context("display.width", 200, "display.max_columns", 30):
            print("\n" + results_table(run_dirs).round(2).to_string(index=False))
    return 0
