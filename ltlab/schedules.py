"""Values that move during training, as pure functions of the epoch.

Everything here is a plain function of ``epoch`` (0-based), ``num_epochs`` and class counts, so a
notebook can plot a schedule without training, and losses receive the values through
``set_epoch(epoch, num_epochs)``.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np


def glag_alpha(epoch: float, num_epochs: float, s: float = 1.0, c: float = 2.0,
               form: Literal["convex", "linear", "concave"] = "convex") -> float:
    """GLAG gradual balance factor ``alpha(T) = s * (c ** (T / Tmax) - 1)``.

    Paper 000 (GLAG), Eq. 4. ``T`` is the 0-based epoch and ``Tmax`` the number of epochs of the
    stage (LIB decision; the paper leaves it open), so ``alpha(0) = 0``. Defined for
    ``0 <= epoch <= num_epochs``; ``c = 2`` (convex, paper Tab. 5) and ``s = 1`` (CIFAR) are defaults.
    ``form``: the ablation shapes of the paper's Fig. 3 / Tab. 5, which it draws but does not write
    down; LIB reading, all from 0 to ``s (c - 1)`` at ``Tmax``: "convex" (Eq. 4), "linear"
    ``s (c - 1) T / Tmax`` and "concave" ``s (c - c ** (1 - T / Tmax))`` (the convex curve mirrored).
    """
    if num_epochs <= 0:
        raise ValueError(f"glag_alpha: num_epochs must be > 0, got {num_epochs}")
    if not 0 <= epoch <= num_epochs:
        raise ValueError(f"glag_alpha: epoch must be in [0, num_epochs={num_epochs}], got {epoch}")
    t = epoch / num_epochs
    if form == "convex":
        return float(s * (c ** t - 1.0))
    if form == "linear":
        return float(s * (c - 1.0) * t)
    if form == "concave":
        return float(s * (c - c ** (1.0 - t)))
    raise ValueError(f"glag_alpha: form must be 'convex', 'linear' or 'concave', got {form!r}")


def glag_beta_update(beta, acc, prev_acc, step: float = 0.05) -> np.ndarray:
    """GLAG class-wise calibration strength update (paper 000, Sec. 3.3; LIB rule).

    ``beta_c <- clip(beta_c + step * sign(acc_c - prev_acc_c), 0, 1)``, no change on ties. Arrays are
    per tail class (same shape).
    """
    beta = np.asarray(beta, dtype=np.float64)
    delta = np.sign(np.asarray(acc, dtype=np.float64) - np.asarray(prev_acc, dtype=np.float64))
    return np.clip(beta + step * delta, 0.0, 1.0)


GLAG_TAIL_MAX = 100  # LIB: GLAG's tail = Medium + Few, the classes with n_c <= 100


def glag_tail_classes(class_counts: Sequence[int], tail_max: int = GLAG_TAIL_MAX) -> np.ndarray:
    """Indices (ascending) of the classes GLAG calibrates and whose beta moves: ``0 < n_c <= tail_max``
    (LIB; the paper names no threshold)."""
    n = np.asarray(class_counts)
    return np.flatnonzero((n > 0) & (n <= tail_max)).astype(np.int64)


def effective_number_weights(class_counts: Sequence[int], beta: float = 0.9999) -> np.ndarray:
    """Class-balanced weights ``w_c = (1 - beta) / (1 - beta ** n_c)`` rescaled to sum to ``C``.

    Cui et al. 2019 (Class-Balanced Loss), Eq. 3-4. ``beta = 0`` gives
    all ones (the DRW "off" state of LDAM-DRW).
    """
    n = np.asarray(class_counts, dtype=np.float64)
    if np.any(n <= 0):
        raise ValueError(f"effective_number_weights: every class count must be > 0, got {n.tolist()}")
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    return w / w.sum() * len(n)


def drw_active(epoch: int, drw_start: int | None) -> bool:
    """Deferred re-weighting switch (Cao et al. 2019, LDAM-DRW): on for 0-based ``epoch >= drw_start``."""
    return drw_start is not None and epoch >= drw_start


def drw_weights(class_counts: Sequence[int], epoch: int, drw_start: int | None,
                beta: float = 0.9999) -> np.ndarray:
    """Per-class CE weights of DRW at ``epoch``: all ones before ``drw_start``, effective-number after."""
    if drw_active(epoch, drw_start):
        return effective_number_weights(class_counts, beta)
    return np.ones(len(class_counts))


LRSchedule = Literal["step", "cosine", "constant", "balms_cosine"]


def lr_at(epoch: int, base_lr: float, num_epochs: int, *, warmup_epochs: int = 0,
          schedule: LRSchedule = "step", milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    """Learning rate for 0-based ``epoch``, set once at the start of the epoch.

    Warm-up follows LDAM-DRW: ``lr * (epoch + 1) / warmup_epochs`` for the first ``warmup_epochs``
    epochs. ``step``: multiply by ``gamma`` per milestone passed (0-based epochs ``>= m``). ``cosine``: half cosine
    from ``base_lr`` after warm-up down to 0 at the last epoch. ``balms_cosine``: the warm-up + cosine
    of the BALMS code that the GALA code reuses (see :func:`balms_cosine_lr`).
    """
    if schedule == "balms_cosine":
        return balms_cosine_lr(epoch, base_lr, num_epochs, warmup_epochs)
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return base_lr * (epoch + 1) / warmup_epochs
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * gamma ** sum(epoch >= m for m in milestones)
    if schedule == "cosine":
        span = max(num_epochs - warmup_epochs - 1, 1)
        t = min(max(epoch - warmup_epochs, 0), span)
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * t / span))
    raise ValueError(f"lr schedule must be one of {', '.join(LRSchedule.__args__)}, got {schedule!r}")


def balms_cosine_lr(epoch: int, base_lr: float, num_epochs: int, warmup_epochs: int) -> float:
    """``CosineAnnealingLRWarmup`` of the BALMS code, reused by the GALA code (lt-peoject ``utils.py``).

    The scheduler is stepped before each epoch, so the 1-based epoch ``e = epoch + 1`` with
    ``W = warmup_epochs`` gives ``lr/2 + (lr/2) (e - 1) / (W - 1)`` for ``e < W`` (warm-up from half the
    peak: the configs' ``base_lr`` 0.05 -> ``warmup_lr`` 0.1), then ``(lr/2) (1 + cos(pi (e - W) /
    (num_epochs - W)))``: the peak at 0-based epoch ``W - 1`` and 0 in the last epoch. ``W <= 1`` is a
    plain cosine from epoch 0 (the code asserts ``W >= 2``).
    """
    e, w = epoch + 1, max(warmup_epochs, 1)
    if e < w:
        return base_lr * (0.5 + 0.5 * (e - 1) / (w - 1))
    span = max(num_epochs - w, 1)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(e - w, span) / span))
