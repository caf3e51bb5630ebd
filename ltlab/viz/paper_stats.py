"""The statistics behind the paper-figure verdicts, each as its paper defines the claim (issue 27).

Pure numpy on arrays a run directory holds, so each is tested against a direct computation:

- :func:`df_before_drw`: ALA Fig. 4 (ALA 002, Sec. 3.2): the difficulty factor DF of the few group stays above
  the many group's. Deferred re-weighting changes the loss weights the DF is measured under, so the claim is
  judged over the epochs *before* DRW switches on.
- :func:`g_group_shares`: GHM-CWAP Fig. 2 (paper 004, Sec. 3.1): the overall distribution of the gradient norm
  g = 1 - p_y is dominated by the head, the tail submerged in it: each group's share of the whole
  distribution and of each g bin.
- :func:`class_spread`: GCL Fig. 1 (GCL 001, Sec. 3.1): tail classes occupy a smaller region of feature space
  than head classes: per-class spread divided by the global spread.
- :func:`seed_summary`: mean and spread over seeds, for verdicts that rest on a small difference.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.longtail import shot_split

GROUPS = ("many", "medium", "few")


def _groups(class_counts: Sequence[int]) -> dict[str, np.ndarray]:
    return shot_split(np.asarray(class_counts))


def group_series(values: np.ndarray, class_counts: Sequence[int]) -> dict[str, np.ndarray]:
    """Mean over each group's classes of a per-class series ``values`` (E, C) -> ``{group: (E,)}`` (NaN for an
    empty group or an all-NaN row)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != len(class_counts):
        raise ValueError(f"values must be (epochs, C={len(class_counts)}), got shape {v.shape}")
    out = {}
    for g, idx in _groups(class_counts).items():
        part = v[:, idx]
        with np.errstate(invalid="ignore"):
            out[g] = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in part]) \
                if len(idx) else np.full(len(v), np.nan)
    return out


def df_before_drw(df: np.ndarray, class_counts: Sequence[int], drw_start: int | None,
                  epochs: Sequence[int] | None = None) -> dict:
    """ALA Fig. 4 judged before DRW: the group means of DF (E, C) per recorded epoch and the verdict.

    ``epochs`` (E,) are the 0-based epochs of the rows (default 0..E-1); ``drw_start`` the 0-based epoch at
    which DRW switches on (None: never, every row counts). Returns ``many``, ``few`` (E,), ``before`` (E,)
    bool, ``few_above_many`` (bool: few > many at every epoch before DRW; False with no such epoch) and
    ``share`` (fraction of those epochs with few > many, NaN with none).
    """
    means = group_series(df, class_counts)
    ep = np.arange(len(means["many"])) if epochs is None else np.asarray(epochs)
    if len(ep) != len(means["many"]):
        raise ValueError(f"epochs has {len(ep)} entries for {len(means['many'])} rows of df")
    before = np.ones(len(ep), bool) if drw_start is None else ep < drw_start
    above = means["few"][before] > means["many"][before]
    return {"many": means["many"], "few": means["few"], "before": before,
            "few_above_many": bool(above.size and above.all()),
            "share": float(above.mean()) if above.size else float("nan")}


def g_group_shares(hist: np.ndarray, class_counts: Sequence[int]) -> dict:
    """GHM-CWAP Fig. 2: who holds the distribution of g. ``hist`` (C, K): samples of class c in g bin k (common
    bins). Returns ``total`` ``{group: share of all samples}``, ``per_bin`` ``{group: (K,) share of each bin}``
    (NaN for an empty bin) and ``samples`` (K,) per bin."""
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != len(class_counts):
        raise ValueError(f"hist must be (C={len(class_counts)}, bins), got shape {h.shape}")
    per_bin = h.sum(0)
    total = max(per_bin.sum(), 1e-300)
    out_total, out_bin = {}, {}
    for g, idx in _groups(class_counts).items():
        part = h[idx].sum(0)
        out_total[g] = float(part.sum() / total) if per_bin.sum() > 0 else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            out_bin[g] = np.where(per_bin > 0, part / np.maximum(per_bin, 1e-300), np.nan)
    return {"total": out_total, "per_bin": out_bin, "samples": per_bin}


def g_histogram(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                edges: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> np.ndarray:
    """GHM-CWAP's gradient norm ``g = 1 - p_y`` (softmax of ``logits`` (N, C)) counted per class and g bin:
    (C, K) for the K bins of ``edges`` (the last bin closed at 1), the input :func:`g_group_shares` takes."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"logits must be (N, C) and labels (N,), got {z.shape} and {y.shape}")
    p = np.exp(z - z.max(1, keepdims=True))
    g = 1.0 - (p / p.sum(1, keepdims=True))[np.arange(len(y)), y]
    e = np.asarray(edges, dtype=np.float64)
    k = np.clip(np.searchsorted(e, g, side="right") - 1, 0, len(e) - 2)
    out = np.zeros((num_classes, len(e) - 1))
    np.add.at(out, (y, k), 1.0)
    return out


def class_spread(features: np.ndarray, labels: np.ndarray, num_classes: int, normalize: bool = False) -> np.ndarray:
    """Per-class spread over the global spread (C,): ``sqrt(mean_{i in c} ||f_i - mu_c||^2)`` divided by
    ``sqrt(mean_i ||f_i - mu||^2)`` (mu_c the class mean, mu the global mean); ``normalize`` L2-normalises the
    features first. NaN for a class without samples; 0 for a class of one sample."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if f.ndim != 2 or y.shape != (len(f),):
        raise ValueError(f"features must be (N, D) and labels (N,), got {f.shape} and {y.shape}")
    if normalize:
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    glob = np.sqrt(np.mean(np.sum((f - f.mean(0)) ** 2, axis=1)))
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        fc = f[y == c]
        if len(fc):
            out[c] = np.sqrt(np.mean(np.sum((fc - fc.mean(0)) ** 2, axis=1))) / max(glob, 1e-300)
    return out


def rarest_over_head(per_class: np.ndarray, class_counts: Sequence[int]) -> float:
    """``per_class[rarest] / per_class[largest]`` by training count (GCL Fig. 1's tail-vs-head comparison)."""
    counts = np.asarray(class_counts)
    return float(per_class[int(np.argmin(counts))] / per_class[int(np.argmax(counts))])


def seed_summary(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± std (n seeds)`` of a verdict's number over seeds (sample std, ddof=1; a single seed says so)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 1:
        return f"{v[0]:.{digits}f} (1 seed)"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f} ({len(v)} seeds)"
