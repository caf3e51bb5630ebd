"""Pure maths of the five seed methods (GLAG, GCL, ALA, GALA, GHM-CWAP: papers 000-004).

Tensors in, tensors out; randomness (GCL's noise) is passed in. Every function keeps the dtype and
device of its first tensor argument; per-class constants given as tensors are moved there.
Shapes: ``B`` batch, ``C`` classes, ``N`` GHM-CWAP unit regions.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as nnf

__all__ = [
    "graloss_logits", "head_distillation",
    "gcl_delta_hat", "gcl_logits", "detached_focal_mean",
    "ala_quantity_factor", "ala_difficulty_factor", "ala_adjust",
    "gala_logits", "gala_grad_abs", "gala_increment",
    "GHM_CWAP_OPTIONS", "check_ghm_cwap_option", "ghm_cwap_bin_index", "ghm_cwap_count_increment",
    "ghm_cwap_new_widths", "ghm_cwap_class_sum", "ghm_cwap_bin_weights", "ghm_cwap_sample_weight",
    "ghm_cwap_margins",
]


def _like(t: Tensor, like: Tensor) -> Tensor:
    return t.to(device=like.device, dtype=like.dtype)


# ----------------------------------------------------------------------------- 1. GLAG
def graloss_logits(logits: Tensor, prior: Tensor, alpha: float) -> Tensor:
    """GraLoss training logits ``z + alpha(T) * log(pi)`` on all columns (GLAG Eq. 2-3).

    logits (B, C), prior ``pi_c = n_c / sum n`` (C,), alpha from ``schedules.glag_alpha``.
    """
    return logits + alpha * torch.log(_like(prior, logits))[None, :]


def head_distillation(student_logits: Tensor, teacher_logits: Tensor, head_mask: Tensor) -> Tensor:
    """GLAG stage-two KD: ``KL(softmax(teacher) || softmax(student))`` averaged over head rows (Eq. 11).

    Temperature 1 (LIB; GLAG Eq. 11 gives none). student/teacher logits (B, C); head_mask (B,) bool, True for
    the real head-class samples. The teacher (frozen stage-one classifier) is detached. Returns the
    mean over the rows in ``head_mask``, 0 when there are none (no host sync).
    """
    log_q = torch.log_softmax(student_logits, dim=1)
    log_p = torch.log_softmax(teacher_logits.detach().to(student_logits.dtype), dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    mask = head_mask.to(device=kl.device, dtype=kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------- 2. GCL
def gcl_delta_hat(class_counts: Tensor) -> Tensor:
    """GCL cloud sizes ``delta_c / max(delta)``, ``delta_c = log n_max - log n_c`` (GCL Eq. 9).

    class_counts (C,) float. Balanced data (max delta = 0) gives all zeros (LIB guard).
    """
    n = class_counts.to(torch.float64) if not class_counts.is_floating_point() else class_counts
    delta = torch.log(n.max()) - torch.log(n)
    dmax = delta.max()
    return delta / torch.where(dmax > 0, dmax, torch.ones_like(dmax))


def gcl_logits(cosine: Tensor, labels: Tensor, noise: Tensor, delta_hat: Tensor,
               noise_mul: float = 0.5, m: float = 0.0) -> Tensor:
    """GCL clouded cosine (GCL Eq. 11) ``cos - noise_mul * |clamp(eps, -1, 1)| * delta_hat - m * onehot(y)`` (B, C).

    Official ``Keke921/GCLLoss`` behaviour: ``noise`` (B, C) is the raw N(0, std 1/3)
    draw, one per element; ``noise_mul`` 0.5 (CIFAR code) and the target margin ``m`` (0.1 in stage
    two) are code additions. The result is not yet multiplied by the scale ``s``.
    """
    eps = noise.to(cosine.dtype).clamp(-1.0, 1.0).abs()
    onehot = nnf.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
    return cosine - noise_mul * eps * _like(delta_hat, cosine)[None, :] - m * onehot


def detached_focal_mean(per_sample_loss: Tensor, gamma: float) -> Tensor:
    """``mean_i((1 - exp(-l_i))**gamma * l_i)`` with the focal factor detached (LDAM/GCL code focal_loss)."""
    factor = (1.0 - torch.exp(-per_sample_loss.detach())) ** gamma
    return (factor * per_sample_loss).mean()


# ----------------------------------------------------------------------------- 3. ALA
def ala_quantity_factor(class_counts: Tensor, qf: Literal["paper", "code"] = "paper") -> Tensor:
    """ALA quantity factor (C,): paper ``1/log(n_c/n_min + 1)`` (ALA Eq. 7), code ``log 2/log(n_c/n_min + 1)``.

    "code" is the third-party OpenLT form (tail = 1); the paper form is the default.
    """
    if qf not in ("paper", "code"):
        raise ValueError(f"ala_quantity_factor: qf must be 'paper' or 'code', got {qf!r}")
    n = class_counts.to(torch.float64) if not class_counts.is_floating_point() else class_counts
    q = 1.0 / torch.log(n / n.min() + 1.0)
    return q * math.log(2.0) if qf == "code" else q


def ala_difficulty_factor(cosine: Tensor, labels: Tensor) -> Tensor:
    """ALA difficulty factor ``DF_i = (1 - cos_{i,y_i}) / 2`` (B,), detached (ALA Eq. 6)."""
    return ((1.0 - cosine.detach().gather(1, labels[:, None]).squeeze(1)) / 2.0)


def ala_adjust(cosine: Tensor, labels: Tensor, quantity_factor: Tensor) -> Tensor:
    """ALA adjusted cosine (B, C): target ``cos_y - DF_i * QF_y``, other columns unchanged (ALA Eq. 4 and 8).

    quantity_factor (C,) from :func:`ala_quantity_factor`. Multiply by ``s`` afterwards.
    """
    shift = ala_difficulty_factor(cosine, labels) * _like(quantity_factor, cosine)[labels]
    onehot = nnf.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
    return cosine - shift[:, None] * onehot


# ----------------------------------------------------------------------------- 4. GALA
def gala_logits(logits: Tensor, labels: Tensor, theta: Tensor, phi: Tensor, lambda1: float = 1.0,
                lambda2: float = 1.0, variant: Literal["code", "paper"] = "code", eps: float = 1e-3) -> Tensor:
    """GALA adjusted training logits F (B, C) from accumulated gradients (GALA Eq. 6).

    "code" (official): ``F = z + lambda1*log(theta + eps)[None, :] - lambda2*log(phi_y + eps)[:, None]``
    on all columns. "paper" (Eq. 6): only non-target columns get ``lambda1*log(theta_j + eps) -
    lambda2*log(phi_y + eps)``, the target stays ``z_y`` (lambda1 = lambda2 = 1 is the paper; the
    lambdas and the ``eps`` guard come from the code and are applied to both variants).
    theta (C,) accumulated positive gradient per classifier, phi (C,) accumulated negative gradient
    per sample class.
    """
    if variant not in ("code", "paper"):
        raise ValueError(f"gala_logits: variant must be 'code' or 'paper', got {variant!r}")
    log_theta = torch.log(_like(theta, logits) + eps)
    log_phi_y = torch.log(_like(phi, logits) + eps)[labels]
    adj = lambda1 * log_theta[None, :] - lambda2 * log_phi_y[:, None]
    if variant == "paper":
        adj = adj * (1.0 - nnf.one_hot(labels, logits.shape[1]).to(logits.dtype))
    return logits + adj


def gala_grad_abs(adjusted_logits: Tensor, labels: Tensor) -> Tensor:
    """``|dL/dz|`` (B, C) of the batch-mean CE on the adjusted logits: ``|softmax(F) - onehot| / B``, detached."""
    f = adjusted_logits.detach()
    p = torch.softmax(f, dim=1)
    onehot = nnf.one_hot(labels, f.shape[1]).to(p.dtype)
    return (p - onehot).abs() / f.shape[0]


def gala_increment(grad_abs: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Per-batch increment G (C, C) of GALA's A: ``G[j, k] = sum_{i: y_i = k} |dL/dz_ij|`` (official GALA code).

    Row j = classifier, column k = sample class.
    """
    g = grad_abs.new_zeros(num_classes, num_classes)
    return g.index_add_(1, labels, grad_abs.t())


# ----------------------------------------------------------------------------- 5. GHM-CWAP
# No official code: the rules below are our reading of the paper (marked "ours"); docs/ghm_cwap.md.
GHM_CWAP_OPTIONS = {"weight_norm": ("bins", "none"), "empty_bin": ("unit", "density"),
                    "reduction": ("weighted", "mean")}


def check_ghm_cwap_option(name: str, value: object, who: str = "ghm_cwap") -> None:
    """Raise a ValueError naming option ``name`` and its allowed values unless ``value`` is one of them."""
    allowed = GHM_CWAP_OPTIONS[name]
    if value not in allowed:
        raise ValueError(f"{who}: {name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")


def ghm_cwap_bin_index(g: Tensor, labels: Tensor, widths: Tensor) -> Tensor:
    """Bin of each sample (B,) long: number of interior edges ``cumsum(d_y)[:-1]`` that are <= g.

    g (B,) gradient norms in [0, 1]; widths (C, N) per-class unit-region widths (rows sum to 1).
    g = 1 falls in the last bin.
    """
    edges = torch.cumsum(_like(widths, g), dim=1)[:, :-1]
    idx = (edges[labels] <= g[:, None]).sum(dim=1)
    return idx.clamp(max=widths.shape[1] - 1)


def ghm_cwap_count_increment(g: Tensor, labels: Tensor, widths: Tensor) -> Tensor:
    """Histogram increment (C, N) in ``widths``' dtype: each sample adds ``1/(N*d_{y,i})`` to its bin (Alg. 1)."""
    num_bins = widths.shape[1]
    idx = ghm_cwap_bin_index(g, labels, widths)
    inc = torch.zeros_like(widths)
    return inc.index_put_((labels, idx), 1.0 / (num_bins * widths[labels, idx]), accumulate=True)


def ghm_cwap_new_widths(counts: Tensor) -> Tensor:
    """Next epoch's widths (C, N): ``d ∝ 1/log(e + v)`` per class, normalised to sum 1 (AURA, Alg. 1).

    The paper's ``1/log v`` is undefined for v <= 1; ``+e`` is our guard (an empty bin gets weight 1).
    """
    w = 1.0 / torch.log(math.e + counts)
    return w / w.sum(dim=1, keepdim=True)


def ghm_cwap_class_sum(frozen_counts: Tensor, alpha: float = 0.9) -> Tensor:
    """Effective sample size ``S_c = sum_i vbar_{c,i}**alpha`` over non-empty bins (C,) (Sec. 3.2).

    0 for a class with no sample in the frozen epoch (an absent class; neutral in the default rules).
    """
    v = frozen_counts
    return torch.where(v > 0, v.clamp(min=0) ** alpha, torch.zeros_like(v)).sum(dim=1)


def ghm_cwap_bin_weights(frozen_widths: Tensor, frozen_counts: Tensor, alpha: float = 0.9,
                         weight_norm: Literal["bins", "none"] = "bins",
                         empty_bin: Literal["unit", "density"] = "unit") -> Tensor:
    """Weight ``W = S_c / vbar_{c,i}**alpha`` (Eq. 1) a sample gets in each bin of frozen histogram rows (R, N).

    ``weight_norm="bins"`` (ours, the GHM-C convention) divides by the number of non-empty bins of the
    row; "none" is Eq. 1 literally. ``empty_bin="unit"`` (ours): a bin that was empty gets W = 1, so a
    class absent from the frozen epoch is neutral. ``"density"`` (our first rule, kept as an option):
    an empty bin counts as ``vbar = 1/(N*dbar)`` and S is clamped at 1e-12. Result in the counts' dtype.
    """
    check_ghm_cwap_option("weight_norm", weight_norm, "ghm_cwap_bin_weights")
    check_ghm_cwap_option("empty_bin", empty_bin, "ghm_cwap_bin_weights")
    d, v = _like(frozen_widths, frozen_counts), frozen_counts
    full = v > 0
    s = ghm_cwap_class_sum(v, alpha)
    if empty_bin == "density":
        v, s = torch.where(full, v, 1.0 / (v.shape[1] * d)), s.clamp(min=1e-12)
    else:
        v = torch.where(full, v, torch.ones_like(v))  # placeholder: these bins get W = 1 below
    w = s[:, None] / v ** alpha
    if weight_norm == "bins":
        w = w / full.sum(dim=1, keepdim=True).clamp(min=1).to(w.dtype)
    return torch.where(full, w, torch.ones_like(w)) if empty_bin == "unit" else w


def ghm_cwap_sample_weight(g: Tensor, labels: Tensor, frozen_widths: Tensor, frozen_counts: Tensor,
                           alpha: float = 0.9, weight_norm: Literal["bins", "none"] = "bins",
                           empty_bin: Literal["unit", "density"] = "unit") -> Tensor:
    """Per-sample weight (B,): :func:`ghm_cwap_bin_weights` of the sample's class at its bin by the frozen widths.

    Returned in g's dtype, no gradient.
    """
    d, v = _like(frozen_widths, g), _like(frozen_counts, g)
    idx = ghm_cwap_bin_index(g, labels, d)
    w = ghm_cwap_bin_weights(d[labels], v[labels], alpha, weight_norm, empty_bin)
    return w.gather(1, idx[:, None]).squeeze(1).detach()


def ghm_cwap_margins(class_sum: Tensor, gamma: float = 0.8, rows: Tensor | None = None) -> Tensor:
    """Margin matrix ``M[m, n] = gamma * log(min(1, S_n / S_m))`` (GHM-CWAP Eq. 2, <= 0).

    Row m = sample class, column n = logit; the training logits are ``z + M[y, :]``. class_sum (C,).
    A class with ``S = 0`` (absent from the frozen epoch) is neutral: no margin in its row or column.
    With ``rows`` (R,) long only those rows are built (R, C), e.g. ``rows=labels`` gives ``M[y, :]``
    without the (C, C) matrix.
    """
    present = class_sum > 0
    log_s = torch.log(torch.where(present, class_sum, torch.ones_like(class_sum)))
    pm = present if rows is None else present[rows]
    log_m = log_s[:, None] if rows is None else log_s[rows][:, None]
    m = gamma * (log_s[None, :] - log_m).clamp(max=0.0)
    return torch.where(pm[:, None] & present[None, :], m, torch.zeros_like(m))
