"""The maths of the post-hoc adjustments, on logits and classifier weights (no retraining).

Each function takes a numpy array or a torch tensor and returns the same type, dtype and device
(integer input gives float64). They are cheap enough to run on a whole saved test set behind a slider.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _as_float(a, who: str, ndim: int) -> np.ndarray | torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a if a.is_floating_point() else a.to(torch.float64)
    else:
        t = np.asarray(a)
        t = t if np.issubdtype(t.dtype, np.floating) else t.astype(np.float64)
    if t.ndim != ndim:
        raise ValueError(f"{who}: expected a {ndim}-d array, got shape {tuple(t.shape)}")
    return t


def logit_adjust(logits: Array, class_counts: Sequence[int], tau: float = 1.0) -> Array:
    """Post-hoc logit adjustment ``z - tau * log(pi)``, ``pi_c = n_c / sum n`` (Menon et al. 2021, Eq. 9).

    logits (M, C); class_counts (C,) training counts. tau = 1 is the Bayes-optimal balanced rule
    (paper default); tau = 0 returns the logits unchanged.
    """
    z = _as_float(logits, "logit_adjust", 2)
    n = np.asarray(class_counts.detach().cpu() if isinstance(class_counts, torch.Tensor) else class_counts,
                   dtype=np.float64).reshape(-1)
    if n.shape[0] != z.shape[1]:
        raise ValueError(f"logit_adjust: {n.shape[0]} class counts for logits with {z.shape[1]} columns")
    if np.any(n <= 0):
        raise ValueError(f"logit_adjust: class counts must be > 0, got {n.tolist()}")
    log_prior = np.log(n / n.sum())
    if isinstance(z, torch.Tensor):
        return z - tau * torch.as_tensor(log_prior, dtype=z.dtype, device=z.device)[None, :]
    return (z - tau * log_prior[None, :]).astype(z.dtype, copy=False)


def pn_rebalance(logits: Array, tau: float = 1.0) -> Array:
    """GALA prediction re-balancing ``softmax(z) / colsum(softmax(z)) ** tau`` (GALA paper 003, Sec. 3.3, Eq. 13).

    logits (M, C) of the WHOLE evaluation set at once (transductive: the column sums run over all M
    rows). Returns the re-balanced scores (M, C); predict with argmax over classes. tau = 1 is the
    official ``pow_for_logits``; tau = 0 returns plain probabilities.
    """
    z = _as_float(logits, "pn_rebalance", 2)
    if isinstance(z, torch.Tensor):
        p = torch.softmax(z, dim=1)
        return p / p.sum(dim=0, keepdim=True) ** tau
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return (p / p.sum(axis=0, keepdims=True) ** tau).astype(z.dtype, copy=False)


def tau_normalize(weight: Array, p: float) -> Array:
    """tau-normalised classifier rows ``W_c / ||W_c||_2 ** p`` (Kang et al. 2020, Decoupling, Eq. 4).

    weight (C, D), one row per class; the classifier's bias is dropped (paper and official code:
    logits ``f @ tau_normalize(W, p).T``). p = 0 is the identity, p = 1 full normalisation. Norms are
    clamped at 1e-12 so an all-zero row stays zero.
    """
    w = _as_float(weight, "tau_normalize", 2)
    if isinstance(w, torch.Tensor):
        return w / w.norm(dim=1, keepdim=True).clamp(min=1e-12) ** p
    norms = np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return (w / norms ** p).astype(w.dtype, copy=False)


def tau_norm_logits(features: Array, weight: Array, tau: float, bias: Array | None = None) -> Array:
    """Scores of the tau-normalised classifier ``f @ tau_normalize(W, tau).T (+ b)``; features (M, D), weight (C, D).

    ``bias=None`` drops the classifier's bias, as Kang et al. 2020 (Eq. 4; their ``tau_norm.py``); a bias (C,)
    is added unchanged, as BagofTricks-LT's tau-norm does (``lib/net/network.py`` ``load_model``: only
    ``classifier.weight`` is divided by its row norms ** tau, ``classifier.bias`` is loaded as trained).
    Returns (M, C) in the type of ``features``.
    """
    x = _as_float(features, "tau_norm_logits", 2)
    if isinstance(x, torch.Tensor):
        w = torch.as_tensor(weight, dtype=x.dtype, device=x.device)
        z = x @ tau_normalize(w, tau).T
        return z if bias is None else z + torch.as_tensor(bias, dtype=x.dtype, device=x.device)[None, :]
    w = np.asarray(_numpy_of(weight), dtype=x.dtype)
    z = x @ tau_normalize(w, tau).T
    return z if bias is None else z + np.asarray(_numpy_of(bias), dtype=x.dtype)[None, :]


def _numpy_of(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
