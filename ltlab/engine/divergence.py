"""Stopping a run whose training loss diverged (issue 25): a NaN/inf loss stops at once (the loop's
``first_bad_step``); a finite loss far above any loss a working model has stops too, before the epoch's
checkpoint is written, so ``checkpoint.pt`` keeps the last good epoch.

Criterion: the epoch's mean training loss exceeds ``DIVERGED_FACTOR`` x max(log C, 1). log C is the
cross-entropy of a uniform guess over C classes, the loss every method starts near (margin and scale
losses start a few times above it; losses summed over classes, e.g. the sigmoid forms, at most about
0.7 C, which stays far below 1000 log C for every C). A loss 1000 times the chance-level one means the
weights have blown up (``lr=100`` reaches 1e9 in one epoch); no later epoch brings such a run back, so
one epoch above it is enough.
"""
from __future__ import annotations

import math
from pathlib import Path

DIVERGED_FACTOR = 1000.0


def divergence_threshold(num_classes: int) -> float:
    """The training loss above which a run counts as diverged: ``DIVERGED_FACTOR * max(log C, 1)``."""
    return DIVERGED_FACTOR * max(math.log(max(int(num_classes), 2)), 1.0)


def check_divergence(epoch: int, train_loss: float, num_classes: int, lr: float, checkpoint: str | Path,
                     saved: str) -> None:
    """Raise FloatingPointError naming the epoch, the loss and the checkpoint kept when epoch ``epoch``'s mean
    training loss is NaN/inf or above :func:`divergence_threshold` (call it before the epoch's checkpoint)."""
    limit = divergence_threshold(num_classes)
    if math.isfinite(train_loss) and train_loss <= limit:
        return
    raise FloatingPointError(
        f"training diverged at epoch {epoch}: the mean training loss is {train_loss:.4g}, above {limit:.4g} "
        f"({DIVERGED_FACTOR:g} x log {num_classes}, the loss of a uniform guess) at lr={lr:g}; the last good "
        f"checkpoint is {checkpoint} ({saved}). Lower lr (or use warmup_epochs); resume=True continues from that "
        "checkpoint with the same parameters.")
