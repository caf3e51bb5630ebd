"""The step of the one training loop: :func:`train_step`, :func:`evaluate` and what they mutate (:class:`TrainState`).

The epoch that runs the step, with its schedules, probes, checkpoints, evaluation rows and output files, is
``_Epochs.run`` in :mod:`ltlab.engine.trainer` (one screen); :func:`train_one_epoch` runs the same step over a
loader without that bookkeeping. What a stage trains comes in through :class:`TrainState`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import distributed, probes


@dataclass
class TrainState:
    """Everything the loop mutates; saved in the checkpoint. ``forward``: the module the loop calls (None:
    ``model``); ``train_mode(call, model)`` sets the modes of a training epoch (None: ``call.train()``);
    ``extras``: the stage's stateful parts (``state_dict`` / ``load_state_dict``)."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = -1                                   # last completed 0-based epoch
    metrics: list[dict] = field(default_factory=list)
    per_class: list[np.ndarray] = field(default_factory=list)
    eval_epochs: list[int] = field(default_factory=list)
    probe_records: list[dict] = field(default_factory=list)
    test_logits: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    stop_requested: bool = False
    forward: nn.Module | None = None
    train_mode: Callable[[nn.Module, nn.Module], None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    position: dict | None = None                      # mid-epoch resume point from a checkpoint (see trainer)
    scaler_state: dict | None = None                  # fp16 GradScaler state from a checkpoint
    saved: str = "none yet"                           # what the newest checkpoint holds (for error messages)
    checkpoint_epoch: int = -1                        # state.epoch when this process last wrote/read a checkpoint


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` (``_orig_mod``) and DistributedDataParallel (``module``)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or (model.module if isinstance(
            model, nn.parallel.DistributedDataParallel) else None)
        if inner is None:
            return model
        model = inner


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class EpochSums:
    """Loss sum and sample count of an epoch and its first non-finite step, on the device (no host sync per
    step). ``carry`` = ``{"total", "count"}`` of steps done before a mid-epoch resume."""

    def __init__(self, device: torch.device, carry: dict | None = None) -> None:
        self.total = torch.full((), float(carry["total"]) if carry else 0.0, dtype=torch.float64, device=device)
        self.count = int(carry["count"]) if carry else 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, step: int, loss: torch.Tensor, n: int) -> None:
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss),
                                     torch.full_like(self.first_bad, step), self.first_bad)
        self.total += loss.double() * n
        self.count += n

    def first_bad_step(self) -> int:
        """The first non-finite step over all ranks, -1 when every loss so far was finite (a host sync)."""
        if not distributed.context().enabled:
            return int(self.first_bad)
        big = torch.iinfo(torch.long).max
        bad = distributed.all_reduce_(torch.where(self.first_bad >= 0, self.first_bad,
                                                  torch.full_like(self.first_bad, big)), "min")
        return -1 if int(bad) == big else int(bad)

    def global_sums(self) -> tuple[float, int]:
        """(loss sum, sample count) over every rank (one collective each under DDP)."""
        if not distributed.context().enabled:
            return float(self.total), self.count
        count = torch.tensor(float(self.count), dtype=torch.float64, device=self.total.device)
        return float(distributed.all_reduce_(self.total.clone())), int(distributed.all_reduce_(count))

    def result(self) -> dict[str, float]:
        total, count = self.global_sums()
        return {"train_loss": total / max(count, 1), "first_bad_step": self.first_bad_step()}


def _mixup(x: torch.Tensor, alpha: float, rng: np.random.Generator | None, extra: dict):
    """(mixed x, lam, perm): one Beta(alpha, alpha) draw and one permutation per batch (Zhang et al. 2018)."""
    if alpha <= 0:
        return x, 1.0, None
    if extra:
        raise ValueError("mixup cannot mix batches that carry extra per-sample inputs for the loss")
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1 - lam) * x[perm], lam, perm


def _loss(loss_fn: nn.Module, out: torch.Tensor, y: torch.Tensor, extra: dict, lam: float, perm) -> torch.Tensor:
    """``loss(out, y)``; with mixup ``lam L(out, y) + (1 - lam) L(out, y[perm])``. Stateful losses (GALA,
    Seesaw, GHM) accumulate from the first call only: the second runs in eval mode, which never updates state."""
    loss = loss_fn(out, y, **extra)
    if perm is None:
        return loss
    loss_fn.eval()
    loss = lam * loss + (1 - lam) * loss_fn(out, y[perm])
    loss_fn.train()
    return loss


def _optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def set_train_mode(state: TrainState, call: nn.Module) -> None:
    """Training mode for a training epoch: the stage's ``train_mode`` (None: ``call.train()``) and the loss."""
    if state.train_mode is None:
        call.train()
    else:
        state.train_mode(call, unwrap(state.model))
    state.loss_fn.train()


def train_step(state: TrainState, call: nn.Module, batch, *, device: torch.device, precision: str = "fp32",
               mixup_alpha: float = 0.0, rng: np.random.Generator | None = None,
               probe: probes.GradientProbe | None = None, scaler=None) -> torch.Tensor:
    """One optimiser step on ``batch`` (``(x, y)`` or ``(x, y, extra)``; a dict ``extra`` goes to the loss as
    keywords, e.g. GLAG's teacher logits): mixup, forward under autocast, loss, backward and step. The probe
    sees dL/d(outputs), unscaled by the fp16 GradScaler. Returns the detached loss (no host sync)."""
    x, y, extra = batch[0], batch[1], (batch[2] if len(batch) > 2 else {})
    x, lam, perm = _mixup(x, mixup_alpha, rng, extra)
    amp = autocast_dtype(precision)
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        out = call(x)
    out = out.float()
    if probe is not None:
        out.retain_grad()
    loss = _loss(state.loss_fn, out, y, extra, lam, perm)
    _optimizer_step(loss, state.optimizer, scaler)
    if probe is not None and out.grad is not None:
        probe.update(out.grad / (scaler.get_scale() if scaler is not None else 1.0), y)
    return loss.detach()


def train_one_epoch(state: TrainState, loader, *, device: torch.device, precision: str = "fp32",
                    mixup_alpha: float = 0.0, rng: np.random.Generator | None = None,
                    probe: probes.GradientProbe | None = None, scaler=None, call: nn.Module | None = None,
                    start_step: int = 0, carry: dict | None = None,
                    on_step: Callable[[int, EpochSums], None] | None = None) -> dict[str, float]:
    """One pass of :func:`train_step` over ``loader``, as the epoch of :func:`ltlab.engine.trainer.fit` runs it
    (without its schedules, checkpoints and evaluation: for benchmarks and tests of the step). ``call``: the
    (compiled / DDP-wrapped) module to run, default ``state.forward or state.model``. Mid-epoch resume: the
    first ``start_step`` batches are drawn (so the loader's seeded order and augmentation stay in step) but not
    trained on; ``carry`` holds their sums. ``on_step(steps_done, sums)`` runs after every step. Returns
    ``train_loss`` (mean over samples, all ranks) and ``first_bad_step`` (-1: every loss finite); one host
    sync, at the end.
    """
    call = call if call is not None else state.forward if state.forward is not None else state.model
    set_train_mode(state, call)
    sums = EpochSums(device, carry)
    for step, batch in enumerate(loader):
        if step < start_step:
            continue
        loss = train_step(state, call, batch, device=device, precision=precision, mixup_alpha=mixup_alpha, rng=rng,
                          probe=probe, scaler=scaler)
        sums.add(step, loss, batch[1].shape[0])
        if on_step is not None:
            on_step(step + 1, sums)
    return sums.result()


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, device: torch.device,
             precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Test-set outputs (M, C) as float32 numpy and labels (M,). Predictions are argmax of the raw outputs."""
    model.eval()
    amp = autocast_dtype(precision)
    outs, labels = [], []
    for x, y in loader:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            outs.append(model(x).to(torch.float32, copy=True))  # a copy: CUDA-graph outputs are reused
        labels.append(y)
    return torch.cat(outs).cpu().numpy(), torch.cat(labels).cpu().numpy()
