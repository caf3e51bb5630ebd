"""``python -m ltlab sweep``: the command line over :func:`ltlab.batch.sweep` and :func:`ltlab.batch.sweep_status`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd

DESCRIPTION = "Papermill sweeps: presets x grid x seeds -> one notebook execution per run -> a results table."

def _split_commas(text: str) -> list[str]:
    """``a,b,[1,2]`` -> ``["a", "b", "[1,2]"]``: commas inside brackets/braces kept."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def split_values(text: str) -> list:
    """``v1,v2,[1,2]`` -> YAML-parsed values, commas inside brackets/braces kept."""
    from ..config import parse_value
    return [parse_value(p) for p in _split_commas(text)]


def split_options(text: str | None, flag: str) -> dict[str, Any]:
    """``k1=v1,k2=v2`` -> ``{k1: v1, k2: v2}`` with YAML-parsed values."""
    from ..config import parse_value
    out = {}
    for part in _split_commas(text) if text else []:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects key=value pairs separated by commas, got {part!r}")
        out[key.strip()] = parse_value(value)
    return out


def _arguments():
    import argparse

    from ..runs import project_home
    from .executors import EXECUTORS
    ap = argparse.ArgumentParser(prog="python -m ltlab sweep", description=DESCRIPTION)
    ap.add_argument("presets", nargs="*", help="YAML parameter files (one run family each; two-stage ones run both)")
    ap.add_argument("--notebook", default=str(project_home() / "notebooks" / "01_train.ipynb"))
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="values to sweep (product); stage_one.KEY / stage_two.KEY set one stage")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), help="fixed parameter")
    ap.add_argument("--parallel", type=int, default=None, help="runs at once (local: default 1, or one per GPU)")
    ap.add_argument("--out-root", default=None, help="where run directories go (default runs/)")
    ap.add_argument("--table", default=None, help="write <TABLE>.csv/.tex summaries and <TABLE>_runs.csv")
    ap.add_argument("--kernel", default=None)
    ap.add_argument("--executor", default="local", help=f"one of {', '.join(EXECUTORS)} (default local)")
    ap.add_argument("--slurm", default=None, metavar="KEY=V,...",
                    help="Slurm options, e.g. "
                         "partition=gpu,gpus_per_node=1,timeout_min=120,mem_gb=16,array_parallelism=32")
    ap.add_argument("--per-gpu", type=int, default=None, help="local executor: runs at once on each visible GPU")
    ap.add_argument("--gpus", default=None, help="local executor: GPU ids to use, e.g. 0,1 (default: all visible)")
    ap.add_argument("--no-wait", action="store_true", help="cluster executors: submit, print the job ids and return")
    ap.add_argument("--status", default=None, metavar="OUT", help="print where the sweep in OUT stands and exit")
    return ap


def _print_status(out_root: str) -> int:
    from .status import counts_line, sweep_status
    status = sweep_status(out_root)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        print(status.drop(columns=["error", "notebook", "run_dir"]).to_string(index=False))
    for _, r in status[status.status == "failed"].iterrows():
        print(f"FAILED {r.run_id}: {r.error}\n  executed notebook: {r.notebook}", file=sys.stderr)
    print(counts_line(status))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ltlab sweep <preset.yaml>... [--grid key=v1,v2] [--executor slurm --slurm k=v,...] ...``;
    ``--status OUT`` prints a sweep's state. 0 = all runs ok (or submitted)."""
    from .. import batch
    from ..presets import parse_params, resolve_paths
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        argv = argv[1:]
    args = _arguments().parse_args(argv)
    try:
        if args.status:
            return _print_status(args.status)
        grid = {}
        for item in args.grid:
            key, sep, vals = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--grid expects key=v1,v2, got {item!r}")
            grid[key.strip()] = split_values(vals)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        fixed = resolve_paths(parse_params(args.param), Path.cwd())  # -p paths: relative to where you are
        df = batch.sweep(args.notebook, args.presets or None, grid, fixed, args.parallel,
                   args.out_root, seeds, kernel=args.kernel, executor=args.executor,
                   slurm=split_options(args.slurm, "--slurm"), per_gpu=args.per_gpu,
                   gpus=args.gpus.split(",") if args.gpus else None, wait=not args.no_wait)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # RuntimeError: sbatch refused the array
        print(f"ltlab sweep: error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.drop(columns=["error", "run_dir"]).to_string(index=False, na_rep="--"))
    from ..metrics import empty_group_note
    for g in ("many", "medium", "few"):
        if g in df and (df.status != "failed").any() and df.loc[df.status != "failed", g].isna().all():
            print(empty_group_note(g))
    for _, r in df[df.status == "failed"].iterrows():
        print(f"FAILED {r.run_id}: {r.error}\n  executed notebook: {r.notebook}", file=sys.stderr)
    if (df.status == "submitted").any():
        root = Path(df.run_dir.iloc[0]).parent
        print(f"submitted; watch with: python -m ltlab sweep --status {root}  (or tensorboard --logdir {root})")
    if args.table:
        batch.export_tables(batch.summarise(df), args.table)
        df.to_csv(Path(args.table).with_name(Path(args.table).name + "_runs.csv"), index=False)
    return 1 if (df.status == "failed").any() else 0
