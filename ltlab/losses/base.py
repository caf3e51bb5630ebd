"""Shared base classes for every loss in the registry.

A loss is built from ``class_counts`` plus keyword hyper-parameters, called as
``loss(inputs, labels) -> batch-mean scalar`` and told the epoch through ``set_epoch``. Maths lives
in :mod:`ltlab.losses.functional`; the classes here hold hyper-parameters, buffers and checks.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import schedules


def validate_counts(class_counts: Sequence[int], who: str = "loss") -> list[int]:
    """Return ``class_counts`` as a list of ints, or raise a ValueError saying what is wrong."""
    try:
        counts = [int(c) for c in np.asarray(class_counts).reshape(-1)]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{who}: class_counts must be a sequence of integers, got {class_counts!r}") from exc
    if len(counts) < 2:
        raise ValueError(f"{who}: need at least 2 classes, got class_counts={counts}")
    bad = [c for c, n in enumerate(counts) if n <= 0]
    if bad:
        raise ValueError(
            f"{who}: class_counts must all be > 0; classes {bad[:10]} have counts "
            f"{[counts[c] for c in bad[:10]]}. Drop empty classes or lower the imbalance factor.")
    return counts


def all_reduce_sum_(t: Tensor) -> Tensor:
    """Sum ``t`` in place over DDP ranks when a process group is running; identity otherwise."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def world_size() -> int:
    """Number of DDP ranks (1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class LossBase(nn.Module):
    """Base of every registry loss.

    Subclasses set ``input_kind`` ("logits" or "cosine"), implement ``forward(inputs, labels)`` and,
    where something moves or accumulates, ``set_epoch``, ``reset_state`` and ``state_summary``.
    State lives in registered buffers so ``state_dict()``/``.to()``/resume need no special code.
    """

    input_kind: Literal["logits", "cosine"] = "logits"

    def __init__(self, class_counts: Sequence[int]):
        super().__init__()
        counts = validate_counts(class_counts, type(self).__name__)
        self.num_classes = len(counts)
        self.register_buffer("class_counts", torch.tensor(counts, dtype=torch.float64))
        self.epoch = 0
        self.num_epochs = 1
        self._checked = False

    # ------------------------------------------------------------------ epoch and state
    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        """Tell the loss the 0-based ``epoch`` of ``num_epochs``; no-op where nothing moves."""
        self.epoch, self.num_epochs = int(epoch), int(num_epochs)

    def reset_state(self) -> None:
        """Clear accumulated state (no-op for stateless losses)."""

    def state_summary(self) -> dict[str, Tensor]:
        """Per-class internals for probes and plots (e.g. alpha, margins, theta/phi)."""
        return {}

    def prior(self, like: Tensor) -> Tensor:
        """Training label prior ``pi_c = n_c / sum n`` in ``like``'s dtype and device."""
        n = self.class_counts.to(device=like.device, dtype=like.dtype)
        return n / n.sum()

    # ------------------------------------------------------------------ checks
    def check_inputs(self, inputs: Tensor, labels: Tensor) -> None:
        """Check shapes every call; check values (range, NaN) on the first call only.

        Value checks need a host sync, so they run once per loss object, not per batch.
        """
        name = type(self).__name__
        if inputs.dim() != 2 or inputs.shape[1] != self.num_classes:
            raise ValueError(f"{name}: expected inputs of shape (B, {self.num_classes}), got {tuple(inputs.shape)}")
        if labels.dim() != 1 or labels.shape[0] != inputs.shape[0]:
            raise ValueError(f"{name}: expected labels of shape ({inputs.shape[0]},), got {tuple(labels.shape)}")
        if self._checked:
            return
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"{name}: labels must be in [0, {self.num_classes - 1}], got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        if not torch.isfinite(inputs).all():
            raise ValueError(f"{name}: inputs contain NaN or inf; check the model output "
                             "(learning rate too high? fp16 overflow? try precision='bf16' or 'fp32')")
        if self.input_kind == "cosine" and inputs.abs().max() > 1 + 1e-4:
            raise ValueError(
                f"{name} takes cosine similarities in [-1, 1] but got values up to "
                f"{float(inputs.abs().max()):.3g}; use a model with head='cosine' (RunConfig does this "
                "automatically for cosine-input losses)")
        self._checked = True

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class DRWMixin:
    """Deferred re-weighting (Cao et al. 2019): effective-number class weights from ``drw_start``.

    Keeps the current per-class weights in the ``class_weight`` buffer (all ones before the switch),
    updated by ``set_epoch``. Used with PyTorch's weighted-mean CE (divide by sum of w_y).
    """

    def _init_drw(self, drw_start: int | None, drw_beta: float = 0.9999) -> None:
        self.drw_start = drw_start
        self.drw_beta = drw_beta
        self.register_buffer("class_weight", torch.ones(self.num_classes, dtype=torch.float64))

    def _update_drw(self, epoch: int) -> None:
        w = schedules.drw_weights(self.class_counts.cpu().numpy(), epoch, self.drw_start, self.drw_beta)
        self.class_weight.copy_(torch.as_tensor(w, dtype=self.class_weight.dtype))

    def drw_weight(self, like: Tensor) -> Tensor | None:
        """The current class weights in ``like``'s dtype, or None while DRW is off (plain mean)."""
        if not schedules.drw_active(self.epoch, self.drw_start):
            return None
        return self.class_weight.to(device=like.device, dtype=like.dtype)


class CosineMarginLoss(DRWMixin, LossBase):
    """Base of the cosine-margin family (LDAM, GCL, ALA): ``CE(s * adjust(cosine, labels), y)``.

    Input is the cosine of a normalised classifier (``head="cosine"``); the loss applies the scale
    ``s`` itself (never the model, to avoid double scaling). A member overrides only ``adjust``.
    """

    input_kind = "cosine"

    def __init__(self, class_counts: Sequence[int], s: float = 30.0, drw_start: int | None = None):
        super().__init__(class_counts)
        self.s = float(s)
        self._init_drw(drw_start)

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        super().set_epoch(epoch, num_epochs)
        self._update_drw(epoch)

    def adjust(self, cosine: Tensor, labels: Tensor) -> Tensor:
        """Return the adjusted cosine (B, C) before scaling; identity here."""
        return cosine

    def forward(self, cosine: Tensor, labels: Tensor) -> Tensor:
        self.check_inputs(cosine, labels)
        logits = self.s * self.adjust(cosine, labels)
        return nn.functional.cross_entropy(logits, labels, weight=self.drw_weight(logits))
