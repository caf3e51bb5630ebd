"""Plotly figure builders: each takes a run (or runs, a DataFrame, or class counts) and returns a figure.

Saving is a separate call (:func:`ltlab.export.save_figures`). Classes are always drawn sorted by
training count (head left, tail right); count axes are log-scaled; colours are colour-blind safe
(Okabe-Ito ``PALETTE`` for runs and groups, Paul Tol's "muted" set for up to 10 classes, cividis
beyond). Runs over different class sets (or different long-tailed splits, for per-class figures)
raise ValueError instead of being drawn side by side. Schedule figures are pure functions of the
epoch and the class counts (``ltlab.schedules`` and the losses' functional maths); no training.
"""
from __future__ import annotations

import math
import os
from typing import Any, Literal, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from . import metrics as _metrics
from . import schedules
from .data.longtail import shot_split
from .losses import functional as LF
from .probes import MATRIX_MAX_CLASSES, matrix_at
from .runs import Run, RunFileError, load_run

# Okabe-Ito, colour-blind safe (runs, groups)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
GROUP_COLORS = {"many": "#0072B2", "medium": "#E69F00", "few": "#D55E00"}
# Paul Tol "muted" (colour-blind safe) + grey: classes when C <= 10
CLASS_PALETTE = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
                 "#AA4499", "#777777"]
LAYOUT = dict(template="simple_white", font=dict(size=14), margin=dict(l=60, r=20, t=50, b=50))
_LEGEND_TOP = dict(orientation="h", y=1.02, yanchor="bottom", x=0, xanchor="left")


# ---------------------------------------------------------------------- helpers
def _runs(runs) -> list[Run]:
    """A Run, a run directory, or a sequence of them -> list of Run."""
    if isinstance(runs, (Run, str, os.PathLike)):
        runs = [runs]
    out = [r if isinstance(r, Run) else load_run(r) for r in runs]
    if not out:
        raise ValueError("no runs given: pass a Run, a run directory or a list of them")
    return out


def run_labels(runs: Sequence[Run], labels: Sequence[str] | None = None) -> list[str]:
    """Legend names: ``labels`` if given, else each run's loss (plus its directory name when repeated)."""
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(runs):
            raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
        return labels
    names = [str(r.config.get("loss", r.dir.name)) for r in runs]
    return [f"{n} ({r.dir.name})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


def check_same_classes(runs: Sequence[Run], what: str, same_counts: bool = True) -> None:
    """Raise ValueError when runs differ in their class set (or, with ``same_counts``, their training counts).

    Figures that put runs side by side call this first, so a mismatch is never drawn silently."""
    ref = runs[0]
    for r in runs[1:]:
        a, b = ref.config.get("classes"), r.config.get("classes")
        if len(ref.class_counts) != len(r.class_counts) or (a is not None and b is not None and a != b):
            raise ValueError(f"{what}: {ref.dir.name} ({ref.config.get('dataset')}, {len(ref.class_counts)} classes) "
                             f"and {r.dir.name} ({r.config.get('dataset')}, {len(r.class_counts)} classes) have "
                             "different class sets; only runs over the same classes can be put side by side")
        if same_counts and list(ref.class_counts) != list(r.class_counts):
            raise ValueError(f"{what}: {ref.dir.name} and {r.dir.name} were trained on different long-tailed "
                             f"splits (imbalance_factor {ref.config.get('imbalance_factor')} vs "
                             f"{r.config.get('imbalance_factor')}, class_counts differ), so their classes sorted "
                             "by training count do not line up; compare runs of the same split")


def _order(counts) -> np.ndarray:
    """Class indices sorted by training count, largest first (stable)."""
    return np.argsort(-np.asarray(counts), kind="stable")


def class_colors(n: int) -> list[str]:
    """``n`` colour-blind-safe class colours (Tol muted up to 10, cividis samples beyond)."""
    if n <= len(CLASS_PALETTE):
        return CLASS_PALETTE[:n]
    return sample_colorscale("Cividis", [i / max(n - 1, 1) for i in range(n)])


def run_class_names(run: Run | None, num_classes: int | None = None) -> list[str]:
    """Class names of a run (config "classes"), else "0".."C-1"."""
    num_classes = len(run.class_counts) if num_classes is None else num_classes
    names = (run.config.get("classes") if run is not None else None) or [str(c) for c in range(num_classes)]
    return [str(n) for n in names]


def _probe(run: Run, key: str, why: str = "") -> np.ndarray:
    """``run.probes[key]`` or a RunFileError naming what produces it."""
    if not run.probes:
        raise RunFileError(f"{run.dir / 'probes.npz'} is missing; it is written by ltlab.run (the 01_train "
                           "notebook) during training: re-run or resume the run")
    if key not in run.probes:
        raise RunFileError(f"{run.dir / 'probes.npz'} has no {key!r} (run loss {run.config.get('loss')!r}){why}; "
                           f"available: {sorted(run.probes)}")
    return np.asarray(run.probes[key])


def _group_bands(fig: go.Figure, counts_sorted: np.ndarray, row: int | None = None, col: int | None = None,
                 label: bool = True) -> None:
    """Shade the many/medium/few ranges of a class-rank x axis."""
    for name, idx in shot_split(counts_sorted).items():
        if len(idx):
            kw = dict(annotation_text=name, annotation_position="top", annotation_font_size=13) if label else {}
            fig.add_vrect(x0=idx.min() - 0.5, x1=idx.max() + 0.5, fillcolor=GROUP_COLORS[name], opacity=0.07,
                          line_width=0, layer="below", row=row, col=col, **kw)


def _rank_axis(names_sorted: Sequence[str]) -> dict:
    n = len(names_sorted)
    if n <= 20:
        return dict(tickmode="array", tickvals=list(range(n)), ticktext=list(names_sorted),
                    tickangle=-45 if n > 6 else 0)
    return dict(title_standoff=4)


def _epoch_ticks(num_epochs: int) -> dict:
    """Integer epoch ticks (every epoch up to 12 epochs)."""
    return dict(dtick=1) if num_epochs <= 12 else dict(tickformat="d")


def _legend_rows(fig: go.Figure, width: float = 860.0) -> int:
    """Rows a horizontal legend needs at ~``width`` px (items ~45 px + 8 px per character at 14 px font)."""
    rows, used = 1, 0.0
    for t in fig.data:
        if t.showlegend is False or not t.name:
            continue
        w = 45 + 8 * len(t.name)
        if used and used + w > width:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def _style(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    legend = kw.get("legend")
    if legend is not None and legend.get("orientation") == "h" and "margin" in kw:
        # a wrapped legend above the plot grows upwards: make room so it never covers the title
        kw["margin"] = {**kw["margin"], "t": kw["margin"]["t"] + 26 * (_legend_rows(fig) - 1)}
    fig.update_layout(**{**LAYOUT, **kw}, title=dict(text=title, font=dict(size=17)))
    return fig


def _log_ticks(vmax: float, vmin: float = 1.0) -> dict:
    """Readable ticks (1-2-5 per decade; finer for a narrow range) covering [vmin, vmax] on a log axis."""
    lo, hi = float(np.nanmin(np.asarray(vmin, dtype=np.float64))), float(np.nanmax(np.asarray(vmax, dtype=np.float64)))
    lo = lo if np.isfinite(lo) and lo > 0 else 1e-3
    hi = hi if np.isfinite(hi) and hi > lo else lo * 10
    steps = (1, 2, 5) if hi / lo >= 10 else (1, 1.2, 1.5, 2, 3, 5, 7)
    pad = 2.5 if hi / lo >= 10 else 1.15
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in steps]
    ticks = [t for t in ticks if lo / pad <= t <= hi * pad]
    if len(ticks) > 10:  # wide range: powers of ten only
        ticks = [t for t in ticks if math.isclose(math.log10(t), round(math.log10(t)), abs_tol=1e-9)]
    return dict(tickvals=ticks, ticktext=[f"{t:,.0f}" if t >= 10 else f"{t:g}" for t in ticks])


def _positive(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    return a[np.isfinite(a) & (a > 0)]


def _log_y(fig: go.Figure, values, **where: Any) -> None:
    """Log y axis with 1-2-5 ticks covering the positive finite ``values``."""
    v = _positive(values)
    ticks = _log_ticks(v.max(), v.min()) if len(v) else {}
    fig.update_yaxes(type="log", **ticks, **where)


def _per_class_figure(runs, labels, what: str):
    """Shared start of the per-class line figures: runs (same classes, else an error naming ``what``),
    their legend names, training counts, class order by count, class names, and a figure with the
    count bars on its log-scaled right axis."""
    runs = _runs(runs)
    check_same_classes(runs, what)
    counts = np.asarray(runs[0].class_counts)
    order = _order(counts)
    fig = _count_axis_figure()
    _count_bars(fig, counts[order])
    return runs, run_labels(runs, labels), counts, order, run_class_names(runs[0], len(counts)), fig


def _count_axis_figure() -> go.Figure:
    """Figure with a log training-count axis on the right drawn *below* the left axis (so lines stay on top).

    Draw counts with ``secondary_y=False`` and the main curves with ``secondary_y=True``.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(yaxis=dict(side="right", showgrid=False), yaxis2=dict(side="left", tickmode="auto"))
    return fig


def _count_bars(fig: go.Figure, counts_sorted: np.ndarray) -> None:
    fig.add_bar(x=np.arange(len(counts_sorted)), y=counts_sorted, name="train count", marker_color="#BBBBBB",
                opacity=0.6, hovertemplate="count %{y}<extra></extra>", secondary_y=False)
    fig.update_yaxes(title="training count", type="log", secondary_y=False,
                     **_log_ticks(float(counts_sorted.max()), float(counts_sorted.min())))


# ---------------------------------------------------------------------- runs: accuracy
def per_class_accuracy_bar(run, epoch: int = -1) -> go.Figure:
    """Per-class test accuracy at an evaluated epoch (default the last), classes ordered by training count,
    bars coloured by many/medium/few, training counts on a secondary log axis."""
    run = _runs(run)[0]
    counts = np.asarray(run.per_class["class_counts"])
    acc = np.asarray(run.per_class["acc"])[epoch]
    order = _order(counts)
    group = np.empty(len(counts), dtype=object)
    for name, idx in shot_split(counts).items():
        group[idx] = name
    fig = go.Figure()
    for name, color in GROUP_COLORS.items():
        sel = [i for i in order if group[i] == name]
        if sel:
            fig.add_bar(x=[str(i) for i in sel], y=acc[sel], name=f"{name} ({len(sel)})", marker_color=color)
    fig.add_scatter(x=[str(i) for i in order], y=counts[order], name="train count", yaxis="y2",
                    mode="lines+markers", line=dict(color="#555555", dash="dot"))
    ep = int(run.per_class["epochs"][epoch]) + 1
    fig.update_layout(**LAYOUT, title=f"Per-class test accuracy, epoch {ep} (overall {acc.mean():.3f})",
                      xaxis=dict(title="class (sorted by training count)", type="category", categoryorder="array",
                                 categoryarray=[str(i) for i in order]),
                      yaxis=dict(title="accuracy", range=[0, 1.02]),
                      yaxis2=dict(title="training count", type="log", overlaying="y", side="right"),
                      legend=dict(orientation="h", y=1.12, x=0), bargap=0.15)
    return fig


def summary_table(run):
    """Last evaluated epoch as a one-row DataFrame: overall and many/medium/few accuracy."""
    import pandas as pd

    s = _runs(run)[0].summary()
    return pd.DataFrame([{"epoch": int(s["epoch"]) + 1, "overall": s["acc"], "many": s["acc_many"],
                          "medium": s["acc_medium"], "few": s["acc_few"]}]).round(4)


def per_class_accuracy_curve(runs, labels: Sequence[str] | None = None, epoch: int = -1) -> go.Figure:
    """Per-class test accuracy vs class index sorted by training count, one line per run (side by side).

    Training counts as grey bars on a log-scaled right axis; many/medium/few ranges shaded
    (baselines.md 1.2 split). ``epoch`` indexes the evaluated epochs (default the last).
    """
    runs, names, counts, order, cls, fig = _per_class_figure(runs, labels, "per_class_accuracy_curve")
    for i, (r, name) in enumerate(zip(runs, names)):
        acc = np.asarray(r.per_class["acc"])[epoch][order]
        fig.add_scatter(x=np.arange(len(order)), y=acc, mode="lines+markers", name=f"{name} ({np.nanmean(acc):.3f})",
                        line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), marker=dict(size=7),
                        customdata=np.stack([np.asarray(cls, dtype=object)[order], counts[order]], axis=1),
                        hovertemplate="%{customdata[0]} (n=%{customdata[1]})<br>acc %{y:.3f}", secondary_y=True)
    _group_bands(fig, counts[order])
    _style(fig, "Per-class test accuracy (classes sorted by training count)", legend=_LEGEND_TOP,
           margin=dict(l=60, r=60, t=90, b=60), bargap=0.1)
    fig.update_xaxes(title="class (sorted by training count)", **_rank_axis(np.asarray(cls)[order]))
    # headroom above 1.0 keeps the many/medium/few labels clear of curves at full accuracy
    fig.update_yaxes(title="test accuracy", range=[0, 1.1], tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0], secondary_y=True)
    return fig


def accuracy_over_epochs(runs, labels: Sequence[str] | None = None) -> go.Figure:
    """Overall and many/medium/few test accuracy per evaluated epoch, one panel each, runs as lines.

    Groups empty for these class counts (e.g. no "few" class) are left out. Runs must share the
    class set (their imbalance factors may differ: groups are then defined per run).
    """
    runs = _runs(runs)
    check_same_classes(runs, "accuracy_over_epochs", same_counts=False)
    names = run_labels(runs, labels)
    cols = [("acc", "overall")] + [(f"acc_{g}", g) for g in ("many", "medium", "few")
                                   if any(r.metrics[f"acc_{g}"].notna().any() for r in runs)]
    fig = make_subplots(1, len(cols), shared_yaxes=True, subplot_titles=[t for _, t in cols], horizontal_spacing=0.03)
    for i, (r, name) in enumerate(zip(runs, names)):
        for j, (key, _) in enumerate(cols):
            fig.add_scatter(x=r.metrics["epoch"] + 1, y=r.metrics[key], mode="lines+markers", name=name,
                            legendgroup=name, showlegend=j == 0, line=dict(color=PALETTE[i % len(PALETTE)], width=2.5),
                            row=1, col=j + 1)
    _style(fig, "Test accuracy over training", margin=dict(l=60, r=20, t=80, b=50))
    fig.update_xaxes(title="epoch", **_epoch_ticks(max(len(r.metrics) for r in runs)))
    fig.update_yaxes(title="test accuracy", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def confusion_matrix(run, normalize: bool = True) -> go.Figure:
    """Test confusion matrix of the last evaluated epoch (rows true, columns predicted), classes sorted by count.

    ``normalize``: each row divided by its class size (recall on the diagonal).
    """
    run = _runs(run)[0]
    if "test_logits" not in run.per_class:
        raise RunFileError(f"{run.dir / 'per_class.npz'} has no test_logits; it is written after an evaluated epoch")
    logits, labels = np.asarray(run.per_class["test_logits"]), np.asarray(run.per_class["test_labels"])
    counts = np.asarray(run.class_counts)
    order = _order(counts)
    cm = _metrics.confusion_matrix(logits.argmax(1), labels, len(counts)).astype(np.float64)[np.ix_(order, order)]
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    cls = list(np.asarray(run_class_names(run, len(counts)), dtype=object)[order])
    text = np.vectorize(lambda v: f"{v:.2f}" if normalize else f"{int(v)}")(cm) if len(counts) <= 12 else None
    fig = go.Figure(go.Heatmap(z=cm, x=cls, y=cls, colorscale="Cividis", text=text, texttemplate="%{text}" if text is
                               not None else None, colorbar=dict(title="fraction" if normalize else "count"),
                               zmin=0, zmax=1 if normalize else None))
    _style(fig, f"Confusion matrix ({run_labels([run])[0]})", margin=dict(l=110, r=20, t=60, b=110))
    fig.update_xaxes(title="predicted class", type="category")
    fig.update_yaxes(title="true class (sorted by training count)", type="category", autorange="reversed")
    return fig


# ---------------------------------------------------------------------- runs: gradients and classifier
def gradient_ratio_by_class(runs, labels: Sequence[str] | None = None, epoch: int = -1) -> go.Figure:
    """Positive/negative gradient ratio of each classifier at one epoch vs class sorted by count (log y).

    From ``probes.npz`` ``grad_ratio`` (``sum_{y=c}|dL/dz_c| / sum_{y!=c}|dL/dz_c|`` accumulated over the
    epoch; ltlab.probes); the GALA / GHM-CWAP "gradient ratio" plot. 1 = balanced gradients.
    """
    runs = _runs(runs)
    check_same_classes(runs, "gradient_ratio_by_class")
    names = run_labels(runs, labels)
    counts = np.asarray(runs[0].class_counts)
    order = _order(counts)
    cls = run_class_names(runs[0], len(counts))
    fig, seen = go.Figure(), [1.0]
    for i, (r, name) in enumerate(zip(runs, names)):
        ratio = _probe(r, "grad_ratio")[epoch][order]
        seen.extend(_positive(ratio))
        fig.add_scatter(x=np.arange(len(order)), y=ratio, mode="lines+markers", name=name,
                        line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), marker=dict(size=7))
    fig.add_hline(y=1.0, line=dict(color="#555555", dash="dot"))
    _group_bands(fig, counts[order])
    ep = "last epoch" if epoch == -1 else f"epoch {epoch + 1 if epoch >= 0 else epoch}"
    _style(fig, f"Positive / negative gradient ratio per classifier ({ep})", legend=_LEGEND_TOP,
           margin=dict(l=70, r=20, t=90, b=60))
    fig.update_xaxes(title="class (sorted by training count)", **_rank_axis(np.asarray(cls)[order]))
    fig.update_yaxes(title="pos / neg gradient")
    _log_y(fig, seen)
    return fig


def gradient_ratio_curves(runs, labels: Sequence[str] | None = None, classes: Sequence[int] | None = None) -> go.Figure:
    """Positive/negative gradient ratio per class over epochs (log y), one panel per run.

    ``classes``: class indices to draw (default all when C <= 10, else 8 spread over the count ranking);
    colours follow the count ranking (head dark, tail light).
    """
    runs = _runs(runs)
    check_same_classes(runs, "gradient_ratio_curves")
    names = run_labels(runs, labels)
    counts = np.asarray(runs[0].class_counts)
    order = _order(counts)
    if classes is None:
        classes = order if len(order) <= 10 else order[np.linspace(0, len(order) - 1, 8).round().astype(int)]
    rank = {int(c): k for k, c in enumerate(order)}
    colors = class_colors(len(order))
    cls = run_class_names(runs[0], len(counts))
    fig = make_subplots(1, len(runs), shared_yaxes=True, subplot_titles=names, horizontal_spacing=0.04)
    seen = []
    for j, r in enumerate(runs):
        ratio = _probe(r, "grad_ratio")
        seen.extend(_positive(ratio[:, list(classes)]))
        for c in sorted(classes, key=lambda c: rank[int(c)]):
            fig.add_scatter(x=np.arange(1, len(ratio) + 1), y=ratio[:, c], mode="lines",
                            name=f"{cls[c]} (n={counts[c]})",
                            legendgroup=str(c), showlegend=j == 0, line=dict(color=colors[rank[int(c)]], width=2),
                            row=1, col=j + 1)
    _style(fig, "Positive / negative gradient ratio over training", legend=dict(title="class"),
           margin=dict(l=70, r=20, t=80, b=50))
    fig.update_xaxes(title="epoch", **_epoch_ticks(max(len(_probe(r, "grad_ratio")) for r in runs)))
    _log_y(fig, seen)
    fig.update_yaxes(title="pos / neg gradient", row=1, col=1)
    return fig


def gradient_ratio_heatmap(run, epoch: int = -1, normalize: bool = True) -> go.Figure:
    """Negative gradient each classifier (row) receives from each source class (column), sorted by count.

    From ``grad_neg_by_source`` at ``epoch`` (0-based, an evaluated epoch; default -1, the last); the
    training loop records this matrix at evaluated epochs only. ``normalize``: rows as fractions of the
    classifier's total negative gradient.
    """
    run = _runs(run)[0]
    _probe(run, "grad_neg_by_source", f" (kept for up to {MATRIX_MAX_CLASSES} classes, see ltlab.probes)")
    m, at = matrix_at(run.probes, "grad_neg_by_source", epoch)
    counts = np.asarray(run.class_counts)
    order = _order(counts)
    m = m[np.ix_(order, order)]
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-300)
    cls = list(np.asarray(run_class_names(run, len(counts)), dtype=object)[order])
    fig = go.Figure(go.Heatmap(z=m, x=cls, y=cls, colorscale="Cividis",
                               colorbar=dict(title="share" if normalize else "|dL/dz|")))
    _style(fig, f"Negative gradient by source class ({run_labels([run])[0]}, epoch {at + 1})", margin=dict(l=110, r=20, t=60, b=110))
    fig.update_xaxes(title="source class (sample label)", type="category")
    fig.update_yaxes(title="classifier (sorted by count)", type="category", autorange="reversed")
    return fig


def weight_norms(runs, labels: Sequence[str] | None = None, epoch: int = -1) -> go.Figure:
    """L2 norm of each class's classifier weight vs class sorted by training count, runs as lines."""
    runs, names, counts, order, cls, fig = _per_class_figure(runs, labels, "weight_norms")
    for i, (r, name) in enumerate(zip(runs, names)):
        fig.add_scatter(x=np.arange(len(order)), y=_probe(r, "weight_norm")[epoch][order], mode="lines+markers",
                        name=name, line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), secondary_y=True)
    _group_bands(fig, counts[order])
    _style(fig, "Classifier weight norm per class", legend=_LEGEND_TOP, margin=dict(l=60, r=60, t=90, b=60))
    fig.update_xaxes(title="class (sorted by training count)", **_rank_axis(np.asarray(cls)[order]))
    fig.update_yaxes(title="||w_c||", rangemode="tozero", secondary_y=True)
    return fig


def gala_theta_phi(run, epoch: int = -1) -> go.Figure:
    """GALA's accumulated gradients: theta (positive, per classifier) and phi (negative, per sample class).

    Left: both per class at ``epoch`` (log y; GALA paper 003, Eq. 6 statistics, methods.md 4). Right:
    theta over epochs per class. Needs a ``loss="gala"`` run (probes ``theta``/``phi``).
    """
    run = _runs(run)[0]
    why = "; theta/phi are recorded for loss='gala' runs"
    theta, phi = _probe(run, "theta", why), _probe(run, "phi", why)
    counts = np.asarray(run.class_counts)
    order = _order(counts)
    cls = run_class_names(run, len(counts))
    fig = make_subplots(1, 2, subplot_titles=["per class" + ("" if epoch == -1 else f", epoch {epoch + 1}"),
                                              "theta over training"], horizontal_spacing=0.12)
    fig.add_scatter(x=np.arange(len(order)), y=theta[epoch][order], name="theta (positive)", mode="lines+markers",
                    line=dict(color=PALETTE[0], width=2.5), row=1, col=1)
    fig.add_scatter(x=np.arange(len(order)), y=phi[epoch][order], name="phi (negative)", mode="lines+markers",
                    line=dict(color=PALETTE[3], width=2.5, dash="dash"), row=1, col=1)
    colors = class_colors(len(order))
    for k, c in enumerate(order):
        ep = np.arange(1, len(theta) + 1)
        fig.add_scatter(x=ep, y=theta[:, c], mode="lines", name=f"theta {cls[c]} (n={counts[c]})",
                        line=dict(color=colors[k], width=2), row=1, col=2,
                        hovertemplate=f"{cls[c]} (n={counts[c]})<br>theta %{{y:.3g}}<extra></extra>")
    _group_bands(fig, counts[order], row=1, col=1)
    same = np.allclose(theta[epoch], phi[epoch], rtol=1e-6)
    note = ("<br><sup>theta = phi: with a softmax, a sample's positive gradient 1 - p_y equals the sum of the "
            "negative gradients it sends to the other classes</sup>" if same else "")
    _style(fig, f"GALA accumulated gradients ({run_labels([run])[0]}){note}",
           margin=dict(l=70, r=20, t=100 if same else 80, b=60))
    fig.update_xaxes(title="class (sorted by training count)", row=1, col=1, **_rank_axis(np.asarray(cls)[order]))
    fig.update_xaxes(title="epoch", row=1, col=2, **_epoch_ticks(len(theta)))
    _log_y(fig, np.concatenate([_positive(theta[epoch]), _positive(phi[epoch])]), row=1, col=1)
    _log_y(fig, theta, row=1, col=2)
    fig.update_yaxes(title="accumulated |dL/dz|", row=1, col=1)
    return fig


# ---------------------------------------------------------------------- t-SNE
def tsne_scatter(df, color: Literal["label", "group"] = "label", *, class_names: Sequence[str] | None = None,
                 title: str | None = None, marker_size: int = 5) -> go.Figure:
    """Scatter of a :func:`ltlab.features.tsne` DataFrame, coloured by class or by many/medium/few.

    ``df`` may be a dict ``{name: DataFrame}``: one panel per entry, side by side, one legend.
    Hover shows class, group and whether the prediction was correct.
    """
    import pandas as pd

    if color not in ("label", "group"):
        raise ValueError(f"tsne_scatter: color must be 'label' or 'group', got {color!r}")
    frames = df if isinstance(df, dict) else {"": df}
    for name, d in frames.items():
        if not isinstance(d, pd.DataFrame) or not {"x", "y", "label", "group"} <= set(d.columns):
            raise ValueError(f"tsne_scatter: {name or 'df'} must be a DataFrame from ltlab.features.tsne "
                             "(columns x, y, label, group)")
    labels_all = sorted(set().union(*[set(d["label"].tolist()) for d in frames.values()]))
    num = max(labels_all) + 1 if labels_all else 0
    names = list(class_names) if class_names is not None else [str(c) for c in range(num)]
    if color == "label":
        cats, colors, key = labels_all, dict(zip(range(num), class_colors(num))), "label"
    else:
        cats = [g for g in ("many", "medium", "few", "unknown")
                if any((d["group"] == g).any() for d in frames.values())]
        colors, key = {**GROUP_COLORS, "unknown": "#777777"}, "group"
    fig = make_subplots(1, len(frames), subplot_titles=[n for n in frames] if len(frames) > 1 else None,
                        horizontal_spacing=0.03)
    for j, d in enumerate(frames.values()):
        correct = d["correct"].astype("object").where(d["correct"].notna(), "n/a") if "correct" in d else "n/a"
        d = d.assign(_correct=correct, _name=[names[c] if c < len(names) else str(c) for c in d["label"]])
        for cat in cats:
            sel = d[d[key] == cat]
            legend = names[cat] if key == "label" and cat < len(names) else str(cat)
            fig.add_scatter(x=sel["x"], y=sel["y"], mode="markers", name=legend, legendgroup=str(cat),
                            showlegend=j == 0, marker=dict(size=marker_size, color=colors[cat], opacity=0.75,
                                                           line=dict(width=0)),
                            customdata=np.stack([sel["_name"], sel["group"], sel["_correct"]], axis=1) if len(sel)
                            else None, hovertemplate="%{customdata[0]} (%{customdata[1]})<br>correct: "
                                                     "%{customdata[2]}<extra></extra>", row=1, col=j + 1)
    _style(fig, title or f"t-SNE of features (colour: {'class' if key == 'label' else 'many / medium / few'})",
           legend=dict(itemsizing="constant", title="class" if key == "label" else "group"),
           margin=dict(l=30, r=20, t=80, b=30))
    fig.update_xaxes(showticklabels=False, ticks="", title=None, showline=True, mirror=True)
    fig.update_yaxes(showticklabels=False, ticks="", title=None, showline=True, mirror=True)
    return fig


# ---------------------------------------------------------------------- schedules (no training)
def replay_glag_beta(acc_history, tail_classes: Sequence[int], beta0: float = 0.6, step: float = 0.05) -> np.ndarray:
    """GLAG beta per tail class over epochs (E, T) from per-class accuracies (E, C) by the LIB rule.

    ``beta[0] = beta0`` (0.6, methods.md 1b.6); ``beta[t] = schedules.glag_beta_update(beta[t-1], acc[t],
    acc[t-1], step)``.
    """
    acc = np.asarray(acc_history, dtype=np.float64)[:, np.asarray(tail_classes, dtype=np.int64)]
    out = np.empty_like(acc)
    out[0] = beta0
    for t in range(1, len(acc)):
        out[t] = schedules.glag_beta_update(out[t - 1], acc[t], acc[t - 1], step)
    return out


def glag_tail_classes(class_counts: Sequence[int], tail_max: int = 100) -> np.ndarray:
    """GLAG tail classes ``0 < n_c <= tail_max`` (LIB, methods.md 1b.7), sorted by count (largest first)."""
    counts = np.asarray(class_counts)
    return np.asarray([c for c in _order(counts) if 0 < counts[c] <= tail_max], dtype=np.int64)


def synthetic_glag_beta(class_counts: Sequence[int], epochs: int = 40, beta0: float = 0.6, step: float = 0.05,
                        seed: int = 0, class_names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Illustrative GLAG beta (E, T) for the tail classes, replayed from a seeded synthetic accuracy history.

    Per tail class, validation accuracy follows a noisy saturating curve (LIB illustration, no training);
    the LIB rule of ``replay_glag_beta`` turns it into beta. Returns (beta, legend labels).
    """
    counts = np.asarray(class_counts)
    tail = glag_tail_classes(counts)
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)[:, None]
    acc = 0.3 + 0.4 * (1 - np.exp(-t / 8.0)) + rng.normal(0.0, 0.02, size=(epochs, len(counts)))
    names = list(class_names) if class_names is not None else [f"class {c}" for c in range(len(counts))]
    return replay_glag_beta(acc, tail, beta0, step), [f"{names[c]} (n={counts[c]})" for c in tail]


def glag_schedule(num_epochs: int, s: float = 1.0, c: float | Sequence[float] = 2.0, beta=None,
                  beta_classes: Sequence[str] | None = None) -> go.Figure:
    """GLAG alpha(T) = s (c^(T/Tmax) - 1) per epoch (GLAG paper 000, Eq. 4; ``schedules.glag_alpha``) and beta.

    ``c`` may be a list (one curve each). ``beta`` (optional): an (E, T) array of the class-wise
    calibration strength per epoch, or a Run whose per-class accuracy history replays the LIB rule
    (``replay_glag_beta``, tail = classes with n <= 100); drawn in a second panel.
    """
    if isinstance(beta, (Run, str, os.PathLike)):
        run = _runs(beta)[0]
        counts = np.asarray(run.class_counts)
        tail = glag_tail_classes(counts)
        beta_classes = [f"{run_class_names(run, len(counts))[c_]} (n={counts[c_]})" for c_ in tail]
        beta = replay_glag_beta(run.per_class["acc"], tail)
    cs = [c] if np.isscalar(c) else list(c)
    fig = make_subplots(1, 2 if beta is not None else 1, horizontal_spacing=0.1,
                        subplot_titles=["alpha(T), constant within an epoch", "beta per tail class"]
                        if beta is not None else None)
    epochs = np.arange(num_epochs + 1)  # a step per epoch, closed at num_epochs
    for i, c_ in enumerate(cs):
        alpha = [schedules.glag_alpha(e, num_epochs, s, c_) for e in epochs[:-1]]
        fig.add_scatter(x=epochs, y=alpha + alpha[-1:], mode="lines", line_shape="hv" if num_epochs <= 60 else "linear",
                        name=f"alpha, s={s:g}, c={c_:g}",
                        line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), row=1, col=1)
    if beta is not None:
        beta = np.asarray(beta, dtype=np.float64).reshape(len(beta), -1)
        labels = list(beta_classes) if beta_classes is not None else [f"tail class {k}" for k in range(beta.shape[1])]
        colors = class_colors(beta.shape[1])
        for k in range(beta.shape[1]):
            fig.add_scatter(x=np.arange(len(beta) + 1), y=np.append(beta[:, k], beta[-1, k]), mode="lines",
                            line_shape="hv", name=f"beta {labels[k]}", line=dict(color=colors[k], width=2),
                            row=1, col=2)
        fig.update_xaxes(title="generation epoch", row=1, col=2, **_epoch_ticks(len(beta)))
        fig.update_yaxes(title="beta", range=[-0.02, 1.02], row=1, col=2)
    title = "GLAG schedules: gradual balance factor alpha(T)"
    _style(fig, title + (" and calibration strength beta" if beta is not None else ""),
           margin=dict(l=70, r=20, t=90, b=60))
    fig.update_xaxes(title="epoch T (0-based)", row=1, col=1)
    fig.update_yaxes(title="alpha(T)", row=1, col=1)
    return fig


def ala_factors(class_counts: Sequence[int], qf: Sequence[str] = ("paper", "code")) -> go.Figure:
    """ALA quantity factor QF per class (both forms) and difficulty factor DF vs target cosine (ALA paper 002,
    Eq. 6-7; methods.md 3). Right panel also shows the target shift DF * QF_c of the head, middle and tail class.
    """
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    order = _order(counts.numpy())
    fig = make_subplots(1, 2, horizontal_spacing=0.1, subplot_titles=["quantity factor QF per class",
                                                                      "difficulty factor vs target cosine"])
    qfs = {}
    for i, form in enumerate(qf):
        qfs[form] = LF.ala_quantity_factor(counts, form).numpy()
        fig.add_scatter(x=np.arange(len(order)), y=qfs[form][order], mode="lines+markers", name=f"QF ({form})",
                        line=dict(color=PALETTE[i], width=2.5), row=1, col=1)
    cos = torch.linspace(-1, 1, 101, dtype=torch.float64)[:, None]
    df = LF.ala_difficulty_factor(cos, torch.zeros(len(cos), dtype=torch.long)).numpy()
    fig.add_scatter(x=cos[:, 0].numpy(), y=df, mode="lines", name="DF = (1 - cos_y) / 2",
                    line=dict(color="#000000", width=3), row=1, col=2)
    picks = {"head": order[0], "middle": order[len(order) // 2], "tail": order[-1]}
    q = qfs.get("paper", next(iter(qfs.values())))
    for k, (name, c_) in enumerate(picks.items()):
        fig.add_scatter(x=cos[:, 0].numpy(), y=df * q[c_], mode="lines", name=f"DF * QF, {name} (n={int(counts[c_])})",
                        line=dict(color=PALETTE[k + 2], width=2, dash="dash"), row=1, col=2)
    _style(fig, "ALA adaptive logit adjustment factors", margin=dict(l=70, r=20, t=80, b=60))
    fig.update_xaxes(title="class (sorted by training count)", row=1, col=1)
    fig.update_yaxes(title="QF", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title="target cosine cos_y", row=1, col=2)
    fig.update_yaxes(title="target shift (cosine units)", rangemode="tozero", row=1, col=2)
    return fig


def _mean_abs_clamped_normal(sigma: float = 1.0 / 3.0, a: float = 1.0) -> float:
    """E|clamp(X, -a, a)| for X ~ N(0, sigma^2) (GCL noise, std 1/3, clamp [-1, 1])."""
    tail = math.erfc(a / (sigma * math.sqrt(2.0)))  # P(|X| > a)
    return sigma * math.sqrt(2.0 / math.pi) * (1.0 - math.exp(-a * a / (2 * sigma * sigma))) + a * tail


def gcl_cloud_widths(class_counts: Sequence[int], noise_mul: float = 0.5) -> go.Figure:
    """GCL cloud size per class: largest negative shift ``noise_mul * delta_hat_c`` (|eps| <= 1) and its mean
    ``noise_mul * delta_hat_c * E|eps|`` (GCL paper 001, Eq. 9-11; ``functional.gcl_delta_hat``; methods.md 2).
    """
    counts = np.asarray(class_counts)
    order = _order(counts)
    width = LF.gcl_delta_hat(torch.as_tensor(counts, dtype=torch.float64)).numpy() * noise_mul
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=np.arange(len(order)), y=width[order], name="cloud width (max shift)", marker_color=PALETTE[0],
                secondary_y=False)
    fig.add_scatter(x=np.arange(len(order)), y=width[order] * _mean_abs_clamped_normal(), mode="lines+markers",
                    name="mean shift", line=dict(color=PALETTE[1], width=2.5), secondary_y=False)
    fig.add_scatter(x=np.arange(len(order)), y=counts[order], mode="lines", name="train count",
                    line=dict(color="#555555", dash="dot"), secondary_y=True)
    _style(fig, f"GCL Gaussian cloud width per class (noise_mul={noise_mul:g})", legend=_LEGEND_TOP,
           margin=dict(l=70, r=70, t=90, b=60))
    fig.update_xaxes(title="class (sorted by training count)")
    fig.update_yaxes(title="cosine shift", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title="training count", type="log", secondary_y=True, showgrid=False,
                     **_log_ticks(float(counts.max()), float(counts.min())))
    return fig


def synthetic_ghm_cwap_loss(class_counts: Sequence[int], bins: int = 30, alpha: float = 0.9, gamma: float = 0.8,
                            epochs: int = 3, seed: int = 0, max_per_class: int = 2000, **loss_params: Any):
    """A GHMCWAPLoss whose histograms come from synthetic logits (no training): for drawing its bins.

    Per epoch, ``min(n_c, max_per_class)`` samples of class c get logits ~ N(0, 1) plus a target
    boost ~ N(m_c, 1.5) with m_c growing with log n_c and the epoch (head classes become easy first),
    so g spreads over [0, 1]; ``set_epoch`` closes each epoch's histogram as in training. Our
    illustration, seeded by ``seed``; ``loss_params`` (e.g. ``use_weights=False``) go to the loss.
    """
    from .losses import create_loss

    counts = np.asarray(class_counts)
    loss = create_loss("ghm_cwap", list(counts), bins=bins, alpha=alpha, gamma=gamma, **loss_params).train()
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(np.repeat(np.arange(len(counts)), np.minimum(counts, max_per_class)), dtype=torch.long)
    rel = np.log(counts / counts.min() + 1.0) / np.log(counts.max() / counts.min() + 1.0)
    ease = torch.as_tensor(0.5 + 3.0 * rel, dtype=torch.float64)
    for e in range(epochs):
        loss.set_epoch(e, epochs)
        z = torch.randn(len(y), len(counts), generator=g, dtype=torch.float64)
        boost = ease[y] * (1.0 + 0.3 * e) + 1.5 * torch.randn(len(y), generator=g, dtype=torch.float64)
        z[torch.arange(len(y)), y] += boost
        loss(z, y)
    return loss


def _ghm_cwap_state(source, epoch: int) -> dict[str, Any]:
    """The histogram to draw (``widths``, ``hist`` (C, N)), class counts/names, a label and the loss options."""
    from .losses import create_loss

    if isinstance(source, (Run, str, os.PathLike)):
        run = _runs(source)[0]
        why = "; bins are recorded for loss='ghm_cwap' runs"
        widths, hist = _probe(run, "bin_widths", why)[epoch], _probe(run, "bin_counts", why)[epoch]
        shown = len(_probe(run, "bin_widths")) + epoch if epoch < 0 else epoch
        counts, names = np.asarray(run.class_counts), run_class_names(run, len(run.class_counts))
        loss = create_loss("ghm_cwap", list(counts), **(run.config.get("loss_params") or {}))
        where = f"{run_labels([run])[0]}, epoch {shown + 1}"
    elif isinstance(source, torch.nn.Module) and hasattr(source, "frozen_counts"):
        open_ = bool(source.counts.sum() > 0)
        widths = (source.widths if open_ else source.frozen_widths).detach().cpu().numpy()
        hist = (source.counts if open_ else source.frozen_counts).detach().cpu().numpy()
        counts, names, loss, where = source.class_counts.cpu().numpy(), None, source, "loss state"
    elif isinstance(source, dict) and {"bin_widths", "bin_counts"} <= set(source):
        widths, hist, counts = source["bin_widths"], source["bin_counts"], source.get("class_counts")
        names, where = None, "given state"
        loss = create_loss("ghm_cwap", list(counts) if counts is not None else [1] * len(widths),
                           **{"bins": np.shape(widths)[1], **source.get("loss_params", {})})
    else:
        raise ValueError("ghm_cwap_bins: source must be a ghm_cwap Run, a GHMCWAPLoss or a dict with "
                         "bin_widths and bin_counts")
    widths, hist = np.asarray(widths, dtype=np.float64), np.asarray(hist, dtype=np.float64)
    num = widths.shape[0]
    return dict(widths=widths, hist=hist, counts=None if counts is None else np.asarray(counts), where=where,
                names=names or [str(c) for c in range(num)], loss=loss)


def _ghm_edges(widths: np.ndarray) -> np.ndarray:
    """Bin edges (..., N + 1) of widths (..., N): 0, cumsum, last edge exactly 1."""
    e = np.concatenate([np.zeros(widths.shape[:-1] + (1,)), np.cumsum(widths, axis=-1)], axis=-1)
    e[..., -1] = 1.0
    return e


def ghm_cwap_density(widths, hist, x) -> np.ndarray:
    """Samples per unit g (C, len(x)) at the points ``x`` from GHM-CWAP histograms (C, N).

    A bin's count ``v = sum 1/(N d)`` holds ``v N d`` samples over width d, so its density is ``N v``;
    the bin of x follows the loss (number of interior edges <= x).
    """
    widths, hist, x = np.asarray(widths, np.float64), np.asarray(hist, np.float64), np.asarray(x, np.float64)
    inner = np.cumsum(widths, axis=1)[:, :-1]
    idx = np.minimum((inner[:, None, :] <= x[None, :, None]).sum(axis=2), widths.shape[1] - 1)
    return widths.shape[1] * np.take_along_axis(hist, idx, axis=1)


def ghm_cwap_rebin(widths, hist, edges) -> np.ndarray:
    """Mean density (samples per unit g) of one class's histogram (N,) over new bin ``edges`` (M + 1,).

    The histogram is taken as uniform inside each recorded bin (the finest view a run keeps).
    """
    widths, hist = np.asarray(widths, np.float64), np.asarray(hist, np.float64)
    cdf = np.concatenate([[0.0], np.cumsum(hist * len(hist) * widths)])
    return np.diff(np.interp(edges, _ghm_edges(widths), cdf)) / np.diff(edges)


def ghm_cwap_bins(source, classes: Sequence[int] | None = None, epoch: int = -1,
                  view: Literal["bins", "distribution"] = "bins") -> go.Figure:
    """GHM-CWAP histograms of the gradient norm g = 1 - p_y (GHM-CWAP paper 004, Eq. 1, Alg. 1, Fig. 2).

    ``view="bins"``: per class, the adaptive unit regions with their counts v_c (log y), widths d_c, and
    the weight W (Eq. 1) a sample in each bin gets once this histogram is frozen (next epoch) under the
    loss's rules, beside the other empty-bin rule for comparison (``"density"``, our first rule, for a
    run with the default ``"unit"``; ``"unit"`` for a ``"density"`` or a margins-only run).
    ``view="distribution"`` (paper Fig. 2): (a) samples per unit g over all classes and per many / medium
    / few group; (b) per class, the recorded distribution against N equal-width bins (URA) and (c)
    against the adaptive bins (AURA) the loss derives from these counts.
    ``source``: a ``loss="ghm_cwap"`` Run (probes ``bin_widths``/``bin_counts`` of ``epoch``), a
    GHMCWAPLoss (its open histogram, or the last closed one if nothing is counted yet), or a dict
    with ``bin_widths`` (C, N), ``bin_counts`` (C, N) and optionally ``class_counts``, ``loss_params``.
    ``classes`` default: the head, middle and tail class by training count (``"distribution"``: head, tail).
    """
    if view not in ("bins", "distribution"):
        raise ValueError(f"ghm_cwap_bins: view must be 'bins' or 'distribution', got {view!r}")
    st = _ghm_cwap_state(source, epoch)
    num = st["widths"].shape[0]
    order = _order(st["counts"]) if st["counts"] is not None else np.arange(num)
    if classes is None:
        picks = [order[0], order[-1]] if view == "distribution" else [order[0], order[num // 2], order[-1]]
        classes = list(dict.fromkeys(int(c) for c in picks))
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < num]
    if bad:
        raise ValueError(f"ghm_cwap_bins: classes {bad} out of range for {num} classes")
    titles = [f"{st['names'][c]}" + (f" (n={int(st['counts'][c])})" if st["counts"] is not None else "")
              for c in classes]
    return (_ghm_distribution if view == "distribution" else _ghm_bins)(st, classes, titles)


def _ghm_bins(st: dict, classes: list[int], titles: list[str]) -> go.Figure:
    widths, hist, loss = st["widths"], st["hist"], st["loss"]
    w_t, h_t = torch.as_tensor(widths), torch.as_tensor(hist)
    weights = (LF.ghm_cwap_bin_weights(w_t, h_t, loss.alpha, loss.weight_norm, loss.empty_bin).numpy()
               if loss.use_weights else np.ones_like(hist))
    other = "density" if loss.use_weights and loss.empty_bin == "unit" else "unit"
    alt = LF.ghm_cwap_bin_weights(w_t, h_t, loss.alpha, loss.weight_norm, other).numpy()
    label = {"density": "first rule (empty bin as 1/(N d))", "unit": "with empty_bin='unit' (W = 1 in empty bins)"}
    rule = (f"empty_bin={loss.empty_bin!r}, weight_norm={loss.weight_norm!r}" if loss.use_weights
            else "use_weights=False: W = 1")
    fig = make_subplots(3, len(classes), shared_xaxes=True, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.05, row_heights=[0.4, 0.2, 0.4])
    for j, c in enumerate(classes):
        edges = _ghm_edges(widths[c])
        mid, color = (edges[:-1] + edges[1:]) / 2, PALETTE[j % len(PALETTE)]
        fig.add_bar(x=mid, y=np.where(hist[c] > 0, hist[c], np.nan), width=widths[c],
                    marker=dict(color=color, line=dict(color="#FFFFFF", width=0.5)), showlegend=False, row=1,
                    col=j + 1, hovertemplate="bin width %{width:.3f}<br>count %{y:.3g}<extra></extra>")
        fig.add_bar(x=mid, y=widths[c], width=widths[c],
                    marker=dict(color="#BBBBBB", line=dict(color="#555555", width=0.8)),
                    showlegend=False, row=2, col=j + 1, hovertemplate="width %{y:.3f}<extra></extra>")
        fig.add_bar(x=mid, y=weights[c], width=widths[c], name=f"W in use ({rule})", legendgroup="w",
                    showlegend=j == 0, marker=dict(color=PALETTE[0], line=dict(color="#FFFFFF", width=0.5)),
                    row=3, col=j + 1, hovertemplate="W %{y:.3g}<extra></extra>")
        fig.add_scatter(x=mid, y=alt[c], mode="markers", name=label[other],
                        legendgroup="alt", showlegend=j == 0, marker=dict(color=PALETTE[3], symbol="x", size=7),
                        row=3, col=j + 1, hovertemplate="W %{y:.3g} " + f"({other})<extra></extra>")
        fig.add_hline(y=1.0, line=dict(color="#555555", dash="dot", width=1), row=3, col=j + 1)
    _style(fig, f"GHM-CWAP unit regions, counts and weights ({st['where']})", margin=dict(l=80, r=20, t=110, b=60),
           bargap=0, height=720, legend=_LEGEND_TOP)
    fig.update_xaxes(range=[0, 1])
    fig.update_xaxes(title="gradient norm g = 1 - p_y", row=3)
    v = _positive(hist[classes])
    if len(v):
        fig.update_yaxes(type="log", range=[math.log10(v.min() / 2), math.log10(v.max() * 2)],
                         **_log_ticks(v.max(), v.min()), row=1)
    fig.update_yaxes(range=[0, 1.1 * float(widths[classes].max())], row=2)
    w = _positive(np.concatenate([weights[classes].ravel(), alt[classes].ravel(), [1.0]]))
    fig.update_yaxes(type="log", range=[math.log10(w.min() / 2), math.log10(w.max() * 2)],
                     **_log_ticks(w.max(), w.min()), row=3)
    fig.update_yaxes(title="count v", row=1, col=1)
    fig.update_yaxes(title="width d", row=2, col=1)
    fig.update_yaxes(title="W next epoch", row=3, col=1)
    return fig


def _ghm_distribution(st: dict, classes: list[int], titles: list[str]) -> go.Figure:
    widths, hist, counts, n_bins = st["widths"], st["hist"], st["counts"], st["widths"].shape[1]
    x = (np.arange(400) + 0.5) / 400
    dens = ghm_cwap_density(widths, hist, x)
    k = len(classes)
    specs = [[{"colspan": k}] + [None] * (k - 1), [{}] * k, [{}] * k]
    sub = ["(a) all training samples of the epoch, by group"]
    sub += [f"(b) URA: {n_bins} equal bins · {t}" for t in titles] + [f"(c) AURA: bins from these counts · {t}"
                                                                      for t in titles]
    fig = make_subplots(3, k, specs=specs, subplot_titles=sub, vertical_spacing=0.09, horizontal_spacing=0.08)
    groups = {"all classes": np.arange(len(widths))}
    if counts is not None:
        groups.update(shot_split(counts))
    sums = {name: dens[idx].sum(axis=0) if len(idx) else np.full(len(x), np.nan) for name, idx in groups.items()}
    for name, idx in groups.items():
        n, y = float((hist[idx] * n_bins * widths[idx]).sum()), sums[name]
        fig.add_scatter(x=x, y=np.where(y > 0, y, np.nan), mode="lines", name=f"{name} ({len(idx)} classes, "
                        f"{n:,.0f} samples)", line=dict(color=GROUP_COLORS.get(name, "#000000"),
                        width=3 if name == "all classes" else 2, dash=None if name == "all classes" else "dot"),
                        row=1, col=1)
    new_widths = LF.ghm_cwap_new_widths(torch.as_tensor(hist)).numpy()
    for j, c in enumerate(classes):
        rec = _ghm_edges(widths[c])
        for row, edges in ((2, np.linspace(0.0, 1.0, n_bins + 1)), (3, _ghm_edges(new_widths[c]))):
            mid, w, y = (edges[:-1] + edges[1:]) / 2, np.diff(edges), ghm_cwap_rebin(widths[c], hist[c], edges)
            fig.add_bar(x=mid, y=y, width=w, showlegend=False,
                        marker=dict(color="#56B4E9", line=dict(color="#FFFFFF", width=0.6)), row=row, col=j + 1,
                        hovertemplate="bin centre %{x:.3f}, width %{width:.3f}<br>%{y:.3g} per unit g<extra></extra>")
            fig.add_scatter(x=np.repeat(rec, 2)[1:-1], y=np.repeat(n_bins * hist[c], 2), mode="lines",
                            line=dict(color="#000000", width=1.5), name="recorded histogram (per unit g)",
                            legendgroup="rec", showlegend=row == 2 and j == 0, row=row, col=j + 1)
            _log_y(fig, np.concatenate([y, n_bins * hist[c]]), row=row, col=j + 1)
    _style(fig, f"GHM-CWAP Fig. 2: distribution of g = 1 - p_y and its unit regions ({st['where']})",
           margin=dict(l=80, r=20, t=130, b=60), bargap=0, height=940, legend=_LEGEND_TOP)
    fig.update_xaxes(range=[0, 1])
    fig.update_xaxes(title="gradient norm g = 1 - p_y", row=3)
    fig.update_yaxes(title="samples per unit g", col=1)
    _log_y(fig, np.concatenate(list(sums.values())), row=1, col=1)
    return fig


def drw_weights(class_counts: Sequence[int], drw_start: int | None, num_epochs: int, beta: float = 0.9999) -> go.Figure:
    """Deferred re-weighting: class weights over epochs (head, middle, tail) and per class after the switch
    (Cao et al. 2019; effective-number weights, Cui et al. 2019 Eq. 3-4; ``schedules.drw_weights``).
    """
    counts = np.asarray(class_counts)
    order = _order(counts)
    fig = make_subplots(1, 2, horizontal_spacing=0.1,
                        subplot_titles=["weight over epochs", "weight per class after the switch"])
    picks = {"head": order[0], "middle": order[len(order) // 2], "tail": order[-1]}
    epochs = np.arange(num_epochs)
    table = np.stack([schedules.drw_weights(counts, int(e), drw_start, beta) for e in epochs])
    for k, (name, c) in enumerate(picks.items()):
        fig.add_scatter(x=epochs, y=table[:, c], mode="lines", line_shape="hv", name=f"{name} (n={counts[c]})",
                        line=dict(color=PALETTE[k], width=2.5), row=1, col=1)
    after = schedules.effective_number_weights(counts, beta)
    fig.add_scatter(x=np.arange(len(order)), y=after[order], mode="lines+markers", name=f"after epoch {drw_start}",
                    line=dict(color=PALETTE[3], width=2.5), row=1, col=2)
    fig.add_hline(y=1.0, line=dict(color="#555555", dash="dot"), row=1, col=2)
    start = "never" if drw_start is None else f"from epoch {drw_start}"
    _style(fig, f"DRW class weights (beta={beta:g}, switch {start})", margin=dict(l=70, r=20, t=90, b=60))
    fig.update_xaxes(title="epoch (0-based)", row=1, col=1)
    fig.update_xaxes(title="class (sorted by training count)", row=1, col=2)
    fig.update_yaxes(title="CE weight", row=1, col=1)
    _log_y(fig, np.concatenate([table.ravel(), after]))
    return fig
