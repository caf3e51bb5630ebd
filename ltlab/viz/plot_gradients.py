"""Gradient-ratio figures (GALA paper 003, Fig. 1(b-c)) from the probes of :mod:`ltlab.probes`.

Every figure names the statistic it draws, because the statistic decides the picture
(reference: the module docstring of :mod:`ltlab.probes`):

- ``"first_epoch"``: sums over epoch 1, the transient in which the head / tail imbalance lives;
- ``"epoch"``: sums over one epoch (``epoch``, default the last); about 1 for every class once the
  classifier bias has settled, whatever the loss;
- ``"cumulative"``: sums from step 0 to the end of ``epoch``, decaying towards 1 as training goes on;
- ``"gala_code"``: the official GALA code's running sum of running sums, which keeps more of the transient.

Runs written before the accumulated statistics existed draw the per-epoch ones and say so.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..probes import MATRIX_MAX_CLASSES, matrix_at
from ..runs import Run, RunFileError
from .style import (_LEGEND_BELOW, MAX_CLASSES, PALETTE, RANK_BINS, _check_axis_args, _group_legend,
                    _heatmap_height, _log_ticks, _log_y, _order, _positive, _probe, _runs, _style,
                    check_same_classes, class_axis, class_colors, class_subset, group_of_classes,
                    run_class_names, run_labels)

# statistic -> (key suffix in probes.npz, panel title with {e} = the 1-based epoch; two lines, so four panels
# side by side keep their titles apart at 1000 px)
STATISTICS = {"first_epoch": ("", "epoch 1<br>(sums over epoch 1)"),
              "epoch": ("", "epoch {e}<br>(sums over epoch {e})"),
              "cumulative": ("_cum", "accumulated<br>from step 0 to epoch {e}"),
              "gala_code": ("_cumcum", "GALA code: sum of<br>running sums to epoch {e}")}
ALL_STATISTICS = tuple(STATISTICS)
LONG_RUN = ("sums over many steps tend to 1 for every class and loss (the bias gradient is neg - pos); the "
            "head / tail imbalance lives in epoch 1")
ROW_LABELS = {"epoch": "per epoch", "cumulative": "accumulated from step 0", "gala_code": "GALA code"}

def _has(run: Run, statistic: str) -> bool:
    key = "grad_ratio" + STATISTICS[statistic][0]
    return key in run.probes and bool(np.isfinite(np.asarray(run.probes[key])).any())


def _why(run: Run, statistic: str) -> str:
    """Why ``run`` lacks ``statistic``: the probe setting, or a run written before ltlab recorded it
    (:func:`ltlab.probes.not_recorded`); a new run is never told it is old."""
    from ..probes import not_recorded
    key = "grad_ratio" + STATISTICS[statistic][0]
    return not_recorded(run.probes, key) or f"{key} holds no finite value"


def _statistics(runs: Sequence[Run], statistic, default: Sequence[str]) -> tuple[list[str], str]:
    """The statistics to draw and a note on those left out (not recorded); unknown or missing ones raise."""
    if isinstance(statistic, str):
        statistic = [statistic]
    asked = list(default) if statistic is None else list(statistic)
    bad = [s for s in asked if s not in STATISTICS]
    if bad or not asked:
        raise ValueError(f"statistic must be one or more of {list(STATISTICS)}, got {bad or asked}")
    old = [r for r in runs if not all(_has(r, s) for s in asked)]
    if statistic is not None and old:
        missing = [s for s in asked if not _has(old[0], s)]
        raise RunFileError(f"{old[0].dir}: no {missing} gradient statistic: {_why(old[0], missing[0])}; or pass "
                           "statistic='epoch' / 'first_epoch'")
    kept = [s for s in asked if all(_has(r, s) for r in runs)]
    if not kept:
        for r in runs:  # a missing probes.npz or grad_ratio: the message names what writes it
            _probe(r, "grad_ratio")
        raise RunFileError(f"{runs[0].dir}: probes.npz holds no {asked} gradient statistic: {_why(runs[0], asked[0])}")
    note = f"not drawn: {', '.join(s for s in asked if s not in kept)} (not recorded)" if len(kept) < len(asked) else ""
    return kept, note


def _ratio_at(run: Run, statistic: str, epoch: int) -> tuple[np.ndarray, int]:
    """(ratio per class (C,), 0-based epoch) of ``statistic`` at ``epoch``."""
    ratio = _probe(run, "grad_ratio" + STATISTICS[statistic][0])
    e = 0 if statistic == "first_epoch" else (epoch if epoch >= 0 else len(ratio) + epoch)
    if not 0 <= e < len(ratio):
        raise ValueError(f"epoch={epoch} is out of range: {run.dir.name} recorded {len(ratio)} epochs")
    return ratio[e], e


def gradient_ratio_by_class(runs, labels: Sequence[str] | None = None, epoch: int = -1,
                            statistic: str | Sequence[str] | None = None, classes: Sequence[int | str] | None = None,
                            max_classes: int = MAX_CLASSES, bins: int = RANK_BINS) -> go.Figure:
    """Positive / negative gradient ratio of each classifier vs class sorted by count, one panel per statistic.

    ``pos_c / neg_c`` with ``pos_c = sum_{y_i=c} |dL/dz_ic|`` and ``neg_c = sum_{y_i!=c} |dL/dz_ic|`` (the
    "gradient ratio" of GALA paper 003, Fig. 1(b)). ``statistic``: one or more of ``ALL_STATISTICS``
    (default all the runs recorded); ``epoch`` (0-based, default the last) is where "epoch",
    "cumulative" and "gala_code" are read. Log y; 1 = balanced. Runs share one class set. Above
    ``max_classes`` classes each of ``bins`` rank bins gives its mean ratio (25-75 % band); ``classes``
    draws those classes only.
    """
    runs = _runs(runs)
    check_same_classes(runs, "gradient_ratio_by_class")
    stats, note = _statistics(runs, statistic, ALL_STATISTICS)
    names = run_labels(runs, labels)
    counts = np.asarray(runs[0].class_counts)
    axis = class_axis(counts, run_class_names(runs[0], len(counts)), "gradient_ratio_by_class", classes, max_classes,
                      bins)
    titles = [STATISTICS[s][1].format(e=_ratio_at(runs[0], s, epoch)[1] + 1) for s in stats]
    fig = make_subplots(1, len(stats), shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.025)
    seen = [1.0]
    for j, s in enumerate(stats):
        for i, (r, name) in enumerate(zip(runs, names)):
            ratio = np.where(_ratio_at(r, s, epoch)[0] > 0, _ratio_at(r, s, epoch)[0], np.nan)
            seen.extend(_positive(np.concatenate([v for v in axis.reduce(ratio) if v is not None])))
            axis.line(fig, ratio, name, PALETTE[i % len(PALETTE)], showlegend=j == 0, row=1, col=j + 1)
        fig.add_hline(y=1.0, line=dict(color="#555555", dash="dot", width=1.5), row=1, col=j + 1)
        axis.bands(fig, row=1, col=j + 1, label=False)  # narrow panels: named in the legend
    _group_legend(fig, axis.counts_sorted, row=1, col=1)
    long_run = [s for s in stats if s != "first_epoch"]
    _style(fig, "Positive / negative gradient ratio per classifier, by statistic",
           [LONG_RUN if long_run else "", note, axis.note], legend=_LEGEND_BELOW, margin=dict(l=70, r=20, t=110, b=50))
    fig.update_xaxes(**{**axis.xaxis(), "title": "class rank (bins)" if axis.mode == "bins" else "class (by training count)"})
    _log_y(fig, seen)
    fig.update_yaxes(title="pos / neg gradient", row=1, col=1)
    fig.update_annotations(font_size=13)
    return fig


def gradient_ratio_table(runs, labels: Sequence[str] | None = None, epoch: int = -1,
                         statistic: str | Sequence[str] | None = None, max_classes: int = MAX_CLASSES):
    """The numbers behind :func:`gradient_ratio_by_class` as a DataFrame: one row per run and statistic;
    columns ``run``, ``statistic``, ``epoch`` (1-based), the ratio of each class (by training count, named
    ``<class> (n=..)``; left out above ``max_classes`` classes) and the mean ratio of the many / medium / few
    classes."""
    import pandas as pd

    runs = _runs(runs)
    check_same_classes(runs, "gradient_ratio_table")
    stats, _ = _statistics(runs, statistic, ALL_STATISTICS)
    _check_axis_args(max_classes, RANK_BINS, "gradient_ratio_table")
    counts = np.asarray(runs[0].class_counts)
    order, group = _order(counts), group_of_classes(counts)
    cls = run_class_names(runs[0], len(counts))
    rows = []
    for r, name in zip(runs, run_labels(runs, labels)):
        for s in stats:
            ratio, e = _ratio_at(r, s, epoch)
            row = {"run": name, "statistic": s, "epoch": e + 1}
            if len(counts) <= max_classes:
                row.update({f"{cls[c]} (n={counts[c]})": ratio[c] for c in order})
            row.update({g: float(np.nanmean(ratio[group == g])) for g in ("many", "medium", "few") if (group == g).any()})
            rows.append(row)
    return pd.DataFrame(rows)


def _curve(run: Run, statistic: str) -> tuple[np.ndarray, np.ndarray]:
    """x (epochs done, fractional in epoch 1 when step records exist) and ratios (T, C) of a statistic."""
    suffix = STATISTICS[statistic][0]
    ratio = _probe(run, "grad_ratio" + suffix)
    x = np.arange(1, len(ratio) + 1, dtype=np.float64)
    p = run.probes
    if "grad_steps" not in p:
        return x, np.where(ratio > 0, ratio, np.nan)
    step_suffix = "_cumcum" if statistic == "gala_code" else ""
    pos, neg = p[f"grad_pos{step_suffix}_steps"][0], p[f"grad_neg{step_suffix}_steps"][0]
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.where(neg > 0, pos / np.where(neg > 0, neg, 1.0), np.nan)
    frac = np.asarray(p["grad_steps"][0])
    keep = frac < 1.0  # the last mark is the end of epoch 1 itself
    out = np.concatenate([steps[keep], ratio])
    return np.concatenate([frac[keep], x]), np.where(out > 0, out, np.nan)  # 0: no sample of the class seen yet


def gradient_ratio_curves(runs, labels: Sequence[str] | None = None, classes: Sequence[int | str] | None = None,
                          statistic: str | Sequence[str] | None = None) -> go.Figure:
    """Positive / negative gradient ratio per class over training: a row per statistic, a column per run.

    x is the number of epochs done on a log axis, with epoch 1 at step resolution (the probes' step
    records) so the early transient shows; "first_epoch" is not a curve (use "epoch"). ``classes``:
    indices or names (default all when C <= 10, else 8 spread over the count ranking); colours follow
    the count ranking (head dark, tail light).
    """
    runs = _runs(runs)
    check_same_classes(runs, "gradient_ratio_curves")
    stats, note = _statistics(runs, statistic, ("epoch", "cumulative", "gala_code"))
    if "first_epoch" in stats:
        raise ValueError("gradient_ratio_curves: 'first_epoch' is a single epoch; use statistic='epoch', whose curve "
                         "starts with epoch 1 at step resolution")
    names = run_labels(runs, labels)
    counts = np.asarray(runs[0].class_counts)
    order = _order(counts)
    cls = run_class_names(runs[0], len(counts))
    if classes is None:
        classes = order if len(order) <= 10 else order[np.linspace(0, len(order) - 1, 8).round().astype(int)]
    classes = class_subset(classes, cls, "gradient_ratio_curves")
    rank = {int(c): k for k, c in enumerate(order)}
    colors = class_colors(len(order))
    fig = make_subplots(len(stats), len(runs), shared_xaxes=True, shared_yaxes=True, vertical_spacing=0.07,
                        horizontal_spacing=0.03, column_titles=names, row_titles=[ROW_LABELS[s] for s in stats])
    seen, xmax = [1.0], 1.0
    for i, s in enumerate(stats):
        for j, r in enumerate(runs):
            x, ratio = _curve(r, s)
            xmax = max(xmax, x.max())
            seen.extend(_positive(ratio[:, classes]))
            for c in sorted(classes, key=lambda c: rank[c]):
                fig.add_scatter(x=x, y=ratio[:, c], mode="lines", name=f"{cls[c]} (n={counts[c]})", legendgroup=str(c),
                                showlegend=i == 0 and j == 0, line=dict(color=colors[rank[c]], width=2),
                                row=i + 1, col=j + 1)
            fig.add_hline(y=1.0, line=dict(color="#555555", dash="dot", width=1.5), row=i + 1, col=j + 1)
    sub = ["x: epochs done (log scale), epoch 1 at step resolution; " + LONG_RUN, note]
    _style(fig, "Positive / negative gradient ratio over training", sub, legend=dict(title="class"),
           margin=dict(l=70, r=40, t=90, b=60), height=160 + 230 * len(stats))
    ticks = _log_ticks(xmax, 0.1)
    fig.update_xaxes(type="log", **ticks)
    fig.update_xaxes(title="epochs done", row=len(stats))
    _log_y(fig, seen)
    fig.update_yaxes(title="pos / neg", col=1)
    fig.update_annotations(font_size=13)
    return fig


# ---------------------------------------------------------------------- negative gradient by source class or group
GROUPS = ("many", "medium", "few")


def sources_missing(run: Run) -> str:
    """Why a run has neither a by-source nor a by-group negative-gradient matrix ("" when it has one):
    what was not recorded and why, for a figure to skip with that reason."""
    if "grad_neg_by_source_cum" in run.probes or "grad_neg_by_group_cum" in run.probes:
        return ""
    c = len(run.class_counts)
    mode = str(np.asarray(run.probes["probe_mode"])) if "probe_mode" in run.probes else run.config.get("probes")
    if mode not in (None, "full"):
        return (f"probes={mode!r}: this run recorded no negative gradient by source class or group (recorded with "
                "probes='full')")
    if c > MATRIX_MAX_CLASSES:
        return (f"class count {c} > {MATRIX_MAX_CLASSES}: this run recorded no per-source gradient (the C x C matrix "
                f"is kept up to {MATRIX_MAX_CLASSES} classes) and no per-group one (grad_neg_by_group); the other "
                "gradient figures are drawn")
    return (f"{run.dir.name} has no grad_neg_by_source_cum: it was written before ltlab recorded the accumulated "
            f"statistics (the by-source matrix is kept for up to {MATRIX_MAX_CLASSES} classes with probes='full'); "
            "retrain it to draw this figure")


def neg_by_group(run: Run, statistic: str = "cumulative", epoch: int = -1) -> tuple[np.ndarray, int, list[str], str]:
    """Negative gradient each classifier receives from each source *group*: ``(m (C, G), 0-based epoch,
    group names, where from)``, the own class excluded.

    ``grad_neg_by_group[_cum]`` (recorded above the by-source class limit, columns ``by_group_names``) when
    present, else ``grad_neg_by_source[_cum]`` (C, C) summed over the source columns of each many / medium /
    few group (own class, the diagonal, set to 0). Neither: a RunFileError with :func:`sources_missing`.
    ``statistic``: "cumulative" (from step 0) or "epoch" (that evaluated epoch's sums).
    """
    suffix = "_cum" if statistic == "cumulative" else ""
    names = [str(g) for g in np.asarray(run.probes["by_group_names"]).tolist()] if "by_group_names" in run.probes \
        else list(GROUPS)
    if "grad_neg_by_group" + suffix in run.probes:
        m, at = matrix_at(run.probes, "grad_neg_by_group" + suffix, epoch)
        return np.asarray(m, dtype=np.float64), at, names, "recorded by source group"
    if "grad_neg_by_source" + suffix in run.probes:
        m, at = matrix_at(run.probes, "grad_neg_by_source" + suffix, epoch)
        m = np.array(m, dtype=np.float64)
        np.fill_diagonal(m, 0.0)
        group = group_of_classes(run.class_counts)
        cols = [m[:, group == g].sum(axis=1) for g in GROUPS]
        return np.stack(cols, axis=1), at, list(GROUPS), "by-source matrix summed per source group"
    raise RunFileError(f"{run.dir}: no negative gradient by source ({sources_missing(run) or 'grad_neg_by_source' + suffix + ' not recorded'})")


def _group_sources(runs, names, counts, cls, c: int, epoch: int, statistic: str) -> go.Figure:
    """negative_gradient_sources with the sources in many / medium / few groups."""
    group = group_of_classes(counts)
    fig, at, where = go.Figure(), 0, ""
    for i, (r, name) in enumerate(zip(runs, names)):
        m, at, gnames, where = neg_by_group(r, statistic, epoch)
        share = m[c] / max(m[c].sum(), 1e-300)
        fig.add_bar(x=[f"{g} ({int((group == g).sum() - (group[c] == g))} cl.)" for g in gnames], y=share, name=name,
                    marker_color=PALETTE[i % len(PALETTE)])
    others = np.arange(len(counts)) != c
    data = [counts[others & (group == g)].sum() / counts[others].sum() for g in gnames]
    fig.add_scatter(x=[f"{g} ({int((group == g).sum() - (group[c] == g))} cl.)" for g in gnames], y=data,
                    mode="lines+markers", name="share of training images", line=dict(color="#000000", dash="dash", width=2))
    what = f"accumulated from step 0 to epoch {at + 1}" if statistic == "cumulative" else f"epoch {at + 1}"
    _style(fig, f"Where classifier {cls[c]} (n={counts[c]}) gets its negative gradient ({what})",
           f"sources by many / medium / few group ({where}; {len(counts)} classes), own class excluded",
           legend=_LEGEND_BELOW, margin=dict(l=70, r=20, t=60, b=50), barmode="group")
    fig.update_xaxes(title="source group (sample label)")
    fig.update_yaxes(title="share of its negative gradient", rangemode="tozero")
    return fig


def negative_gradient_sources(runs, labels: Sequence[str] | None = None, classifier: int | str | None = None,
                              epoch: int = -1, statistic: str = "cumulative",
                              max_classes: int = MAX_CLASSES) -> go.Figure:
    """Share of one classifier's negative gradient sent by each source class, sources sorted by count.

    GALA paper 003, Fig. 1(c): under CE a tail classifier is pushed mostly by head-class samples.
    ``classifier``: index or name (default the class with the fewest training images). ``statistic``:
    "cumulative" (from step 0 to ``epoch``; kept at evaluated epochs and the last) or "epoch" (that
    epoch's sums; evaluated epochs only). Dashed: each source's share of the other classes' training
    images (what a prediction-blind push would give); dotted: an equal share 1/(C-1). Above
    ``max_classes`` classes, or for a run that recorded the sources by group only, the sources are the
    many / medium / few groups (:func:`neg_by_group`).
    """
    runs = _runs(runs)
    check_same_classes(runs, "negative_gradient_sources")
    _check_axis_args(max_classes, RANK_BINS, "negative_gradient_sources")
    if statistic not in ("cumulative", "epoch"):
        raise ValueError(f"negative_gradient_sources: statistic must be 'cumulative' or 'epoch', got {statistic!r}")
    key = "grad_neg_by_source" + ("_cum" if statistic == "cumulative" else "")
    counts = np.asarray(runs[0].class_counts)
    order = _order(counts)
    cls = run_class_names(runs[0], len(counts))
    if classifier is not None and not isinstance(classifier, (int, np.integer, str)):
        raise ValueError(f"negative_gradient_sources: classifier must be one class index or name, got {classifier!r}")
    c = int(order[-1]) if classifier is None else class_subset([classifier], cls, "negative_gradient_sources")[0]
    names = run_labels(runs, labels)
    if len(counts) > max_classes or any(key not in r.probes for r in runs):
        return _group_sources(runs, names, counts, cls, c, epoch, statistic)
    src = [k for k in order if k != c]
    fig = go.Figure()
    at = None
    for i, (r, name) in enumerate(zip(runs, names)):
        m, at = matrix_at(r.probes, key, epoch)
        share = m[c, src] / max(m[c, src].sum(), 1e-300)
        fig.add_bar(x=[f"{cls[k]} (n={counts[k]})" for k in src], y=share, name=name,
                    marker_color=PALETTE[i % len(PALETTE)])
    data_share = counts[src] / counts[src].sum()
    fig.add_scatter(x=[f"{cls[k]} (n={counts[k]})" for k in src], y=data_share, mode="lines+markers",
                    name="share of training images", line=dict(color="#000000", dash="dash", width=2))
    fig.add_hline(y=1.0 / len(src), line=dict(color="#555555", dash="dot", width=1.5),
                  annotation_text=f"equal share 1/{len(src)}", annotation_position="top right")
    what = f"accumulated from step 0 to epoch {at + 1}" if statistic == "cumulative" else f"epoch {at + 1}"
    _style(fig, f"Where classifier {cls[c]} (n={counts[c]}) gets its negative gradient ({what})",
           legend=_LEGEND_BELOW, margin=dict(l=70, r=20, t=60, b=50), barmode="group")
    fig.update_xaxes(title="source class (sample label), by training count", tickangle=-35)
    fig.update_yaxes(title="share of its negative gradient", rangemode="tozero")
    return fig


def gradient_ratio_heatmap(run, epoch: int = -1, normalize: bool = True, max_classes: int = MAX_CLASSES) -> go.Figure:
    """Negative gradient each classifier (row) receives from each source class (column), sorted by count.

    From ``grad_neg_by_source`` at ``epoch`` (0-based, an evaluated epoch; default -1, the last); the
    training loop records this matrix at evaluated epochs only. ``normalize``: rows as fractions of the
    classifier's total negative gradient. Above ``max_classes`` classes (or for a run that recorded the
    sources by group only) rows are the classifiers' many / medium / few groups (summed) and columns the
    source groups (:func:`neg_by_group`): never C x C cells.
    """
    run = _runs(run)[0]
    _check_axis_args(max_classes, RANK_BINS, "gradient_ratio_heatmap")
    counts = np.asarray(run.class_counts)
    if len(counts) > max_classes or "grad_neg_by_source" not in run.probes:
        return _group_heatmap(run, counts, epoch, normalize)
    m, at = matrix_at(run.probes, "grad_neg_by_source", epoch)
    order = _order(counts)
    m = m[np.ix_(order, order)]
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-300)
    cls = list(np.asarray(run_class_names(run, len(counts)), dtype=object)[order])
    fig = go.Figure(go.Heatmap(z=m, x=cls, y=cls, colorscale="Cividis",
                               colorbar=dict(title="share" if normalize else "|dL/dz|")))
    _style(fig, f"Negative gradient by source class ({run_labels([run])[0]}, epoch {at + 1})", "rows: classifier, "
           "columns: class of the samples that push it; both sorted by training count",
           margin=dict(l=60, r=20, t=60, b=50), height=_heatmap_height(len(counts)))
    fig.update_xaxes(title="source class (sample label)", type="category")
    fig.update_yaxes(title="classifier", type="category", autorange="reversed")
    return fig


def _group_heatmap(run: Run, counts: np.ndarray, epoch: int, normalize: bool) -> go.Figure:
    m, at, names, where = neg_by_group(run, "epoch" if "grad_neg_by_group" in run.probes
                                       or "grad_neg_by_source" in run.probes else "cumulative", epoch)
    group = group_of_classes(counts)
    rows = [g for g in names if (group == g).any()]
    z = np.stack([m[group == g].sum(axis=0) for g in rows])
    if normalize:
        z = z / np.maximum(z.sum(axis=1, keepdims=True), 1e-300)
    size = {g: int((group == g).sum()) for g in names}
    fig = go.Figure(go.Heatmap(z=z, x=[f"{g} ({size[g]} cl.)" for g in names], y=[f"{g} ({size[g]} cl.)" for g in rows],
                               colorscale="Cividis", zmin=0, zmax=1 if normalize else None,
                               text=np.vectorize(lambda v: f"{v:.2f}" if normalize else f"{v:.3g}")(z),
                               texttemplate="%{text}", colorbar=dict(title="share" if normalize else "|dL/dz|")))
    _style(fig, f"Negative gradient by source group ({run_labels([run])[0]}, epoch {at + 1})",
           [f"{len(counts)} classes: rows = classifiers of a group (summed), columns = group of the samples that push "
            f"them ({where}; own class excluded){'; rows sum to 1' if normalize else ''}"],
           margin=dict(l=110, r=20, t=80, b=60), height=480, width=720)
    fig.update_xaxes(title="source group (sample label)", type="category")
    fig.update_yaxes(title="classifier group", type="category", autorange="reversed")
    return fig
