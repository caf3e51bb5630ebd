"""Papermill sweeps: presets x grid x seeds -> one notebook execution per run -> a tidy results table.

Each run executes in its own process (``python -m ltlab.batch --job <job.json>``: papermill, which
starts its own kernel) with its own run directory ``<out_root>/<name>``; the name is derived from
the parameters, so a sweep started again finds its runs: complete ones are skipped, interrupted ones
(checkpoint present) are resumed, failed ones are reported (notebook path + error) without stopping
the others. Every parameter combination is validated with RunConfig before anything runs.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

METRICS = {"overall": "acc", "many": "acc_many", "medium": "acc_medium", "few": "acc_few"}
# table columns that are documentation, not something to group results by
_DOC_COLUMNS = ("method", "preset", "reported", "posthoc", "description")


def expand(presets: Sequence[str | os.PathLike | dict] | None = None, grid: dict[str, Sequence] | None = None,
           base_params: dict | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """Parameter dicts of a sweep: ``base_params`` < preset < grid point < seed (later wins).

    presets: one-stage YAML presets (``ltlab.cli.load_preset``; a two-stage preset raises) or dicts;
    grid: name -> list of values (product).
    """
    from .cli import load_preset
    pres = [dict(p) if isinstance(p, dict) else load_preset(p) for p in (presets or [{}])]
    grid = dict(grid or {})
    for k, v in grid.items():
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            raise ValueError(f"grid[{k!r}] must be a list of values, got {v!r}")
    points = [dict(zip(grid, vals)) for vals in itertools.product(*(list(v) for v in grid.values()))]
    out = []
    for p in pres:
        for g in points:
            for s in (list(seeds) if seeds is not None else [None]):
                params = {**(base_params or {}), **p, **g}
                if s is not None:
                    params["seed"] = int(s)
                out.append(params)
    return out


def validate(combos: list[dict]) -> list:
    """RunConfig of every combination; one ValueError listing every bad combination (nothing has run)."""
    from .config import RunConfig
    configs, errors = [], []
    for i, params in enumerate(combos):
        try:
            configs.append(RunConfig(**{k: v for k, v in params.items() if k != "run_dir"}))
        except ValueError as exc:
            errors.append(f"  combination {i} {params}: {exc}")
    if errors:
        raise ValueError("sweep: invalid parameters, nothing was run:\n" + "\n".join(errors))
    return configs


def run_name(params: dict) -> str:
    """Deterministic directory name: dataset, loss, IF, seed and a hash of every result-relevant parameter.

    Left out of the hash: ``RunConfig``'s resume-free fields (device, progress, run_dir, epochs_per_call,
    documentation such as preset / reported), so they can change between attempts of the same run.
    """
    from .config import RESUME_FREE_FIELDS
    key = {k: v for k, v in sorted(params.items()) if k not in RESUME_FREE_FIELDS}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return "{}_{}_if{:g}_s{}_{}".format(params.get("dataset", "digits_lt"), params.get("loss", "ce"),
                                        float(params.get("imbalance_factor", 100)), params.get("seed", 0), digest)


def run_state(run_dir: Path) -> str:
    """"complete", "partial" (checkpoint.pt, not finished) or "new".

    Complete: checkpoint.pt exists and metrics.csv ends at epoch ``epochs - 1`` of the run's own
    config.json (the epochs the notebook actually used, whether or not the sweep set them).
    """
    metrics, ckpt, cfg = run_dir / "metrics.csv", run_dir / "checkpoint.pt", run_dir / "config.json"
    if not ckpt.exists():
        return "new"
    try:
        epochs = int(json.loads(cfg.read_text())["epochs"])
        last = pd.read_csv(metrics)["epoch"]
        if len(last) and int(last.iloc[-1]) == epochs - 1:
            return "complete"
    except (OSError, ValueError, KeyError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        pass
    return "partial"


def _results(run_dir: Path) -> dict[str, float]:
    try:
        df = pd.read_csv(run_dir / "metrics.csv")
        last = df.iloc[-1]
        return {"epochs_done": int(last["epoch"]) + 1, **{k: float(last[c]) for k, c in METRICS.items()}}
    except (OSError, ValueError, KeyError, IndexError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}


def _worker_env(parallel: int) -> dict[str, str]:
    """Environment of a run's process: no progress bars, and the CPU threads shared between parallel runs
    (``OMP_NUM_THREADS = cores // parallel`` unless already set), so runs side by side do not oversubscribe."""
    env = {**os.environ, "LTLAB_PROGRESS": "0"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, int(parallel)))))
    return env


def _launch(job: dict, timeout: float | None) -> dict:
    """Run one job in a fresh Python process; never raises (a crash becomes status "failed")."""
    run_dir = Path(job["params"]["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    job_file, result_file = run_dir / ".sweep_job.json", run_dir / ".sweep_result.json"
    result_file.unlink(missing_ok=True)
    job_file.write_text(json.dumps({**job, "result": str(result_file)}, default=str))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "ltlab.batch", "--job", str(job_file)], capture_output=True,
                              text=True, timeout=timeout, env=_worker_env(job.get("parallel", 1)))
        res = json.loads(result_file.read_text()) if result_file.exists() else {
            "status": "failed", "error": f"worker exited with code {proc.returncode}: {proc.stderr.strip()[-600:]}"}
    except subprocess.TimeoutExpired:
        res = {"status": "failed", "error": f"timed out after {timeout} s"}
    res["seconds"] = time.perf_counter() - t0
    return res


def sweep(notebook: str | os.PathLike, presets: Sequence[str | os.PathLike | dict] | None = None,
          grid: dict[str, Sequence] | None = None, base_params: dict | None = None, parallel: int = 1,
          out_root: str | os.PathLike | None = None, seeds: Sequence[int] | None = None,
          kernel: str | None = None, timeout: float | None = None) -> pd.DataFrame:
    """Execute ``notebook`` once per parameter combination, ``parallel`` processes at a time.

    Combinations: :func:`expand` (presets x grid x seeds over ``base_params``); every one is validated
    with RunConfig first (ValueError, nothing runs). Run directories ``<out_root>/<run_name(params)>``
    (out_root default ``runs/``) hold the run and the executed notebook. Returns one row per run:
    ``run_id``, the parameters, ``status`` (done | skipped | resumed | incomplete | failed), ``error``,
    ``notebook`` (the executed copy), ``epochs_done``, ``overall``/``many``/``medium``/``few`` (last
    evaluated epoch, [0, 1]) and ``seconds``.
    """
    from .runs import runs_root
    nb = Path(notebook).expanduser().resolve()
    if not nb.exists():
        raise FileNotFoundError(f"sweep: notebook {nb} does not exist")
    if int(parallel) < 1:
        raise ValueError(f"sweep: parallel must be >= 1, got {parallel}")
    combos = expand(presets, grid, base_params, seeds)
    validate(combos)
    root = Path(out_root).expanduser().resolve() if out_root else runs_root()
    names = [run_name(p) for p in combos]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"sweep: combinations repeat (same parameters twice): {dup}")
    rows, jobs = [], []
    for params, name in zip(combos, names):
        run_dir = root / name
        row = {"run_id": name, **params, "status": "", "error": "", "notebook": str(run_dir / nb.name),
               "run_dir": str(run_dir)}
        state = run_state(run_dir)
        if state == "complete":
            row["status"] = "skipped"
        else:
            jobs.append((row, {"notebook": str(nb), "kernel": kernel, "resumed": state == "partial",
                               "parallel": parallel,
                               "params": {**params, "run_dir": str(run_dir), "resume": state == "partial"}}))
        rows.append(row)
    with ThreadPoolExecutor(max_workers=int(parallel)) as pool:
        futures = [(row, pool.submit(_launch, job, timeout)) for row, job in jobs]
        for row, fut in futures:
            res = fut.result()
            row.update(status=res["status"], error=res.get("error", ""), seconds=res["seconds"])
    for row in rows:
        row.update(_results(Path(row["run_dir"])))
    return _tidy(pd.DataFrame(rows), list(dict.fromkeys(k for p in combos for k in p)))


def _tidy(df: pd.DataFrame, param_cols: list[str]) -> pd.DataFrame:
    for c in param_cols:  # dict / list parameters as JSON text, so the table groups and exports cleanly
        df[c] = df[c].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
    for c in ("epochs_done", *METRICS, "seconds"):
        if c not in df:
            df[c] = float("nan")
    front = ["run_id", *param_cols, "status", *METRICS, "epochs_done", "seconds", "notebook", "error", "run_dir"]
    return df[list(dict.fromkeys(front))]


# ---------------------------------------------------------------------- summaries
def summarise(df: pd.DataFrame, by: Sequence[str] | None = None,
              metrics: Sequence[str] = tuple(METRICS)) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1; 0 for a single seed) over seeds of each group of ``by``.

    ``by`` defaults to the parameter columns that vary, except ``seed``. Failed runs are left out.
    Returns ``by`` + ``n`` + ``<metric>_mean`` / ``<metric>_std`` per metric (fractions in [0, 1]).
    """
    ok = df[df["status"].isin(["done", "skipped", "resumed"])] if "status" in df else df
    if by is None:
        skip = {"run_id", "status", "error", "notebook", "run_dir", "seconds", "epochs_done", "seed", *METRICS,
                *_DOC_COLUMNS}
        by = [c for c in ok.columns if c not in skip and ok[c].astype(str).nunique() > 1]
    by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"summarise: unknown column(s) {missing}; columns: {list(df.columns)}")
    g = ok.groupby(by, dropna=False, sort=True) if by else ok.assign(_all="all").groupby("_all")
    out = g.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=1).fillna(0.0)
    return out.reset_index().drop(columns=["_all"], errors="ignore")


def format_table(summary: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS), percent: bool = True,
                 digits: int = 1) -> pd.DataFrame:
    """``mean ± std`` strings (percent by default) per metric, the grouping columns and ``n`` unchanged."""
    scale = 100.0 if percent else 1.0
    keep = [c for c in summary.columns if not any(c.startswith(f"{m}_") for m in metrics)]
    out = summary[keep].copy()
    for m in metrics:
        out[m] = [f"{scale * a:.{digits}f} ± {scale * b:.{digits}f}" for a, b in
                  zip(summary[f"{m}_mean"], summary[f"{m}_std"])]
    return out


def export_tables(summary: pd.DataFrame, stem: str | os.PathLike, caption: str | None = None) -> dict[str, Path]:
    """Write ``<stem>.csv`` (numbers) and ``<stem>.tex`` (``mean $\\pm$ std`` in %, booktabs); returns the paths."""
    from .runs import atomic_write_bytes
    stem = Path(stem)
    csv = atomic_write_bytes(stem.with_suffix(".csv"), summary.to_csv(index=False).encode())
    table = format_table(summary)
    table = table.map(lambda v: v.replace("±", "$\\pm$").replace("_", "\\_") if isinstance(v, str) else v)
    table.columns = [str(c).replace("_", "\\_") for c in table.columns]
    tex = table.to_latex(index=False, escape=False, caption=caption, label=f"tab:{stem.name}")
    return {"csv": csv, "tex": atomic_write_bytes(stem.with_suffix(".tex"), tex.encode())}


# ---------------------------------------------------------------------- command line
def _split_values(text: str) -> list:
    """``v1,v2,[1,2]`` -> YAML-parsed values, commas inside brackets/braces kept."""
    import yaml
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [None if p.strip() in ("None", "none") else yaml.safe_load(p) for p in parts]


def main(argv: list[str] | None = None) -> int:
    """``python -m ltlab sweep <preset.yaml>... [--grid key=v1,v2] [--parallel N] ...``; 0 = all runs ok."""
    import argparse

    from .cli import parse_params
    from .runs import project_home
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        argv = argv[1:]
    ap = argparse.ArgumentParser(prog="python -m ltlab sweep", description=__doc__.split("\n")[0])
    ap.add_argument("presets", nargs="*", help="YAML parameter files (one run family each)")
    ap.add_argument("--notebook", default=str(project_home() / "notebooks" / "01_train.ipynb"))
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="values to sweep (product)")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    ap.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), help="fixed parameter")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--out-root", default=None, help="where run directories go (default runs/)")
    ap.add_argument("--table", default=None, help="write <TABLE>.csv/.tex summaries and <TABLE>_runs.csv")
    ap.add_argument("--kernel", default=None)
    args = ap.parse_args(argv)
    try:
        grid = {}
        for item in args.grid:
            key, sep, vals = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--grid expects key=v1,v2, got {item!r}")
            grid[key.strip()] = _split_values(vals)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        df = sweep(args.notebook, args.presets or None, grid, parse_params(args.param), args.parallel,
                   args.out_root, seeds, kernel=args.kernel)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ltlab sweep: error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.drop(columns=["error", "run_dir"]).to_string(index=False))
    for _, r in df[df.status == "failed"].iterrows():
        print(f"FAILED {r.run_id}: {r.error}\n  executed notebook: {r.notebook}", file=sys.stderr)
    if args.table:
        export_tables(summarise(df), args.table)
        df.to_csv(Path(args.table).with_name(Path(args.table).name + "_runs.csv"), index=False)
    return 1 if (df.status == "failed").any() else 0


# ---------------------------------------------------------------------- worker process
def _worker(job_file: str) -> int:
    """Execute one job (papermill, executed notebook written into the run directory); write its result JSON."""
    import papermill as pm
    job = json.loads(Path(job_file).read_text())
    nb, params = Path(job["notebook"]), job["params"]
    out = Path(params["run_dir"]) / nb.name
    res: dict[str, Any] = {"status": "resumed" if job.get("resumed") else "done", "error": ""}
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(nb.parent), kernel_name=job.get("kernel"),
                            progress_bar=False, log_output=False)
        if run_state(Path(params["run_dir"])) != "complete":
            res["status"] = "incomplete"
    except Exception as exc:  # noqa: BLE001 - any failure of this run is reported, the sweep goes on
        err = f"{exc.ename}: {exc.evalue}" if hasattr(exc, "ename") else f"{type(exc).__name__}: {exc}"
        res = {"status": "failed", "error": err}
    with tempfile.NamedTemporaryFile("w", dir=Path(job["result"]).parent, delete=False, suffix=".tmp") as fh:
        json.dump(res, fh)
    os.replace(fh.name, job["result"])
    return 0


if __name__ == "__main__":  # ``--job FILE``: one run of a sweep (internal); otherwise the sweep command line
    sys.exit(_worker(sys.argv[2]) if sys.argv[1:2] == ["--job"] else main(sys.argv[1:]))
