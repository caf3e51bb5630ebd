"""Post-hoc steps on a finished run: its inputs (saved test logits, features of its rebuilt model) through the
estimators of :mod:`ltlab.posthoc.estimators`, scored overall and many/medium/few.

:func:`posthoc_on_run` is the one step every method goes through (the post-hoc panel of
:mod:`ltlab.widgets` reads its inputs with the same functions); :func:`pn_accuracy`,
:func:`logit_adjust_accuracy` and :func:`tau_normalization` name its usual settings and
:func:`apply_posthoc` runs the step a run's ``posthoc`` config names (``posthoc_<method>.json``).
"""
from __future__ import annotations

import os
from typing import Any, Literal, Sequence

import numpy as np
import torch

from ..build import load_datasets, load_val_dataset, rebuild_model
from ..features import forward_split
from ..losses import create_loss
from ..metrics import per_class_accuracy, shot_accuracy
from ..models import LinearHead
from ..runs import Run, as_run, write_json
from .estimators import POSTHOC, TauNormalizer


def shot_scores(preds: np.ndarray, labels: np.ndarray, class_counts: Sequence[int]) -> dict[str, float]:
    """``overall`` (sample mean; the balanced test split makes it the class mean) and many/medium/few in [0, 1]."""
    acc_c = per_class_accuracy(np.asarray(preds), np.asarray(labels), len(class_counts))
    shots = shot_accuracy(acc_c, list(class_counts))
    return {"overall": float(np.mean(np.asarray(preds) == np.asarray(labels))),
            **{k: float(v) for k, v in shots.items()}}


def logit_scale(run: Run) -> float:
    """The factor the loss applied to the model's outputs: its ``s`` for a cosine head (GCL, LDAM, ALA), else 1."""
    if run.config.get("loss_input_kind") != "cosine":
        return 1.0
    loss = create_loss(run.config["loss"], run.class_counts, **run.config.get("loss_params", {}))
    return float(getattr(loss, "s", 1.0))


def scaled_test_logits(run: Run | str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The last evaluation's test logits (M, C) float64 and labels (M,) as the loss saw them: the saved
    outputs of a cosine-head run are multiplied by the loss's scale s (e.g. 30 for GCL, LDAM, ALA)."""
    r = as_run(run)
    logits, labels = r.test_logits()  # a RunFileError (ValueError) naming save_logits when the run saved none
    return logits.astype(np.float64) * logit_scale(r), np.asarray(labels)


def classifier_weight(model: torch.nn.Module) -> np.ndarray:
    """The rows (C, D) float64 tau-normalisation rescales: a linear head's W, an LWS head's ``scale * W``.
    Other heads raise (a cosine head normalises its rows itself; a Tukey head acts on transformed features)."""
    if not isinstance(model.head, LinearHead):
        raise ValueError(f"tau-normalisation needs a linear or LWS head (logits f W^T + b); the model has a "
                         f"{model.head_kind!r} head")
    return model.head.weight_matrix().detach().double().cpu().numpy()


def split_inputs(run: Run, kind: Literal["logits", "features"], split: Literal["test", "val"], *,
                 model: torch.nn.Module | None = None, val_per_class: int | None = None,
                 device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(X float64, labels)`` of a run's split: logits as the loss saw them (the saved ones for the test
    split) or penultimate features of its rebuilt model (``model``: one already rebuilt)."""
    if kind == "logits" and split == "test":
        return scaled_test_logits(run)
    if split == "test":
        ds = load_datasets(run.config)[1]
    else:
        k = val_per_class or run.config.get("val_per_class") or 20  # 20 per class: ImageNet-LT's val, LIB
        try:
            ds = load_val_dataset(run.config, k)
        except ValueError as exc:
            raise ValueError(f"{exc}; or choose tau on the test set with select_on='test' (the paper's sweep)") from exc
    model = rebuild_model(run) if model is None else model
    f, z, y = forward_split(model, ds, device)
    x = f if kind == "features" else z.double() * logit_scale(run)
    return x.double().cpu().numpy(), y.cpu().numpy()


def posthoc_on_run(run: Run | str | os.PathLike, method: str, *, tau: float = 1.0, taus: Sequence[float] | None = None,
                   select_on: Literal["val", "test"] = "test", val_per_class: int | None = None,
                   device: str | torch.device = "cpu", save: bool = False) -> dict[str, Any]:
    """The post-hoc ``method`` (a name in ``POSTHOC``) on a run: fitted on the ``select_on`` split (choosing
    tau among ``taus`` when given), scored on the test split. Returns ``method``, ``tau``, ``select_on``,
    ``overall``/``many``/``medium``/``few`` in [0, 1] and, with ``taus``, ``selection_acc`` and ``sweep``
    (``tau``, ``selection_acc``, ``test_acc`` per tau); ``save`` writes ``posthoc_<method>.json`` (atomic)."""
    if method not in POSTHOC:
        raise ValueError(f"unknown post-hoc method {method!r}; valid: {', '.join(POSTHOC)}")
    if select_on not in ("val", "test"):
        raise ValueError(f"select_on must be 'val' or 'test', got {select_on!r}")
    r, cls = as_run(run), POSTHOC[method]
    model = rebuild_model(r) if cls.inputs == "features" or (taus is not None and select_on == "val") else None
    given = {"class_counts": lambda: r.class_counts, "weight": lambda: classifier_weight(model)}
    est = cls(*[given[k]() for k in cls.requires], tau=tau, taus=taus)
    x_test, y_test = split_inputs(r, cls.inputs, "test", model=model, device=device)
    x_sel, y_sel = x_test, y_test
    if taus is not None and select_on == "val":
        x_sel, y_sel = split_inputs(r, cls.inputs, "val", model=model, val_per_class=val_per_class, device=device)
    est.fit(x_sel, y_sel)
    result = {"method": method, "tau": est.tau_, "select_on": select_on,
              **shot_scores(est.predict(x_test), y_test, r.class_counts)}
    if est.sweep_ is not None:
        result["selection_acc"] = dict(est.sweep_)[est.tau_]
        result["sweep"] = [{"tau": t, "selection_acc": acc, "test_acc": est.score(x_test, y_test, t)}
                           for t, acc in est.sweep_]
    if save:
        write_json(r.dir / f"posthoc_{method}.json", result)
    return result


def pn_accuracy(run: Run | str | os.PathLike, tau: float = 1.0, save: bool = False) -> dict[str, Any]:
    """GALA test-time prediction re-balancing (GALA 003, Eq. 13) on the run's saved test logits (scaled as the
    loss saw them), tau = 1 the official ``pow_for_logits``; :func:`posthoc_on_run` with method "pn"."""
    return posthoc_on_run(run, "pn", tau=tau, save=save)


def logit_adjust_accuracy(run: Run | str | os.PathLike, tau: float = 1.0, save: bool = False) -> dict[str, Any]:
    """Post-hoc logit adjustment ``argmax(z - tau log pi)`` (Menon et al. 2021, Eq. 9) on saved test logits."""
    return posthoc_on_run(run, "logit_adjust", tau=tau, save=save)


def tau_normalization(run: Run | str | os.PathLike, taus: Sequence[float] | None = None,
                      select_on: Literal["val", "test"] = "val", val_per_class: int | None = None,
                      device: str | torch.device = "cpu", save: bool = True) -> dict[str, Any]:
    """Decoupling's tau-normalised classifier on a (stage-one) run, tau chosen on a split (Kang et al. 2020, Eq. 4).

    Logits ``f @ tau_normalize(W, tau).T`` with the bias dropped (official code), W (C, D) the run's
    linear head, for tau in ``taus`` (default 0, 0.1, ..., 2 as the script). ``select_on="val"``
    (default, the paper's protocol) picks tau on the balanced validation split of ``val_per_class``
    images per class (default: the run's ``val_per_class``, else 20 as ImageNet-LT's val, LIB);
    ``"test"`` is the official script's test-set sweep, an explicit option. Saves ``posthoc_tau_norm.json``.
    """
    taus = TauNormalizer.run_defaults["taus"] if taus is None else taus
    return posthoc_on_run(run, "tau_norm", taus=taus, select_on=select_on,
                          val_per_class=val_per_class, device=device, save=save)


def apply_posthoc(run: Run | str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """Run the post-hoc step named in the run's ``posthoc`` config and save ``posthoc_<method>.json``."""
    r = as_run(run)
    spec = dict(r.config.get("posthoc") or {})
    if not spec:
        return None
    method = spec.pop("method")
    defaults = POSTHOC[method].run_defaults if method in POSTHOC else {}
    return posthoc_on_run(r, method, device=device, save=True, **{**defaults, **spec})
