"""Results tables of a sweep: mean and standard deviation over seeds, ``mean ± std`` text beside the paper's
numbers, CSV and LaTeX export (public through :mod:`ltlab.batch`)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

METRICS = {"overall": "acc", "many": "acc_many", "medium": "acc_medium", "few": "acc_few"}
# table columns that are documentation, not something to group results by
_DOC_COLUMNS = ("method", "preset", "reported", "posthoc", "description")

DIGITS = 6  # CSV numbers rounded to 6 decimals: 0.755, not 0.7549999999999999
_FINISHED = ("done", "skipped", "resumed")
_NOT_PARAMETERS = ("run_id", "status", "error", "notebook", "run_dir", "seconds", "epochs_done", "seed", "attempt",
                   "job_id", *_DOC_COLUMNS)


def _metric_columns(df: pd.DataFrame) -> list[str]:
    """The final stage's metrics, then stage one's (``stage1_<metric>``) where a two-stage run reported them."""
    return [*METRICS, *(c for c in (f"stage1_{m}" for m in METRICS) if c in df and df[c].notna().any())]


def _reported(value: Any) -> dict:
    if isinstance(value, str):
        value = json.loads(value) if value.startswith("{") else {}
    return value if isinstance(value, dict) else {}


def summarise(df: pd.DataFrame, by: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1; 0 for a single seed) over seeds of each group of ``by``.

    ``by`` defaults to the parameter columns that vary, except ``seed``. Only finished runs (done,
    skipped, resumed) count. Returns ``by``, ``n`` (finished runs), ``n_runs`` (all runs of the setting),
    ``<metric>_mean`` / ``<metric>_std`` per metric (default: overall/many/medium/few, plus
    ``stage1_<metric>`` of two-stage runs) and ``reported_<metric>`` (the preset's ``reported`` numbers,
    where given). All fractions in [0, 1] (reported numbers divided by 100).
    """
    metrics = _metric_columns(df) if metrics is None else list(metrics)
    if by is None:
        skip = {*_NOT_PARAMETERS, *metrics, *METRICS}
        by = [c for c in df.columns
              if c not in skip and not c.startswith("stage1_") and df[c].astype(str).nunique() > 1]
    by = list(by)
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise ValueError(f"summarise: unknown column(s) {missing}; columns: {list(df.columns)}")
    rep = df["reported"].map(_reported) if "reported" in df else pd.Series([{}] * len(df), index=df.index)
    df = df.assign(_all="all", **{f"reported_{m}": rep.map(lambda d, m=m: d.get(m)).astype(float) / 100.0
                                  for m in METRICS})
    keys = by or ["_all"]
    ok = df[df["status"].isin(_FINISHED)] if "status" in df else df
    g = ok.groupby(keys, dropna=False, sort=True)
    out = df.groupby(keys, dropna=False, sort=True).size().rename("n_runs").to_frame()
    out.insert(0, "n", g.size().reindex(out.index, fill_value=0).astype(int))
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean().reindex(out.index)
        out[f"{m}_std"] = g[m].std(ddof=1).reindex(out.index).fillna(0.0)
    for m in METRICS:
        first = df.groupby(keys, dropna=False, sort=True)[f"reported_{m}"].first()
        if first.notna().any():
            out[f"reported_{m}"] = first
    return out.reset_index().drop(columns=["_all"], errors="ignore")


def format_table(summary: pd.DataFrame, metrics: Sequence[str] | None = None, percent: bool = True,
                 digits: int = 1) -> pd.DataFrame:
    """``mean ± std`` strings (percent by default) per metric with the preset's reported number beside it
    (``<metric> (reported)``), ``seeds`` = finished / all runs of the setting; grouping columns unchanged."""
    candidates = (*METRICS, *(f"stage1_{m}" for m in METRICS)) if metrics is None else metrics
    metrics = [m for m in candidates if f"{m}_mean" in summary]
    scale = 100.0 if percent else 1.0

    def num(v: float) -> str:
        return "–" if pd.isna(v) else f"{scale * v:.{digits}f}"

    derived = {"n", "n_runs", *(f"reported_{m}" for m in METRICS),
               *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))}
    out = summary[[c for c in summary.columns if c not in derived]].copy()
    if "n" in summary:
        out["seeds"] = [f"{a}/{b}" for a, b in zip(summary["n"], summary["n_runs"])] if "n_runs" in summary \
            else summary["n"]
    for m in metrics:
        out[m] = [f"{num(a)} ± {num(b)}" if pd.notna(a) else "–" for a, b in
                  zip(summary[f"{m}_mean"], summary[f"{m}_std"])]
        if f"reported_{m}" in summary:
            out[f"{m} (reported)"] = [num(v) for v in summary[f"reported_{m}"]]
    return out


def export_tables(summary: pd.DataFrame, stem: str | os.PathLike, caption: str | None = None) -> dict[str, Path]:
    """Write ``<stem>.csv`` (numbers) and ``<stem>.tex`` (``mean $\\pm$ std`` in %, booktabs); returns the paths."""
    from ...runs import atomic_write_bytes
    stem = Path(stem)
    csv = atomic_write_bytes(stem.with_suffix(".csv"), summary.round(DIGITS).to_csv(index=False).encode())
    table = format_table(summary)
    table = table.map(lambda v: v.replace("±", "$\\pm$").replace("_", "\\_").replace("–", "--")
                      if isinstance(v, str) else v)  # "--": a group no class falls in (no accuracy)
    table.columns = [str(c).replace("_", "\\_") for c in table.columns]
    tex = table.to_latex(index=False, escape=False, caption=caption, label=f"tab:{stem.name}")
    return {"csv": csv, "tex": atomic_write_bytes(stem.with_suffix(".tex"), tex.encode())}


def export_runs(df: pd.DataFrame, stem: str | os.PathLike) -> Path:
    """Write the per-run table of a sweep to ``<stem>_runs.csv`` (numbers to 6 decimals); its path."""
    from ...runs import atomic_write_bytes
    stem = Path(stem)
    return atomic_write_bytes(stem.with_name(stem.name + "_runs.csv"), df.round(DIGITS).to_csv(index=False).encode())
