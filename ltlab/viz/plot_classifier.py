"""Classifier figures: weight norms (GALA paper 003, Fig. 1(a)), class-vector / feature similarity (Fig. 1(d))
and GALA's accumulated statistics theta / phi."""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import (_LEGEND_BELOW, GROUP_COLORS, MAX_CLASSES, PALETTE, RANK_BINS, _epoch_ticks,
                    _group_legend, _log_y, _order, _per_class_figure, _positive, _probe, _runs, _style,
                    class_axis, class_colors, group_of_classes, run_class_names, run_labels)


def weight_norms(runs, labels: Sequence[str] | None = None, epoch: int = -1, classes: Sequence[int | str] | None = None,
                 max_classes: int = MAX_CLASSES, bins: int = RANK_BINS) -> go.Figure:
    """L2 norm of each class's classifier weight vs class sorted by training count, runs as lines
    (GALA paper 003, Fig. 1(a): CE, class-aware sampling and GALA). Above ``max_classes`` classes: the mean
    (and 25-75 % band) of ``bins`` rank bins; ``classes`` draws those classes only."""
    runs, names, counts, axis, cls, fig = _per_class_figure(runs, labels, "weight_norms", classes, max_classes, bins)
    for i, (r, name) in enumerate(zip(runs, names)):
        axis.line(fig, _probe(r, "weight_norm")[epoch], name, PALETTE[i % len(PALETTE)], secondary_y=True)
    axis.bands(fig)
    _style(fig, "Classifier weight norm per class", axis.note, legend=_LEGEND_BELOW, margin=dict(l=60, r=60, t=60, b=50))
    fig.update_xaxes(**axis.xaxis())
    fig.update_yaxes(title="||w_c||", rangemode="tozero", secondary_y=True)
    return fig


def own_class_cosine(features, labels, weight) -> np.ndarray:
    """Mean cosine similarity between each class vector ``w_c`` (weight (C, D)) and the features (N, D) of the
    samples labelled c (C,); NaN for a class without samples."""
    f = np.asarray(features, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    y = np.asarray(labels)
    cos = (f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))
    cos = np.einsum("nd,nd->n", cos, w[y] / np.maximum(np.linalg.norm(w[y], axis=1, keepdims=True), 1e-12))
    n = np.bincount(y, minlength=len(w))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.bincount(y, weights=cos, minlength=len(w)) / np.maximum(n, 1), np.nan)


def class_feature_similarity(runs, labels: Sequence[str] | None = None,
                             split: Literal["train", "test"] = "test", extract: bool = True,
                             classes: Sequence[int | str] | None = None, max_classes: int = MAX_CLASSES,
                             bins: int = RANK_BINS) -> go.Figure:
    """Mean cosine similarity of each class vector to its own class's features, classes sorted by count.

    GALA paper 003, Fig. 1(d): under CE a tail class vector points away from its own samples. Features
    are the run's penultimate ``features_<split>.npz`` (extracted from ``checkpoint.pt`` and saved when
    missing and ``extract``), class vectors the rows of the trained classifier (:func:`own_class_cosine`).
    Above ``max_classes`` classes: ``bins`` rank bins (mean, 25-75 % band); ``classes`` draws those only.
    """
    from ..build import rebuild_model
    from ..features import run_features

    runs, names, counts, axis, cls, fig = _per_class_figure(runs, labels, "class_feature_similarity", classes,
                                                            max_classes, bins)
    for i, (r, name) in enumerate(zip(runs, names)):
        f = run_features(r, split, extract=extract)
        weight = rebuild_model(r).head.weight_matrix().detach().cpu().numpy()
        sim = own_class_cosine(f["features"], f["labels"], weight)
        axis.line(fig, sim, f"{name} (mean {np.nanmean(sim):.3f})", PALETTE[i % len(PALETTE)], secondary_y=True)
    axis.bands(fig)
    _style(fig, f"Cosine similarity of each class vector to its own {split} features", axis.note, legend=_LEGEND_BELOW,
           margin=dict(l=60, r=60, t=60, b=50))
    fig.update_xaxes(**axis.xaxis())
    fig.update_yaxes(title="mean cos(w_c, f_i), y_i = c", secondary_y=True)
    return fig


def gala_theta_phi(run, epoch: int = -1, max_classes: int = MAX_CLASSES, bins: int = RANK_BINS) -> go.Figure:
    """GALA's accumulated gradients: theta (positive, per classifier) and phi (negative, per sample class).

    Left: both per class at ``epoch`` (log y; GALA paper 003, Eq. 6 statistics). Right:
    theta over epochs per class. Needs a ``loss="gala"`` run (probes ``theta``/``phi``). Above
    ``max_classes`` classes the left panel draws ``bins`` rank bins and the right the mean theta per
    many / medium / few group.
    """
    run = _runs(run)[0]
    why = "; theta/phi are recorded for loss='gala' runs"
    theta, phi = _probe(run, "theta", why), _probe(run, "phi", why)
    counts = np.asarray(run.class_counts)
    order = _order(counts)
    cls = run_class_names(run, len(counts))
    axis = class_axis(counts, cls, "gala_theta_phi", None, max_classes, bins)
    fig = make_subplots(1, 2, subplot_titles=["per class" + ("" if epoch == -1 else f", epoch {epoch + 1}"),
                                              "theta over training"], horizontal_spacing=0.12)
    axis.line(fig, theta[epoch], "theta (positive)", PALETTE[0], row=1, col=1)
    axis.line(fig, phi[epoch], "phi (negative)", PALETTE[3], "dash", row=1, col=1)
    ep = np.arange(1, len(theta) + 1)
    if axis.mode == "bins":
        group = group_of_classes(counts)
        for g, color in GROUP_COLORS.items():
            if (group == g).any():
                fig.add_scatter(x=ep, y=theta[:, group == g].mean(axis=1), mode="lines", line=dict(color=color, width=2),
                                name=f"theta, {g} mean ({int((group == g).sum())} classes)", row=1, col=2)
    else:
        colors = class_colors(len(order))
        for k, c in enumerate(order):
            fig.add_scatter(x=ep, y=theta[:, c], mode="lines", name=f"theta {cls[c]} (n={counts[c]})",
                            line=dict(color=colors[k], width=2), row=1, col=2,
                            hovertemplate=f"{cls[c]} (n={counts[c]})<br>theta %{{y:.3g}}<extra></extra>")
    axis.bands(fig, row=1, col=1, label=False)  # its subplot title sits where labels would
    _group_legend(fig, axis.counts_sorted, row=1, col=1)
    same = np.allclose(theta[epoch], phi[epoch], rtol=1e-6)
    note = ("theta = phi: with a softmax, a sample's positive gradient 1 - p_y equals the sum of the negative "
            "gradients it sends to the other classes" if same else "")
    _style(fig, f"GALA accumulated gradients ({run_labels([run])[0]})", [note, axis.note], legend=_LEGEND_BELOW,
           margin=dict(l=70, r=20, t=80, b=60))  # 15 entries at 10 classes: a side legend would be cut
    fig.update_xaxes(row=1, col=1, **axis.xaxis())
    fig.update_xaxes(title="epoch", row=1, col=2, **_epoch_ticks(len(theta)))
    _log_y(fig, np.concatenate([_positive(theta[epoch]), _positive(phi[epoch])]), row=1, col=1)
    _log_y(fig, theta, row=1, col=2)
    fig.update_yaxes(title="accumulated |dL/dz|", row=1, col=1)
    return fig
