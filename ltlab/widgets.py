"""Interactive panels for JupyterLab (ipywidgets + plotly ``FigureWidget``); issue 7.

- :func:`posthoc_panel`: sliders for post-hoc logit adjustment (tau), PN re-balancing (tau) and
  tau-normalisation (p) over a run's saved test logits; per-class accuracy bars and the
  many/medium/few numbers update live (no retraining). The maths is :class:`PosthocEvaluator`.
- :func:`schedule_explorer`: GLAG alpha(T) / beta, ALA DF / QF, GCL cloud widths and DRW weights
  redrawn from hyper-parameter sliders (pure curves: :func:`schedule_curves`).
- :func:`training_panel`: start a short run from widgets; loss and per-group accuracy curves update
  every epoch from a background thread; Stop ends the run cleanly after its checkpoint.

Every panel builds and runs headless (papermill, no front end): widgets then only hold state.
The file is longer than our usual ~200 lines because the three panels share one small toolkit
(LIB decision: ARCHITECTURE.md names a single ``widgets.py``).
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .data.longtail import longtail_counts, shot_split
from .metrics import shot_accuracy

if TYPE_CHECKING:
    import ipywidgets

    from .config import RunConfig
    from .runs import Run

GROUPS = ("many", "medium", "few")
GROUP_COLORS = {"many": "#0072B2", "medium": "#E69F00", "few": "#D55E00"}  # Okabe-Ito, as plotting.py
_LAYOUT = dict(template="simple_white", margin=dict(l=60, r=20, t=50, b=50))


# ============================================================================ post-hoc maths
class PosthocEvaluator:
    """Per-class and many/medium/few accuracy of post-hoc adjusted predictions, fast enough for a slider.

    Composition (reference/baselines.md post-hoc; methods.md 4 "PN"): logits ``z(p)`` ->
    logit adjustment ``z - la_tau * log(pi)`` (Menon et al. 2021, Eq. 9) -> PN re-balancing
    ``softmax / colsum(softmax) ** pn_tau`` over the whole test set (GALA, Sec. 3.3) -> argmax.
    ``z(p)`` is the saved logits for ``tn_p = 0``; otherwise ``features @ tau_normalize(W, p).T + b``
    (Kang et al. 2020, Eq. 4; the bias is kept unchanged, LIB), which needs ``features`` and ``weight``.

    Args:
        logits: (M, C) saved test logits (cosine heads: the cosines; the scale does not move the argmax
            of LA with tau = 0 but does for tau > 0, so pass ``s * cosine`` to match the loss's view).
        labels: (M,) int test labels.
        class_counts: (C,) training counts (prior ``pi_c = n_c / sum n``; shot groups by 100 / 20).
        features, weight, bias: (M, D), (C, D), (C,) optional, for tau-normalisation.

    The softmax of ``z(p)`` is computed once per ``p`` and cached, so an LA / PN update costs a few
    element-wise products and reductions over (M, C) in float64 and no exp.
    """

    def __init__(self, logits, labels, class_counts, features=None, weight=None, bias=None):
        self.logits = _np64(logits)
        self.labels = np.asarray(labels).astype(np.int64).reshape(-1)
        self.class_counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
        m, c = self.logits.shape
        if self.labels.shape[0] != m or self.class_counts.shape[0] != c:
            raise ValueError(f"PosthocEvaluator: logits {self.logits.shape}, labels {self.labels.shape} and "
                             f"class_counts {self.class_counts.shape} do not agree (need (M, C), (M,), (C,))")
        if np.any(self.class_counts <= 0):
            raise ValueError(f"PosthocEvaluator: class counts must be > 0, got {self.class_counts.tolist()}")
        self.num_classes = c
        self.log_prior = np.log(self.class_counts / self.class_counts.sum())
        self.test_counts = np.bincount(self.labels, minlength=c).astype(np.float64)
        self.features = None if features is None else _np64(features)
        self.weight = None if weight is None else _np64(weight)
        self.bias = np.zeros(c) if bias is None else _np64(bias).reshape(-1)
        self._cache: dict[float, np.ndarray] = {}

    @property
    def can_tau_normalize(self) -> bool:
        return self.features is not None and self.weight is not None

    def softmax(self, tn_p: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Cached ``(log_softmax(z(p)), softmax(z(p)))``, each (M, C)."""
        key = round(float(tn_p), 9)
        if key not in self._cache:
            z = self.logits if key == 0 else self._tau_norm_logits(key)
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            self._cache[key] = (logp, np.exp(logp))
            if len(self._cache) > 8:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def _tau_norm_logits(self, p: float) -> np.ndarray:
        if not self.can_tau_normalize:
            raise ValueError("tau-normalisation needs test features and classifier weights; "
                             "build the evaluator with features= and weight= (posthoc_panel(run, features='extract'))")
        norms = np.maximum(np.linalg.norm(self.weight, axis=1, keepdims=True), 1e-12)
        return self.features @ (self.weight / norms ** p).T + self.bias[None, :]

    def predict(self, la_tau: float = 0.0, pn_tau: float = 0.0, tn_p: float = 0.0) -> np.ndarray:
        """Adjusted predictions (M,) int64."""
        logp, p = self.softmax(tn_p)
        if pn_tau == 0:
            return (logp - la_tau * self.log_prior[None, :]).argmax(axis=1) if la_tau else logp.argmax(axis=1)
        if la_tau != 0:
            # softmax(z - tau log pi) = softmax(z) * pi^-tau, renormalised per row. pi^-tau >= 1 for tau >= 0,
            # so an entry that underflowed to 0 can never become a row's argmax.
            p = p * np.exp(-la_tau * self.log_prior)[None, :]
            p /= p.sum(axis=1, keepdims=True)
        return (p * p.sum(axis=0) ** (-pn_tau)).argmax(axis=1)

    def evaluate(self, la_tau: float = 0.0, pn_tau: float = 0.0, tn_p: float = 0.0) -> dict:
        """``{"per_class": (C,), "overall", "many", "medium", "few"}`` (accuracies in [0, 1]; NaN: no test sample)."""
        pred = self.predict(la_tau, pn_tau, tn_p)
        hits = np.bincount(self.labels, weights=(pred == self.labels), minlength=self.num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(self.test_counts > 0, hits / np.maximum(self.test_counts, 1), np.nan)
        return {"per_class": acc, "overall": float(np.mean(pred == self.labels)),
                **shot_accuracy(acc, self.class_counts)}


def _np64(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def posthoc_accuracy(logits, labels, class_counts, la_tau: float = 0.0, pn_tau: float = 0.0) -> dict:
    """One-shot :meth:`PosthocEvaluator.evaluate`: logits (M, C) -> per-class accuracy (C,) + many/medium/few."""
    return PosthocEvaluator(logits, labels, class_counts).evaluate(la_tau, pn_tau)


def benchmark_posthoc(num_samples: int = 10_000, num_classes: int = 100, repeats: int = 20, seed: int = 0) -> float:
    """Median wall time (ms) of one slider update (LA + PN, both active) on random logits of that size."""
    rng = np.random.default_rng(seed)
    counts = longtail_counts(500, num_classes, 100)
    ev = PosthocEvaluator(rng.normal(size=(num_samples, num_classes)) * 3,
                          rng.integers(0, num_classes, num_samples), counts)
    ev.evaluate(0.5, 0.5)  # warm the cache (the panel does this once at construction)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        ev.evaluate(0.5 + 0.01 * i, 0.3 + 0.01 * i)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


# ============================================================================ post-hoc panel
NO_LOGITS = ("{dir} has no saved test logits (per_class.npz lacks 'test_logits'). ltlab.run saves them at every "
             "evaluated epoch: train or resume the run until at least one evaluation, e.g. "
             "ltlab.run(run_dir='{dir}', resume=True, epochs=<total>) or "
             "python -m ltlab run notebooks/01_train.ipynb -p run_dir {dir} -p resume True")


def load_evaluator(run: Run | str | os.PathLike,
                   features: Literal["auto", "extract", "none"] = "auto") -> tuple[PosthocEvaluator, str]:
    """Evaluator for a run (Run or path) plus a note on tau-normalisation (empty when available).

    ``features``: "auto" uses ``features_test.npz`` when present; "extract" runs the checkpoint's
    backbone over the test split once (CPU); "none" disables tau-normalisation.
    """
    from .runs import load_run
    if features not in ("auto", "extract", "none"):
        raise ValueError(f"features must be 'auto', 'extract' or 'none', got {features!r}")
    run = run if hasattr(run, "per_class") else load_run(run)
    pc = run.per_class
    if "test_logits" not in pc or "test_labels" not in pc:
        raise ValueError(NO_LOGITS.format(dir=run.dir))
    from .stages import scaled_test_logits
    logits, labels = scaled_test_logits(run)  # cosine outputs times the scale the loss trained with
    feats, w, b, note = _tau_norm_inputs(run, features)
    return PosthocEvaluator(logits, labels, run.class_counts, feats, w, b), note


def _tau_norm_inputs(run, features: str):
    """(test features (M, D), weights (C, D), effective bias (C,), note); Nones and a note when unavailable."""
    if run.config.get("resolved_head") == "cosine":
        return None, None, None, ("tau-normalisation is off: a cosine head's weights are unit-norm already "
                                  "(p has no effect).")
    if features == "none":
        return None, None, None, "tau-normalisation is off (features='none')."
    saved = run.dir / "features_test.npz"
    if features == "auto" and not saved.exists():
        return None, None, None, ("tau-normalisation is off: the run has no features_test.npz. Use "
                                  "posthoc_panel(run, features='extract') (one forward pass over the test split "
                                  "with checkpoint.pt) or ltlab.features.run_features(run, 'test', extract=True).")
    import torch

    from .config import RunConfig
    from .data import DeviceLoader
    from .engine import load_checkpoint, load_datasets
    from .models import create_model
    fields = set(RunConfig.field_names())
    cfg = RunConfig(**{**{k: v for k, v in run.config.items() if k in fields},
                       "init_from": None, "stage": "joint", "resume": False, "device": "cpu"})
    test_ds = load_datasets(cfg)[1]
    kw = {k: v for k, v in cfg.model_params.items() if k != "weights_path"}  # the checkpoint replaces them
    model = create_model(cfg.model, test_ds.num_classes, head=run.config["resolved_head"],
                         in_channels=test_ds.image_shape[0], **kw)
    try:
        model.load_state_dict(load_checkpoint(run.dir)["model"])
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        return None, None, None, f"tau-normalisation is off: cannot rebuild the classifier from checkpoint.pt ({exc})"
    model.eval()
    with torch.no_grad():
        w = model.head.weight_matrix().detach().double()
        b = model.head(torch.zeros(1, w.shape[1])).double()[0]  # effective bias (LWS scales it too)
        if features == "extract":
            feats = torch.cat([model.forward_features(x).double() for x, _ in DeviceLoader(test_ds, 256, train=False)])
            return feats.numpy(), w.numpy(), b.numpy(), ""
    z = run.features("test")
    if "labels" in z and not np.array_equal(z["labels"], run.per_class["test_labels"]):
        return None, None, None, "tau-normalisation is off: features_test.npz is not in the order of the saved logits."
    return z["features"], w.numpy(), b.numpy(), ""


def _slider(description: str, value: float, lo: float, hi: float, step: float, tooltip: str):
    import ipywidgets as w
    return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=description, readout_format=".2f",
                         continuous_update=True, tooltip=tooltip, style={"description_width": "110px"},
                         layout=w.Layout(width="460px"))


def posthoc_panel(run: Run | str | os.PathLike,
                  features: Literal["auto", "extract", "none"] = "auto") -> ipywidgets.VBox:
    """Post-hoc adjustment sliders over a run's saved test logits (Run or run directory); see module doc.

    Returns an ``ipywidgets.VBox`` with attributes ``la_tau``, ``pn_tau``, ``tn_p`` (sliders),
    ``figure`` (FigureWidget), ``shots`` (HTML with the numbers), ``evaluator``, ``result`` (last
    :meth:`PosthocEvaluator.evaluate` output) and ``last_update_ms``. Raises ValueError, saying how to
    produce them, when the run has no saved test logits.
    """
    import ipywidgets as w
    import plotly.graph_objects as go

    ev, note = load_evaluator(run, features)
    counts = ev.class_counts
    order = np.argsort(-counts, kind="stable")
    split = shot_split(counts)
    box = w.VBox()
    box.evaluator, box.note_text = ev, note
    box.la_tau = _slider("logit adj. τ", 0.0, 0.0, 3.0, 0.05, "z - tau * log(prior) (Menon et al. 2021)")
    box.pn_tau = _slider("PN τ", 0.0, 0.0, 2.0, 0.05, "softmax / colsum(softmax) ** tau (GALA)")
    box.tn_p = _slider("τ-norm p", 0.0, 0.0, 2.0, 0.05, "W_c / ||W_c|| ** p (Kang et al. 2020)")
    box.tn_p.disabled = not ev.can_tau_normalize
    box.base = ev.evaluate()
    fig = go.FigureWidget()
    members = {g: set(split[g].tolist()) for g in GROUPS}
    x_of = {g: [str(i) for i in order if i in members[g]] for g in GROUPS}
    for g in GROUPS:
        fig.add_bar(x=x_of[g], y=[0.0] * len(x_of[g]), name=g, marker_color=GROUP_COLORS[g])
    fig.add_scatter(x=[str(i) for i in order], y=box.base["per_class"][order], mode="markers", name="no adjustment",
                    marker=dict(symbol="line-ew-open", size=14, color="#000000", line=dict(width=2)))
    fig.update_layout(template="simple_white", margin=dict(l=60, r=20, t=90, b=50), height=400, width=760,
                      bargap=0.15, title=dict(y=0.97, yanchor="top"),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                      xaxis=dict(title="class (sorted by training count)", type="category",
                                 categoryorder="array", categoryarray=[str(i) for i in order]),
                      yaxis=dict(title="test accuracy", range=[0, 1.02]))
    box.figure, box.shots = fig, w.HTML()
    box.latency = w.HTML()

    def update(_=None):
        t0 = time.perf_counter()
        r = ev.evaluate(box.la_tau.value, box.pn_tau.value, box.tn_p.value if ev.can_tau_normalize else 0.0)
        box.last_update_ms = 1e3 * (time.perf_counter() - t0)
        with fig.batch_update():
            for k, g in enumerate(GROUPS):
                fig.data[k].y = [float(r["per_class"][int(i)]) for i in x_of[g]]
            fig.layout.title = f"Per-class test accuracy (overall {r['overall']:.3f})"
        box.shots.value = _shots_html(r, box.base)
        box.latency.value = (f"<small>update: {box.last_update_ms:.1f} ms "
                             f"({len(ev.labels)} x {ev.num_classes} logits)</small>")
        box.result = r

    for s in (box.la_tau, box.pn_tau, box.tn_p):
        s.observe(update, names="value")
    box.update = update
    update()
    notes = [w.HTML(f"<i>{note}</i>")] if note else []
    box.children = [w.HTML("<b>Post-hoc adjustment</b> of saved test logits (no retraining)"),
                    box.la_tau, box.pn_tau, box.tn_p, *notes, box.shots, fig, box.latency]
    return box


def _shots_html(r: dict, base: dict) -> str:
    cells = []
    for k in ("overall", *GROUPS):
        v, d = r[k], r[k] - base[k]
        cells.append(f'<td style="padding:2px 10px"><b>{k}</b> <span class="ltlab-acc" data-group="{k}">'
                     f'{v:.4f}</span> <small>({d:+.4f})</small></td>')
    return f'<table class="ltlab-shots"><tr>{"".join(cells)}</tr></table>'


# ============================================================================ schedules
SCHEDULE_METHODS = {"glag_alpha": "GLAG α(T)", "glag_beta": "GLAG β (AFG calibration)",
                    "ala": "ALA DF / QF", "gcl": "GCL cloud widths", "drw": "DRW weights"}


def _trace(kind: str, name: str, x, y) -> dict:
    return {"name": name, "x": list(x), "y": [float(v) for v in y], "kind": kind}


def _curves_glag_alpha(counts, ep, s, c, **_):
    from .schedules import glag_alpha
    alpha = [glag_alpha(e, len(ep), s, c) for e in ep]
    log_prior = np.log(np.asarray(counts) / sum(counts))
    return {"left": [_trace("line", "α(T)", ep, alpha)],
            "right": [_trace("bar", f"α·log π_c at T={len(ep) - 1}", range(len(counts)), alpha[-1] * log_prior)],
            "titles": {"left": ("epoch T", "α(T) = s·(c^(T/Tmax) − 1)"), "right": ("class", "logit offset")}}


def _curves_glag_beta(counts, ep, beta0, step, p_improve, **_):
    from .schedules import glag_beta_update
    tail = [k for k, n in enumerate(counts) if n <= 100] or [len(counts) - 1]
    rng = np.random.default_rng(0)  # a fixed improve / worsen sequence: P(improve) = p_improve
    acc, beta = np.zeros(len(tail)), np.full(len(tail), beta0)
    path = [beta]
    for _ in ep[1:]:
        new = acc + np.where(rng.random(len(tail)) < p_improve, 0.01, -0.01)
        beta, acc = glag_beta_update(beta, new, acc, step), new
        path.append(beta)
    path = np.stack(path)
    show = tail[:: max(1, len(tail) // 4)][:4]
    return {"left": [_trace("line", f"β class {k}", ep, path[:, tail.index(k)]) for k in show],
            "right": [_trace("bar", "final β", tail, path[-1])],
            "titles": {"left": ("generation epoch", "β_c"), "right": ("tail class", "β_c at the end")}}


def _curves_ala(counts, ep, qf, **_):
    import torch

    from .losses.functional import ala_quantity_factor
    q = ala_quantity_factor(torch.tensor(counts, dtype=torch.float64), qf).numpy()
    cos = np.linspace(-1, 1, 101)
    df = (1 - cos) / 2
    ends = sorted({0, len(counts) - 1})
    return {"left": [_trace("line", "DF = (1 − cos θ_y)/2", cos, df)]
            + [_trace("line", f"DF·QF, class {k} (n={counts[k]})", cos, df * q[k]) for k in ends],
            "right": [_trace("bar", f"QF ({qf})", range(len(counts)), q)],
            "titles": {"left": ("cos θ_y", "target shift"), "right": ("class", "quantity factor QF_c")}}


def _curves_gcl(counts, ep, noise_mul, **_):
    import torch

    from .losses.functional import gcl_delta_hat
    width = noise_mul * gcl_delta_hat(torch.tensor(counts, dtype=torch.float64)).numpy()
    w = np.linspace(0, max(width.max(), 1e-6), 101)
    left = []
    for k in sorted({len(counts) // 2, len(counts) - 1}):
        if width[k] > 0:  # density of width_k * |clamp(eps, -1, 1)|, eps ~ N(0, 1/3), below the clamp
            sig = width[k] / 3
            pdf = 2 * np.exp(-0.5 * (w / sig) ** 2) / (sig * math.sqrt(2 * math.pi))
            left.append(_trace("line", f"class {k} (n={counts[k]})", w, np.where(w < width[k], pdf, 0)))
    cls = range(len(counts))
    return {"left": left, "right": [_trace("bar", "max width", cls, width),
                                    _trace("bar", "mean |cloud|", cls, width * _mean_abs_clamped_normal(1 / 3))],
            "titles": {"left": ("cosine perturbation", "density"), "right": ("class", "cloud width")}}


def _curves_drw(counts, ep, drw_start, cb_beta, **_):
    from .schedules import drw_weights, effective_number_weights
    start, last = min(drw_start, len(ep) - 1), len(counts) - 1
    w = np.stack([drw_weights(counts, e, start, cb_beta) for e in ep])
    return {"left": [_trace("line", "head class 0", ep, w[:, 0]), _trace("line", f"tail class {last}", ep, w[:, -1])],
            "right": [_trace("bar", "before drw_start", range(len(counts)), np.ones(len(counts))),
                      _trace("bar", "after drw_start", range(len(counts)), effective_number_weights(counts, cb_beta))],
            "titles": {"left": ("epoch", "CE weight"), "right": ("class", "CE weight")}}


_CURVES = {"glag_alpha": _curves_glag_alpha, "glag_beta": _curves_glag_beta, "ala": _curves_ala,
           "gcl": _curves_gcl, "drw": _curves_drw}


def schedule_curves(method: Literal["glag_alpha", "glag_beta", "ala", "gcl", "drw"], *, num_classes: int = 10,
                    imbalance_factor: float = 100.0, epochs: int = 200, s: float = 1.0, c: float = 2.0,
                    beta0: float = 0.6, step: float = 0.05, p_improve: float = 0.5,
                    qf: Literal["paper", "code"] = "paper", noise_mul: float = 0.5, drw_start: int = 160,
                    cb_beta: float = 0.9999) -> dict:
    """Curves of one method's moving quantities: ``{"left": [...], "right": [...], "titles": {...}}``.

    Each trace is ``{"name", "x", "y", "kind": "line" | "bar"}``; left is over epochs (cos theta_y for
    ALA, the perturbation for GCL), right over classes with counts ``longtail_counts(500, num_classes,
    imbalance_factor)``. Formulas: GLAG Eq. 4 (``schedules.glag_alpha``; s, c paper defaults) and the
    LIB beta rule (``schedules.glag_beta_update``; beta0 0.6, step 0.05, methods.md 1b.6) replayed on a
    seeded improve/worsen sequence with P(improve) = ``p_improve``; ALA Eq. 6-7 (``qf``); GCL Eq. 9-11
    (``functional.gcl_delta_hat``, eps ~ N(0, 1/3) clamped, ``noise_mul`` 0.5 = official CIFAR code);
    DRW of LDAM-DRW (Cao et al. 2019) with effective-number weights (``cb_beta`` 0.9999, start 160 of 200).
    """
    if method not in _CURVES:
        raise ValueError(f"unknown schedule method {method!r}; valid: {', '.join(SCHEDULE_METHODS)}")
    counts = longtail_counts(500, num_classes, imbalance_factor)
    return _CURVES[method](counts, np.arange(epochs), s=s, c=c, beta0=beta0, step=step, p_improve=p_improve,
                           qf=qf, noise_mul=noise_mul, drw_start=drw_start, cb_beta=cb_beta)


def _mean_abs_clamped_normal(sigma: float) -> float:
    """E|clamp(eps, -1, 1)| for eps ~ N(0, sigma): half-normal mean below 1 plus the clamped tail mass."""
    z = 1 / sigma
    return sigma * math.sqrt(2 / math.pi) * (1 - math.exp(-z * z / 2)) + math.erfc(z / math.sqrt(2))


_SCHED_SLIDERS = {"glag_alpha": ("s", "c"), "glag_beta": ("beta0", "step", "p_improve"), "ala": ("qf",),
                  "gcl": ("noise_mul",), "drw": ("drw_start", "cb_beta")}
_COMMON = ("num_classes", "imbalance_factor", "epochs")


def _schedule_controls(num_classes: int, imbalance_factor: float, epochs: int) -> dict:
    import ipywidgets as w

    def opts(desc: str) -> dict:  # a Layout per widget: hiding one must not hide all
        return {"description": desc, "style": {"description_width": "120px"}, "layout": w.Layout(width="420px")}

    def fs(v, lo, hi, step, desc):
        return w.FloatSlider(v, min=lo, max=hi, step=step, **opts(desc))

    return {
        "num_classes": w.IntSlider(num_classes, 2, 100, **opts("classes")),
        "imbalance_factor": w.FloatLogSlider(imbalance_factor, base=10, min=0, max=3, step=0.05,
                                             **opts("imbalance factor")),
        "epochs": w.IntSlider(epochs, 10, 400, step=10, **opts("epochs")),
        "s": fs(1.0, 0.1, 2.0, 0.05, "GLAG s"), "c": fs(2.0, 1.05, 5.0, 0.05, "GLAG c"),
        "beta0": fs(0.6, 0.0, 1.0, 0.05, "β init"), "step": fs(0.05, 0.0, 0.2, 0.01, "β step"),
        "p_improve": fs(0.5, 0.0, 1.0, 0.05, "P(acc improves)"),
        "qf": w.Dropdown(options=["paper", "code"], value="paper", **opts("ALA QF form")),
        "noise_mul": fs(0.5, 0.0, 1.5, 0.05, "GCL noise_mul"),
        "drw_start": w.IntSlider(160, 0, 400, **opts("drw_start")),
        "cb_beta": w.SelectionSlider(options=[0.9, 0.99, 0.999, 0.9999, 0.99999], value=0.9999, **opts("DRW β")),
    }


def schedule_explorer(method: Literal["glag_alpha", "glag_beta", "ala", "gcl", "drw"] = "glag_alpha",
                      num_classes: int = 10, imbalance_factor: float = 100.0, epochs: int = 200) -> ipywidgets.VBox:
    """Method dropdown + hyper-parameter sliders that redraw :func:`schedule_curves` (no training).

    Returns a VBox with ``method`` (Dropdown), ``controls`` (dict name -> widget; only the method's own
    and the common ones are shown), ``figure`` (FigureWidget, two panels), ``curves`` and ``redraw()``.
    """
    import ipywidgets as w
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if method not in _CURVES:
        raise ValueError(f"unknown schedule method {method!r}; valid: {', '.join(SCHEDULE_METHODS)}")
    ctl = _schedule_controls(num_classes, imbalance_factor, epochs)
    dd = w.Dropdown(options=[(v, k) for k, v in SCHEDULE_METHODS.items()], value=method, description="method",
                    style={"description_width": "120px"}, layout=w.Layout(width="420px"))
    fig = go.FigureWidget(make_subplots(rows=1, cols=2, horizontal_spacing=0.12))
    fig.update_layout(template="simple_white", margin=dict(l=60, r=20, t=100, b=50), height=420, width=900,
                      title=dict(y=0.97, yanchor="top"), legend=dict(orientation="h", y=1.04, yanchor="bottom", x=0),
                      barmode="group")
    box = w.VBox()

    def redraw(_=None):
        m = dd.value
        for name, wid in ctl.items():
            wid.layout.display = None if name in _COMMON + _SCHED_SLIDERS[m] else "none"
        cur = schedule_curves(m, **{k: v.value for k, v in ctl.items()})
        with fig.batch_update():
            fig.data = ()
            for col, side in ((1, "left"), (2, "right")):
                for tr in cur[side]:
                    t = (go.Bar(x=[str(v) for v in tr["x"]], y=tr["y"], name=tr["name"]) if tr["kind"] == "bar"
                         else go.Scatter(x=tr["x"], y=tr["y"], name=tr["name"], mode="lines"))
                    fig.add_trace(t, row=1, col=col)
                fig.update_xaxes(title_text=cur["titles"][side][0], row=1, col=col)
                fig.update_yaxes(title_text=cur["titles"][side][1], row=1, col=col)
            fig.layout.title = SCHEDULE_METHODS[m]
        box.curves = cur

    for wid in (dd, *ctl.values()):
        wid.observe(redraw, names="value")
    box.method, box.controls, box.figure, box.redraw = dd, ctl, fig, redraw
    redraw()
    box.children = [w.HTML("<b>Schedule explorer</b> (pure functions of epoch and class counts)"), dd,
                    w.VBox(list(ctl.values())), fig]
    return box


# ============================================================================ training panel
class TrainingPanel:
    """Widgets that start :func:`ltlab.run` in a background thread and plot each epoch live (see module doc).

    ``start()`` validates the widgets into a RunConfig (errors go to ``status``), ``stop()`` makes the
    epoch callback return "stop" (the run ends after that epoch's checkpoint, resumable), ``wait()``
    joins the thread and returns the Run (or raises the training error). ``widget`` is the VBox.
    """

    def __init__(self, dataset: str = "digits_lt", imbalance_factor: float = 100.0, loss: str = "ce",
                 lr: float = 0.05, epochs: int = 10, run_root: str | os.PathLike | None = None, **extra):
        import ipywidgets as w
        import plotly.graph_objects as go

        from .data import DATASETS
        from .losses import LOSSES
        st, lay = {"description_width": "120px"}, w.Layout(width="420px")
        self.dataset = w.Dropdown(options=sorted(DATASETS), value=dataset, description="dataset", style=st, layout=lay)
        self.imbalance_factor = w.FloatLogSlider(imbalance_factor, base=10, min=0, max=3, step=0.05,
                                                 description="imbalance factor", style=st, layout=lay)
        self.loss = w.Dropdown(options=sorted(LOSSES), value=loss, description="loss", style=st, layout=lay)
        self.lr = w.FloatLogSlider(lr, base=10, min=-3, max=0, step=0.1, description="lr", style=st, layout=lay)
        self.epochs = w.IntSlider(epochs, 1, 200, description="epochs", style=st, layout=lay)
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.status = w.HTML("idle")
        self.loss_fig = go.FigureWidget(layout=dict(**_LAYOUT, height=300, width=440, title="training loss",
                                                    xaxis_title="epoch", yaxis_title="loss"))
        self.loss_fig.add_scatter(x=[], y=[], mode="lines+markers", name="train loss")
        self.acc_fig = go.FigureWidget(layout=dict(**_LAYOUT, height=300, width=440, title="test accuracy",
                                                   xaxis_title="epoch", yaxis=dict(title="accuracy", range=[0, 1.02])))
        for name, color in (("overall", "#000000"), *GROUP_COLORS.items()):
            self.acc_fig.add_scatter(x=[], y=[], mode="lines+markers", name=name, line=dict(color=color))
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.run_root, self.extra = run_root, {"progress": False, **extra}
        self._stop, self._thread = threading.Event(), None
        self.run, self.error, self.epochs_done = None, None, 0
        self.widget = w.VBox([w.HTML("<b>Training panel</b>"), self.dataset, self.imbalance_factor, self.loss,
                              self.lr, self.epochs, w.HBox([self.start_button, self.stop_button]), self.status,
                              w.HBox([self.loss_fig, self.acc_fig])])

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    def config(self) -> RunConfig:
        """The RunConfig the widgets describe (ValueError naming the bad field)."""
        from .config import RunConfig
        from .runs import runs_root
        rid = "panel_{}-{:03d}_{}_{}".format(time.strftime("%Y%m%d-%H%M%S"), int(time.time() * 1000) % 1000,
                                             self.dataset.value, self.loss.value)
        return RunConfig(dataset=self.dataset.value, imbalance_factor=float(self.imbalance_factor.value),
                         loss=self.loss.value, lr=float(self.lr.value), epochs=int(self.epochs.value),
                         run_dir=str(Path(self.run_root or runs_root()) / rid), **self.extra)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Validate the widgets and train in a background thread (no-op while a run is going)."""
        if self.running:
            return
        try:
            cfg = self.config()
        except ValueError as exc:
            self.status.value = f"<span style='color:#D55E00'>{exc}</span>"
            return
        with self.loss_fig.batch_update(), self.acc_fig.batch_update():
            for tr in (*self.loss_fig.data, *self.acc_fig.data):
                tr.x, tr.y = [], []
            for fig in (self.loss_fig, self.acc_fig):  # whole-epoch ticks on short runs
                fig.layout.xaxis.dtick = 1 if cfg.epochs <= 20 else None
        self._stop.clear()
        self.run, self.error, self.epochs_done = None, None, 0
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.status.value = f"starting {cfg.run_dir} ..."
        self._thread = threading.Thread(target=self._train, args=(cfg,), daemon=True, name="ltlab-training-panel")
        self._thread.start()

    def stop(self) -> None:
        """Ask the run to end after the current epoch (its checkpoint is written first)."""
        self._stop.set()
        self.status.value += " · stopping after this epoch"

    def wait(self, timeout: float | None = None) -> Run | None:
        """Join the training thread (up to ``timeout`` s); the Run, or the training error raised here."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.run

    def _train(self, cfg) -> None:
        from .engine import run
        try:
            self.run = run(cfg, callbacks=[self._on_epoch])
            ended = "stopped" if len(self.run.metrics) < cfg.epochs else "finished"
            self.status.value = f"{ended} after {self.epochs_done} epoch(s): {self.run.dir}"
        except Exception as exc:  # noqa: BLE001 - shown in the panel and re-raised by wait()
            self.error = exc
            self.status.value = f"<span style='color:#D55E00'>failed: {type(exc).__name__}: {exc}</span>"
        finally:
            self.start_button.disabled, self.stop_button.disabled = False, True

    def _on_epoch(self, epoch: int, row: dict, state) -> str | None:
        self.epochs_done = epoch + 1
        if row:
            with self.loss_fig.batch_update(), self.acc_fig.batch_update():
                tr = self.loss_fig.data[0]
                tr.x, tr.y = (*tr.x, epoch), (*tr.y, row["train_loss"])
                for tr, key in zip(self.acc_fig.data, ("acc", "acc_many", "acc_medium", "acc_few")):
                    tr.x, tr.y = (*tr.x, epoch), (*tr.y, row[key])
            self.status.value = (f"epoch {epoch + 1}/{self.epochs.value}: loss {row['train_loss']:.3f}, "
                                 f"acc {row['acc']:.3f}")
        return "stop" if self._stop.is_set() else None


def training_panel(dataset: str = "digits_lt", imbalance_factor: float = 100.0, loss: str = "ce", lr: float = 0.05,
                   epochs: int = 10, run_root: str | os.PathLike | None = None, **extra) -> TrainingPanel:
    """:class:`TrainingPanel` with these starting values; ``extra`` are further RunConfig fields (e.g. device)."""
    return TrainingPanel(dataset, imbalance_factor, loss, lr, epochs, run_root, **extra)
