"""Per-class accuracy and the many/medium/few summary (classifier-balancing's ``shot_acc``: > 100, 20-100 and
< 20 training images)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .data.longtail import shot_split


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def confusion_matrix(preds, labels, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    p, y = _np(preds).astype(np.int64).ravel(), _np(labels).astype(np.int64).ravel()
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(preds, labels, num_classes: int) -> np.ndarray:
    """Accuracy of each class ``hits_c / count_c`` (C,); NaN for a class absent from ``labels``."""
    cm = confusion_matrix(preds, labels, num_classes)
    total = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.diag(cm) / np.maximum(total, 1), np.nan)


def shot_accuracy(per_class_acc, class_counts: Sequence[int], many: int = 100,
                  few: int = 20) -> dict[str, float]:
    """Unweighted mean per-class accuracy of the many / medium / few groups (NaN for an empty group).

    Groups by training count as in classifier-balancing's ``shot_acc``: > many, [few, many], < few.
    """
    acc = _np(per_class_acc).astype(np.float64)
    groups = shot_split(class_counts, many, few)
    return {k: (float(np.nanmean(acc[idx])) if len(idx) else float("nan")) for k, idx in groups.items()}


SHOT_RULES = {"many": "> 100", "medium": "20-100", "few": "< 20"}  # training images per class in each group


def empty_group_note(group: str) -> str:
    """Why a shot group has no accuracy (NaN): no class of the training split falls in it."""
    return (f"{group}: no class has {SHOT_RULES[group]} training images at this imbalance_factor / n_max, so the "
            f"group has no accuracy (shown as --)")
