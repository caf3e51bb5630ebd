"""Long-tailed subsets: class counts, the standard CIFAR-LT selection, many/medium/few split.

Reference: Cao et al. 2019 (LDAM-DRW) ``imbalance_cifar.py``; classifier-balancing's ``shot_acc``.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np


def longtail_counts(n_max: int, num_classes: int, imbalance_factor: float,
                    profile: Literal["exp", "step"] = "exp") -> list[int]:
    """Per-class training counts of a long-tailed split.

    ``exp``: ``int(n_max * (1 / IF) ** (c / (C - 1)))`` for c = 0..C-1 (the exact power form with
    truncation; the ``exp(-log(IF) c / (C-1))`` form truncates one too low). ``step``: ``n_max`` for
    the first half of the classes, ``int(n_max / IF)`` for the rest.
    """
    if imbalance_factor is None or not imbalance_factor >= 1:
        raise ValueError(f"imbalance_factor must be a number >= 1 (1 = balanced), got {imbalance_factor}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if profile == "exp":
        return [int(n_max * (1.0 / imbalance_factor) ** (c / (num_classes - 1))) for c in range(num_classes)]
    if profile == "step":
        half = num_classes // 2
        return [n_max] * half + [int(n_max / imbalance_factor)] * (num_classes - half)
    raise ValueError(f"profile must be 'exp' or 'step', got {profile!r}")


def longtail_indices(targets: Sequence[int], counts: Sequence[int], seed: int = 0) -> np.ndarray:
    """Indices of the standard CIFAR-LT selection, class 0 first.

    ``np.random.seed(seed)``; for each class c in order, shuffle the positions of class c with
    ``np.random.shuffle`` and keep the first ``counts[c]``. A private ``RandomState(seed)`` draws the
    same permutations as the reference code's global seeding, without touching numpy's global RNG.
    """
    targets = np.asarray(targets, dtype=np.int64)
    rs = np.random.RandomState(seed)
    out = []
    for c, n_c in enumerate(counts):
        idx = np.where(targets == c)[0]
        if n_c > len(idx):
            raise ValueError(f"class {c} has only {len(idx)} images but {n_c} were requested")
        rs.shuffle(idx)
        out.append(idx[:n_c])
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def shot_split(class_counts: Sequence[int], many: int = 100, few: int = 20) -> dict[str, np.ndarray]:
    """Class indices per group: "many" (n > many), "medium" (few <= n <= many), "few" (n < few)."""
    n = np.asarray(class_counts)
    return {
        "many": np.where(n > many)[0],
        "medium": np.where((n >= few) & (n <= many))[0],
        "few": np.where(n < few)[0],
    }
