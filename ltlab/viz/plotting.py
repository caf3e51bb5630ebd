"""Plotly figure builders: each takes a run (or runs, a DataFrame, or class counts) and returns a figure.

Saving is a separate call (:func:`ltlab.viz.export.save_figures`). Look and shared checks live in
:mod:`ltlab.viz.style`: classes sorted by training count (head left, tail right), many/medium/few
bands, log-scaled count axes, colour-blind safe colours, and a ValueError for runs over different class
sets drawn together. This module holds the accuracy figures and the schedule figures (pure functions of
the epoch and the class counts: ``ltlab.schedules`` and the losses' functional maths; no training);
the gradient-ratio figures (:mod:`ltlab.viz.plot_gradients`), the classifier figures
(:mod:`ltlab.viz.plot_classifier`) and the figures of saved test outputs and t-SNE (:mod:`ltlab.viz.plot_outputs`)
are re-exported here, so ``plotting.<name>`` reaches every builder.
"""
from __future__ import annotations

import math
import os
from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .. import metrics as _metrics
from .. import schedules
from ..data.longtail import shot_split
from ..losses import functional as LF
from ..runs import Run, RunFileError
from .plot_classifier import class_feature_similarity, gala_theta_phi, own_class_cosine, weight_norms  # noqa: F401
from .plot_gradients import (ALL_STATISTICS, gradient_ratio_by_class, gradient_ratio_curves,  # noqa: F401
                             gradient_ratio_heatmap, gradient_ratio_table, neg_by_group, negative_gradient_sources,
                             sources_missing)
from .plot_outputs import (ala_adjustment_curves, class_spread_by_count, prediction_counts, separation_table,  # noqa: F401
                           true_class_probability, tsne_scatter)
from .style import (_LEGEND_BELOW, CLASS_PALETTE, ClassAxis, GROUP_COLORS, LAYOUT, MAX_CLASSES, PALETTE,  # noqa: F401
                    RANK_BINS, _count_axis_figure, _count_bars, _epoch_ticks, _group_bands,
                    _heatmap_height, _log_ticks, _log_y, _order, _per_class_figure, _positive, _probe,
                    _rank_axis, _runs, _style, check_same_classes, class_axis, class_colors,
                    class_subset, group_of_classes, run_class_names, run_labels)


# ---------------------------------------------------------------------- runs: accuracy
def per_class_accuracy_bar(run, epoch: int = -1, classes: Sequence[int | str] | None = None,
                           max_classes: int = MAX_CLASSES, bins: int = RANK_BINS) -> go.Figure:
    """Per-class test accuracy at an evaluated epoch (default the last), classes ordered by training count,
    bars coloured by many/medium/few, training counts as a line on a log-scaled right axis.

    Above ``max_classes`` classes (default 100) a bar is a rank bin of ``bins`` (its mean, the error bar the
    25-75 % range of its classes); ``classes`` (indices or names) draws those classes only.
    """
    run = _runs(run)[0]
    counts = np.asarray(run.per_class["class_counts"])
    acc = np.asarray(run.per_class["acc"])[epoch]
    axis = class_axis(counts, run_class_names(run, len(counts)), "per_class_accuracy_bar", classes, max_classes, bins)
    mean, lo, hi = axis.reduce(acc)
    group = group_of_classes(counts)[[m[0] for m in axis.members]]
    labels = np.asarray(axis.labels, dtype=object)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, color in GROUP_COLORS.items():
        sel = np.flatnonzero(group == name)
        if len(sel):
            n = sum(len(axis.members[k]) for k in sel)
            err = None if lo is None else dict(type="data", symmetric=False, array=hi[sel] - mean[sel],
                                               arrayminus=mean[sel] - lo[sel], color="#333333", thickness=1)
            fig.add_bar(x=axis.x[sel], y=mean[sel], name=f"{name} ({n} class{'es' if n > 1 else ''})", marker_color=color,
                        error_y=err, customdata=labels[sel],
                        hovertemplate="%{customdata}<br>acc %{y:.3f}<extra></extra>")
    fig.add_scatter(x=axis.x, y=axis.counts, name="training count (right axis)", mode="lines+markers",
                    line=dict(color="#555555", dash="dot", width=1.5), secondary_y=True,
                    marker=dict(size=6 if len(axis.x) <= 60 else 3), hovertemplate="n=%{y:.0f}<extra></extra>")
    ep = int(run.per_class["epochs"][epoch]) + 1
    _style(fig, f"Per-class test accuracy, epoch {ep} (overall {np.nanmean(acc):.3f})", axis.note, legend=_LEGEND_BELOW,
           margin=dict(l=60, r=60, t=60, b=50), bargap=0.15)
    fig.update_xaxes(**axis.xaxis())
    fig.update_yaxes(title="test accuracy", range=[0, 1.02], secondary_y=False)
    fig.update_yaxes(title="training count", type="log", showgrid=False, secondary_y=True,
                     **_log_ticks(float(counts.max()), float(counts.min())))
    return fig


def summary_table(run):
    """Last evaluated epoch as a one-row DataFrame: overall and many/medium/few accuracy."""
    import pandas as pd

    s = _runs(run)[0].summary()
    return pd.DataFrame([{"epoch": s["epoch"], "overall": s["acc"], "many": s["acc_many"],
                          "medium": s["acc_medium"], "few": s["acc_few"]}]).round(4)


def per_class_accuracy_curve(runs, labels: Sequence[str] | None = None, epoch: int = -1,
                             classes: Sequence[int | str] | None = None, max_classes: int = MAX_CLASSES,
                             bins: int = RANK_BINS) -> go.Figure:
    """Per-class test accuracy vs class index sorted by training count, one line per run (side by side).

    Training counts as grey bars on a log-scaled right axis; many/medium/few ranges shaded
    (> 100 / 20-100 / < 20 training images). ``epoch`` indexes the evaluated epochs (default the last).
    Above ``max_classes`` classes the line gives each of ``bins`` rank bins' mean with its 25-75 % band;
    ``classes`` (indices or names) draws those classes only.
    """
    runs, names, counts, axis, cls, fig = _per_class_figure(runs, labels, "per_class_accuracy_curve", classes,
                                                            max_classes, bins)
    for i, (r, name) in enumerate(zip(runs, names)):
        acc = np.asarray(r.per_class["acc"])[epoch]
        axis.line(fig, acc, f"{name} ({np.nanmean(acc):.3f})", PALETTE[i % len(PALETTE)], secondary_y=True)
    axis.bands(fig)
    _style(fig, "Per-class test accuracy (classes sorted by training count)", axis.note, legend=_LEGEND_BELOW,
           margin=dict(l=60, r=60, t=60, b=50), bargap=0.1)
    fig.update_xaxes(**axis.xaxis())
    fig.update_yaxes(title="test accuracy", range=[0, 1.05], tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0], secondary_y=True)
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
    fig.update_xaxes(title="epoch", **_epoch_ticks(max(int(r.metrics["epoch"].max()) + 1 for r in runs)))
    fig.update_yaxes(title="test accuracy", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02])
    return fig


def _test_predictions(run: Run, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(argmax predictions, labels) of a run's saved test logits (float16 on disk is fine), or a RunFileError."""
    if "test_logits" not in run.per_class:
        raise RunFileError(f"{what}: {run.dir / 'per_class.npz'} has no test_logits: the run never evaluated, or "
                           "was trained with its test logits left out (save_logits); train it with them saved "
                           "(the default) to draw this figure")
    return np.asarray(run.per_class["test_logits"]).argmax(1), np.asarray(run.per_class["test_labels"])


def confused_pairs(run, k: int = 10, classes: Sequence[int | str] | None = None):
    """The ``k`` most frequent confusions of a run's last evaluation as a DataFrame: ``true``, ``predicted``
    (class names), their training counts ``n_true``, ``n_predicted``, ``count`` (test images of ``true``
    predicted as ``predicted``) and ``share`` (of the true class's test images). ``classes``: only pairs
    whose true class is among them. Counts pairs without a C x C matrix (any class count)."""
    import pandas as pd

    run = _runs(run)[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"confused_pairs: k={k!r} must be a whole number >= 1 (pairs listed); pass e.g. k=10")
    pred, labels = _test_predictions(run, "confused_pairs")
    counts = np.asarray(run.class_counts)
    names = run_class_names(run, len(counts))
    keep = pred != labels
    if classes is not None:
        keep &= np.isin(labels, class_subset(classes, names, "confused_pairs"))
    pairs, n = np.unique(labels[keep] * len(counts) + pred[keep], return_counts=True)
    top = np.argsort(-n, kind="stable")[:k]
    t, p = pairs[top] // len(counts), pairs[top] % len(counts)
    size = np.bincount(labels, minlength=len(counts))
    return pd.DataFrame({"true": [names[c] for c in t], "predicted": [names[c] for c in p], "n_true": counts[t],
                         "n_predicted": counts[p], "count": n[top], "share": (n[top] / size[t]).round(3)})


def confusion_matrix(run, normalize: bool = True, classes: Sequence[int | str] | None = None,
                     max_classes: int = MAX_CLASSES, top_k: int = 15) -> go.Figure:
    """Test confusion matrix of the last evaluated epoch (rows true, columns predicted), classes sorted by count.

    ``normalize``: each row divided by its class's test images (recall on the diagonal). Above
    ``max_classes`` classes the matrix is many / medium / few x many / medium / few (rows: the true
    class's group; never C x C cells) beside a table of the ``top_k`` most confused class pairs
    (:func:`confused_pairs`). ``classes`` (indices or names): the rows and columns of those classes only.
    """
    run = _runs(run)[0]
    pred, labels = _test_predictions(run, "confusion_matrix")
    counts = np.asarray(run.class_counts)
    names = run_class_names(run, len(counts))
    axis = class_axis(counts, names, "confusion_matrix", classes, max_classes)
    if axis.mode == "bins":
        return _group_confusion(run, pred, labels, counts, normalize, classes, top_k)
    order = axis.classes
    pos = np.full(len(counts), -1)
    pos[order] = np.arange(len(order))
    keep = (pos[labels] >= 0) & (pos[pred] >= 0)
    cm = np.zeros((len(order), len(order)))
    np.add.at(cm, (pos[labels[keep]], pos[pred[keep]]), 1.0)
    if normalize:
        cm = cm / np.maximum(np.bincount(labels, minlength=len(counts))[order], 1)[:, None]
    cls = [names[c] for c in order]
    text = np.vectorize(lambda v: f"{v:.2f}" if normalize else f"{int(v)}")(cm) if len(order) <= 12 else None
    fig = go.Figure(go.Heatmap(z=cm, x=cls, y=cls, colorscale="Cividis", text=text, texttemplate="%{text}" if text is
                               not None else None, colorbar=dict(title="fraction" if normalize else "count"),
                               zmin=0, zmax=1 if normalize else None))
    _style(fig, f"Confusion matrix ({run_labels([run])[0]})", ["rows: true class, columns: predicted; both sorted "
           "by training count", axis.note], margin=dict(l=60, r=20, t=60, b=50), height=_heatmap_height(len(order)))
    fig.update_xaxes(title="predicted class", type="category")
    fig.update_yaxes(title="true class", type="category", autorange="reversed")
    return fig


def _group_confusion(run: Run, pred, labels, counts, normalize: bool, classes, top_k: int) -> go.Figure:
    """Group x group confusion (3 x 3 at most) and the top-k confused pairs, for runs above ``max_classes``."""
    groups = [g for g in GROUP_COLORS if (group_of_classes(counts) == g).any()]
    gi = {g: i for i, g in enumerate(groups)}
    of = np.array([gi[g] for g in group_of_classes(counts)])
    rows = np.ones(len(labels), bool) if classes is None else np.isin(
        labels, class_subset(classes, run_class_names(run, len(counts)), "confusion_matrix"))
    cm = np.zeros((len(groups), len(groups)))
    np.add.at(cm, (of[labels[rows]], of[pred[rows]]), 1.0)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n_cls = np.bincount(of, minlength=len(groups))
    ticks = [f"{g} ({n} cl.)" for g, n in zip(groups, n_cls)]
    pairs = confused_pairs(run, top_k, classes)
    fig = make_subplots(1, 2, column_widths=[0.38, 0.62], horizontal_spacing=0.12,
                        specs=[[{"type": "xy"}, {"type": "table"}]],
                        subplot_titles=["true group x predicted group", f"top {len(pairs)} confused class pairs"])
    fig.add_heatmap(z=cm, x=ticks, y=ticks, colorscale="Cividis", zmin=0, zmax=1 if normalize else None,
                    text=np.vectorize(lambda v: f"{v:.2f}" if normalize else f"{int(v)}")(cm), texttemplate="%{text}",
                    colorbar=dict(title="fraction" if normalize else "count", x=0.36), row=1, col=1)
    fig.add_table(header=dict(values=["true (n)", "predicted as (n)", "images", "share"], align="left",
                              fill_color="#EEEEEE"),
                  cells=dict(values=[[f"{t} ({n})" for t, n in zip(pairs["true"], pairs["n_true"])],
                                     [f"{p} ({n})" for p, n in zip(pairs["predicted"], pairs["n_predicted"])],
                                     pairs["count"], [f"{v:.0%}" for v in pairs["share"]]], align="left"),
                  columnwidth=[3, 3, 1.2, 1.2], row=1, col=2)
    what = f"{int(rows.sum())} test images" + ("" if classes is None else " of the chosen classes")
    _style(fig, f"Confusion by many / medium / few group ({run_labels([run])[0]})",
           [f"{len(counts)} classes > max_classes: groups instead of {len(counts)} x {len(counts)} cells; rows: "
            f"true group, columns: predicted group ({what}{', rows sum to 1' if normalize else ''})"],
           margin=dict(l=90, r=20, t=80, b=60), height=max(520, 200 + 25 * (len(pairs) + 1)))
    fig.update_xaxes(title="predicted group", type="category", row=1, col=1)
    fig.update_yaxes(title="true group", type="category", autorange="reversed", row=1, col=1)
    return fig


# ---------------------------------------------------------------------- schedules (no training)
def replay_glag_beta(acc_history, tail_classes: Sequence[int], beta0: float = 0.6, step: float = 0.05) -> np.ndarray:
    """GLAG beta per tail class over epochs (E, T) from per-class accuracies (E, C) by the LIB rule.

    ``beta[0] = beta0`` (0.6, GLAG's implementation details); ``beta[t] = schedules.glag_beta_update(beta[t-1], acc[t],
    acc[t-1], step)``.
    """
    acc = np.asarray(acc_history, dtype=np.float64)[:, np.asarray(tail_classes, dtype=np.int64)]
    out = np.empty_like(acc)
    out[0] = beta0
    for t in range(1, len(acc)):
        out[t] = schedules.glag_beta_update(out[t - 1], acc[t], acc[t - 1], step)
    return out


def glag_tail_classes(class_counts: Sequence[int]) -> np.ndarray:
    """GLAG's tail classes (``schedules.glag_tail_classes``) sorted by count, largest first, as figures draw them."""
    counts = np.asarray(class_counts)
    tail = schedules.glag_tail_classes(counts)
    return tail[np.argsort(-counts[tail], kind="stable")]


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


def _run_glag_beta(run: Run) -> tuple[np.ndarray, list[str], str]:
    """(beta (E, T), legend labels, where it comes from) of a run: the beta a GLAG stage-two (AFG) run
    generated with (``probes.npz`` ``glag_beta``), else the LIB rule replayed on its per-class test accuracy."""
    counts = np.asarray(run.class_counts)
    names = run_class_names(run, len(counts))
    if "glag_beta" in run.probes:
        beta = np.asarray(run.probes["glag_beta"])
        tail = [c for c in _order(counts) if np.isfinite(beta[:, c]).any()]
        return beta[:, tail], [f"{names[c]} (n={counts[c]})" for c in tail], f"AFG run {run.dir.name}"
    tail = glag_tail_classes(counts)
    return (replay_glag_beta(run.per_class["acc"], tail), [f"{names[c]} (n={counts[c]})" for c in tail],
            f"rule replayed on {run.dir.name}'s test accuracy")


def glag_schedule(num_epochs: int, s: float = 1.0, c: float | Sequence[float] = 2.0, beta=None,
                  beta_classes: Sequence[str] | None = None,
                  forms: Sequence[Literal["convex", "linear", "concave"]] = ("convex",),
                  max_classes: int = 20, beta_source: str | None = None) -> go.Figure:
    """GLAG alpha(T) = s (c^(T/Tmax) - 1) per epoch (GLAG paper 000, Eq. 4; ``schedules.glag_alpha``) and beta.

    ``c`` may be a list and ``forms`` several of "convex", "linear", "concave" (paper Fig. 3; one curve
    per form and c). ``beta`` (optional): an (E, T) array of the class-wise calibration strength per
    epoch, or a Run: a GLAG stage-two (AFG) run draws the beta it generated with, any other run replays
    the LIB rule on its per-class accuracy (``replay_glag_beta``, tail = classes with n <= 100); drawn
    in a second panel, for at most ``max_classes`` tail classes spread over the count ranking.
    ``beta_source``: where an array ``beta`` comes from, written in the panel title (e.g. ``"synthetic
    accuracy history, no training"`` for :func:`synthetic_glag_beta`).
    """
    where, note = "beta per tail class", ""
    if beta_source and not isinstance(beta, (Run, str, os.PathLike)):
        where += f" ({beta_source})"
    if isinstance(beta, (Run, str, os.PathLike)):
        beta, beta_classes, source = _run_glag_beta(_runs(beta)[0])
        where += f" ({source})"
    cs = [c] if np.isscalar(c) else list(c)
    fig = make_subplots(1, 2 if beta is not None else 1, horizontal_spacing=0.1,
                        subplot_titles=["alpha(T), constant within an epoch", where] if beta is not None else None)
    epochs = np.arange(num_epochs + 1)  # a step per epoch, closed at num_epochs
    dashes = {"convex": "solid", "linear": "dash", "concave": "dot"}
    for i, (form, c_) in enumerate((f, c_) for f in forms for c_ in cs):
        alpha = [schedules.glag_alpha(e, num_epochs, s, c_, form) for e in epochs[:-1]]
        fig.add_scatter(x=epochs, y=alpha + alpha[-1:], mode="lines", line_shape="hv" if num_epochs <= 60 else "linear",
                        name=f"alpha {form}, s={s:g}, c={c_:g}" if len(forms) > 1 else f"alpha, s={s:g}, c={c_:g}",
                        line=dict(color=PALETTE[i % len(PALETTE)], width=2.5, dash=dashes.get(form, "solid")),
                        row=1, col=1)
    if beta is not None:
        beta = np.asarray(beta, dtype=np.float64).reshape(len(beta), -1)
        labels = list(beta_classes) if beta_classes is not None else [f"tail class {k}" for k in range(beta.shape[1])]
        if beta.shape[1] > max_classes:  # many tail classes: evenly spread ones (the columns are count-sorted)
            keep = np.unique(np.linspace(0, beta.shape[1] - 1, max_classes).round().astype(int))
            note = f"beta of {len(keep)} of the {beta.shape[1]} tail classes, spread over the count ranking"
            beta, labels = beta[:, keep], [labels[k] for k in keep]
        colors = class_colors(beta.shape[1])
        for k in range(beta.shape[1]):
            fig.add_scatter(x=np.arange(len(beta) + 1), y=np.append(beta[:, k], beta[-1, k]), mode="lines",
                            line_shape="hv", name=f"beta {labels[k]}", line=dict(color=colors[k], width=2),
                            row=1, col=2)
        fig.update_xaxes(title="generation epoch", row=1, col=2, **_epoch_ticks(len(beta)))
        fig.update_yaxes(title="beta", range=[-0.02, 1.02], row=1, col=2)
    title = "GLAG schedules: gradual balance factor alpha(T)"
    _style(fig, title + (" and calibration strength beta" if beta is not None else ""), note,
           margin=dict(l=70, r=20, t=90, b=60))
    fig.update_xaxes(title="epoch T (0-based)", row=1, col=1)
    fig.update_yaxes(title="alpha(T)", row=1, col=1)
    return fig


def ala_factors(class_counts: Sequence[int], qf: Sequence[str] = ("paper", "code"),
                ldam_max_m: float | None = 0.5) -> go.Figure:
    """ALA quantity factor QF per class (both forms) beside the LDAM margin ``max_m (n_min / n_c)^(1/4)``
    (ALA paper 002, Fig. 2; None leaves it out) and difficulty factor DF vs target cosine (Eq. 6-7). Right
    panel also shows the target shift DF * QF_c of the head, middle and tail class.
    """
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    order = _order(counts.numpy())
    left = "quantity factor QF vs LDAM margin" if ldam_max_m is not None else "quantity factor QF per class"
    fig = make_subplots(1, 2, horizontal_spacing=0.1, subplot_titles=[left, "difficulty factor vs target cosine"])
    qfs = {}
    for i, form in enumerate(qf):
        qfs[form] = LF.ala_quantity_factor(counts, form).numpy()
        fig.add_scatter(x=np.arange(len(order)), y=qfs[form][order], mode="lines+markers", name=f"QF ({form})",
                        line=dict(color=PALETTE[i], width=2.5), row=1, col=1)
    if ldam_max_m is not None:  # ALA paper Fig. 2: QF beside the LDAM margin (Cao et al. 2019, Eq. 13)
        fig.add_scatter(x=np.arange(len(order)), y=LF.ldam_margins(counts, ldam_max_m).numpy()[order],
                        mode="lines+markers", name=f"LDAM margin (max_m={ldam_max_m:g})",
                        line=dict(color="#555555", width=2.5, dash="dash"), row=1, col=1)
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
    fig.update_yaxes(title="QF / margin (cosine units)", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title="target cosine cos_y", row=1, col=2)
    fig.update_yaxes(title="target shift (cosine units)", rangemode="tozero", row=1, col=2)
    return fig


def _mean_abs_clamped_normal(sigma: float = 1.0 / 3.0, a: float = 1.0) -> float:
    """E|clamp(X, -a, a)| for X ~ N(0, sigma^2) (GCL noise, std 1/3, clamp [-1, 1])."""
    tail = math.erfc(a / (sigma * math.sqrt(2.0)))  # P(|X| > a)
    return sigma * math.sqrt(2.0 / math.pi) * (1.0 - math.exp(-a * a / (2 * sigma * sigma))) + a * tail


def gcl_cloud_widths(class_counts: Sequence[int], noise_mul: float = 0.5) -> go.Figure:
    """GCL cloud size per class: largest negative shift ``noise_mul * delta_hat_c`` (|eps| <= 1) and its mean
    ``noise_mul * delta_hat_c * E|eps|`` (GCL paper 001, Eq. 9-11; ``functional.gcl_delta_hat``).
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
                    line=dict(color="#555555", dash="dot", width=1.5), secondary_y=True)
    _style(fig, f"GCL Gaussian cloud width per class (noise_mul={noise_mul:g})", legend=_LEGEND_BELOW,
           margin=dict(l=70, r=70, t=60, b=50))
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
    from ..losses import create_loss

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
    from ..losses import create_loss

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
    _style(fig, f"GHM-CWAP unit regions, counts and weights ({st['where']})", margin=dict(l=80, r=20, t=90, b=50),
           bargap=0, height=720, legend=_LEGEND_BELOW)
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
           margin=dict(l=80, r=20, t=90, b=50), bargap=0, height=940, legend=_LEGEND_BELOW)
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
    fig.add_hline(y=1.0, line=dict(color="#555555", dash="dot", width=1.5), row=1, col=2)
    start = "never" if drw_start is None else f"from epoch {drw_start}"
    _style(fig, f"DRW class weights (beta={beta:g}, switch {start})", margin=dict(l=70, r=20, t=90, b=60))
    fig.update_xaxes(title="epoch (0-based)", row=1, col=1)
    fig.update_xaxes(title="class (sorted by training count)", row=1, col=2)
    fig.update_yaxes(title="CE weight", row=1, col=1)
    _log_y(fig, np.concatenate([table.ravel(), after]))
    return fig
