"""Two-stage recipes: stage-two configs and the post-hoc steps on a finished run (baselines.md 3; methods.md 1b, 4).

A stage two is an ordinary run of the one loop: ``RunConfig(init_from=<stage-one run dir>,
stage="classifier"|"afg", ...)`` (see :func:`ltlab.engine.build_model`). This module builds such
configs from a stage-one run (:func:`stage_two_config`) and holds the post-hoc steps that need no
training: decoupling's tau-normalisation with tau chosen on a validation split
(:func:`tau_normalization`), GALA's prediction re-balancing (:func:`pn_accuracy`) and post-hoc logit
adjustment (:func:`logit_adjust_accuracy`), each returning overall/many/medium/few accuracy in [0, 1].
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from . import posthoc as ph
from .config import RunConfig
from .metrics import per_class_accuracy, shot_accuracy
from .models.heads import LinearHead, LWSHead
from .runs import Run, load_run, write_json

# what a stage two takes over from its stage one (it must see the same data through the same model)
INHERITED = ("dataset", "root", "imbalance_factor", "imbalance_profile", "data_seed", "dataset_params",
             "val_per_class", "model", "model_params", "seed", "device", "precision", "channels_last", "compile",
             "num_workers", "eval_every", "progress", "method", "preset", "sync_bn",
             "checkpoint_every_steps")


def _run(run: Run | str | os.PathLike) -> Run:
    return run if isinstance(run, Run) else load_run(run)


def run_config(run: Run | str | os.PathLike) -> RunConfig:
    """The RunConfig a run directory was trained with (extra keys of config.json dropped)."""
    cfg = _run(run).config
    return RunConfig(**{k: cfg[k] for k in RunConfig.field_names() if k in cfg and k != "resume"})


def stage_two_config(stage_one: Run | str | os.PathLike, **params: Any) -> RunConfig:
    """Config of a second stage on ``stage_one``: its data/model/execution fields (``INHERITED``),
    ``init_from`` = its directory, ``stage="classifier"`` unless given, then ``params``."""
    src = _run(stage_one)
    base = {k: src.config[k] for k in INHERITED if k in src.config}
    return RunConfig(**{**base, "stage": "classifier", "init_from": str(src.dir), **params})


def shot_scores(preds: np.ndarray, labels: np.ndarray, class_counts: Sequence[int]) -> dict[str, float]:
    """``overall`` (sample mean; the balanced test split makes it the class mean) and many/medium/few in [0, 1]."""
    acc_c = per_class_accuracy(np.asarray(preds), np.asarray(labels), len(class_counts))
    shots = shot_accuracy(acc_c, list(class_counts))
    return {"overall": float(np.mean(np.asarray(preds) == np.asarray(labels))),
            **{k: float(v) for k, v in shots.items()}}


def _test_outputs(run: Run) -> tuple[np.ndarray, np.ndarray]:
    pc = run.per_class
    if "test_logits" not in pc:
        raise ValueError(f"{run.dir}/per_class.npz holds no test logits; the run never evaluated")
    return pc["test_logits"].astype(np.float64), pc["test_labels"]


def scaled_test_logits(run: Run | str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The last evaluation's test logits (M, C) float64 and labels (M,) as the loss saw them: the saved
    outputs of a cosine-head run are multiplied by the loss's scale s (e.g. 30 for GCL, LDAM, ALA)."""
    from .losses import create_loss

    r = _run(run)
    logits, labels = _test_outputs(r)
    if r.config.get("loss_input_kind") == "cosine":
        loss = create_loss(r.config["loss"], r.class_counts, **r.config.get("loss_params", {}))
        logits = logits * float(getattr(loss, "s", 1.0))
    return logits, labels


def _save(run: Run, name: str, result: dict, save: bool) -> dict:
    if save:
        write_json(run.dir / f"posthoc_{name}.json", result)
    return result


def pn_accuracy(run: Run | str | os.PathLike, tau: float = 1.0, scale: float = 1.0,
                save: bool = False) -> dict[str, Any]:
    """GALA test-time prediction re-balancing (GALA 003, Eq. 13; methods.md 4) on a run's saved test logits.

    ``posthoc.pn_rebalance(scale * logits, tau)`` over the whole test set at once, then argmax.
    tau = 1 is the official ``pow_for_logits``; ``scale`` multiplies saved cosine outputs (pass the
    loss's s for cosine-head runs). Returns ``{"method", "tau", "overall", "many", "medium", "few"}``;
    ``save=True`` also writes ``posthoc_pn.json`` into the run directory (atomically).
    """
    r = _run(run)
    logits, labels = _test_outputs(r)
    preds = ph.pn_rebalance(scale * logits, tau).argmax(1)
    return _save(r, "pn", {"method": "pn", "tau": float(tau), **shot_scores(preds, labels, r.class_counts)}, save)


def logit_adjust_accuracy(run: Run | str | os.PathLike, tau: float = 1.0, save: bool = False) -> dict[str, Any]:
    """Post-hoc logit adjustment ``argmax(z - tau log pi)`` (Menon et al. 2021, Eq. 9) on saved test logits."""
    r = _run(run)
    logits, labels = _test_outputs(r)
    preds = ph.logit_adjust(logits, r.class_counts, tau).argmax(1)
    return _save(r, "logit_adjust", {"method": "logit_adjust", "tau": float(tau),
                                     **shot_scores(preds, labels, r.class_counts)}, save)


def _model_and_data(r: Run, device: str | torch.device):
    from .engine import build_model, load_checkpoint, load_datasets

    cfg = run_config(r)
    train_ds, test_ds = load_datasets(cfg)
    model = build_model(cfg, train_ds)
    model.load_state_dict(load_checkpoint(r.dir)["model"])
    return cfg, model.to(device).eval(), test_ds


def tau_normalization(run: Run | str | os.PathLike, taus: Sequence[float] | None = None,
                      select_on: Literal["val", "test"] = "val", val_per_class: int | None = None,
                      device: str | torch.device = "cpu", save: bool = True) -> dict[str, Any]:
    """Decoupling's tau-normalised classifier on a (stage-one) run, tau chosen on a split (Kang et al. 2020, Eq. 4).

    Logits ``f @ tau_normalize(W, tau).T`` with the bias dropped (official code), W (C, D) the run's
    linear head, for tau in ``taus`` (default 0, 0.1, ..., 2 as the script). ``select_on="val"``
    (default, the paper's protocol) picks tau on the balanced validation split of ``val_per_class``
    images per class (default: the run's ``val_per_class``, else 20 as ImageNet-LT's val, LIB);
    ``"test"`` is the official script's test-set sweep, an explicit option. Returns the chosen ``tau``,
    ``selection_acc``, test ``overall``/``many``/``medium``/``few`` in [0, 1] and the ``sweep``; with
    ``save`` also ``posthoc_tau_norm.json`` in the run directory (atomic write).
    """
    from .afg import extract
    from .engine import load_val_dataset

    if select_on not in ("val", "test"):
        raise ValueError(f"select_on must be 'val' or 'test', got {select_on!r}")
    r = _run(run)
    taus = [round(0.1 * i, 10) for i in range(21)] if taus is None else [float(t) for t in taus]
    if not taus:
        raise ValueError("taus must hold at least one value")
    cfg, model, test_ds = _model_and_data(r, device)
    if not isinstance(model.head, LinearHead) or isinstance(model.head, LWSHead):
        raise ValueError(f"tau-normalisation needs a linear head; {r.dir} has a {model.head_kind!r} head")
    w = model.head.weight.detach().double()
    test_f, test_y = extract(model, test_ds, torch.device(device))
    sel_f, sel_y = test_f, test_y
    if select_on == "val":
        k = val_per_class or cfg.val_per_class or 20
        try:
            val_ds = load_val_dataset(cfg.replace(val_per_class=k))
        except ValueError as exc:
            raise ValueError(f"{exc}; or choose tau on the test set with select_on='test' (the paper's sweep)") from exc
        sel_f, sel_y = extract(model, val_ds, torch.device(device))
    sweep = []
    for tau in taus:
        wt = ph.tau_normalize(w, tau)
        sweep.append({"tau": tau, "selection_acc": float(((sel_f.double() @ wt.T).argmax(1) == sel_y).double().mean()),
                      "test_acc": float(((test_f.double() @ wt.T).argmax(1) == test_y).double().mean())})
    best = max(sweep, key=lambda row: row["selection_acc"])  # first maximum: the smallest such tau
    preds = (test_f.double() @ ph.tau_normalize(w, best["tau"]).T).argmax(1).cpu().numpy()
    result = {"method": "tau_norm", "tau": best["tau"], "select_on": select_on,
              "selection_acc": best["selection_acc"], **shot_scores(preds, test_y.cpu().numpy(), r.class_counts),
              "sweep": sweep}
    return _save(r, "tau_norm", result, save)


def apply_posthoc(run: Run | str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """Run the post-hoc step named in the run's ``posthoc`` config and save ``posthoc_<method>.json``."""
    r = _run(run)
    spec = dict(r.config.get("posthoc") or {})
    if not spec:
        return None
    name = spec.pop("method")
    if name == "pn":
        return pn_accuracy(r, save=True, **spec)
    if name == "logit_adjust":
        return logit_adjust_accuracy(r, save=True, **spec)
    if name == "tau_norm":
        return tau_normalization(r, device=device, save=True, **spec)
    raise ValueError(f"unknown post-hoc method {name!r}; valid: pn, logit_adjust, tau_norm")


def read_posthoc(run_dir: str | os.PathLike, name: str) -> dict[str, Any] | None:
    """The saved ``posthoc_<name>.json`` of a run, or None."""
    import json

    path = Path(run_dir) / f"posthoc_{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
