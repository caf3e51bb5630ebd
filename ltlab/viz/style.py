"""Shared look and helpers of the figure builders (:mod:`ltlab.viz.plotting` and the modules beside it).

Classes are always drawn sorted by training count (head left, tail right); count axes are log-scaled;
colours are colour-blind safe (Okabe-Ito ``PALETTE`` for runs and groups, Paul Tol's "muted" set for up
to 10 classes, cividis beyond). Runs over different class sets (or different long-tailed splits, for
per-class figures) raise ValueError instead of being drawn side by side.
"""
from __future__ import annotations

import math
import os
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ..data.longtail import shot_split
from ..runs import Run, RunFileError, as_run

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
    names = [method_label(r.config) if r.config.get("loss") else r.dir.name for r in runs]
    return [f"{n} ({r.dir.name})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


def method_label(config: dict[str, Any]) -> str:
    """What a run trained, in a legend: the config's ``method`` when set, else the loss with ``-DRW`` when
    deferred re-weighting switched on (``drw_start``, top level or in ``loss_params``), the sampler when it is
    not instance sampling, and the stage when it is not joint training (e.g. ``ldam-DRW``, ``ce + class_aware``,
    ``ce [classifier]``)."""
    if config.get("method"):
        return str(config["method"])
    name = str(config.get("loss", "?"))
    if config.get("drw_start") is not None or (config.get("loss_params") or {}).get("drw_start") is not None:
        name += "-DRW"
    if config.get("sampler") not in (None, "instance"):
        name += f" + {config['sampler']}"
    if config.get("stage") not in (None, "joint"):
        name += f" [{config['stage']}]"
    return name


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
        from ..probes import not_recorded  # why: the probe setting, the class limit, or an older ltlab
        raise RunFileError(f"{run.dir / 'probes.npz'}: {not_recorded(run.probes, key)} (run loss "
                           f"{run.config.get('loss')!r}){why}; available: {sorted(run.probes)}")
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


def _per_class_figure(runs, labels, what: str, classes=None, max_classes: int = 100, bins: int = 50):
    """Shared start of the per-class line figures: runs (same classes, else an error naming ``what``),
    their legend names, training counts, the :class:`ClassAxis` (every class, a subset or rank bins), class
    names, and a figure with the count bars on its log-scaled right axis."""
    runs = _runs(runs)
    check_same_classes(runs, what)
    counts = np.asarray(runs[0].class_counts)
    cls = run_class_names(runs[0], len(counts))
    axis = class_axis(counts, cls, what, classes=classes, max_classes=max_classes, bins=bins)
    fig = _count_axis_figure()
    _count_bars(fig, axis.counts, axis)
    return runs, run_labels(runs, labels), counts, axis, cls, fig


def _count_axis_figure() -> go.Figure:
    """Figure with a log training-count axis on the right drawn *below* the left axis (so lines stay on top).

    Draw counts with ``secondary_y=False`` and the main curves with ``secondary_y=True``.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(yaxis=dict(side="right", showgrid=False), yaxis2=dict(side="left", tickmode="auto"))
    return fig


def _count_bars(fig: go.Figure, counts_sorted: np.ndarray, axis: "ClassAxis | None" = None) -> None:
    x = np.arange(len(counts_sorted)) if axis is None else axis.x
    width = None if axis is None or axis.mode != "bins" else axis.width * 0.9
    fig.add_bar(x=x, y=counts_sorted, width=width, marker_color="#BBBBBB", opacity=0.6, secondary_y=False,
                name="train count" + (" (bin mean)" if width is not None else ""),
                hovertemplate="count %{y:.0f}<extra></extra>")
    fig.update_yaxes(title="training count", type="log", secondary_y=False,
                     **_log_ticks(float(counts_sorted.max()), float(counts_sorted.min())))


# ---------------------------------------------------------------------- class axes at any class count
MAX_CLASSES = 100  # default: above this many classes a class axis is drawn in rank bins
RANK_BINS = 50     # default number of rank bins
SPREAD = "band: 25-75 % of the bin's classes"


@dataclass
class ClassAxis:
    """How a class x axis is drawn: one position per class (``mode`` "all" or "subset") or per rank bin
    (``"bins"``: consecutive classes by training count, never mixing many / medium / few).

    ``members[k]``: the class indices position k stands for; ``x`` the position (the rank of the class, or
    of the bin's centre, among the drawn classes sorted by count); ``width`` its span; ``counts`` the
    training count (a bin's mean); ``labels`` hover text; ``counts_sorted`` the drawn classes' counts in
    rank order (for the many / medium / few bands); ``note`` says what was aggregated ("" for none).
    """
    mode: str
    members: list
    x: np.ndarray
    width: np.ndarray
    counts: np.ndarray
    labels: list
    counts_sorted: np.ndarray
    note: str

    @property
    def classes(self) -> np.ndarray:
        """Every drawn class in rank order."""
        return np.concatenate(self.members)

    def reduce(self, values) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(mean, 25th, 75th percentile) of per-class ``values`` (C,) per position (NaNs ignored); the
        percentiles are None unless binned."""
        v = np.asarray(values, dtype=np.float64)
        if self.mode != "bins":
            return v[self.classes], None, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a bin of NaNs (no test image) stays NaN
            stats = np.array([[np.nanmean(v[m]), *np.nanpercentile(v[m], [25, 75])] for m in self.members])
        return stats[:, 0], stats[:, 1], stats[:, 2]

    def line(self, fig: go.Figure, values, name: str, color: str, dash: str | None = None, **where: Any) -> None:
        """A line of per-class ``values`` (bin means when binned, with a shaded 25-75 % band, no legend entry)."""
        mean, lo, hi = self.reduce(values)
        show = where.pop("showlegend", True)
        if lo is not None:
            ok = np.isfinite(lo) & np.isfinite(hi)
            fig.add_scatter(x=np.concatenate([self.x[ok], self.x[ok][::-1]]), y=np.concatenate([hi[ok], lo[ok][::-1]]),
                            fill="toself", fillcolor=color, opacity=0.18, line=dict(width=0), mode="lines",
                            showlegend=False, legendgroup=name, hoverinfo="skip", **where)
        fig.add_scatter(x=self.x, y=mean, mode="lines+markers", name=name, legendgroup=name, showlegend=show,
                        line=dict(color=color, width=2.5, dash=dash), marker=dict(size=7 if len(self.x) <= 60 else 4),
                        customdata=np.asarray(self.labels, dtype=object),
                        hovertemplate="%{customdata}<br>%{y:.3f}<extra>" + name + "</extra>", **where)

    def bands(self, fig: go.Figure, **kw: Any) -> None:
        """The many / medium / few shading of this axis."""
        _group_bands(fig, self.counts_sorted, **kw)

    def xaxis(self) -> dict:
        """x-axis keywords: title plus class-name ticks (up to 20 classes)."""
        if self.mode == "bins":
            return dict(title=f"class rank by training count ({len(self.members)} bins)", title_standoff=4)
        names = [lab.split(" (n=")[0] for lab in self.labels]
        return dict(title="class (sorted by training count)", **_rank_axis(names))


def _check_axis_args(max_classes, bins, what: str) -> None:
    if isinstance(max_classes, bool) or not isinstance(max_classes, (int, np.integer)) or max_classes < 1:
        raise ValueError(f"{what}: max_classes={max_classes!r} must be a whole number >= 1 (classes are drawn one "
                         f"by one up to it, in rank bins above it); pass e.g. max_classes={MAX_CLASSES}, or "
                         "classes=[...] to draw chosen classes")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"{what}: bins={bins!r} must be a whole number >= 1; pass e.g. bins={RANK_BINS}")


def _bins_per_group(sizes: list[int], bins: int) -> list[int]:
    """Bins for each group (sizes > 0), about proportional to its size, at least one each, at most its size."""
    out = [max(1, min(s, round(bins * s / sum(sizes)))) for s in sizes]
    while sum(out) > max(bins, len(sizes)):
        k = max((i for i in range(len(out)) if out[i] > 1), key=lambda i: out[i])
        out[k] -= 1
    while sum(out) < bins and any(o < s for o, s in zip(out, sizes)):
        k = max((i for i in range(len(out)) if out[i] < sizes[i]), key=lambda i: sizes[i] / out[i])
        out[k] += 1
    return out


def class_axis(counts, names: Sequence[str], what: str, classes=None, max_classes: int = MAX_CLASSES,
               bins: int = RANK_BINS) -> ClassAxis:
    """The :class:`ClassAxis` of a class-axis figure: ``classes`` (indices or names; None: all) sorted by
    training count, drawn one by one up to ``max_classes`` and in ``bins`` rank bins above (bins split
    each many / medium / few group, about in proportion to its size). Bad arguments raise ValueError
    saying what to pass."""
    _check_axis_args(max_classes, bins, what)
    counts = np.asarray(counts)
    pool = np.asarray(class_subset(classes, names, what), dtype=np.int64)
    pool = pool[np.argsort(-counts[pool], kind="stable")]
    sub = f"{len(pool)} of {len(counts)} classes (classes=...)" if classes is not None else ""
    if len(pool) <= max_classes:
        members = [np.array([c]) for c in pool]
        mode, note = ("subset" if classes is not None else "all"), (f"showing {sub}" if sub else "")
    else:
        if bins > len(pool):
            raise ValueError(f"{what}: bins={bins} is more than the {len(pool)} classes drawn; pass bins <= "
                             f"{len(pool)}, or max_classes >= {len(pool)} to draw every class")
        groups = group_of_classes(counts)[pool]
        parts = [pool[groups == g] for g in ("many", "medium", "few") if (groups == g).any()]
        members = [m for part, b in zip(parts, _bins_per_group([len(p) for p in parts], bins))
                   for m in np.array_split(part, b)]
        size = len(pool) / len(members)
        mode = "bins"
        note = (f"{sub or f'{len(pool)} classes'} in {len(members)} rank bins of about {size:.0f} classes "
                f"(above max_classes={max_classes}): line = bin mean, {SPREAD}; bins do not mix many / medium / few")
    start = np.cumsum([0] + [len(m) for m in members])[:-1]
    width = np.array([len(m) for m in members], dtype=np.float64)
    x = start + (width - 1) / 2 if mode == "bins" else np.arange(len(members), dtype=np.float64)
    mean_counts = np.array([counts[m].mean() for m in members])
    nm = np.asarray(names, dtype=object)
    labels = [f"{nm[m[0]]} (n={counts[m[0]]})" if len(m) == 1 else
              f"ranks {s + 1}-{s + len(m)}: {len(m)} classes, n={counts[m].min()}-{counts[m].max()}"
              for m, s in zip(members, start)]
    return ClassAxis(mode, members, x, width, mean_counts, labels, counts[pool], note)


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
        shown = list(names) if len(names) <= 12 else [*names[:5], "...", *names[-5:]]
        raise ValueError(f"{what}: unknown classes {(bad or list(classes))[:20]}; pass class indices 0..{len(names) - 1} "
                         f"or names from {shown}")
    return list(dict.fromkeys(out))


def group_of_classes(counts) -> np.ndarray:
    """many / medium / few of each class (C,) from its training count (``shot_split``)."""
    group = np.empty(len(counts), dtype=object)
    for name, idx in shot_split(np.asarray(counts)).items():
        group[idx] = name
    return group
