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

    HParams: a run that starts at epoch 0 also writes its hyper-parameters (:func:`hparams_of`) as one session of
    TensorBoard's HParams plugin, with the accuracy and loss tags above as its metrics, so the HParams tab
    compares runs by their latest (final) overall / many / medium / few accuracy, stopped runs included.
    """

    def __init__(self, run_dir: str | os.PathLike, num_epochs: int | None = None):
        self.run_dir, self.num_epochs = Path(run_dir), num_epochs
        self._writer = None
        self._groups: dict[str, np.ndarray] | None = None

    def _open(self, epoch: int):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=epoch or None)
            if epoch == 0:  # a resumed run's first attempt wrote them already
                self._write_hparams(self._writer)
        return self._writer

    def _write_hparams(self, writer) -> None:
        from torch.utils.tensorboard.summary import hparams

        config = json.loads((self.run_dir / "config.json").read_text())
        metrics = {tag: 0.0 for tag in HPARAM_METRICS}  # values come from the scalars of the same tags
        for summary in hparams(hparams_of(config), metrics):
            writer.file_writer.add_summary(summary)

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


# the HParams tab's metric columns: scalar tags every evaluated epoch writes
HPARAM_METRICS = ("accuracy/overall", "accuracy/many", "accuracy/medium", "accuracy/few", "loss/train")
HPARAM_FIELDS = ("dataset", "imbalance_factor", "model", "loss", "sampler", "drw_start", "epochs", "batch_size",
                 "lr", "lr_schedule", "weight_decay", "momentum", "warmup_epochs", "mixup_alpha", "seed", "stage")


def hparams_of(config: dict[str, Any]) -> dict[str, Any]:
    """A run's hyper-parameters as HParams values (str / float / bool): the recipe fields, the method label and
    every loss hyper-parameter (``loss.<name>``, the search space's default where unset) and sampler option."""
    def value(v: Any) -> Any:
        return v if isinstance(v, (bool, int, float, str)) else str(v)

    out = {k: value(config.get(k)) for k in HPARAM_FIELDS if k in config}
    out["method"] = value(config.get("method") or config.get("loss"))
    loss_params = dict(config.get("loss_params") or {})
    try:
        from .space import loss_values
        loss_params = loss_values(config["loss"], loss_params)
    except (KeyError, ValueError):
        pass
    out.update({f"loss.{k}": value(v) for k, v in loss_params.items() if k != "drw_start"})
    out.update({f"sampler.{k}": value(v) for k, v in (config.get("sampler_params") or {}).items()})
    return out


def config_loggers(config, run_dir: str | os.PathLike) -> list:
    """The loggers a RunConfig asks for (``tensorboard=True``: :class:`TensorBoardLogger`), as callbacks."""
    return [TensorBoardLogger(run_dir, config.epochs)] if getattr(config, "tensorboard", False) else []
