"""Figures of what a trained model outputs: t-SNE of its features (GCL Fig. 3, GLAG Fig. 4), the per-class spread
of its features by training count (GCL Fig. 1), test predictions per class with and without PN (GALA Fig. 2), the
sorted true-class probability per group (ALA Fig. 3), and ALA's adjustment factors over training (ALA Fig. 4)."""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import posthoc
from .style import (_LEGEND_BELOW, CLASS_PALETTE, GROUP_COLORS, MAX_CLASSES, PALETTE, RANK_BINS,
                    _check_axis_args, _epoch_ticks, _log_ticks, _per_class_figure, _probe, _runs, _style,
                    check_same_classes, class_colors, class_subset, group_of_classes, run_labels)

GROUPS = ("many", "medium", "few")
FLOAT32_ABOVE = 10_000_000  # _probabilities: float32 above this many test logits (memory at 1,000+ classes)


# ---------------------------------------------------------------------- t-SNE
def separation_table(df, class_names: Sequence[str] | None = None):
    """Mean silhouette per class (rows) and panel (columns) of :func:`ltlab.features.tsne` DataFrames
    (``df`` or ``{panel: df}``), plus an ``all`` row (mean over points)."""
    import pandas as pd

    frames = df if isinstance(df, dict) else {"": df}
    cols = {}
    for name, d in frames.items():
        if "silhouette" not in d:
            raise ValueError(f"separation_table: {name or 'df'} has no silhouette column; make it with "
                             "ltlab.features.tsne(..., silhouette=True)")
        per = d.groupby("label")["silhouette"].mean()
        per.index = [class_names[c] if class_names is not None and c < len(class_names) else str(c) for c in per.index]
        cols[name or "silhouette"] = pd.concat([per, pd.Series({"all": d["silhouette"].mean()})])
    return pd.DataFrame(cols).round(3)


def _silhouette_note(d, cats, colors, key: str, max_items: int = 10) -> str:
    """Per-class mean silhouette as coloured squares in legend order (two lines above 5 classes); above
    ``max_items`` classes the mean, lowest and highest class means only (the line stays inside the panel)."""
    per = d.groupby(key)["silhouette"].mean()
    if len([c for c in cats if c in per.index]) > max_items:
        return (f"silhouette per class ({len(per)} classes): mean {per.mean():+.2f}, lowest {per.min():+.2f}, "
                f"highest {per.max():+.2f}")
    items = [f"<span style='color:{colors[c]}'>\u25a0</span>{per[c]:+.2f}" for c in cats if c in per.index]
    half = (len(items) + 1) // 2 if len(items) > 5 else len(items)
    return "silhouette: " + " ".join(items[:half]) + ("<br>" + " ".join(items[half:]) if items[half:] else "")


TSNE_MAX_CLASSES = 20  # tsne_scatter: above this many classes, colour by group (class colours and legend unreadable)


def tsne_scatter(df, color: Literal["auto", "label", "group"] = "auto", *, class_names: Sequence[str] | None = None,
                 title: str | None = None, marker_size: int | None = None, cols: int | None = None,
                 classes: Sequence[int | str] | None = None, max_classes: int = TSNE_MAX_CLASSES,
                 max_legend: int = 20) -> go.Figure:
    """Scatter of a :func:`ltlab.features.tsne` DataFrame, coloured by class or by many/medium/few.

    ``df`` may be a dict ``{name: DataFrame}``: one panel per entry (``cols`` per row, default all in one
    row), one legend. With a ``silhouette`` column each panel's title gives the mean silhouette and a
    note under the panel the per-class (or per-group) means, in legend order (above 10 classes: their mean,
    lowest and highest). Hover shows class, group and whether the prediction was correct.
    ``color="auto"`` colours by class up to ``max_classes`` drawn classes (default 20) and by group above;
    ``classes`` (indices or names) draws those classes only; at most ``max_legend`` classes get a legend
    entry (the figure says how many are left out).
    """
    import pandas as pd

    if color not in ("auto", "label", "group"):
        raise ValueError(f"tsne_scatter: color must be 'auto', 'label' or 'group', got {color!r}")
    _check_axis_args(max_classes, 1, "tsne_scatter")
    frames = df if isinstance(df, dict) else {"": df}
    for name, d in frames.items():
        if not isinstance(d, pd.DataFrame) or not {"x", "y", "label", "group"} <= set(d.columns):
            raise ValueError(f"tsne_scatter: {name or 'df'} must be a DataFrame from ltlab.features.tsne "
                             "(columns x, y, label, group)")
    labels_all = sorted(set().union(*[set(d["label"].tolist()) for d in frames.values()]))
    num = max(max(labels_all) + 1 if labels_all else 0, len(class_names or []))
    names = list(class_names) if class_names is not None else [str(c) for c in range(num)]
    if classes is not None:
        keep = set(class_subset(classes, names, "tsne_scatter"))
        frames = {k: d[d["label"].isin(keep)] for k, d in frames.items()}
        labels_all = [c for c in labels_all if c in keep]
    auto = color == "auto" and len(labels_all) > max_classes
    if color == "auto":
        color = "group" if auto else "label"
    if color == "label":  # a subset of many classes gets its own spread of colours
        colors = (dict(zip(range(num), class_colors(num))) if num <= len(CLASS_PALETTE)
                  else dict(zip(labels_all, class_colors(len(labels_all)))))
        cats, key = labels_all, "label"
    else:
        cats = [g for g in ("many", "medium", "few", "unknown")
                if any((d["group"] == g).any() for d in frames.values())]
        colors, key = {**GROUP_COLORS, "unknown": "#777777"}, "group"
    npts = max(len(d) for d in frames.values())
    marker_size = marker_size or (5 if npts <= 3000 else 3)
    cols = len(frames) if cols is None else max(1, min(int(cols), len(frames)))
    rows = -(-len(frames) // cols)
    sil = all("silhouette" in d and d["silhouette"].notna().any() for d in frames.values())
    titles = [f"{n}{' · ' if n else ''}silhouette {d['silhouette'].mean():.2f}" if sil else n for n, d in frames.items()]
    fig = make_subplots(rows, cols, subplot_titles=titles if len(frames) > 1 or sil else None,
                        horizontal_spacing=0.03, vertical_spacing=0.16 if sil else 0.08)
    for j, d in enumerate(frames.values()):
        r, c = j // cols + 1, j % cols + 1
        correct = d["correct"].astype("object").where(d["correct"].notna(), "n/a") if "correct" in d else "n/a"
        d = d.assign(_correct=correct, _name=[names[c_] if c_ < len(names) else str(c_) for c_ in d["label"]])
        for k, cat in enumerate(cats):
            sel = d[d[key] == cat]
            legend = names[cat] if key == "label" and cat < len(names) else str(cat)
            fig.add_scatter(x=sel["x"], y=sel["y"], mode="markers", name=legend, legendgroup=str(cat),
                            showlegend=j == 0 and k < max_legend, marker=dict(size=marker_size, color=colors[cat],
                                                                             opacity=0.75, line=dict(width=0)),
                            customdata=np.stack([sel["_name"], sel["group"], sel["_correct"]], axis=1) if len(sel)
                            else None, hovertemplate="%{customdata[0]} (%{customdata[1]})<br>correct: "
                                                     "%{customdata[2]}<extra></extra>", row=r, col=c)
        if sil:  # under the panel, as its x-axis title: clear of the points, and the margin grows to fit it
            fig.update_xaxes(title=dict(text=_silhouette_note(d, cats, colors, key), font=dict(size=12)), row=r, col=c)
    note = []
    if classes is not None:
        note.append(f"{len(labels_all)} of {num} classes (classes=...)")
    if auto:
        note.append(f"{len(labels_all)} classes > max_classes={max_classes}: coloured by many / medium / few "
                    "(color='label' for class colours)")
    if key == "label" and len(cats) > max_legend:
        note.append(f"legend: the first {max_legend} of {len(cats)} classes")
    _style(fig, title or f"t-SNE of features (colour: {'class' if key == 'label' else 'many / medium / few'})", note,
           legend=dict(itemsizing="constant", title="class" if key == "label" else "group"),
           margin=dict(l=30, r=20, t=80, b=30), height=120 + 420 * rows)
    fig.update_xaxes(showticklabels=False, ticks="", showline=True, mirror=True)
    fig.update_yaxes(showticklabels=False, ticks="", title=None, showline=True, mirror=True)
    return fig


# ---------------------------------------------------------------------- saved test outputs
def _probabilities(run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits as the loss saw them, softmax probabilities, labels) of a run's last evaluation; float64, or
    float32 above ``FLOAT32_ABOVE`` logits (an 8,142-class test split is 0.5 GB an array in float32); the
    softmax is computed in place."""
    logits, labels = posthoc.scaled_test_logits(run)
    if logits.size > FLOAT32_ABOVE:
        logits = logits.astype(np.float32)
    p = logits - logits.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return logits, p, labels


def prediction_counts(runs, labels: Sequence[str] | None = None, pn_tau: float | None = None,
                      classes: Sequence[int | str] | None = None, max_classes: int = MAX_CLASSES,
                      bins: int = RANK_BINS) -> go.Figure:
    """Number of test images predicted as each class (classes sorted by training count) vs the balanced
    expectation (test size / C), runs as lines (GALA paper 003, Fig. 2).

    ``pn_tau``: also draw each run after GALA's prediction re-balancing ``softmax(z) / colsum ** tau``
    over the whole test set (Eq. 13, ``ltlab.posthoc.pn_rebalance``), dashed. Training counts as grey bars
    on the right (log) axis. Above ``max_classes`` classes each of ``bins`` rank bins gives its mean count
    per class (25-75 % band); ``classes`` draws those classes only.
    """
    runs, names, counts, axis, cls, fig = _per_class_figure(runs, labels, "prediction_counts", classes,
                                                            max_classes, bins)
    m = None
    for i, (r, name) in enumerate(zip(runs, names)):
        logits, _, y = _probabilities(r)
        m = len(y)
        variants = [("", logits.argmax(1), None)]
        if pn_tau is not None:
            variants.append((f" + PN (tau={pn_tau:g})", posthoc.pn_rebalance(logits, pn_tau).argmax(1), "dash"))
        for suffix, pred, dash in variants:
            axis.line(fig, np.bincount(pred, minlength=len(counts)), name + suffix, PALETTE[i % len(PALETTE)], dash,
                      secondary_y=True)
    span = [axis.x[0] - axis.width[0] / 2, axis.x[-1] + axis.width[-1] / 2]
    fig.add_scatter(x=span, y=[m / len(counts)] * 2, mode="lines", secondary_y=True,
                    name=f"balanced: {m / len(counts):g} per class", line=dict(color="#555555", dash="dot", width=2))
    axis.bands(fig)
    title = "Test images predicted as each class" + (" (mean per class in each bin)" if axis.mode == "bins" else "")
    _style(fig, title, axis.note, legend=_LEGEND_BELOW, margin=dict(l=60, r=60, t=60, b=50))
    fig.update_xaxes(**axis.xaxis())
    fig.update_yaxes(title="test images predicted as the class", rangemode="tozero", secondary_y=True)
    return fig


def true_class_probability(runs, labels: Sequence[str] | None = None, hard: float = 0.2, easy: float = 0.8,
                           max_points: int = 400) -> go.Figure:
    """Predicted probability of the true class of every test image, sorted, one panel per many / medium /
    few group, runs as lines (ALA paper 002, Fig. 3). Each panel's title gives, per run, the share of
    hard (p_y < ``hard``) and easy (p_y > ``easy``) images; lines keep ``max_points`` evenly spaced ranks.
    """
    runs = _runs(runs)
    check_same_classes(runs, "true_class_probability")
    names = run_labels(runs, labels)
    group = group_of_classes(runs[0].class_counts)
    groups = [g for g in GROUPS if (group == g).any()]
    probs = []
    for r in runs:
        _, p, y = _probabilities(r)
        probs.append((p[np.arange(len(y)), y], y))
    titles = []
    for g in groups:
        shares = [f"{n}: {np.mean(py[group[y] == g] < hard):.0%} / {np.mean(py[group[y] == g] > easy):.0%}"
                  for n, (py, y) in zip(names, probs)]
        titles.append(f"{g} (hard / easy)<br>" + "<br>".join(shares))  # a line per run: panels stay apart
    fig = make_subplots(1, len(groups), shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.03)
    for j, g in enumerate(groups):
        for i, (name, (py, y)) in enumerate(zip(names, probs)):
            v = np.sort(py[group[y] == g])[::-1]
            keep = np.unique(np.linspace(0, len(v) - 1, min(max_points, len(v))).round().astype(int))
            fig.add_scatter(x=keep, y=v[keep], mode="lines", name=name, legendgroup=name, showlegend=j == 0,
                            line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), row=1, col=j + 1)
        for level in (hard, easy):
            fig.add_hline(y=level, line=dict(color="#999999", dash="dot", width=1.5), row=1, col=j + 1)
    _style(fig, "Predicted probability of the true class, test images sorted (per group)",
           margin=dict(l=70, r=20, t=75 + 17 * len(runs), b=60))
    fig.update_xaxes(title="test image (sorted by p_y)")
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title="p_y", col=1)
    fig.update_annotations(font_size=13)
    return fig


def ala_adjustment_curves(run) -> go.Figure:
    """ALA's difficulty factor DF, quantity factor QF and their product averaged per many / medium / few
    group over epochs (ALA paper 002, Fig. 4). DF per class is the epoch mean over the class's training
    samples (``probes.npz`` ``difficulty_factor``), QF the constant of Eq. 7; each group averages its
    classes. Needs a ``loss="ala"`` run. A run with DRW (``drw_start``) gets a dashed vertical line at the
    first epoch trained under the DRW weights: the re-weighting changes the loss DF is measured under, so the
    paper's claim (the few group's DF above the many group's) is judged over the epochs before it."""
    run = _runs(run)[0]
    why = "; DF and QF are recorded for loss='ala' runs"
    df, qf = _probe(run, "difficulty_factor", why), _probe(run, "quantity_factor", why)
    group = group_of_classes(run.class_counts)
    groups = [g for g in GROUPS if (group == g).any()]
    fig = make_subplots(1, 3, subplot_titles=["difficulty factor DF (epoch mean)", "quantity factor QF",
                                              "adjustment DF x QF"], horizontal_spacing=0.08)
    x = np.arange(1, len(df) + 1)
    for k, values in enumerate((df, qf, df * qf)):
        for g in groups:
            fig.add_scatter(x=x, y=np.nanmean(values[:, group == g], axis=1), mode="lines+markers", name=g,
                            legendgroup=g, showlegend=k == 0, line=dict(color=GROUP_COLORS[g], width=2.5),
                            marker=dict(size=5), row=1, col=k + 1)
    drw = run.config.get("drw_start")
    note = ""
    if drw is not None and 0 <= int(drw) < len(df):
        for k in range(3):  # epoch drw_start (0-based) is epoch drw_start + 1 on this 1-based axis
            fig.add_vline(x=int(drw) + 0.5, line=dict(color="#555555", dash="dash", width=1.5), row=1, col=k + 1,
                          annotation_text=f"DRW on (epoch {int(drw) + 1})" if k == 0 else "DRW on",
                          annotation_position="top left", annotation_font=dict(size=11, color="#555555"))
        note = (f"dashed: DRW switches on at epoch {int(drw) + 1}; ALA Fig. 4's claim (few-group DF above the "
                "many group's) is judged before it")
    _style(fig, f"ALA adjustment per group over training ({run_labels([run])[0]})", note, legend=dict(title="group"),
           margin=dict(l=60, r=20, t=90, b=60))
    fig.update_xaxes(title="epoch", **_epoch_ticks(len(df)))
    fig.update_yaxes(rangemode="tozero")
    return fig


def class_spread_by_count(runs, labels: Sequence[str] | None = None, split: Literal["train", "test"] = "train",
                          normalize: bool = False, extract: bool = True) -> go.Figure:
    """Per-class spread of the features over the global spread against the class's training count (log x),
    one trace per run (GCL paper 001, Fig. 1: under CE the tail classes occupy a smaller region of feature
    space than the head classes). Spread of class c: ``sqrt(mean_{i in c} ||f_i - mu_c||^2)`` over the
    same for all samples (:func:`ltlab.viz.paper_stats.class_spread`; ``normalize`` L2-normalises the
    features first), on the run's ``features_<split>.npz`` (extracted when missing and ``extract``)."""
    from ..features import run_features
    from .paper_stats import class_spread, rarest_over_head

    runs = _runs(runs)
    names = run_labels(runs, labels)
    check_same_classes(runs, "class_spread_by_count")
    counts = np.asarray(runs[0].class_counts)
    order = np.argsort(-counts, kind="stable")
    fig = go.Figure()
    for i, (r, name) in enumerate(zip(runs, names)):
        f = run_features(r, split, extract=extract)
        spread = class_spread(f["features"], f["labels"], len(counts), normalize=normalize)
        ratio = rarest_over_head(spread, counts)
        fig.add_scatter(x=counts[order], y=spread[order], mode="lines+markers", name=f"{name} (rarest / head "
                        f"{ratio:.2f})", line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), marker=dict(size=7),
                        hovertemplate="%{x} images<br>spread / global %{y:.3f}<extra>" + name + "</extra>")
    _style(fig, f"Class spread in feature space / global spread, by training count ({split} features)",
           "spread of a class: RMS distance of its features to their class mean; global: the same over all "
           "samples" + (" (L2-normalised features)" if normalize else ""), legend=_LEGEND_BELOW,
           margin=dict(l=70, r=20, t=70, b=60))
    fig.update_xaxes(title="training images of the class (log)", type="log",
                     **_log_ticks(float(counts.max()), float(counts.min())))
    fig.update_yaxes(title="class spread / global spread", rangemode="tozero")
    return fig
