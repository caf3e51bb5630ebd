"""Pure maths of the baseline losses (each docstring cites its paper and official code).

Tensors in, tensors out: no module state, no randomness (masks are passed in). Per-class constants
(weights, margins, smoothing) are cast to the dtype and device of the inputs, so float64 in gives
float64 out. Shapes: ``logits``/``cosine`` (B, C), ``labels`` (B,) int64, per-class tensors (C,).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as nnf

__all__ = [
    "cross_entropy", "softmax_focal_loss", "sigmoid_focal_loss", "class_balanced_loss",
    "logit_adjusted_loss", "balanced_softmax_loss", "ldam_margins", "ldam_adjust", "ldam_loss",
    "las_smoothing", "label_aware_smoothing_loss", "eql_tail_mask", "eql_sigmoid_loss",
    "eql_softmax_loss", "seesaw_loss", "ghmc_histogram", "ghmc_bin_weights", "ghmc_loss",
]


def _like(t: Tensor, ref: Tensor) -> Tensor:
    return t.to(device=ref.device, dtype=ref.dtype)


def _onehot(labels: Tensor, like: Tensor) -> Tensor:
    return nnf.one_hot(labels, like.shape[1]).to(like.dtype)


def cross_entropy(logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """Batch-mean softmax CE; with ``weight`` (C,), PyTorch's weighted mean ÷ sum_i w_{y_i}."""
    return nnf.cross_entropy(logits, labels, weight=weight)


# ---------------------------------------------------------------------------------- focal (2.2)
def softmax_focal_loss(logits: Tensor, labels: Tensor, gamma: float = 1.0,
                       weight: Tensor | None = None) -> Tensor:
    """LDAM-DRW softmax focal loss ``mean_i (1 - p_i)^gamma * l_i`` (official ``kaidic/LDAM-DRW``).

    ``l_i = w_{y_i} CE_i`` (``w`` = 1 without ``weight``) and ``p_i = exp(-l_i)``: with a weight
    ``p_i`` is not the model probability, and the reduction is a plain batch mean (code quirks kept).
    The factor is not detached.
    """
    ce = nnf.cross_entropy(logits, labels, weight=weight, reduction="none")
    if gamma == 0:
        return ce.mean()
    return ((1.0 - torch.exp(-ce)) ** gamma * ce).mean()


def sigmoid_focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """RetinaNet sigmoid focal loss (Lin et al. 2017, Eq. 5), summed over (B, C) and divided by B.

    Per element ``alpha_t (1 - p_t)^gamma BCE(z, y)`` with one-hot ``y`` (torchvision
    ``sigmoid_focal_loss`` semantics); ``alpha < 0`` disables ``alpha_t``.
    """
    y = _onehot(labels, logits)
    p = torch.sigmoid(logits)
    bce = nnf.binary_cross_entropy_with_logits(logits, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss.sum() / logits.shape[0]


# ------------------------------------------------------------------------ class-balanced (2.3)
def class_balanced_loss(logits: Tensor, labels: Tensor, class_weight: Tensor,
                        loss_type: Literal["softmax", "sigmoid", "focal"] = "softmax",
                        gamma: float = 1.0) -> Tensor:
    """Cui et al. 2019 class-balanced loss (Eq. 5-7) with the TF code's reductions.

    ``w = class_weight[y]`` (B,): softmax ``mean_i w_i CE_i``; sigmoid ``sum_ij w_i BCE_ij / B``;
    focal ``sum_ij w_i (1 - p_t,ij)^gamma BCE_ij / B`` with the modulator computed stably as
    ``exp(-gamma y z - gamma softplus(-z))``, no alpha, not detached.
    """
    w = _like(class_weight, logits)[labels]
    if loss_type == "softmax":
        return (w * nnf.cross_entropy(logits, labels, reduction="none")).mean()
    y = _onehot(labels, logits)
    bce = nnf.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if loss_type == "focal" and gamma != 0:
        bce = torch.exp(-gamma * y * logits - gamma * nnf.softplus(-logits)) * bce
    elif loss_type not in ("sigmoid", "focal"):
        raise ValueError(f"loss_type must be 'softmax', 'sigmoid' or 'focal', got {loss_type!r}")
    return (w[:, None] * bce).sum() / logits.shape[0]


# --------------------------------------------------------------- logit adjustment (2.5, 2.6)
def logit_adjusted_loss(logits: Tensor, labels: Tensor, prior: Tensor, tau: float = 1.0,
                        eps: float = 0.0) -> Tensor:
    """Menon et al. 2021 logit-adjusted loss (Eq. 10): ``CE(z + tau log pi, y)``.

    ``eps > 0`` gives the official code's ``log(pi^tau + eps)`` (it uses 1e-12, in float32).
    """
    pi = _like(prior, logits)
    adj = tau * torch.log(pi) if eps == 0 else torch.log(pi ** tau + eps)
    return nnf.cross_entropy(logits + adj, labels)


def balanced_softmax_loss(logits: Tensor, labels: Tensor, class_counts: Tensor) -> Tensor:
    """Ren et al. 2020 Balanced Softmax as coded: ``CE(z + log n_c, y)`` with raw counts."""
    return nnf.cross_entropy(logits + torch.log(_like(class_counts, logits)), labels)


# --------------------------------------------------------------------------------- LDAM (2.4)
def ldam_margins(class_counts: Tensor, max_m: float = 0.5) -> Tensor:
    """LDAM margins ``m_c = max_m (n_min / n_c)^(1/4)`` (Cao et al. 2019, Eq. 13; largest = max_m)."""
    n = class_counts.to(torch.float64)
    return max_m * (n.min() / n) ** 0.25


def ldam_adjust(cosine: Tensor, labels: Tensor, margins: Tensor) -> Tensor:
    """Subtract the target class margin: ``cos - m_y onehot_y`` (B, C); margins are constants."""
    return cosine - _onehot(labels, cosine) * _like(margins, cosine)[labels][:, None]


def ldam_loss(cosine: Tensor, labels: Tensor, margins: Tensor, s: float = 30.0,
              weight: Tensor | None = None) -> Tensor:
    """LDAM loss ``CE(s (cos - m_y onehot), y)``, PyTorch weighted mean with ``weight`` (DRW)."""
    return nnf.cross_entropy(s * ldam_adjust(cosine, labels, margins), labels, weight=weight)


# ------------------------------------------------------------------ label-aware smoothing (2.10)
def las_smoothing(class_counts: Tensor, shape: Literal["concave", "linear", "convex"] = "concave",
                  smooth_head: float = 0.4, smooth_tail: float = 0.1) -> Tensor:
    """MiSLAS per-class smoothing ``eps_c`` (Zhong et al. 2021), float64 (C,).

    ``r_c = (n_c - n_K) / (n_1 - n_K)``; concave ``e_K + (e_1 - e_K) sin(pi r / 2)``, linear
    ``e_K + (e_1 - e_K) r``, convex ``e_1 + (e_1 - e_K) sin(3 pi / 2 + pi r / 2)``. With all counts
    equal (undefined in the code) every class gets ``r = 1``, the head value (LIB).
    """
    n = class_counts.to(torch.float64)
    span = n.max() - n.min()
    r = (n - n.min()) / span if span > 0 else torch.ones_like(n)
    e1, ek = float(smooth_head), float(smooth_tail)
    if shape == "concave":
        return ek + (e1 - ek) * torch.sin(math.pi / 2 * r)
    if shape == "linear":
        return ek + (e1 - ek) * r
    if shape == "convex":
        return e1 + (e1 - ek) * torch.sin(1.5 * math.pi + math.pi / 2 * r)
    raise ValueError(f"shape must be 'concave', 'linear' or 'convex', got {shape!r}")


def label_aware_smoothing_loss(logits: Tensor, labels: Tensor, smoothing: Tensor) -> Tensor:
    """Batch mean of ``(1 - e_y)(-log p_y) + e_y mean_j(-log p_j)`` (mean over all C, target included)."""
    e = _like(smoothing, logits)[labels]
    logp = torch.log_softmax(logits, dim=1)
    nll = -logp.gather(1, labels[:, None]).squeeze(1)
    return ((1 - e) * nll + e * (-logp.mean(dim=1))).mean()


# ------------------------------------------------------------------------------ EQL (2.7)
def eql_tail_mask(class_counts: Tensor, lambda_: float) -> Tensor:
    """``T_lambda(f_j)``: True where the class frequency ``f_j = n_j / N`` is below ``lambda_`` (C,)."""
    n = class_counts.to(torch.float64)
    return n / n.sum() < lambda_


def eql_sigmoid_loss(logits: Tensor, labels: Tensor, tail_mask: Tensor) -> Tensor:
    """Sigmoid EQL (Tan et al. 2020, official code, E = 1): ``sum_ij w_ij BCE_ij / B``.

    ``w_ij = 1 - T_lambda(f_j) (1 - y_ij)``: negatives of rare classes are dropped.
    """
    y = _onehot(labels, logits)
    w = 1 - _like(tail_mask, logits)[None, :] * (1 - y)
    bce = nnf.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (w * bce).sum() / logits.shape[0]


def eql_softmax_loss(logits: Tensor, labels: Tensor, tail_mask: Tensor, beta_mask: Tensor) -> Tensor:
    """Softmax EQL (Tan et al. 2020, classification variant), batch mean of the rows below.

    Row i: ``logsumexp_k(z_ik + log w_ik) - z_iy`` with ``w_ik = 1 - beta_ik T_lambda(f_k)(1 - y_ik)``;
    ``beta_mask`` (B, C) is the Bernoulli(gamma) draw. Dropped columns get ``-inf`` (the target
    column is never dropped).
    """
    y = nnf.one_hot(labels, logits.shape[1]).bool()
    drop = beta_mask.to(device=logits.device).bool() & tail_mask.to(logits.device)[None, :] & ~y
    lse = torch.logsumexp(logits.masked_fill(drop, float("-inf")), dim=1)
    return (lse - logits.gather(1, labels[:, None]).squeeze(1)).mean()


# ---------------------------------------------------------------------------- Seesaw (2.8)
def seesaw_loss(logits: Tensor, labels: Tensor, cum_samples: Tensor, p: float = 0.8,
                q: float = 2.0, eps: float = 1e-2) -> Tensor:
    """Seesaw loss (Wang et al. 2021; mmdetection ``seesaw_ce_loss``), batch mean.

    ``cum_samples`` (C,) are the counts including the current batch. For j != y: mitigation
    ``(N_j / N_y)^p`` where ``N_j < N_y`` (counts clamped to >= 1), compensation
    ``(s_j / s_y)^q`` where ``s_j > s_y`` (``s`` = detached softmax, ``s_y`` clamped to >= eps);
    loss ``CE(z + log(M C) (1 - onehot), y)``.
    """
    onehot = _onehot(labels, logits)
    weights = torch.ones_like(logits)
    if p > 0:
        n = _like(cum_samples, logits).clamp(min=1)
        ratio = n[None, :] / n[labels][:, None]
        weights = weights * torch.where(ratio < 1, ratio ** p, torch.ones_like(ratio))
    if q > 0:
        scores = torch.softmax(logits.detach(), dim=1)
        ratio = scores / scores.gather(1, labels[:, None]).clamp(min=eps)
        weights = weights * torch.where(ratio > 1, ratio ** q, torch.ones_like(ratio))
    return nnf.cross_entropy(logits + weights.log() * (1 - onehot), labels)


# ----------------------------------------------------------------------------- GHM-C (2.9)
def ghmc_histogram(logits: Tensor, labels: Tensor, bins: int = 10) -> tuple[Tensor, Tensor]:
    """Gradient-norm bins of the (B, C) binary problem (Li et al. 2019; mmdet ``GHMC``).

    ``g = |sigmoid(z) - y|`` (detached); bin b holds ``edges[b] <= g < edges[b+1]`` with edges
    ``k / bins`` and the last edge raised by 1e-6. Returns (bin index (B, C) int64, counts (bins,) int64).
    """
    g = (torch.sigmoid(logits.detach()) - _onehot(labels, logits)).abs()
    edges = torch.arange(bins + 1, device=g.device, dtype=g.dtype) / bins
    edges[-1] += 1e-6
    idx = (torch.bucketize(g, edges, right=True) - 1).clamp_(0, bins - 1)
    return idx, torch.bincount(idx.reshape(-1), minlength=bins)


def ghmc_bin_weights(counts: Tensor, acc_sum: Tensor, momentum: float = 0.0) -> tuple[Tensor, Tensor]:
    """Per-bin GHM-C weights and the new ``acc_sum`` (both (bins,), ``acc_sum``'s dtype).

    ``tot = sum(counts)``. Non-empty bins: with momentum ``acc_b <- mu acc_b + (1 - mu) n_b`` and
    weight ``tot / acc_b``, else ``tot / n_b``; empty bins keep ``acc_b`` and weigh 0. All weights
    are divided by the number of non-empty bins. No bias correction (as the code).
    """
    n = counts.to(acc_sum.dtype)
    full = n > 0
    new_acc = torch.where(full, momentum * acc_sum + (1 - momentum) * n, acc_sum) if momentum > 0 else acc_sum
    denom = new_acc if momentum > 0 else n
    w = torch.where(full, n.sum() / torch.where(full, denom, torch.ones_like(denom)), torch.zeros_like(n))
    return w / full.sum().clamp(min=1), new_acc


def ghmc_loss(logits: Tensor, labels: Tensor, bin_idx: Tensor, bin_weight: Tensor) -> Tensor:
    """GHM-C loss ``sum_ij w_ij BCE_ij / (B C)`` with constant weights ``w = bin_weight[bin_idx]``."""
    y = _onehot(labels, logits)
    bce = nnf.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (_like(bin_weight, logits)[bin_idx] * bce).sum() / logits.numel()
