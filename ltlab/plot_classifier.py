"""Classifier figures: weight norms (GALA paper 003, Fig. 1(a)), class-vector / feature similarity (Fig. 1(d))
and GALA's accumulated statistics theta / phi."""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plotstyle import (_LEGEND_BELOW, PALETTE, _epoch_ticks, _group_bands, _group_legend, _log_y, _order,
                        _per_class_figure, _positive, _probe, _rank_axis, _runs, _style, class_colors, run_class_names,
                        run_labels)


def weight_norms(runs, labels: Sequence[str] | None = None, epoch: int = -1) -> go.Figure:
    """L2 norm of each class's classifier weight vs class sorted by training count, runs as lines
    (GALA paper 003, Fig. 1(a): CE, class-aware sampling and GALA)."""
    runs, names, counts, order, cls, fig = _per_class_figure(runs, labels, "weight_norms")
    for i, (r, name) in enumerate(zip(runs, names)):
        fig.add_scatter(x=np.arange(len(order)), y=_probe(r, "weight_norm")[epoch][order], mode="lines+markers",
                        name=name, line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), secondary_y=True)
    _group_bands(fig, counts[order])
    _style(fig, "Classifier weight norm per class", legend=_LEGEND_BELOW, margin=dict(l=60, r=60, t=60, b=50))
    fig.update_xaxes(title="class (sorted by training count)", **_rank_axis(np.asarray(cls)[order]))
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
                             split: Literal["train", "test"] = "test", extract: bool = True) -> go.Figure:
    """Mean cosine similarity of each class vector to its own class's features, classes sorted by count.

    GALA paper 003, Fig. 1(d): under CE a tail class vector points away from its own samples. Features
    are the run's penultimate ``features_<split>.npz`` (extracted from ``checkpoint.pt`` and saved when
    missing and ``extract``), class vectors the rows of the trained classifier (:func:`own_class_cosine`).
    """
    from .build import rebuild_model
    from .features import run_features

    runs, names, counts, order, cls, fig = _per_class_figure(runs, labels, "class_feature_similarity")
    for i, (r, name) in enumerate(zip(runs, names)):
        f = run_features(r, split, extract=extract)
        weight = rebuild_model(r).head.weight_matrix().detach().cpu().numpy()
        sim = own_class_cosine(f["features"], f["labels"], weight)[order]
        fig.add_scatter(x=np.arange(len(order)), y=sim, mode="lines+markers", name=f"{name} (mean {np.nanmean(sim):.3f})",
                        line=dict(color=PALETTE[i % len(PALETTE)], width=2.5), secondary_y=True)
    _group_bands(fig, counts[order])
    _style(fig, f"Cosine similarity of each class vector to its own {split} features", legend=_LEGEND_BELOW,
           margin=dict(l=60, r=60, t=60, b=50))
    fig.update_xaxes(title="class (sorted by training count)", **_rank_axis(np.asarray(cls)[order]))
    fig.update_yaxes(title="mean cos(w_c, f_i), y_i = c", secondary_y=True)
    return fig


def gala_theta_phi(run, epoch: int = -1) -> go.Figure:
    """GALA's accumulated gradients: theta (positive, per classifier) and phi (negative, per sample class).

    Left: both per class at ``epoch`` (log y; GALA paper 003, Eq. 6 statistics). Right:
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
    _group_bands(fig, counts[order], row=1, col=1, label=False)  # its subplot title sits where labels would
    _group_legend(fig, counts[order], row=1, col=1)
    same = np.allclose(theta[epoch], phi[epoch], rtol=1e-6)
    note = ("theta = phi: with a softmax, a sample's positive gradient 1 - p_y equals the sum of the negative "
            "gradients it sends to the other classes" if same else "")
    _style(fig, f"GALA accumulated gradients ({run_labels([run])[0]})", note, margin=dict(l=70, r=20, t=80, b=60))
    fig.update_xaxes(title="class (sorted by training count)", row=1, col=1, **_rank_axis(np.asarray(cls)[order]))
    fig.update_xaxes(title="epoch", row=1, col=2, **_epoch_ticks(len(theta)))
    _log_y(fig, np.concatenate([_positive(theta[epoch]), _positive(phi[epoch])]), row=1, col=1)
    _log_y(fig, theta, row=1, col=2)
    fig.update_yaxes(title="accumulated |dL/dz|", row=1, col=1)
    return fig
