"""``run`` (build a run from its config and stage, train it, write its directory) and ``fit`` (the epochs).

An epoch (``_Epochs.run``, on one screen): the lr and ``set_epoch`` from the schedules, the step
(:func:`~ltlab.engine.loop.train_step`) over every batch, the loss check, the probes, an evaluation (every
``eval_every`` epochs and the last), the checkpoint, the callbacks, then the output files. Every epoch is seeded from ``(seed, epoch)``, so a run resumed from its checkpoint replays
exactly the epochs it had left. What trains, and on what, is the stage's part (:mod:`ltlab.stages`).
"""
from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import __version__, distributed, probes, schedules
from ..build import load_datasets, load_val_dataset, resolve_device
from ..config import RunConfig
from ..loggers import config_loggers
from ..runs import (CHECKPOINTS, Run, checkpoint_stamp, claim_run_dir, load_checkpoint, load_run, new_run_id,
                    path_error, remove_stale_temps, runs_root, write_json)
from ..stages import StageData, StageParts, get_stage
from .checkpoint import check_resume, describe, logits_to_refresh, position, restore, resume_position, save_checkpoint
from .compile import model_calls
from .divergence import check_divergence
from .loop import EpochSums, TrainState, set_train_mode, train_step, unwrap
from .outputs import evaluate_gathered, non_finite_error, record_evaluation, write_outputs
from .setup import image_loaders, make_sgd

Callback = Callable[[int, dict, TrainState], Any]


# ---------------------------------------------------------------------- the run
def run(config: RunConfig | dict | None = None, *, callbacks: list[Callback] | None = None, **overrides) -> Run:
    """Train one configuration and write its run directory; returns the loaded :class:`~ltlab.runs.Run`.

    ``config`` may be a RunConfig, a dict of parameters, or None (keywords only). Data, model and
    loss are all built and validated before anything is written. ``callbacks`` are called as
    ``cb(epoch, metrics_row, state)`` after every epoch; returning ``"stop"`` ends the run cleanly
    after its checkpoint (resumable). Under torchrun every process calls ``run``; they train one
    DistributedDataParallel model, rank 0 alone writes the run directory and calls the callbacks
    (docs/multi_gpu.md).
    """
    if config is None or isinstance(config, dict):
        config = RunConfig(**{**(config or {}), **overrides})
    elif overrides:
        config = config.replace(**overrides)
    ctx, device = distributed.setup(resolve_device(config.device))
    _check_distributed(config, ctx, device)
    run_dir = _run_dir(config)
    data = StageData(*load_datasets(config), load_val_dataset(config))
    parts = get_stage(config.stage).build(config, data, device)
    state = _train_state(parts, config, ctx, device)
    stamp = checkpoint_stamp(run_dir)
    if config.resume:
        ckpt = load_checkpoint(run_dir)
        check_resume(config, ckpt, run_dir)
        restore(state, ckpt, run_dir)
    config = config.replace(run_dir=str(run_dir))
    # one writer per run directory: its lock before anything is written (issue 25); released when the run ends
    with claim_run_dir(run_dir, resume=config.resume, stamp=stamp) if ctx.is_main else nullcontext():
        if ctx.is_main:
            _start_run_dir(run_dir, config, state, data, parts, device)
        fit(state, config, data.train, data.test, run_dir, device,
            [*(callbacks or []), *config_loggers(config, run_dir)], loaders=parts.loaders)
    distributed.barrier()  # rank 0 has written everything before any rank reads the run back
    return load_run(run_dir)


def _check_distributed(config: RunConfig, ctx: distributed.DistContext, device: torch.device) -> None:
    """Refuse what multi-process training does not support, before anything is built."""
    if not ctx.enabled:
        return
    distributed.local_batch_size(config.batch_size, ctx)
    stage = get_stage(config.stage)
    if not stage.distributed:
        raise ValueError(f"stage={stage.name!r} ({stage.summary}) runs in one process; run it without torchrun")
    if config.sync_bn and device.type != "cuda":
        raise ValueError("sync_bn=True needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU/gloo); "
                         "use sync_bn=False on CPU")


def _run_dir(config: RunConfig) -> Path:
    """The run directory (``runs/<new_run_id>`` when not given; one name on every rank), refused when it already
    holds a run that is not being resumed."""
    run_dir = (Path(config.run_dir).expanduser().absolute() if config.run_dir  # relative: to the cwd
               else runs_root() / (config.run_id or new_run_id(config.to_dict())))
    run_dir = Path(distributed.all_gather_objects(str(run_dir))[0])  # ranks may straddle a second in the name
    held = [n for n in (*CHECKPOINTS, "metrics.csv") if (run_dir / n).exists()]
    if not config.resume and held:
        raise ValueError(f"{run_dir} already holds a run ({', '.join(held)}); pass resume=True to continue it, "
                         f"or choose another run_dir")
    return run_dir


def _train_state(parts: StageParts, config: RunConfig, ctx: distributed.DistContext,
                 device: torch.device) -> TrainState:
    model = parts.model
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    opt = make_sgd([p for p in model.parameters() if p.requires_grad], config, device)
    return TrainState(model=model, loss_fn=parts.loss_fn, optimizer=opt, forward=parts.forward, extras=parts.extras,
                      train_mode=parts.train_mode)


def _start_run_dir(run_dir: Path, config: RunConfig, state: TrainState, data: StageData, parts: StageParts,
                   device: torch.device) -> None:
    """config.json (the resolved RunConfig and what the run was built with); outputs level with a resumed
    checkpoint (a kill between checkpoint and outputs)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(f"cannot create the run directory {run_dir}", exc) from exc
    remove_stale_temps(run_dir)  # left by a writer that was killed mid-write
    counts = list(data.train.class_counts)
    write_json(run_dir / "config.json", {
        **config.to_dict(), "ltlab_version": __version__, "git_commit": _git_commit(), "class_counts": counts,
        "num_classes": data.train.num_classes, "classes": list(data.train.classes),
        "image_shape": list(data.train.image_shape), "resolved_head": config.resolved_head,
        "resolved_stage_params": config.resolved_stage_params(), "device_used": str(device),
        "world_size": distributed.context().world_size, "loss_input_kind": parts.loss_fn.input_kind,
        "init_from_resolved": str(Path(config.init_from).resolve()) if config.init_from else None})
    if state.epoch >= 0:
        write_outputs(run_dir, state, counts, config.save_logits, config.probes)


def _git_commit() -> str | None:
    head = Path(__file__).resolve().parents[2] / ".git"
    try:
        ref = (head / "HEAD").read_text().strip()
        if ref.startswith("ref:"):
            return (head / ref.split()[1]).read_text().strip()
        return ref
    except OSError:
        return None


# ---------------------------------------------------------------------- the epochs
def _progress_bar(config: RunConfig, run_dir: Path, first: int, last: int):
    """The epoch iterator of ``fit``: :func:`ltlab.progress.progress_bar` (the notebook bar in a live
    notebook, throttled text elsewhere) on the main process unless progress is off (or under CI)."""
    from ..progress import progress_bar

    show = bool(config.progress) and not os.environ.get("CI") and os.environ.get("LTLAB_PROGRESS", "1") != "0"
    return progress_bar(range(first, last), enabled=show and distributed.context().is_main, initial=first,
                        total=config.epochs, desc=run_dir.name, leave=True)


def fit(state: TrainState, config: RunConfig, train_ds, test_ds, run_dir: Path, device: torch.device,
        callbacks: list[Callback], loaders: tuple | None = None) -> TrainState:
    """The loop over epochs (see the module docstring) from ``state.epoch + 1`` to ``config.epochs`` (or
    ``epochs_per_call`` of them).

    ``loaders``: ``(train, test)`` replacing the image loaders of the datasets (anything with ``set_epoch``
    and batches as :func:`~ltlab.engine.loop.train_step` takes them; a stage's own). A checkpoint is written after every
    epoch and, with ``config.checkpoint_every_steps = k``, after every k steps inside an epoch (with the
    position, loss sums, probe and RNG states, so a resumed epoch replays exactly). Under DDP only rank 0
    writes; sums, probes and test outputs are reduced over ranks.
    """
    if loaders is not None and distributed.context().enabled:
        raise ValueError("a stage's own loaders do not shard over processes; run it without torchrun")
    train_loader, test_loader = loaders if loaders is not None else image_loaders(config, train_ds, test_ds, device)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" and device.type == "cuda" else None
    if scaler is not None and state.scaler_state:
        scaler.load_state_dict(state.scaler_state)
    calls = model_calls(state.forward if state.forward is not None else state.model, config, device,
                        (train_loader.batch_size, test_loader.batch_size))
    first = state.epoch + 1
    last = config.epochs if config.epochs_per_call is None else min(config.epochs, first + config.epochs_per_call)
    epochs = _Epochs(state, config, run_dir, device, callbacks, list(train_ds.class_counts), train_loader,
                     test_loader, *calls, scaler, last)
    if logits_to_refresh(state, config.save_logits):  # killed between checkpoint and outputs: evaluate it again
        state.test_logits, state.test_labels = evaluate_gathered(state, calls[1], test_loader, device,
                                                                 config.precision, len(epochs.counts))
        if distributed.context().is_main:
            write_outputs(run_dir, state, epochs.counts, config.save_logits, config.probes)
    if distributed.context().is_main and first < last:
        print(probes.describe_recording(config.probes, len(epochs.counts)))
    bar = _progress_bar(config, run_dir, first, last)
    written = state.epoch  # the epoch the outputs are level with
    benchmark = torch.backends.cudnn.benchmark
    # fixed batch shapes: let cuDNN time its algorithms once, as the official CIFAR-LT scripts do (the
    # GPU speed benchmarks measure with it); restored afterwards, it is process-global
    torch.backends.cudnn.benchmark = benchmark or device.type == "cuda"
    try:
        for epoch in bar:
            row, wrote = epochs.run(epoch)
            written = epoch if wrote else written
            if row:
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['acc']:.3f}")
            if state.stop_requested:
                break
    finally:  # interrupted (Ctrl-C, an error): bring the outputs level with the newest checkpoint
        torch.backends.cudnn.benchmark = benchmark
        if distributed.context().is_main and state.checkpoint_epoch == state.epoch >= 0 and written != state.epoch:
            write_outputs(run_dir, state, epochs.counts, config.save_logits, config.probes)
        bar.close()
    return state


@dataclass
class _Epochs:
    """The fixed parts of one :func:`fit` call, and one epoch of it (:meth:`run`)."""

    state: TrainState
    config: RunConfig
    run_dir: Path
    device: torch.device
    callbacks: list[Callback]
    counts: list[int]
    train_loader: Any
    test_loader: Any
    train_call: nn.Module
    eval_call: nn.Module
    scaler: Any
    last: int

    def run(self, epoch: int) -> tuple[dict | None, bool]:
        """One epoch: the step over every batch, then probes, evaluation (when due), checkpoint, callbacks and
        output files; returns (metrics row or None, outputs written)."""
        state, config, ctx, t0 = self.state, self.config, distributed.context(), time.perf_counter()
        lr, rng = self._start(epoch)                                  # seeds, lr, set_epoch (schedules)
        probe = self._new_probe(epoch)
        start, sums = self._resume_point(epoch, probe, rng)          # mid-epoch resume: steps already done
        set_train_mode(state, self.train_call)
        for step, batch in enumerate(self.train_loader):
            if step < start:
                continue  # drawn, so the loader's seeded order and augmentation stay in step; not trained on
            loss = train_step(state, self.train_call, batch, device=self.device, precision=config.precision,
                              mixup_alpha=config.mixup_alpha, rng=rng, probe=probe if probe.active else None,
                              scaler=self.scaler)
            sums.add(step, loss, batch[1].shape[0])
            self._mid_epoch(epoch, lr, probe, rng, step + 1, sums)  # a checkpoint every checkpoint_every_steps
        out = sums.result()
        self._check_loss(epoch, out, lr)                              # check the loss
        state.epoch = epoch
        record = self._record_probes(probe)                          # record probes
        evaluated = (epoch + 1) % config.eval_every == 0 or epoch == config.epochs - 1
        probes.add_record(state.probe_records, record, evaluated)  # (C, C) matrices at evaluated epochs only
        row = None
        if evaluated:
            logits, labels = evaluate_gathered(state, self.eval_call, self.test_loader, self.device, config.precision,
                                               len(self.counts))
            row = record_evaluation(state, epoch, lr, out["train_loss"], time.perf_counter() - t0, logits, labels,
                                    self.counts, record)
        if ctx.is_main:  # checkpoint first: outputs never run ahead of the checkpoint that can rewrite them
            save_checkpoint(self.run_dir, state, config, scaler=self.scaler)
        state.saved = describe(epoch, None)
        stop = ctx.is_main and any(cb(epoch, row or {}, state) == "stop" for cb in self.callbacks)
        state.stop_requested = distributed.any_rank(stop, self.device) if ctx.enabled else stop
        # The outputs change with every evaluation; in between only probes.npz grows, and the checkpoint
        # holds it, so it is rewritten at evaluations, at the end and on a stop or an interruption (fit).
        write = ctx.is_main and (row is not None or epoch == self.last - 1 or state.stop_requested)
        if write:
            write_outputs(self.run_dir, state, self.counts, config.save_logits, config.probes)
        return row, write

    def _start(self, epoch: int) -> tuple[float, np.random.Generator]:
        """Seeds, the epoch's lr, ``set_epoch`` of the loss and the loader; (lr, the mixup generator)."""
        config = self.config
        torch.manual_seed(config.seed * 1_000_003 + epoch + 1)
        lr = schedules.lr_at(epoch, config.lr, config.epochs, warmup_epochs=config.warmup_epochs,
                             schedule=config.lr_schedule, milestones=config.milestones, gamma=config.lr_gamma)
        for g in self.state.optimizer.param_groups:
            g["lr"] = lr
        self.state.loss_fn.set_epoch(epoch, config.epochs)
        self.train_loader.set_epoch(epoch)
        return lr, np.random.default_rng([config.seed, epoch])

    def _new_probe(self, epoch: int) -> probes.GradientProbe:
        """The epoch's gradient probe, continuing the accumulated statistics; epoch 0 records every step."""
        records = self.state.probe_records
        return probes.GradientProbe(len(self.counts), self.device, start=records[-1] if records else None,
                                    record_steps=len(self.train_loader) if epoch == 0 else 0,
                                    class_counts=self.counts, mode=self.config.probes)

    def _resume_point(self, epoch: int, probe: probes.GradientProbe,
                      rng: np.random.Generator) -> tuple[int, EpochSums]:
        """(steps already done, loss sums so far): from a mid-epoch checkpoint of this epoch, else (0, empty)."""
        start, carry, pos = 0, None, self.state.position
        if pos is not None and pos["epoch"] == epoch:
            start, carry = resume_position(pos, probe, rng, self.device)
        self.state.position = None
        return start, EpochSums(self.device, carry)

    def _check_loss(self, epoch: int, out: dict[str, float], lr: float) -> None:
        """FloatingPointError naming the first non-finite step, or a stop when the loss diverged
        (:func:`check_divergence`); either way before the epoch's checkpoint, so the last good one stays."""
        if out["first_bad_step"] >= 0 or not np.isfinite(out["train_loss"]):
            raise self._non_finite(epoch, out["first_bad_step"], lr)
        check_divergence(epoch, out["train_loss"], len(self.counts), lr, self.run_dir / CHECKPOINTS[0],
                         self.state.saved)

    def _mid_epoch(self, epoch: int, lr: float, probe: probes.GradientProbe, rng: np.random.Generator,
                   steps: int, sums: EpochSums) -> None:
        """After every ``checkpoint_every_steps`` steps (not the last: the end-of-epoch checkpoint follows)."""
        every = self.config.checkpoint_every_steps
        if not every or steps % every or steps >= len(self.train_loader):
            return
        bad = sums.first_bad_step()
        if bad >= 0:  # never checkpoint a poisoned model: the last good checkpoint stays
            raise self._non_finite(epoch, bad, lr)
        pos = position(epoch, steps, sums, probe, rng, self.device)
        if distributed.context().is_main:
            save_checkpoint(self.run_dir, self.state, self.config, position=pos, scaler=self.scaler)
        self.state.saved = describe(self.state.epoch, pos)

    def _record_probes(self, probe: probes.GradientProbe) -> dict:
        """The epoch's gradient statistics, weight norms and loss / stage internals."""
        ctx, state = distributed.context(), self.state
        if ctx.enabled:  # each rank saw dL/dz of its local-mean loss: sum / W is the global-batch gradient
            for t in probe.sums.values():
                distributed.all_reduce_(t).div_(ctx.world_size)
        return {**{f"grad_{k}": v for k, v in probe.summary().items()},
                "weight_norm": probes.weight_norms(unwrap(state.model)),
                **probes.loss_summary(state.loss_fn, *state.extras.values())}

    def _non_finite(self, epoch: int, step: int, lr: float) -> FloatingPointError:
        return non_finite_error(epoch, step, lr, self.config, self.run_dir / CHECKPOINTS[0], self.state.saved)
