"""The one training loop: ``run`` (build + fit + write the run directory), ``train_one_epoch``, ``evaluate``.

Methods plug in through the registries (dataset, model, loss, sampler), ``loss.set_epoch`` and the
probes; there is no per-method copy of this loop. Every epoch is seeded from ``(seed, epoch)``, so a
run resumed from its checkpoint replays exactly the epochs it had left. A second stage is a run too:
``init_from`` + ``stage="classifier"`` (frozen backbone, ``build_model``) or ``stage="afg"`` (GLAG: the
same loop fed by feature loaders, wired in :mod:`ltlab.afg`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__, distributed, probes, schedules
from .config import RunConfig
from .data import DeviceLoader, create_sampler, get_dataset
from .data.samplers import ShardedSampler
from .loggers import config_loggers
from .losses import create_loss
from .metrics import per_class_accuracy, shot_accuracy
from .models import create_model
from .models.heads import LWSHead
from .runs import (CHECKPOINTS, CONVERT_HINT, METRIC_COLUMNS, Run, RunFileError, load_run, path_error,
                   remove_stale_temps, runs_root, save_torch, write_csv, write_json, write_npz)
from .safe_io import UnsafeFileError, load_torch

Callback = Callable[[int, dict, "TrainState"], Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("RunConfig.device='cuda' but no CUDA device is visible; use device='auto' or 'cpu'")
    return torch.device(name)


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass
class TrainState:
    """Everything the loop mutates; saved in the checkpoint."""

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
    backbone_eval: bool = False                       # frozen backbone kept in eval mode while training
    forward: nn.Module | None = None                  # what the loop calls (None: model); e.g. the head alone
    extras: dict[str, Any] = field(default_factory=dict)  # stateful parts (state_dict/load_state_dict), checkpointed
    position: dict | None = None                      # mid-epoch resume point from a checkpoint (see fit)
    scaler_state: dict | None = None                  # fp16 GradScaler state from a checkpoint
    saved: str = "none yet"                           # what the newest checkpoint holds (for error messages)
    checkpoint_epoch: int = -1                        # state.epoch when this process last wrote/read a checkpoint


# ---------------------------------------------------------------------- one epoch
def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` (``_orig_mod``) and DistributedDataParallel (``module``)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or (model.module if isinstance(
            model, nn.parallel.DistributedDataParallel) else None)
        if inner is None:
            return model
        model = inner


StepHook = Callable[[int, dict], None]


def train_one_epoch(state: TrainState, loader: DeviceLoader, *, device: torch.device, precision: str = "fp32",
                    mixup_alpha: float = 0.0, rng: np.random.Generator | None = None,
                    probe: probes.GradientProbe | None = None, scaler=None, start_step: int = 0,
                    carry: dict | None = None, on_step: StepHook | None = None, every: int = 0) -> dict[str, float]:
    """Train ``state.model`` for one pass over ``loader``. Syncs with the host once, at the end.

    ``loader`` yields ``(x, y)`` or ``(x, y, extra)``; a dict ``extra`` goes to the loss as keywords
    (e.g. GLAG's teacher logits). With ``state.backbone_eval`` everything but ``model.head`` stays in
    eval mode (a frozen backbone whose BN statistics must not move; GCL stage two).
    Mid-epoch resume: the first ``start_step`` batches are drawn (so the loader's seeded order and
    augmentation stay in step) but not trained on; ``carry`` = ``{"total": float, "count": int}`` of
    those steps. ``on_step(steps_done, sums)`` runs after every ``every`` steps (mid-epoch checkpoints),
    ``sums`` = ``{"total", "count", "first_bad"}`` so far on this rank. Under DDP the epoch's loss sum,
    count and first non-finite batch are reduced over ranks at the end (one collective each).
    """
    model, loss_fn, opt = state.model, state.loss_fn, state.optimizer
    model.train()
    if getattr(state, "backbone_eval", False):
        model.eval()
        unwrap(model).head.train()
    loss_fn.train()
    amp = autocast_dtype(precision)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    if carry:
        total += float(carry["total"])
        count = int(carry["count"])
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    for step, batch in enumerate(loader):
        if step < start_step:
            continue
        x, y = batch[0], batch[1]
        extra = batch[2] if len(batch) > 2 else {}
        lam, perm = 1.0, None
        if mixup_alpha > 0 and extra:
            raise ValueError("mixup cannot mix batches that carry extra per-sample inputs for the loss")
        if mixup_alpha > 0:
            lam = float(rng.beta(mixup_alpha, mixup_alpha))
            perm = torch.randperm(x.shape[0], device=device)
            x = lam * x + (1 - lam) * x[perm]
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(x)
        out = out.float()
        if probe is not None:
            out.retain_grad()
        loss = loss_fn(out, y, **extra)
        if perm is not None:
            # mixup: lam * L(out, y) + (1 - lam) * L(out, y[perm]). Stateful losses (GALA, Seesaw, GHM)
            # accumulate from the first call only; the second runs in eval mode, which never updates state.
            loss_fn.eval()
            loss = lam * loss + (1 - lam) * loss_fn(out, y[perm])
            loss_fn.train()
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if probe is not None and out.grad is not None:
            probe.update(out.grad / (scaler.get_scale() if scaler is not None else 1.0), y)
        ld = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(ld), torch.full_like(first_bad, step), first_bad)
        total += ld.double() * y.shape[0]
        count += y.shape[0]
        if on_step is not None and every and (step + 1) % every == 0:
            on_step(step + 1, {"total": total, "count": count, "first_bad": first_bad})
    total, count_t, bad = _reduce_sums(total, count, first_bad)
    return {"train_loss": float(total) / max(int(count_t), 1), "first_bad_step": bad}


def _reduce_sums(total: torch.Tensor, count: int, first_bad: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Loss sum and sample count summed over ranks, and the first non-finite step of any rank (-1: none)."""
    if not distributed.context().enabled:
        return total, count, int(first_bad)
    count_t = torch.tensor(count, dtype=torch.float64, device=total.device)
    total = distributed.all_reduce_(total.clone())
    return total, int(distributed.all_reduce_(count_t)), _first_bad(first_bad)


def _first_bad(first_bad: torch.Tensor) -> int:
    """The first non-finite step over all ranks, -1 when every loss so far was finite (a host sync)."""
    if not distributed.context().enabled:
        return int(first_bad)
    big = torch.iinfo(torch.long).max
    bad = distributed.all_reduce_(torch.where(first_bad >= 0, first_bad, torch.full_like(first_bad, big)), "min")
    return -1 if int(bad) == big else int(bad)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, device: torch.device,
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


def _prediction_probes(logits: np.ndarray, labels: np.ndarray, loss_fn: nn.Module) -> dict[str, np.ndarray]:
    """Per class: prediction counts on the test set and the mean max-probability of its test samples.

    Cosine outputs are scaled by the loss's ``s`` first, as the loss sees them."""
    z = torch.from_numpy(logits).double() * float(getattr(loss_fn, "s", 1.0) if loss_fn.input_kind == "cosine" else 1.0)
    p_max = torch.softmax(z, dim=1).max(dim=1).values.numpy()
    c = logits.shape[1]
    per_class = np.bincount(labels, weights=p_max, minlength=c) / np.maximum(np.bincount(labels, minlength=c), 1)
    return {"pred_count": np.bincount(logits.argmax(1), minlength=c).astype(np.float64), "mean_max_prob": per_class}


# ---------------------------------------------------------------------- building
def _progress_enabled(config: RunConfig) -> bool:
    return bool(config.progress) and not os.environ.get("CI") and os.environ.get("LTLAB_PROGRESS", "1") != "0"


def _default_run_dir(config: RunConfig) -> Path:
    rid = config.run_id or "{}_{}_{}_if{:g}_s{}".format(time.strftime("%Y%m%d-%H%M%S"), config.dataset,
                                                         config.loss, config.imbalance_factor, config.seed)
    return runs_root() / rid


def load_datasets(config: RunConfig):
    # file lists (ImageNet-LT, Places-LT, iNat) are long-tailed already: no subsampling
    imbalance = None if config.dataset == "file_list" else config.imbalance_factor
    kw = dict(imbalance_factor=imbalance, seed=config.data_seed, **config.dataset_params)
    if config.imbalance_profile != "exp":
        kw["profile"] = config.imbalance_profile
    train = get_dataset(config.dataset, config.root, split="train", **kw)
    test = get_dataset(config.dataset, config.root, split="test", **{k: v for k, v in kw.items()
                                                                     if k not in ("imbalance_factor", "profile",
                                                                                  "n_max")})
    for ds in (train, test):
        check_image_files(ds)
    return train, test


def check_image_files(ds) -> None:
    """Fail before training when a lazy (file-list) split names images that are not on disk.

    One ``stat`` per entry (seconds for iNaturalist's 438k images on a local disk) instead of a
    FileNotFoundError hours into the first epoch.
    """
    if getattr(ds, "paths", None) is None:
        return
    missing = [i for i, p in enumerate(ds.paths) if not os.path.isfile(p)]
    if missing:
        shown = "; ".join(f"{ds.paths[i]} (line {int(ds.lines[i])})" for i in missing[:5])
        raise FileNotFoundError(f"{len(missing)} of {len(ds.paths)} images listed in {ds.list_file} are missing, "
                                f"e.g. {shown}; fix root= or the list file")


def load_val_dataset(config: RunConfig):
    """The balanced validation split of ``config`` (``val_per_class`` > 0), or None.

    In-memory sets: ``val_per_class`` images per class from training images the long-tailed split does
    not use (:func:`ltlab.data.get_dataset`, split="val"); file_list sets: their ``val_list``.
    """
    if config.val_per_class < 1:
        return None
    if config.dataset == "file_list":
        val = get_dataset("file_list", config.root, split="val", **config.dataset_params)
        check_image_files(val)
        return val
    kw = dict(imbalance_factor=config.imbalance_factor, seed=config.data_seed, val_per_class=config.val_per_class,
              **config.dataset_params)
    if config.imbalance_profile != "exp":
        kw["profile"] = config.imbalance_profile
    return get_dataset(config.dataset, config.root, split="val", **kw)


def _git_commit() -> str | None:
    head = Path(__file__).resolve().parent.parent / ".git"
    try:
        ref = (head / "HEAD").read_text().strip()
        if ref.startswith("ref:"):
            return (head / ref.split()[1]).read_text().strip()
        return ref
    except OSError:
        return None


def build_model(config: RunConfig, train_ds) -> nn.Module:
    """The model of ``config``: fresh, or initialised from the ``init_from`` run (see ``_init_from``)."""
    torch.manual_seed(config.seed)
    if not config.init_from:
        return create_model(config.model, train_ds.num_classes, head=config.resolved_head,
                            in_channels=train_ds.image_shape[0], **config.model_params)
    src = _stage_one_run(config, train_ds)
    model = create_model(config.model, train_ds.num_classes, head=src.config.get("resolved_head", "linear"),
                         in_channels=train_ds.image_shape[0], **config.model_params)
    _init_from(model, config, src)
    return model


def _stage_one_run(config: RunConfig, train_ds) -> Run:
    """The ``init_from`` run, checked: same dataset, model, classes and training split; finished."""
    where = f"init_from={config.init_from}"
    try:
        src = load_run(config.init_from)
    except RunFileError as exc:
        raise ValueError(f"{where}: {exc}; point init_from at a finished stage-one run directory") from exc
    c = src.config
    for key, have in (("dataset", config.dataset), ("model", config.model), ("num_classes", train_ds.num_classes)):
        if c.get(key) != have:
            raise ValueError(f"{where}: stage one used {key}={c.get(key)!r} but this run has {key}={have!r}; "
                             f"point init_from at a compatible run")
    if c.get("class_counts") is not None and list(c["class_counts"]) != list(train_ds.class_counts):
        raise ValueError(f"{where}: stage one trained on class_counts {c['class_counts']} but this run's training "
                         f"split has {list(train_ds.class_counts)}; use the stage-one imbalance_factor, data_seed "
                         f"and dataset_params")
    if len(src.metrics) and int(src.metrics.epoch.iloc[-1]) != int(c.get("epochs", 0)) - 1:
        raise ValueError(f"{where}: stage one is unfinished (last epoch {int(src.metrics.epoch.iloc[-1])} of "
                         f"{c.get('epochs')}); resume it with resume=True first")
    return src


def _init_from(model: nn.Module, config: RunConfig, src: Run) -> None:
    """Load the stage-one weights, then shape the head and freeze as the stage asks (baselines.md 3).

    ``classifier_init="reset"``: fresh head of this run's kind (cRT). ``"stage_one"``: keep the stage-one
    head (GCL, GLAG, MiSLAS), or wrap a linear one in LWS when ``head="lws"``. Stages other than
    "joint" freeze every backbone parameter; "afg" wraps the head in :class:`ltlab.afg.TukeyHead`.
    """
    ckpt = load_checkpoint(src.dir)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"init_from={config.init_from}: its model weights do not fit this model "
                         f"({config.model}): {exc}") from exc
    old, new = model.head_kind, config.resolved_head
    if config.classifier_init == "reset":
        model.reset_classifier(model.num_classes, head=new)
    elif new == "lws" and old == "linear":
        model.set_head(LWSHead.from_linear(model.head, freeze_linear=config.lws_freeze_linear))
    elif new != old:
        raise ValueError(f"init_from={config.init_from}: stage one has a {old!r} head, this run asks for "
                         f"head={new!r}; use head={old!r} (or 'lws' on a linear head) or classifier_init='reset'")
    if config.stage != "joint":
        for p in model.backbone_parameters():
            p.requires_grad_(False)
    if config.stage == "afg":
        from .afg import AFG_DEFAULTS, TukeyHead
        if old != "linear":
            raise ValueError(f"init_from={config.init_from}: stage='afg' needs a stage one with a linear head "
                             f"(its teacher), got {old!r}")
        model.head = TukeyHead(model.head, config.afg_params.get("tukey_lambda", AFG_DEFAULTS["tukey_lambda"]))


_CKPT_KEYS = ("epoch", "model", "optimizer", "loss", "history")


def load_checkpoint(run_dir: Path) -> dict:
    """Newest readable checkpoint of ``run_dir`` (falls back to the previous one if the newest is corrupt).

    Loaded with ``weights_only=True``: a checkpoint that names any other object (it could run code) raises
    :class:`~ltlab.safe_io.UnsafeFileError` at once, with no fallback and nothing built from it.
    """
    errors = []
    for name in CHECKPOINTS:
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            ckpt = load_torch(path, fix=CONVERT_HINT.format(path=str(run_dir)))
        except UnsafeFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other unpickling failure means "corrupt"
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        missing = [k for k in _CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        if missing:
            errors.append(f"{path}: not an ltlab checkpoint (lacks {missing})")
            continue
        return ckpt
    if errors:
        raise ValueError("no readable checkpoint: " + "; ".join(errors) + ". Start a new run (resume=False, "
                         "another run_dir)")
    raise FileNotFoundError(f"no checkpoint.pt in {run_dir}; start the run with resume=False")


def _check_resume(config: RunConfig, ckpt: dict, run_dir: Path) -> None:
    old = ckpt.get("fingerprint", {})
    new = config.fingerprint()
    diff = sorted(k for k in set(old) | set(new) if _canonical(old.get(k)) != _canonical(new.get(k)))
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(f"cannot resume {run_dir}: its checkpoint was written by a different config ({details}). "
                         "Resume with the original parameters, or start a new run_dir with resume=False")


def _canonical(value: Any) -> str:
    """A config value as the checkpoint holds it (paths as strings; numpy as numbers), for comparison."""
    return json.dumps(value, sort_keys=True, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))


# ---------------------------------------------------------------------- checkpoint and outputs
def save_checkpoint(run_dir: Path, state: TrainState, config: RunConfig, loader: DeviceLoader, *,
                    position: dict | None = None, scaler=None) -> None:
    """Atomically write ``checkpoint.pt``, keeping the previous one as ``checkpoint_prev.pt``.

    ``position``: where inside the next epoch training stands (mid-epoch checkpoint; see ``fit``).
    The model is saved unwrapped (no DDP / torch.compile prefixes).
    """
    ckpt = {
        "epoch": state.epoch, "model": unwrap(state.model).state_dict(), "optimizer": state.optimizer.state_dict(),
        "loss": state.loss_fn.state_dict(), "fingerprint": config.fingerprint(), "ltlab_version": __version__,
        # the probe history goes in stacked (probes.stack_epochs): a handful of arrays instead of several per epoch
        "history": {"metrics": state.metrics, "per_class": state.per_class, "eval_epochs": state.eval_epochs,
                    "probes": probes.stack_epochs(state.probe_records), "probe_epochs": len(state.probe_records),
                    "test_logits": state.test_logits, "test_labels": state.test_labels},
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()},
        "extras": {k: v.state_dict() for k, v in state.extras.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "position": position, "world_size": distributed.context().world_size,
    }
    save_torch(run_dir / CHECKPOINTS[0], ckpt, keep_previous=run_dir / CHECKPOINTS[1])
    state.checkpoint_epoch = state.epoch


def _arrays(obj: Any) -> Any:
    """Tensors inside dicts/lists as numpy arrays (the history of checkpoints written before numpy arrays were
    recorded by :func:`ltlab.safe_io.dump_torch`, which held them as plain tensors)."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_arrays(v) for v in obj]
    return obj


def restore(state: TrainState, ckpt: dict) -> None:
    unwrap(state.model).load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.loss_fn.load_state_dict(ckpt["loss"])
    h = _arrays(ckpt["history"])
    state.epoch = state.checkpoint_epoch = int(ckpt["epoch"])
    state.metrics, state.per_class, state.eval_epochs = list(h["metrics"]), list(h["per_class"]), list(h["eval_epochs"])
    state.probe_records = (list(h["probe_records"]) if "probe_records" in h  # checkpoints before 2026-11-26
                           else probes.unstack_epochs(h["probes"], int(h["probe_epochs"])))
    state.test_logits, state.test_labels = h["test_logits"], h["test_labels"]
    for k, v in state.extras.items():
        if k not in ckpt.get("extras", {}):
            raise ValueError(f"checkpoint lacks the state of {k!r}; it was written by a different kind of run")
        v.load_state_dict(ckpt["extras"][k])
    state.position, state.scaler_state = ckpt.get("position"), ckpt.get("scaler")
    state.saved = _describe(state.epoch, state.position)


def _describe(epoch: int, position: dict | None) -> str:
    if position is not None:
        return f"epoch {position['epoch']}, step {position['step']}"
    return f"end of epoch {epoch}" if epoch >= 0 else "none yet"


def _position(epoch: int, steps: int, sums: dict, probe: probes.GradientProbe, rng: np.random.Generator,
              device: torch.device) -> dict:
    """Everything needed to continue epoch ``epoch`` after ``steps`` steps (collective under DDP).

    Loss sum and count are global; the probe sums are the single-process ones (sum over ranks / world
    size, see ``fit``); RNG states (torch, CUDA, the mixup generator) are kept per rank.
    """
    ctx = distributed.context()
    total = distributed.all_reduce_(sums["total"].clone())
    count = distributed.all_reduce_(torch.tensor(float(sums["count"]), dtype=torch.float64, device=device))
    partial = {k: (distributed.all_reduce_(t.clone()) / ctx.world_size).cpu() for k, t in probe.sums.items()}
    rng_state = {"torch": torch.get_rng_state(), "mixup": rng.bit_generator.state,
                 "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    return {"epoch": epoch, "step": steps, "total": float(total), "count": int(count), "probe": partial,
            "rng": distributed.all_gather_objects(rng_state)}


def _resume_position(pos: dict, probe: probes.GradientProbe, rng: np.random.Generator,
                     device: torch.device) -> tuple[int, dict]:
    """Restore a mid-epoch position on this rank; returns (start_step, carry) for ``train_one_epoch``."""
    ctx = distributed.context()
    states = pos["rng"]
    mine = states[ctx.rank % len(states)]  # a resume on another number of ranks reuses rank states cyclically
    torch.set_rng_state(mine["torch"])
    if mine.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], device)
    rng.bit_generator.state = mine["mixup"]
    main = ctx.is_main  # the sums are global: rank 0 carries them, the other ranks start from zero
    probe.load_sums(probes.position_sums(pos["probe"], probe), int(pos["step"]), ctx.world_size if main else 0.0)
    return int(pos["step"]), {"total": pos["total"] if main else 0.0, "count": pos["count"] if main else 0}


def write_outputs(run_dir: Path, state: TrainState, class_counts: list[int]) -> None:
    """metrics.csv, per_class.npz and probes.npz from the history held in ``state``."""
    write_csv(run_dir / "metrics.csv", pd.DataFrame(state.metrics, columns=METRIC_COLUMNS))
    pc = {"epochs": np.asarray(state.eval_epochs, dtype=np.int64), "class_counts": np.asarray(class_counts),
          "acc": np.stack(state.per_class) if state.per_class else np.zeros((0, len(class_counts)))}
    if state.test_logits is not None:
        pc["test_logits"], pc["test_labels"] = state.test_logits, state.test_labels
    write_npz(run_dir / "per_class.npz", pc)
    recs = state.probe_records
    arrays = probes.stack_epochs(recs)
    arrays["epochs"] = np.arange(len(recs), dtype=np.int64)
    write_npz(run_dir / "probes.npz", arrays)


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
    run_dir = Path(config.run_dir) if config.run_dir else _default_run_dir(config)
    run_dir = Path(distributed.all_gather_objects(str(run_dir))[0])  # ranks may straddle a second in the name
    held = [n for n in (*CHECKPOINTS, "metrics.csv") if (run_dir / n).exists()]
    if not config.resume and held:
        raise ValueError(f"{run_dir} already holds a run ({', '.join(held)}); pass resume=True to continue it, "
                         f"or choose another run_dir")
    train_ds, test_ds = load_datasets(config)
    val_ds = load_val_dataset(config)
    counts = list(train_ds.class_counts)
    model = build_model(config, train_ds).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = create_loss(config.loss, counts, **config.loss_kwargs()).to(device)
    loaders, forward, extras = None, None, {}
    if config.stage == "afg":  # GLAG stage two: the same loop over pre-extracted + generated features
        from .afg import setup_afg
        loss_fn, loaders, forward, extras = setup_afg(config, model, loss_fn, train_ds, test_ds, val_ds, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_sgd(params, config, device)
    state = TrainState(model=model, loss_fn=loss_fn, optimizer=opt, forward=forward, extras=extras,
                       backbone_eval=config.stage == "classifier" and config.backbone_mode == "eval")
    if config.resume:
        ckpt = load_checkpoint(run_dir)
        _check_resume(config, ckpt, run_dir)
        restore(state, ckpt)
    config = config.replace(run_dir=str(run_dir))
    if ctx.is_main:
        _prepare_run_dir(run_dir)
        stage_one = str(Path(config.init_from).resolve()) if config.init_from else None
        write_json(run_dir / "config.json", {**config.to_dict(), "ltlab_version": __version__,
                                             "git_commit": _git_commit(), "class_counts": counts,
                                             "num_classes": train_ds.num_classes, "classes": list(train_ds.classes),
                                             "resolved_head": config.resolved_head, "device_used": str(device),
                                             "world_size": ctx.world_size, "loss_input_kind": loss_fn.input_kind,
                                             "init_from_resolved": stage_one})
        if state.epoch >= 0:  # a kill between checkpoint and outputs: bring the outputs level with it
            write_outputs(run_dir, state, counts)
    fit(state, config, train_ds, test_ds, run_dir, device, [*(callbacks or []), *config_loggers(config, run_dir)],
        loaders=loaders)
    distributed.barrier()  # rank 0 has written everything before any rank reads the run back
    return load_run(run_dir)


def _check_distributed(config: RunConfig, ctx: distributed.DistContext, device: torch.device) -> None:
    """Refuse what multi-process training does not support, before anything is built."""
    if not ctx.enabled:
        return
    distributed.local_batch_size(config.batch_size, ctx)
    if config.stage == "afg":
        raise ValueError("stage='afg' (GLAG stage two) trains a linear classifier on features in one process; "
                         "run it without torchrun")
    if config.sync_bn and device.type != "cuda":
        raise ValueError("sync_bn=True needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU/gloo); "
                         "use sync_bn=False on CPU")


def _prepare_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise path_error(f"cannot create the run directory {run_dir}", exc) from exc
    remove_stale_temps(run_dir)  # left by a writer that was killed mid-write


def _sampler(config: RunConfig, train_ds):
    if config.sampler == "instance" and not config.sampler_params:
        return None  # the loader's own seeded permutation
    kw = dict(config.sampler_params)
    if config.sampler == "progressive":
        kw.setdefault("num_epochs", config.epochs)
    return create_sampler(config.sampler, train_ds.targets, seed=config.seed, **kw)


def _image_loaders(config: RunConfig, train_ds, test_ds, device: torch.device):
    """Train and test :class:`DeviceLoader`; under DDP this rank's shards (train: ShardedSampler over the
    global order with the per-rank batch; test: every world_size-th item, gathered in ``_evaluate``)."""
    ctx = distributed.context()
    sampler = _sampler(config, train_ds)
    if ctx.enabled:
        if len(test_ds) < ctx.world_size:
            raise ValueError(f"the test split has {len(test_ds)} items, fewer than the {ctx.world_size} processes")
        sampler = ShardedSampler(sampler, len(train_ds), rank=ctx.rank, world_size=ctx.world_size,
                                 batch_size=config.batch_size, seed=config.seed, targets=train_ds.targets,
                                 device=device if train_ds.images is not None else "cpu")
        test_ds = test_ds.subset(np.arange(ctx.rank, len(test_ds), ctx.world_size))
    augment = None if config.augment else {}
    train_loader = DeviceLoader(train_ds, distributed.local_batch_size(config.batch_size, ctx), device=device,
                                train=True, sampler=sampler, seed=config.seed, channels_last=config.channels_last,
                                augment=augment, num_workers=config.num_workers)
    test_loader = DeviceLoader(test_ds, max(config.batch_size, 256), device=device, train=False,
                               channels_last=config.channels_last, num_workers=config.num_workers)
    return train_loader, test_loader


def _evaluate(state: TrainState, eval_call, test_loader, device: torch.device, precision: str,
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


def make_sgd(params, config: RunConfig, device: torch.device) -> torch.optim.SGD:
    """SGD as the official recipes use it; one fused kernel per step on CUDA, multi-tensor (foreach) on CPU."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.nesterov and config.momentum > 0, **fast)


def _model_calls(state: TrainState, config: RunConfig, device: torch.device, batch_sizes: tuple[int, int]):
    """(train call, eval call): DDP-wrapped and/or compiled as configured; evaluation never goes through DDP.

    Compiled, each call sends batches of its loader's size (``batch_sizes`` = (train, eval)) through the
    compiled graph and any other size (the last, partial batch) through the same module eagerly, so one
    static-shape graph is built per mode instead of a dynamic-shape recompile for the odd batch. On CPU,
    ResNet-32: 2 graphs instead of 3 (see benchmarks/README.md).
    """
    call = state.forward if state.forward is not None else state.model
    train_call = call
    if distributed.context().enabled:
        train_call = nn.parallel.DistributedDataParallel(call, device_ids=[device.index] if device.type == "cuda"
                                                         else None)
    if not config.compile:
        return train_call, call
    mode = None if config.compile is True else config.compile  # True: torch.compile's default mode
    compiled = torch.compile(train_call, mode=mode, dynamic=False)
    compiled_eval = compiled if train_call is call else torch.compile(call, mode=mode, dynamic=False)
    graphs = mode in CUDA_GRAPH_MODES
    return (OneShapeCall(compiled, train_call, batch_sizes[0], cuda_graphs=graphs),
            OneShapeCall(compiled_eval, call, batch_sizes[1], cuda_graphs=graphs))


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that replay CUDA graphs on GPU


class OneShapeCall(nn.Module):
    """``compiled(x)`` for batches of ``batch_size`` items, ``eager(x)`` (the same weights) for any other size.

    ``eager`` is registered as ``_orig_mod``, so ``.train()``/``.eval()`` reach the real modules and
    :func:`unwrap` finds the plain model. ``cuda_graphs``: the compiled call replays CUDA graphs (modes in
    ``CUDA_GRAPH_MODES``), so every call starts a new step (``torch.compiler.cudagraph_mark_step_begin``)
    and its outputs live until the next call: callers copy what they keep (``evaluate`` does).
    """

    def __init__(self, compiled: Callable, eager: nn.Module, batch_size: int, *, cuda_graphs: bool = False):
        super().__init__()
        self._orig_mod = eager
        object.__setattr__(self, "compiled", compiled)  # not a submodule: it wraps ``eager`` again
        self.batch_size, self.cuda_graphs = int(batch_size), cuda_graphs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.batch_size:
            return self._orig_mod(x)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)


def fit(state: TrainState, config: RunConfig, train_ds, test_ds, run_dir: Path, device: torch.device,
        callbacks: list[Callback], loaders: tuple | None = None) -> TrainState:
    """The loop over epochs: lr, ``set_epoch``, one epoch, evaluation, checkpoint and outputs.

    ``loaders``: optional ``(train_loader, test_loader)`` replacing the image loaders built from the
    datasets (anything with ``set_epoch`` and batches as in :func:`train_one_epoch`; GLAG's feature
    loaders). The loop calls ``state.forward`` when set, else ``state.model``. A checkpoint is written
    after every epoch and, with ``config.checkpoint_every_steps = k``, after every k steps inside an
    epoch (with the position, loss sums, probe and RNG states, so a resumed epoch replays exactly).
    Under DDP only rank 0 writes; sums, probes and test outputs are reduced over ranks.
    """
    from .progress import progress_bar

    ctx = distributed.context()
    if loaders is not None:
        if ctx.enabled:
            raise ValueError("custom loaders (stage='afg') do not shard over processes; run without torchrun")
        train_loader, test_loader = loaders
    else:
        train_loader, test_loader = _image_loaders(config, train_ds, test_ds, device)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" and device.type == "cuda" else None
    if scaler is not None and state.scaler_state:
        scaler.load_state_dict(state.scaler_state)
    train_call, eval_call = _model_calls(state, config, device, (train_loader.batch_size, test_loader.batch_size))
    counts = list(train_ds.class_counts)
    first = state.epoch + 1
    last = config.epochs if config.epochs_per_call is None else min(config.epochs, first + config.epochs_per_call)
    bar = progress_bar(range(first, last), enabled=_progress_enabled(config) and ctx.is_main, initial=first,
                       total=config.epochs, desc=run_dir.name, leave=True)
    written = state.epoch  # the epoch the outputs are level with
    benchmark = torch.backends.cudnn.benchmark
    # fixed batch shapes: let cuDNN time its algorithms once, as the official CIFAR-LT scripts do (the
    # GPU speed benchmarks measure with it); restored afterwards, it is process-global
    torch.backends.cudnn.benchmark = benchmark or device.type == "cuda"
    try:
        for epoch in bar:
            written = _fit_epoch(epoch, state, config, train_ds, run_dir, device, callbacks, bar, train_loader,
                                 test_loader, train_call, eval_call, scaler, counts, last, written)
            if state.stop_requested:
                break
    finally:  # interrupted (Ctrl-C, an error): bring the outputs level with the newest checkpoint
        torch.backends.cudnn.benchmark = benchmark
        if ctx.is_main and state.checkpoint_epoch == state.epoch >= 0 and written != state.epoch:
            write_outputs(run_dir, state, counts)
        bar.close()
    return state


def _fit_epoch(epoch: int, state: TrainState, config: RunConfig, train_ds, run_dir: Path, device: torch.device,
               callbacks: list[Callback], bar, train_loader, test_loader, train_call, eval_call, scaler,
               counts: list[int], last: int, written: int) -> int:
    """One epoch of :func:`fit`; returns the epoch the outputs are now level with."""
    ctx = distributed.context()
    t0 = time.perf_counter()
    torch.manual_seed(config.seed * 1_000_003 + epoch + 1)
    rng = np.random.default_rng([config.seed, epoch])
    lr = schedules.lr_at(epoch, config.lr, config.epochs, warmup_epochs=config.warmup_epochs,
                         schedule=config.lr_schedule, milestones=config.milestones, gamma=config.lr_gamma)
    for g in state.optimizer.param_groups:
        g["lr"] = lr
    state.loss_fn.set_epoch(epoch, config.epochs)
    train_loader.set_epoch(epoch)
    probe = probes.GradientProbe(train_ds.num_classes, device, start=state.probe_records[-1] if state.probe_records
                                 else None, record_steps=len(train_loader) if epoch == 0 else 0)
    start, carry = 0, None
    if state.position is not None and state.position["epoch"] == epoch:
        start, carry = _resume_position(state.position, probe, rng, device)
    state.position = None

    def on_step(steps: int, sums: dict, epoch=epoch, rng=rng, probe=probe, lr=lr) -> None:
        if steps >= len(train_loader):
            return  # the end-of-epoch checkpoint follows
        bad = _first_bad(sums["first_bad"])
        if bad >= 0:  # never checkpoint a poisoned model: the last good checkpoint stays
            _raise_non_finite(epoch, bad, lr, config, run_dir, state)
        pos = _position(epoch, steps, sums, probe, rng, device)
        if ctx.is_main:
            save_checkpoint(run_dir, state, config, train_loader, position=pos, scaler=scaler)
        state.saved = _describe(state.epoch, pos)

    out = train_one_epoch(_ModelView(state, train_call), train_loader, device=device, precision=config.precision,
                          mixup_alpha=config.mixup_alpha, rng=rng, probe=probe, scaler=scaler, start_step=start,
                          carry=carry, on_step=on_step, every=config.checkpoint_every_steps or 0)
    if out["first_bad_step"] >= 0 or not np.isfinite(out["train_loss"]):
        _raise_non_finite(epoch, out["first_bad_step"], lr, config, run_dir, state)
    state.epoch = epoch
    if ctx.enabled:  # each rank saw dL/dz of its local-mean loss: sum / W is the global-batch gradient
        for t in probe.sums.values():
            distributed.all_reduce_(t).div_(ctx.world_size)
    rec = {**{f"grad_{k}": v for k, v in probe.summary().items()},
           "weight_norm": probes.weight_norms(unwrap(state.model)),
           **probes.loss_summary(state.loss_fn, *state.extras.values())}
    row = None
    evaluated = (epoch + 1) % config.eval_every == 0 or epoch == config.epochs - 1
    probes.add_record(state.probe_records, rec, evaluated)  # (C, C) matrices at evaluated epochs only
    if evaluated:
        logits, labels = _evaluate(state, eval_call, test_loader, device, config.precision, train_ds.num_classes)
        acc_c = per_class_accuracy(logits.argmax(1), labels, train_ds.num_classes)
        shots = shot_accuracy(acc_c, counts)
        row = {"epoch": epoch, "lr": lr, "train_loss": out["train_loss"], "acc": float((logits.argmax(1) == labels).mean()),
               "acc_many": shots["many"], "acc_medium": shots["medium"], "acc_few": shots["few"],
               "seconds": time.perf_counter() - t0}
        rec.update(_prediction_probes(logits, labels, state.loss_fn))
        state.metrics.append(row)
        state.per_class.append(acc_c)
        state.eval_epochs.append(epoch)
        state.test_logits, state.test_labels = logits, labels
        bar.set_postfix(loss=f"{out['train_loss']:.3f}", acc=f"{row['acc']:.3f}")
    if ctx.is_main:  # checkpoint first: outputs never run ahead of the checkpoint that can rewrite them
        save_checkpoint(run_dir, state, config, train_loader, scaler=scaler)
    state.saved = _describe(epoch, None)
    stop = ctx.is_main and any(cb(epoch, row or {}, state) == "stop" for cb in callbacks)
    if distributed.any_rank(stop, device) if ctx.enabled else stop:
        state.stop_requested = True
    # The outputs change with every evaluation; in between only probes.npz grows, and the checkpoint
    # holds it, so it is rewritten at evaluations, at the end and on a stop or an interruption (fit).
    if ctx.is_main and (row is not None or epoch == last - 1 or state.stop_requested):
        write_outputs(run_dir, state, counts)
        written = epoch
    return written


def _raise_non_finite(epoch: int, step: int, lr: float, config: RunConfig, run_dir: Path,
                      state: TrainState) -> NoReturn:
    where = f"batch {step}" if step >= 0 else "the epoch's mean"
    raise FloatingPointError(
        f"loss became NaN/inf at epoch {epoch}, {where} (lr={lr:g}, precision={config.precision}); the last good "
        f"checkpoint is {run_dir / CHECKPOINTS[0]} ({state.saved}). Lower lr, use warmup_epochs, or "
        f"precision='fp32'/'bf16'; resume=True continues from that checkpoint with the same parameters.")


class _ModelView:
    """TrainState whose ``model`` is the (possibly compiled / DDP-wrapped) callable; the rest is shared."""

    def __init__(self, state: TrainState, model_call):
        self.model, self.loss_fn, self.optimizer = model_call, state.loss_fn, state.optimizer
        self.backbone_eval = state.backbone_eval and state.forward is None
