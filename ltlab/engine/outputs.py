"""What an epoch leaves behind: the evaluation (gathered over ranks), its metrics row and prediction probes,
and the output files of the run directory."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import distributed, probes
from ..metrics import per_class_accuracy, shot_accuracy
from ..runs import METRIC_COLUMNS, write_csv, write_npz
from .loop import TrainState, evaluate, unwrap

if TYPE_CHECKING:
    from ..config import RunConfig


def evaluate_gathered(state: TrainState, eval_call: nn.Module, test_loader, device: torch.device, precision: str,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Test outputs and labels in the test set's order; under DDP each rank's shard, gathered on every rank."""
    ctx = distributed.context()
    if not ctx.enabled:
        return evaluate(eval_call, test_loader, device=device, precision=precision)
    distributed.broadcast_buffers_(unwrap(state.model))  # every rank evaluates rank 0's (the saved) model
    logits, labels = evaluate(eval_call, test_loader, device=device, precision=precision)
    parts = distributed.all_gather_objects((logits, labels))
    n = sum(len(p[1]) for p in parts)
    all_logits = np.empty((n, num_classes), dtype=logits.dtype)
    all_labels = np.empty(n, dtype=labels.dtype)
    for r, (lg, lb) in enumerate(parts):  # rank r evaluated items r, r + W, r + 2W, ...
        all_logits[r::ctx.world_size], all_labels[r::ctx.world_size] = lg, lb
    return all_logits, all_labels


def prediction_probes(logits: np.ndarray, labels: np.ndarray, loss_fn: nn.Module,
                      chunk: int = 4096) -> dict[str, np.ndarray]:
    """Per class: prediction counts on the test set and the mean max-probability of its test samples.

    Cosine outputs are scaled by the loss's ``s`` first, as the loss sees them. The float64 softmax runs over
    ``chunk`` rows at a time (the same numbers; 24k x 8,142 test logits would need a 1.6 GB temporary)."""
    scale = float(getattr(loss_fn, "s", 1.0) if loss_fn.input_kind == "cosine" else 1.0)
    p_max = np.concatenate([torch.softmax(torch.from_numpy(logits[i:i + chunk]).double() * scale, dim=1)
                            .max(dim=1).values.numpy() for i in range(0, len(logits), chunk)] or [np.zeros(0)])
    c = logits.shape[1]
    per_class = np.bincount(labels, weights=p_max, minlength=c) / np.maximum(np.bincount(labels, minlength=c), 1)
    return {"pred_count": np.bincount(logits.argmax(1), minlength=c).astype(np.float64), "mean_max_prob": per_class}


def record_evaluation(state: TrainState, epoch: int, lr: float, train_loss: float, seconds: float,
                      logits: np.ndarray, labels: np.ndarray, class_counts: list[int], record: dict) -> dict:
    """Append an evaluated epoch to the history in ``state`` (metrics row, per-class accuracy, last test
    outputs) and its prediction probes to ``record``; returns the metrics row (accuracies in [0, 1])."""
    preds = logits.argmax(1)
    acc_c = per_class_accuracy(preds, labels, len(class_counts))
    shots = shot_accuracy(acc_c, class_counts)
    row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "acc": float((preds == labels).mean()),
           "acc_many": shots["many"], "acc_medium": shots["medium"], "acc_few": shots["few"], "seconds": seconds}
    record.update(prediction_probes(logits, labels, state.loss_fn))
    state.metrics.append(row)
    state.per_class.append(acc_c)
    state.eval_epochs.append(epoch)
    state.test_logits, state.test_labels = logits, labels
    return row


LOGIT_DTYPES = {"float32": np.float32, "float16": np.float16, "none": None}  # RunConfig.save_logits


def write_outputs(run_dir: Path, state: TrainState, class_counts: list[int], save_logits: str = "float32",
                  probe_mode: str = "full") -> None:
    """per_class.npz, probes.npz, then metrics.csv (last: it marks the run as written, so a process killed
    between two files leaves a directory :func:`ltlab.load_run` reads) from the history held in ``state``.

    The test logits of the last evaluation are stored here and nowhere else (not in the checkpoint), in
    ``save_logits`` precision (RunConfig.save_logits; "none" leaves them and the labels out)."""
    pc = {"epochs": np.asarray(state.eval_epochs, dtype=np.int64), "class_counts": np.asarray(class_counts),
          "acc": np.stack(state.per_class) if state.per_class else np.zeros((0, len(class_counts)))}
    dtype = LOGIT_DTYPES[save_logits]
    if state.test_logits is not None and dtype is not None:
        pc["test_logits"] = np.asarray(state.test_logits).astype(dtype, copy=False)
        pc["test_labels"] = state.test_labels
    pc["save_logits"] = np.asarray(save_logits)  # why there are none, for the message of an analysis that needs them
    write_npz(run_dir / "per_class.npz", pc)
    arrays = probes.stack_epochs(state.probe_records)
    arrays["epochs"] = np.arange(len(state.probe_records), dtype=np.int64)
    arrays.update(probes.record_info(probe_mode, arrays))
    write_npz(run_dir / "probes.npz", arrays)
    write_csv(run_dir / "metrics.csv", pd.DataFrame(state.metrics, columns=METRIC_COLUMNS))


def non_finite_error(epoch: int, step: int, lr: float, config: RunConfig, checkpoint: Path,
                     saved: str) -> FloatingPointError:
    """The error of a NaN/inf loss: where, and the checkpoint a resume would continue from."""
    where = f"batch {step}" if step >= 0 else "the epoch's mean"
    return FloatingPointError(
        f"loss became NaN/inf at epoch {epoch}, {where} (lr={lr:g}, precision={config.precision}); the last good "
        f"checkpoint is {checkpoint} ({saved}). Lower lr, use warmup_epochs, or precision='fp32'/'bf16'; "
        "resume=True continues from that checkpoint with the same parameters.")
