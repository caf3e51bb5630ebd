"""Post-hoc steps on a finished run: its inputs (saved test logits, features of its rebuilt model) through the
estimators of :mod:`ltlab.posthoc.estimators`, scored overall and many/medium/few.

:func:`posthoc_on_run` is the one step every method goes through (the post-hoc panel of
:mod:`ltlab.viz.widgets` reads its inputs with the same functions); :func:`pn_accuracy`,
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


def classifier_bias(model: torch.nn.Module) -> np.ndarray:
    """The additive term (C,) float64 of a linear head's logits ``f W^T + b``: ``b``, or ``scale * b`` for an
    LWS head (whose logits are ``scale * (f W^T + b)``); what tau-normalisation with ``keep_bias`` adds back."""
    if not isinstance(model.head, LinearHead):
        raise ValueError(f"keep_bias needs a linear or LWS head (logits f W^T + b); the model has a "
                         f"{model.head_kind!r} head")
    if model.head.bias is None:  # head='linear_nobias': nothing to add back
        return np.zeros(model.head.num_classes)
    b = model.head.bias.detach()
    scale = getattr(model.head, "scale", None)
    return (b * scale.detach() if scale is not None else b).double().cpu().numpy()


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
        except ValueError as exc:  # val_policy is a dataset option, not one of this function's
            why = str(exc).replace(" or pass val_policy='available'", " or pass a smaller val_per_class here")
            raise ValueError(f"{why}; or leave select_on=None (a fixed tau when there is no validation split), or "
                             "select on the test split with select_on='test' (test-set tuning)") from exc
    model = rebuild_model(run) if model is None else model
    f, z, y = forward_split(model, ds, device)
    x = f if kind == "features" else z.double() * logit_scale(run)
    return x.double().cpu().numpy(), y.cpu().numpy()


# other spellings users reach for (the functions' names); POSTHOC holds the one set of method names
METHOD_ALIASES = {"tau_normalize": "tau_norm", "tau_normalization": "tau_norm", "pn_rebalance": "pn",
                  "logit_adjustment": "logit_adjust", "logit_adjusted": "logit_adjust"}


def posthoc_method(method: str) -> str:
    """The ``POSTHOC`` name of ``method`` (function-name spellings such as ``tau_normalize`` accepted)."""
    name = METHOD_ALIASES.get(method, method)
    if name not in POSTHOC:
        raise ValueError(f"unknown post-hoc method {method!r}; valid: {', '.join(POSTHOC)}")
    return name


def _selection(run: Run, cls, taus, select_on, x_test, y_test, model, val_per_class, device):
    """``(X, y, split, note)`` that fix tau: the validation split by default, the test split only when asked."""
    if taus is None:
        return x_test, y_test, "none", "fixed tau, no selection"
    if select_on == "test":
        return x_test, y_test, "test", "tau selected on the TEST split (test-set tuning: report it as such)"
    try:
        x, y = split_inputs(run, cls.inputs, "val", model=model, val_per_class=val_per_class, device=device)
        return x, y, "val", "tau selected on the validation split"
    except ValueError as exc:
        if select_on == "val":
            raise
        return None, None, "none", f"no validation split ({exc}); fixed tau, no selection"


def posthoc_on_run(run: Run | str | os.PathLike, method: str, *, tau: float = 1.0, taus: Sequence[float] | None = None,
                   select_on: Literal["val", "test"] | None = None, val_per_class: int | None = None,
                   keep_bias: bool = False, device: str | torch.device = "cpu", save: bool = False) -> dict[str, Any]:
    """The post-hoc ``method`` (a name in ``POSTHOC``) on a run, scored on the test split.

    With ``taus``, tau is chosen among them on a split: ``select_on=None`` (default) takes the run's
    balanced validation split where its data has one (CIFAR-LT leaves unused training images; see
    :func:`split_inputs`) and otherwise keeps the fixed ``tau`` with no selection; ``"val"`` requires the
    validation split; ``"test"`` selects on the test split, only when asked (test-set tuning). Returns
    ``method``, ``tau``, ``select_on`` (the split that chose tau: ``"val"``, ``"test"`` or ``"none"``),
    ``selection`` (that in words), ``overall``/``many``/``medium``/``few`` in [0, 1] and, when tau was
    selected, ``selection_acc`` and ``sweep`` (``tau``, ``selection_acc``, ``test_acc`` per tau); ``save``
    writes ``posthoc_<method>.json`` (atomic). ``keep_bias`` (tau_norm only) adds the head's bias to the
    tau-normalised scores, as BagofTricks-LT's tau-norm does (the result then records ``keep_bias: true``); by
    default it is dropped, as Kang et al."""
    method = posthoc_method(method)
    if select_on not in (None, "val", "test"):
        raise ValueError(f"select_on must be None (validation split where there is one), 'val' or 'test', "
                         f"got {select_on!r}")
    if keep_bias and method != "tau_norm":
        raise ValueError(f"keep_bias applies to tau_norm only (the classifier's bias), not to {method!r}")
    r, cls = as_run(run), POSTHOC[method]
    model = rebuild_model(r) if cls.inputs == "features" or (taus is not None and select_on != "test") else None
    given = {"class_counts": lambda: r.class_counts, "weight": lambda: classifier_weight(model)}
    extra = {"bias": classifier_bias(model)} if keep_bias else {}
    x_test, y_test = split_inputs(r, cls.inputs, "test", model=model, device=device)
    x_sel, y_sel, chosen_on, note = _selection(r, cls, taus, select_on, x_test, y_test, model, val_per_class, device)
    est = cls(*[given[k]() for k in cls.requires], tau=tau, taus=taus if chosen_on != "none" else None, **extra)
    est.fit(x_test if x_sel is None else x_sel, y_test if y_sel is None else y_sel)
    result = {"method": method, "tau": est.tau_, "select_on": chosen_on, "selection": note,
              **({"keep_bias": True} if keep_bias else {}),
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
                      select_on: Literal["val", "test"] | None = None, val_per_class: int | None = None,
                      device: str | torch.device = "cpu", save: bool = True, *, tau: float | None = None,
                      keep_bias: bool = False) -> dict[str, Any]:
    """Decoupling's tau-normalised classifier on a (stage-one) run, tau chosen on a split (Kang et al. 2020, Eq. 4).

    Logits ``f @ tau_normalize(W, tau).T`` with the bias dropped (official code), W (C, D) the run's
    linear head, for tau in ``taus`` (default 0, 0.1, ..., 2 as the script). By default (``select_on=None``,
    the paper's protocol where the data allow it) tau is picked on the balanced validation split of
    ``val_per_class`` images per class (default: the run's ``val_per_class``, else 20 as ImageNet-LT's
    val, LIB), and without one tau = 1 is kept with no selection; ``"val"`` requires the validation split;
    ``"test"`` is the official script's test-set sweep, an explicit option. Saves ``posthoc_tau_norm.json``.

    ``tau`` fixes tau (no sweep, no selection split; not with ``taus``) and ``keep_bias`` adds the head's
    bias back: ``tau=1.0, keep_bias=True`` is BagofTricks-LT's tau-norm (``TEST.TAU_NORM.TAU: 1.0``, only
    ``classifier.weight`` rescaled), the procedure behind its CIFAR-LT tau-norm numbers.
    """
    if tau is not None:
        if taus is not None:
            raise ValueError("give either tau (a fixed value) or taus (a sweep), not both")
        return posthoc_on_run(run, "tau_norm", tau=tau, select_on=select_on, keep_bias=keep_bias, device=device,
                              save=save)
    taus = TauNormalizer.run_defaults["taus"] if taus is None else taus
    return posthoc_on_run(run, "tau_norm", taus=taus, select_on=select_on, keep_bias=keep_bias,
                          val_per_class=val_per_class, device=device, save=save)


def apply_posthoc(run: Run | str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any] | None:
    """Run the post-hoc step named in the run's ``posthoc`` config and save ``posthoc_<method>.json``.

    The method's ``run_defaults`` fill in what the config leaves out, except that a config giving ``tau``
    without ``taus`` uses that tau (e.g. ``{method: tau_norm, tau: 1.0, keep_bias: true}``, BagofTricks-LT's
    fixed-tau tau-norm) instead of the default sweep."""
    r = as_run(run)
    spec = dict(r.config.get("posthoc") or {})
    if not spec:
        return None
    method = spec.pop("method")
    defaults = dict(POSTHOC[method].run_defaults) if method in POSTHOC else {}
    if "tau" in spec and "taus" not in spec:
        defaults.pop("taus", None)  # a tau given in the config is the value used, not the start of a sweep
    return posthoc_on_run(r, method, device=device, save=True, **{**defaults, **spec})
