"""The one training loop: ``run`` (build + fit + write the run directory), ``train_one_epoch``, ``evaluate``.

Methods plug in through the registries (dataset, model, loss, sampler), ``loss.set_epoch`` and the
probes; there is no per-method copy of this loop. Every epoch is seeded from ``(seed, epoch)``, so a
run resumed from its checkpoint replays exactly the epochs it had left. A second stage is a run too:
``init_from`` + ``stage="classifier"`` (frozen backbone, ``build_model``) or ``stage="afg"`` (GLAG: the
same loop fed by feature loaders, wired in :mod:`ltlab.afg`).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__, probes, schedules
from .config import RunConfig
from .data import DeviceLoader, create_sampler, get_dataset
from .losses import create_loss
from .metrics import per_class_accuracy, shot_accuracy
from .models import create_model
from .models.heads import LWSHead
from .runs import (METRIC_COLUMNS, Run, RunFileError, load_run, runs_root, save_torch, write_csv, write_json,
                   write_npz)

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


# ---------------------------------------------------------------------- one epoch
def train_one_epoch(state: TrainState, loader: DeviceLoader, *, device: torch.device, precision: str = "fp32",
                    mixup_alpha: float = 0.0, rng: np.random.Generator | None = None,
                    probe: probes.GradientProbe | None = None, scaler=None) -> dict[str, float]:
    """Train ``state.model`` for one pass over ``loader``. Syncs with the host once, at the end.

    ``loader`` yields ``(x, y)`` or ``(x, y, extra)``; a dict ``extra`` goes to the loss as keywords
    (e.g. GLAG's teacher logits). With ``state.backbone_eval`` everything but ``model.head`` stays in
    eval mode (a frozen backbone whose BN statistics must not move; GCL stage two).
    """
    model, loss_fn, opt = state.model, state.loss_fn, state.optimizer
    model.train()
    if getattr(state, "backbone_eval", False):
        model.eval()
        getattr(model, "_orig_mod", model).head.train()
    loss_fn.train()
    amp = autocast_dtype(precision)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    for step, batch in enumerate(loader):
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
    bad = int(first_bad)
    return {"train_loss": float(total) / max(count, 1), "first_bad_step": bad}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, device: torch.device,
             precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Test-set outputs (M, C) as float32 numpy and labels (M,). Predictions are argmax of the raw outputs."""
    model.eval()
    amp = autocast_dtype(precision)
    outs, labels = [], []
    for x, y in loader:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            outs.append(model(x).float())
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
    return train, test


def load_val_dataset(config: RunConfig):
    """The balanced validation split of ``config`` (``val_per_class`` > 0), or None.

    In-memory sets: ``val_per_class`` images per class from training images the long-tailed split does
    not use (:func:`ltlab.data.get_dataset`, split="val"); file_list sets: their ``val_list``.
    """
    if config.val_per_class < 1:
        return None
    if config.dataset == "file_list":
        return get_dataset("file_list", config.root, split="val", **config.dataset_params)
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


def load_checkpoint(run_dir: Path) -> dict:
    """Newest readable checkpoint of ``run_dir`` (falls back to the previous one if the newest is corrupt)."""
    errors = []
    for name in ("checkpoint.pt", "checkpoint_prev.pt"):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "corrupt"
            errors.append(f"{path}: {exc}")
    if errors:
        raise ValueError("no readable checkpoint: " + "; ".join(errors))
    raise FileNotFoundError(f"no checkpoint.pt in {run_dir}; start the run with resume=False")


def _check_resume(config: RunConfig, ckpt: dict, run_dir: Path) -> None:
    old = ckpt.get("fingerprint", {})
    new = config.fingerprint()
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(f"cannot resume {run_dir}: its checkpoint was written by a different config ({details}). "
                         "Resume with the original parameters, or start a new run_dir with resume=False")


# ---------------------------------------------------------------------- checkpoint and outputs
def save_checkpoint(run_dir: Path, state: TrainState, config: RunConfig, loader: DeviceLoader) -> None:
    """Atomically write ``checkpoint.pt``, keeping the previous one as ``checkpoint_prev.pt``."""
    ckpt = {
        "epoch": state.epoch, "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "loss": state.loss_fn.state_dict(), "fingerprint": config.fingerprint(), "ltlab_version": __version__,
        "history": {"metrics": state.metrics, "per_class": state.per_class, "eval_epochs": state.eval_epochs,
                    "probe_records": state.probe_records, "test_logits": state.test_logits,
                    "test_labels": state.test_labels},
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()},
        "extras": {k: v.state_dict() for k, v in state.extras.items()},
    }
    path = run_dir / "checkpoint.pt"
    if path.exists():
        os.replace(path, run_dir / "checkpoint_prev.pt")
    save_torch(path, ckpt)


def restore(state: TrainState, ckpt: dict) -> None:
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.loss_fn.load_state_dict(ckpt["loss"])
    h = ckpt["history"]
    state.epoch = int(ckpt["epoch"])
    state.metrics, state.per_class, state.eval_epochs = list(h["metrics"]), list(h["per_class"]), list(h["eval_epochs"])
    state.probe_records, state.test_logits, state.test_labels = list(h["probe_records"]), h["test_logits"], h["test_labels"]
    for k, v in state.extras.items():
        if k not in ckpt.get("extras", {}):
            raise ValueError(f"checkpoint lacks the state of {k!r}; it was written by a different kind of run")
        v.load_state_dict(ckpt["extras"][k])


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
    after its checkpoint (resumable).
    """
    if config is None or isinstance(config, dict):
        config = RunConfig(**{**(config or {}), **overrides})
    elif overrides:
        config = config.replace(**overrides)
    device = resolve_device(config.device)
    run_dir = Path(config.run_dir) if config.run_dir else _default_run_dir(config)
    if not config.resume and ((run_dir / "checkpoint.pt").exists() or (run_dir / "metrics.csv").exists()):
        raise ValueError(f"{run_dir} already holds a run; pass resume=True to continue it, or choose another run_dir")
    train_ds, test_ds = load_datasets(config)
    val_ds = load_val_dataset(config)
    counts = list(train_ds.class_counts)
    model = build_model(config, train_ds).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = create_loss(config.loss, counts, **config.loss_kwargs()).to(device)
    loaders, forward, extras = None, None, {}
    if config.stage == "afg":  # GLAG stage two: the same loop over pre-extracted + generated features
        from .afg import setup_afg
        loss_fn, loaders, forward, extras = setup_afg(config, model, loss_fn, train_ds, test_ds, val_ds, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                          nesterov=config.nesterov and config.momentum > 0, foreach=True)
    state = TrainState(model=model, loss_fn=loss_fn, optimizer=opt, forward=forward, extras=extras,
                       backbone_eval=config.stage == "classifier" and config.backbone_mode == "eval")
    if config.resume:
        ckpt = load_checkpoint(run_dir)
        _check_resume(config, ckpt, run_dir)
        restore(state, ckpt)
    config = config.replace(run_dir=str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    stage_one = str(Path(config.init_from).resolve()) if config.init_from else None
    write_json(run_dir / "config.json", {**config.to_dict(), "ltlab_version": __version__, "git_commit": _git_commit(),
                                         "class_counts": counts, "num_classes": train_ds.num_classes,
                                         "classes": list(train_ds.classes), "resolved_head": config.resolved_head,
                                         "device_used": str(device), "loss_input_kind": loss_fn.input_kind,
                                         "init_from_resolved": stage_one})
    fit(state, config, train_ds, test_ds, run_dir, device, callbacks or [], loaders=loaders)
    return load_run(run_dir)


def _sampler(config: RunConfig, train_ds):
    if config.sampler == "instance" and not config.sampler_params:
        return None  # the loader's own seeded permutation
    kw = dict(config.sampler_params)
    if config.sampler == "progressive":
        kw.setdefault("num_epochs", config.epochs)
    return create_sampler(config.sampler, train_ds.targets, seed=config.seed, **kw)


def fit(state: TrainState, config: RunConfig, train_ds, test_ds, run_dir: Path, device: torch.device,
        callbacks: list[Callback], loaders: tuple | None = None) -> TrainState:
    """The loop over epochs: lr, ``set_epoch``, one epoch, evaluation, outputs and checkpoint.

    ``loaders``: optional ``(train_loader, test_loader)`` replacing the image loaders built from the
    datasets (anything with ``set_epoch`` and batches as in :func:`train_one_epoch`; GLAG's feature
    loaders). The loop calls ``state.forward`` when set, else ``state.model``.
    """
    from tqdm import tqdm

    if loaders is not None:
        train_loader, test_loader = loaders
    else:
        augment = None if config.augment else {}
        train_loader = DeviceLoader(train_ds, config.batch_size, device=device, train=True,
                                    sampler=_sampler(config, train_ds), seed=config.seed,
                                    channels_last=config.channels_last, augment=augment, num_workers=config.num_workers)
        test_loader = DeviceLoader(test_ds, max(config.batch_size, 256), device=device, train=False,
                                   channels_last=config.channels_last, num_workers=config.num_workers)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" and device.type == "cuda" else None
    call = state.forward if state.forward is not None else state.model
    model_call = torch.compile(call) if config.compile else call
    counts = list(train_ds.class_counts)
    first = state.epoch + 1
    last = config.epochs if config.epochs_per_call is None else min(config.epochs, first + config.epochs_per_call)
    bar = tqdm(range(first, last), initial=first, total=config.epochs, desc=run_dir.name, file=sys.stderr,
               disable=not _progress_enabled(config), leave=True)
    for epoch in bar:
        t0 = time.perf_counter()
        torch.manual_seed(config.seed * 1_000_003 + epoch + 1)
        rng = np.random.default_rng([config.seed, epoch])
        lr = schedules.lr_at(epoch, config.lr, config.epochs, warmup_epochs=config.warmup_epochs,
                             schedule=config.lr_schedule, milestones=config.milestones, gamma=config.lr_gamma)
        for g in state.optimizer.param_groups:
            g["lr"] = lr
        state.loss_fn.set_epoch(epoch, config.epochs)
        train_loader.set_epoch(epoch)
        probe = probes.GradientProbe(train_ds.num_classes, device)
        train_model = _ModelView(state, model_call)
        out = train_one_epoch(train_model, train_loader, device=device, precision=config.precision,
                              mixup_alpha=config.mixup_alpha, rng=rng, probe=probe, scaler=scaler)
        if out["first_bad_step"] >= 0 or not np.isfinite(out["train_loss"]):
            raise FloatingPointError(
                f"loss became NaN/inf at epoch {epoch}, batch {out['first_bad_step']} (lr={lr:g}, "
                f"precision={config.precision}); the last good checkpoint is {run_dir / 'checkpoint.pt'} "
                f"(epoch {state.epoch}). Lower lr, use warmup_epochs, or precision='fp32'/'bf16'.")
        state.epoch = epoch
        rec = {**{f"grad_{k}": v for k, v in probe.summary().items()},
               "weight_norm": probes.weight_norms(state.model), **probes.loss_summary(state.loss_fn)}
        state.probe_records.append(rec)
        row = None
        if (epoch + 1) % config.eval_every == 0 or epoch == config.epochs - 1:
            logits, labels = evaluate(model_call, test_loader, device=device, precision=config.precision)
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
        write_outputs(run_dir, state, counts)
        save_checkpoint(run_dir, state, config, train_loader)
        if any(cb(epoch, row or {}, state) == "stop" for cb in callbacks):
            state.stop_requested = True
            break
    bar.close()
    return state


class _ModelView:
    """TrainState whose ``model`` is the (possibly compiled) callable; the rest is shared."""

    def __init__(self, state: TrainState, model_call):
        self.model, self.loss_fn, self.optimizer = model_call, state.loss_fn, state.optimizer
        self.backbone_eval = state.backbone_eval and state.forward is None
