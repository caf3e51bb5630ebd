"""Plotly figure builders: each takes a run (or a DataFrame) and returns a figure; saving is separate."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .data.longtail import shot_split

# Okabe-Ito, colour-blind safe
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
GROUP_COLORS = {"many": "#0072B2", "medium": "#E69F00", "few": "#D55E00"}
LAYOUT = dict(template="simple_white", font=dict(size=14), margin=dict(l=60, r=20, t=50, b=50))


def per_class_accuracy_bar(run, epoch: int = -1) -> go.Figure:
    """Per-class test accuracy at an evaluated epoch (default the last), classes ordered by training count,
    bars coloured by many/medium/few, training counts on a secondary log axis."""
    counts = np.asarray(run.per_class["class_counts"])
    acc = np.asarray(run.per_class["acc"])[epoch]
    order = np.argsort(-counts, kind="stable")
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

    s = run.summary()
    return pd.DataFrame([{"epoch": int(s["epoch"]) + 1, "overall": s["acc"], "many": s["acc_many"],
                          "medium": s["acc_medium"], "few": s["acc_few"]}]).round(4)
