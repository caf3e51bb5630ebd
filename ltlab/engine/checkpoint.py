"""Checkpoints: what a run saves after every epoch (and every k steps), and how a run resumes from it.

A checkpoint holds the model (unwrapped; with its head kind, so :func:`ltlab.build.rebuild_model` can rebuild
it), the optimiser, the loss and stage state, the history (metrics, per-class accuracy, probe records, the
test labels and the epoch of the last test logits), the RNG states and, mid-epoch, the position inside the
epoch. The test logits themselves are stored once, in ``per_class.npz`` (iNaturalist: 800 MB); a resume reads
them back from there, or evaluates the checkpoint's model again when a kill came between checkpoint and
outputs (:func:`restore`, :func:`logits_to_refresh`). Reading one back is
:func:`ltlab.runs.load_checkpoint` (``weights_only=True``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, distributed, probes
from ..config import RunConfig
from ..runs import CHECKPOINT_FILE_KEY, CHECKPOINTS, save_torch
from .loop import EpochSums, TrainState, unwrap


def save_checkpoint(run_dir: Path, state: TrainState, config: RunConfig, *, position: dict | None = None,
                    scaler=None) -> None:
    """Atomically write ``checkpoint.pt``, keeping the previous one as ``checkpoint_prev.pt``.

    ``position``: where inside the next epoch training stands (a mid-epoch checkpoint, :func:`position`).
    """
    model = unwrap(state.model)
    ckpt = {
        "epoch": state.epoch, "model": model.state_dict(), "head_kind": getattr(model, "head_kind", None),
        "optimizer": state.optimizer.state_dict(), "loss": state.loss_fn.state_dict(),
        "fingerprint": config.fingerprint(), "ltlab_version": __version__,
        # the probe history goes in stacked (probes.stack_epochs): a handful of arrays instead of several per epoch
        "history": {"metrics": state.metrics, "per_class": state.per_class, "eval_epochs": state.eval_epochs,
                    "probes": probes.stack_epochs(state.probe_records), "probe_epochs": len(state.probe_records),
                    "test_logits_epoch": state.eval_epochs[-1] if state.test_logits is not None else None,
                    "test_labels": state.test_labels},
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()},
        "extras": {k: v.state_dict() for k, v in state.extras.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "position": position, "world_size": distributed.context().world_size,
    }
    save_torch(run_dir / CHECKPOINTS[0], ckpt, keep_previous=run_dir / CHECKPOINTS[1])
    state.checkpoint_epoch = state.epoch


def check_resume(config: RunConfig, ckpt: dict, run_dir: Path) -> None:
    """Refuse to resume with other parameters than the checkpoint's (the resume-free fields aside).

    The checkpoint's fingerprint is read through today's RunConfig first (when it still validates), so a
    checkpoint written before a parameter was added or renamed compares by meaning, not spelling.
    """
    old = ckpt.get("fingerprint", {})
    try:
        old = RunConfig(**old).fingerprint()
    except (ValueError, TypeError):
        pass  # compare as saved: the differences are listed below
    new = config.fingerprint()
    diff = sorted(k for k in set(old) | set(new) if _canonical(old.get(k)) != _canonical(new.get(k)))
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(f"cannot resume {run_dir}: its checkpoint was written by a different config ({details}). "
                         "Resume with the original parameters, or start a new run_dir with resume=False")


def _canonical(value: Any) -> str:
    """A config value as the checkpoint holds it (paths as strings; numpy as numbers), for comparison."""
    return json.dumps(value, sort_keys=True, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))


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


def restore(state: TrainState, ckpt: dict, run_dir: Path | None = None) -> None:
    """Load a checkpoint into ``state``: weights, optimiser, loss and stage state, history, position.

    A checkpoint that does not fit (weights of other shapes, a history of other types: edited, or written for
    another model) raises one ValueError naming the file and the part, before ``state`` is half restored.
    The last test logits come from the checkpoint (ltlab before issue 23 saved them there), else from
    ``run_dir/per_class.npz`` when it holds that evaluation's; otherwise they stay None and
    :func:`logits_to_refresh` says to evaluate the restored model again (the model they came from)."""
    where = ckpt.get(CHECKPOINT_FILE_KEY, "the checkpoint")
    fix = "resume with the parameters it was trained with, or start a new run (resume=False, another run_dir)"
    try:
        unwrap(state.model).load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot resume from {where}: its model weights do not fit this model "
                         f"({_first_line(exc)}); {fix}") from None
    try:
        h = _check_history(_arrays(ckpt["history"]))
        epoch = int(ckpt["epoch"])
        probe_records = probes.unstack_epochs(h["probes"], int(h["probe_epochs"]))
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.loss_fn.load_state_dict(ckpt["loss"])
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"cannot resume from {where}: its optimiser, loss state or history is not what ltlab writes "
                         f"({type(exc).__name__}: {_first_line(exc)}); it is corrupt or was edited: {fix}") from None
    state.epoch = state.checkpoint_epoch = epoch
    state.metrics, state.per_class, state.eval_epochs = list(h["metrics"]), list(h["per_class"]), list(h["eval_epochs"])
    state.probe_records = probe_records
    state.test_logits, state.test_labels = h.get("test_logits"), h.get("test_labels")
    if state.test_logits is None and h.get("test_logits_epoch") is not None and run_dir is not None:
        state.test_logits = _saved_logits(Path(run_dir), int(h["test_logits_epoch"]))
    for k, v in state.extras.items():
        if k not in ckpt.get("extras", {}):
            raise ValueError(f"checkpoint lacks the state of {k!r}; it was written by a different kind of run")
        v.load_state_dict(ckpt["extras"][k])
    state.position, state.scaler_state = ckpt.get("position"), ckpt.get("scaler")
    state.saved = describe(state.epoch, state.position)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _check_history(h: Any) -> dict:
    """The checkpoint's history if its parts have the types ltlab writes (lists of row dicts / arrays / ints,
    arrays or None for the test outputs); TypeError naming the part otherwise."""
    if not isinstance(h, dict):
        raise TypeError(f"history is a {type(h).__name__}, not a dict")
    for key, kind in (("metrics", dict), ("per_class", np.ndarray), ("eval_epochs", (int, np.integer))):
        items = h.get(key)
        if not isinstance(items, list) or not all(isinstance(x, kind) for x in items):
            raise TypeError(f"history[{key!r}] is not a list of {getattr(kind, '__name__', 'integers')}")
    for row in h["metrics"]:
        if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in row.values()):
            raise TypeError("history['metrics'] holds a row with a non-numeric value")
    for key in ("test_logits", "test_labels"):
        if h.get(key) is not None and not isinstance(h[key], np.ndarray):
            raise TypeError(f"history[{key!r}] is a {type(h[key]).__name__}, not an array")
    if not isinstance(h.get("probe_epochs"), (int, np.integer)) or not isinstance(h.get("probes"), dict):
        raise TypeError("history['probes'] / ['probe_epochs'] are not the stacked probe records")
    return h


def _saved_logits(run_dir: Path, epoch: int) -> np.ndarray | None:
    """The test logits of evaluated epoch ``epoch`` from ``per_class.npz``; None when it holds another epoch's
    (a kill between checkpoint and outputs), none at all, or cannot be read."""
    try:
        with np.load(run_dir / "per_class.npz", allow_pickle=False) as z:
            if "test_logits" in z.files and "epochs" in z.files and len(z["epochs"]) and int(z["epochs"][-1]) == epoch:
                return z["test_logits"]
    except Exception:  # noqa: BLE001 - missing or damaged: evaluate again (logits_to_refresh)
        pass
    return None


def logits_to_refresh(state: TrainState, save_logits: str = "float32") -> bool:
    """Whether the restored model must be evaluated again to recover the last test logits: the checkpoint
    ends on an evaluated epoch whose logits never reached ``per_class.npz`` (and the run saves logits)."""
    return (save_logits != "none" and state.test_logits is None and bool(state.eval_epochs)
            and state.eval_epochs[-1] == state.epoch)


def describe(epoch: int, position: dict | None) -> str:
    """What a checkpoint holds, for messages: ``end of epoch 3`` or ``epoch 4, step 20``."""
    if position is not None:
        return f"epoch {position['epoch']}, step {position['step']}"
    return f"end of epoch {epoch}" if epoch >= 0 else "none yet"


def position(epoch: int, steps: int, sums: EpochSums, probe: probes.GradientProbe, rng: np.random.Generator,
             device: torch.device) -> dict:
    """Everything needed to continue epoch ``epoch`` after ``steps`` steps (collective under DDP).

    Loss sum and count are global; the probe sums are the single-process ones (sum over ranks / world
    size, see the trainer); RNG states (torch, CUDA, the mixup generator) are kept per rank.
    """
    ctx = distributed.context()
    total, count = sums.global_sums()
    partial = {k: (distributed.all_reduce_(t.clone()) / ctx.world_size).cpu() for k, t in probe.sums.items()}
    rng_state = {"torch": torch.get_rng_state(), "mixup": rng.bit_generator.state,
                 "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    return {"epoch": epoch, "step": steps, "total": total, "count": count, "probe": partial,
            "rng": distributed.all_gather_objects(rng_state)}


def resume_position(pos: dict, probe: probes.GradientProbe, rng: np.random.Generator,
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
