"""Shared look and helpers of the figure builders (:mod:`ltlab.plotting` and the modules beside it).

Classes are always drawn sorted by training count (head left, tail right); count axes are log-scaled;
colours are colour-blind safe (Okabe-Ito ``PALETTE`` for runs and groups, Paul Tol's "muted" set for up
to 10 classes, cividis beyond). Runs over different class sets (or different long-tailed splits, for
per-class figures) raise ValueError instead of being drawn side by side.
"""
from __future__ import annotations

import math
import os
import textwrap
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from .data.longtail import shot_split
from .runs import Run, RunFileError, as_run

# Okabe-Ito, colour-blind safe (runs, groups)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
GROUP_COLORS = {"many": "#0072B2", "medium": "#E69F00", "few": "#D55E00"}
# Paul Tol "muted" (colour-blind safe) + grey: classes when C <= 10
CLASS_PALETTE = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
                 "#AA4499", "#777777"]
# simple_white draws shapes with line width 0 (its shapedefaults): give every add_hline a width
LAYOUT = dict(template="simple_white", font=dict(size=14), margin=dict(l=60, r=20, t=50, b=50))
# a horizontal legend at the foot of the figure: plotly grows the bottom margin to fit it (wrapped into as many
# rows as the width needs), so it never covers the title, subplot titles, band labels or data
_LEGEND_BELOW = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left")
SUBTITLE_LINE_PX = 16  # one 12 px subtitle line


# ---------------------------------------------------------------------- helpers
def _runs(runs) -> list[Run]:
    """A Run, a run directory, or a sequence of them -> list of Run."""
    if isinstance(runs, (Run, str, os.PathLike)):
        runs = [runs]
    out = [as_run(r) for r in runs]
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
    """Shade the many/medium/few ranges of a class-rank x axis, named just above the plot (clear of the data;
    a figure with subplot titles passes ``label=False`` and names them with :func:`_group_legend`)."""
    for name, idx in shot_split(counts_sorted).items():
        if len(idx):
            kw = dict(annotation_text=name, annotation_position="outside top", annotation_font_size=13) if label else {}
            fig.add_vrect(x0=idx.min() - 0.5, x1=idx.max() + 0.5, fillcolor=GROUP_COLORS[name], opacity=0.07,
                          line_width=0, layer="below", row=row, col=col, **kw)


def _group_legend(fig: go.Figure, counts_sorted: np.ndarray, **where: Any) -> None:
    """Legend entries for the many/medium/few shading, for panels too narrow for the bands' text labels
    (``where``: the subplot, ``row=``/``col=``, the entries are attached to)."""
    for name, idx in shot_split(counts_sorted).items():
        if len(idx):
            fig.add_scatter(x=[None], y=[None], mode="markers", name=f"{name} (shading)",
                            marker=dict(symbol="square", size=14, color=GROUP_COLORS[name], opacity=0.3),
                            hoverinfo="skip", **where)


def _rank_axis(names_sorted: Sequence[str]) -> dict:
    n = len(names_sorted)
    if n <= 20:
        # no fixed tickangle: plotly turns the labels only when they would overlap at the drawn width
        return dict(tickmode="array", tickvals=list(range(n)), ticktext=list(names_sorted))
    return dict(title_standoff=4)


def _epoch_ticks(num_epochs: int) -> dict:
    """Integer epoch ticks (every epoch up to 12 epochs)."""
    return dict(dtick=1) if num_epochs <= 12 else dict(tickformat="d")


def _heatmap_height(num_classes: int) -> int:
    """Figure height (px) of a class x class heatmap: about square cells, 450 to 900 px."""
    return int(min(900, max(450, 200 + 30 * num_classes)))


def _style(fig: go.Figure, title: str, subtitle: str | Sequence[str] = (), **kw: Any) -> go.Figure:
    """The shared look (``LAYOUT``, then ``kw``) with the title at the top of the figure. ``subtitle``: smaller
    lines under the title (plotly's ``title.subtitle``), each wrapped to fit ~850 px; the top margin (``kw["margin"]["t"]``, sized for a
    one-line title) grows by a line height per subtitle line, so they never reach the plot or its subplot
    titles (plotly's ``title.automargin`` does not count the lines of a multi-line title)."""
    lines = [s for part in ([subtitle] if isinstance(subtitle, str) else subtitle) if part
             for s in textwrap.wrap(part, 150)]
    if lines:
        margin = {**LAYOUT["margin"], **kw.get("margin", {})}
        kw["margin"] = {**margin, "t": margin["t"] + SUBTITLE_LINE_PX * len(lines)}
    fig.update_layout(**{**LAYOUT, **kw}, title=dict(text=title, font=dict(size=17), yref="container", y=1,
                                                     yanchor="top", pad=dict(t=10),
                                                     subtitle=dict(text="<br>".join(lines), font=dict(size=12))))
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


def class_subset(classes: Sequence[int | str] | None, names: Sequence[str], what: str) -> list[int]:
    """Class indices of ``classes`` (indices or class names; None: all), or a ValueError naming the valid ones."""
    if classes is None:
        return list(range(len(names)))
    out, bad = [], []
    for c in classes:
        if isinstance(c, str) and c in names:
            out.append(list(names).index(c))
        elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= int(c) < len(names):
            out.append(int(c))
        else:
            bad.append(c)
    if bad or not out:
        raise ValueError(f"{what}: unknown classes {bad or list(classes)}; pass class indices 0..{len(names) - 1} or "
                         f"names from {list(names)}")
    return list(dict.fromkeys(out))


def group_of_classes(counts) -> np.ndarray:
    """many / medium / few of each class (C,) from its training count (``shot_split``)."""
    group = np.empty(len(counts), dtype=object)
    for name, idx in shot_split(np.asarray(counts)).items():
        group[idx] = name
    return group
