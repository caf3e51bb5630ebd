"""Per-epoch loggers: callbacks ``cb(epoch, metrics_row, state)`` that :func:`ltlab.run` attaches when the
RunConfig asks for them (``tensorboard=True``), so a grid on a cluster can be watched live with
``tensorboard --logdir runs/`` without opening a notebook. They read what the loop already computed
(the metrics row, ``state.probe_records[-1]``); the training loop knows nothing about them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

# metrics.csv column -> TensorBoard tag (the same numbers, at step = 0-based epoch)
TAGS = {"train_loss": "loss/train", "lr": "lr", "acc": "accuracy/overall", "acc_many": "accuracy/many",
        "acc_medium": "accuracy/medium", "acc_few": "accuracy/few", "seconds": "time/epoch_seconds"}


class TensorBoardLogger:
    """TensorBoard event files in the run directory (``torch.utils.tensorboard``), one scalar per epoch.

    At every evaluated epoch: the metrics.csv row (``loss/train``, ``lr``, ``accuracy/overall|many|medium|few``,
    ``time/epoch_seconds``). At every epoch: ``lr`` and, for each per-class gradient-ratio probe the loop
    recorded (``grad_ratio`` and any ``grad_ratio*`` variant, e.g. accumulated ones), its mean over the
    many / medium / few classes as ``<key>/<group>`` (NaN classes, with no negative gradient yet, left out).
    The writer opens at the first epoch logged, purging later steps an interrupted attempt may have left,
    is flushed after every epoch (a killed job leaves readable files) and closed after ``num_epochs``.
    """

    def __init__(self, run_dir: str | os.PathLike, num_epochs: int | None = None):
        self.run_dir, self.num_epochs = Path(run_dir), num_epochs
        self._writer = None
        self._groups: dict[str, np.ndarray] | None = None

    def _open(self, epoch: int):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=epoch or None)
        return self._writer

    def groups(self) -> dict[str, np.ndarray]:
        """Class indices of many / medium / few from the run's ``config.json`` (``class_counts``)."""
        if self._groups is None:
            from .data.longtail import shot_split
            counts = json.loads((self.run_dir / "config.json").read_text())["class_counts"]
            self._groups = shot_split(counts)
        return self._groups

    def __call__(self, epoch: int, row: dict[str, Any], state) -> None:
        w = self._open(epoch)
        scalars = {TAGS[k]: v for k, v in row.items() if k in TAGS}
        scalars.setdefault("lr", state.optimizer.param_groups[0]["lr"])
        record = state.probe_records[-1] if state.probe_records else {}
        for key, value in sorted(record.items()):
            if key.startswith("grad_ratio") and np.ndim(value) == 1:
                scalars.update(self._group_means(key, np.asarray(value, dtype=np.float64)))
        for tag, value in scalars.items():
            w.add_scalar(tag, float(value), epoch)
        w.flush()
        if self.num_epochs is not None and epoch >= self.num_epochs - 1:
            self.close()

    def _group_means(self, key: str, per_class: np.ndarray) -> dict[str, float]:
        out = {}
        for group, idx in self.groups().items():
            vals = per_class[idx]
            vals = vals[np.isfinite(vals)]
            if len(vals):
                out[f"{key}/{group}"] = float(vals.mean())
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def config_loggers(config, run_dir: str | os.PathLike) -> list:
    """The loggers a RunConfig asks for (``tensorboard=True``: :class:`TensorBoardLogger`), as callbacks."""
    return [TensorBoardLogger(run_dir, config.epochs)] if getattr(config, "tensorboard", False) else []
