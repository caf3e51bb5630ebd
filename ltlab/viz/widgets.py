"""Interactive panels for JupyterLab (ipywidgets + plotly ``FigureWidget``); issue 7.

- :func:`posthoc_panel`: sliders for post-hoc logit adjustment (tau), PN re-balancing (tau) and
  tau-normalisation (p) over a run's saved test logits; per-class accuracy bars and the
  many/medium/few numbers update live (no retraining). :class:`PosthocEvaluator` composes the
  estimators of :mod:`ltlab.posthoc`, so the panel shows what the post-hoc steps compute.
- :func:`schedule_explorer`: GLAG alpha(T) / beta, ALA DF / QF, GCL cloud widths and DRW weights
  redrawn from hyper-parameter sliders (the :mod:`ltlab.viz.plotting` figures: :func:`schedule_figure`).
- :func:`training_panel`: start a short run from widgets; loss and per-group accuracy curves update
  every epoch from a background thread; Stop ends the run cleanly after its checkpoint.

Every panel builds and runs headless (papermill, no front end): widgets then only hold state.
The file is longer than our usual ~200 lines because the three panels share one small toolkit
(LIB decision: one ``ltlab.viz.widgets`` module).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..build import rebuild_model
from ..data.longtail import longtail_counts
from ..metrics import shot_accuracy
from ..posthoc import TauNormalizer, classifier_weight, scaled_test_logits, split_inputs
from ..runs import as_run, new_run_id
from .workbench import workbench_panel  # noqa: F401 - the tweak-and-compare panel (ltlab/viz/workbench.py)

if TYPE_CHECKING:
    import ipywidgets

    from ..config import RunConfig
    from ..runs import Run

GROUPS = ("many", "medium", "few")
GROUP_COLORS = {"many": "#0072B2", "medium": "#E69F00", "few": "#D55E00"}  # Okabe-Ito, as plotting.py
_LAYOUT = dict(template="simple_white", margin=dict(l=60, r=20, t=50, b=50))


# ============================================================================ post-hoc evaluation
class PosthocEvaluator:
    """Per-class and many/medium/few accuracy of post-hoc adjusted predictions, for the panel's sliders.

    The estimators of :mod:`ltlab.posthoc` composed, in this order: tau-normalisation (p; scores
    ``f @ tau_normalize(W, p).T``, the bias dropped, Kang et al. 2020, Eq. 4) when ``tn_p`` is given, else
    the saved logits; logit adjustment ``z - la_tau log(pi)`` (Menon et al. 2021, Eq. 9); PN re-balancing
    ``softmax / colsum(softmax) ** pn_tau`` over the whole test set (GALA, Eq. 13); argmax. Each step at
    0 (or tau-normalisation at None) leaves the scores as they are, so one slider alone gives exactly what
    :func:`ltlab.posthoc.posthoc_on_run` gives for that method and tau.

    For speed at scale (1,000 classes x 50k images: well under 100 ms an update) the maths runs on cached
    arrays with the same argmax: ``softmax(z - t log pi)`` is ``e * pi^-t`` up to a row factor with
    ``e = exp(z - max_c z)`` cached, so PN's column sums come from two matrix-vector products and the
    prediction is ``argmax_c z_ic - t log pi_c - pn_tau log colsum_c``. Scores keep the input's float
    precision (float32 logits stay float32; float64 in, float64 maths).

    Args:
        logits: (M, C) test logits as the loss saw them (:func:`ltlab.posthoc.scaled_test_logits`).
        labels: (M,) int test labels.
        class_counts: (C,) training counts (prior ``pi_c = n_c / sum n``; shot groups by 100 / 20).
        features, weight: (M, D) test features and (C, D) classifier rows, for tau-normalisation.
    """

    def __init__(self, logits, labels, class_counts, features=None, weight=None):
        self.logits = _np_float(logits)
        self.labels = np.asarray(labels).astype(np.int64).reshape(-1)
        self.class_counts = np.asarray(class_counts, dtype=np.float64).reshape(-1)
        m, c = self.logits.shape
        if self.labels.shape[0] != m or self.class_counts.shape[0] != c:
            raise ValueError(f"PosthocEvaluator: logits {self.logits.shape}, labels {self.labels.shape} and "
                             f"class_counts {self.class_counts.shape} do not agree (need (M, C), (M,), (C,))")
        if np.any(self.class_counts <= 0):
            raise ValueError(f"PosthocEvaluator: class counts must be > 0, got {self.class_counts.tolist()}")
        self.num_classes = c
        self.features = None if features is None else _np64(features)
        self.weight = None if weight is None else _np64(weight)
        self._tau_normalized: dict[float, np.ndarray] = {}
        self._exp: dict[float | None, np.ndarray] = {}  # exp(z - rowmax) per scores (None: the saved logits)
        self._colsum: dict[tuple, np.ndarray] = {}  # log PN column sums per (la_tau, tn_p)
        self._log_prior = np.log(self.class_counts / self.class_counts.sum()).astype(self.logits.dtype)

    @property
    def can_tau_normalize(self) -> bool:
        return self.features is not None and self.weight is not None

    def scores(self, tn_p: float | None = None) -> np.ndarray:
        """The saved logits, or the tau-normalised scores at ``tn_p`` (cached: a slider revisits values)."""
        if tn_p is None:
            return self.logits
        if not self.can_tau_normalize:
            raise ValueError("tau-normalisation needs test features and classifier weights; build the evaluator "
                             "with features= and weight= (posthoc_panel(run, features='extract'))")
        key = round(float(tn_p), 9)
        if key not in self._tau_normalized:
            z = TauNormalizer(self.weight, tau=key).fit(self.features).decision_function(self.features)
            self._tau_normalized = {key: z.astype(self.logits.dtype, copy=False),
                                    **dict(list(self._tau_normalized.items())[:7])}
        return self._tau_normalized[key]

    def _exp_scores(self, tn_p: float | None) -> np.ndarray:
        """``exp(z - max_c z)`` (M, C) of the scores at ``tn_p``, cached (a few entries)."""
        key = None if tn_p is None else round(float(tn_p), 9)
        if key not in self._exp:
            z = self.scores(tn_p)
            self._exp = {key: np.exp(z - z.max(axis=1, keepdims=True)), **dict(list(self._exp.items())[:3])}
        return self._exp[key]

    def _log_colsum(self, la_tau: float, tn_p: float | None) -> np.ndarray:
        """log of the column sums (C,) of ``softmax(z - la_tau log pi)`` over the test set, cached per (la_tau,
        tn_p): moving the PN slider alone then costs one argmax pass."""
        key = (round(float(la_tau), 9), None if tn_p is None else round(float(tn_p), 9))
        if key not in self._colsum:
            shift = -la_tau * self._log_prior
            w = np.exp(shift - shift.max()).astype(self.logits.dtype)
            e = self._exp_scores(tn_p)
            colsum = w * ((1.0 / (e @ w)) @ e)
            self._colsum = {key: np.log(np.maximum(colsum, np.finfo(colsum.dtype).tiny)),
                            **dict(list(self._colsum.items())[:15])}
        return self._colsum[key]

    def predict(self, la_tau: float = 0.0, pn_tau: float = 0.0, tn_p: float | None = None) -> np.ndarray:
        """Adjusted predictions (M,) int64: ``LogitAdjuster`` then ``PNRebalancer`` of :mod:`ltlab.posthoc`,
        computed from cached arrays (class docstring); the argmax equals theirs."""
        z = self.scores(tn_p)
        shift = -la_tau * self._log_prior  # (C,): logit adjustment z - tau log(pi) (Menon et al. 2021, Eq. 9)
        if pn_tau:  # GALA Eq. 13: p / colsum(p) ** tau, p = softmax(z + shift) = e * w / (e @ w) row-wise
            shift = shift - pn_tau * self._log_colsum(la_tau, tn_p).astype(z.dtype)
        if not la_tau and not pn_tau:
            return z.argmax(axis=1)
        return _argmax_shifted(z, shift.astype(z.dtype))

    def evaluate(self, la_tau: float = 0.0, pn_tau: float = 0.0, tn_p: float | None = None) -> dict:
        """``{"per_class": (C,), "overall", "many", "medium", "few"}`` (accuracies in [0, 1]; NaN: no test sample)."""
        pred = self.predict(la_tau, pn_tau, tn_p)
        total = np.bincount(self.labels, minlength=self.num_classes).astype(np.float64)
        hits = np.bincount(self.labels[pred == self.labels], minlength=self.num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(total > 0, hits / np.maximum(total, 1), np.nan)  # no C x C matrix at any C
        shots = shot_accuracy(per_class, self.class_counts)
        return {"per_class": per_class, "overall": float(np.mean(pred == self.labels)),
                **{k: float(v) for k, v in shots.items()}}


def _argmax_shifted(z: np.ndarray, shift: np.ndarray, rows: int = 4096) -> np.ndarray:
    """``argmax_c z_ic + shift_c`` (M,) int64, a block of rows at a time (no (M, C) temporary; torch's CPU
    argmax over dim 1 measured 5x slower)."""
    out = np.empty(len(z), dtype=np.int64)
    for i in range(0, len(z), rows):
        out[i:i + rows] = (z[i:i + rows] + shift).argmax(axis=1)
    return out


def _np_float(a) -> np.ndarray:
    """float32 / float64 arrays keep their precision; float16 and other types become float32."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)


def _np64(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


# ============================================================================ post-hoc panel
NO_LOGITS = ("{dir} has no saved test logits (per_class.npz lacks 'test_logits'). ltlab.run saves them at every "
             "evaluated epoch: train or resume the run until at least one evaluation, e.g. "
             "ltlab.run(run_dir='{dir}', resume=True, epochs=<total>) or "
             "python -m ltlab run notebooks/01_train.ipynb -p run_dir {dir} -p resume True")


LOGITS_LEFT_OUT = ("{dir} was trained with save_logits='none': its test logits were left out, and the post-hoc "
                   "panel works on them. Train the run again with save_logits='float32' (or 'float16', half the "
                   "size), e.g. python -m ltlab run notebooks/01_train.ipynb -p save_logits float16 ...")


def load_evaluator(run: Run | str | os.PathLike,
                   features: Literal["auto", "extract", "none"] = "auto") -> tuple[PosthocEvaluator, str]:
    """Evaluator for a run (Run or path) plus a note on tau-normalisation (empty when available).

    Inputs as :func:`ltlab.posthoc.posthoc_on_run` reads them: the saved test logits scaled as the loss saw
    them; for tau-normalisation the classifier rows of the rebuilt model and the test features.
    ``features``: "auto" uses ``features_test.npz`` when present; "extract" runs the checkpoint's
    backbone over the test split once (CPU); "none" disables tau-normalisation.
    """
    if features not in ("auto", "extract", "none"):
        raise ValueError(f"features must be 'auto', 'extract' or 'none', got {features!r}")
    run = as_run(run)
    if "test_logits" not in run.per_class or "test_labels" not in run.per_class:
        left_out = str(run.config.get("save_logits", "")).lower() in ("none", "false", "off")
        raise ValueError((LOGITS_LEFT_OUT if left_out else NO_LOGITS).format(dir=run.dir))
    logits, labels = scaled_test_logits(run)
    logits = logits.astype(np.float32)  # float32 maths (float16 on disk is cast; scaled_test_logits gives float64)
    feats, weight, note = _tau_norm_inputs(run, features, labels)
    return PosthocEvaluator(logits, labels, run.class_counts, feats, weight), note


def _tau_norm_inputs(run: Run, features: str, labels: np.ndarray):
    """(test features (M, D), classifier rows (C, D), note); Nones and a note saying why when unavailable."""
    if features == "none":
        return None, None, "tau-normalisation is off (features='none')."
    if features == "auto" and not (run.dir / "features_test.npz").exists():
        return None, None, ("tau-normalisation is off: the run has no features_test.npz. Use "
                            "posthoc_panel(run, features='extract') (one forward pass over the test split with "
                            "checkpoint.pt) or ltlab.features.run_features(run, 'test', extract=True).")
    try:
        model = rebuild_model(run)
        weight = classifier_weight(model)
    except ValueError as exc:  # no usable or a refused checkpoint; a head tau-normalisation does not apply to
        return None, None, f"tau-normalisation is off: {exc}"
    if features == "extract":
        return split_inputs(run, "features", "test", model=model)[0], weight, ""
    z = run.features("test")
    if "labels" in z and not np.array_equal(z["labels"], labels):
        return None, None, "tau-normalisation is off: features_test.npz is not in the order of the saved logits."
    return z["features"], weight, ""


def _slider(description: str, value: float, lo: float, hi: float, step: float, tooltip: str):
    import ipywidgets as w
    return w.FloatSlider(value=value, min=lo, max=hi, step=step, description=description, readout_format=".2f",
                         continuous_update=False, tooltip=tooltip, style={"description_width": "110px"},
                         layout=w.Layout(width="460px"))


def posthoc_panel(run: Run | str | os.PathLike, features: Literal["auto", "extract", "none"] = "auto",
                  max_classes: int = 100, bins: int = 50) -> ipywidgets.VBox:
    """Post-hoc adjustment sliders over a run's saved test logits (Run or run directory); see module doc.

    Returns an ``ipywidgets.VBox`` with attributes ``la_tau``, ``pn_tau``, ``tn_p`` (sliders), ``tn_on``
    (checkbox: tau-normalise at ``tn_p``, the bias dropped; off: the saved logits), ``figure``
    (FigureWidget), ``shots`` (HTML with the numbers), ``evaluator``, ``result`` (last
    :meth:`PosthocEvaluator.evaluate` output) and ``last_update_ms``. Raises ValueError, saying how to
    produce them, when the run has no saved test logits. Sliders update on release (one update per move);
    above ``max_classes`` classes a bar is the mean accuracy of a rank bin (``bins`` of them).
    """
    import ipywidgets as w
    import plotly.graph_objects as go

    from .style import class_axis, group_of_classes

    ev, note = load_evaluator(run, features)
    counts = ev.class_counts
    axis = class_axis(counts.astype(np.int64), [str(c) for c in range(len(counts))], "posthoc_panel",
                      max_classes=max_classes, bins=bins)
    ticks = [str(m[0]) if axis.mode != "bins" else lab.split(":")[0] for m, lab in zip(axis.members, axis.labels)]
    group = group_of_classes(counts)[[m[0] for m in axis.members]]
    box = w.VBox()
    box.evaluator, box.note_text = ev, note
    box.la_tau = _slider("logit adj. τ", 0.0, 0.0, 3.0, 0.05, "z - tau * log(prior) (Menon et al. 2021)")
    box.pn_tau = _slider("PN τ", 0.0, 0.0, 2.0, 0.05, "softmax / colsum(softmax) ** tau (GALA)")
    box.tn_p = _slider("τ-norm p", 1.0, 0.0, 2.0, 0.05, "W_c / ||W_c|| ** p (Kang et al. 2020)")
    box.tn_on = w.Checkbox(value=False, description="τ-normalise the classifier (bias dropped)", indent=False)
    box.tn_p.disabled = box.tn_on.disabled = not ev.can_tau_normalize
    box.base = ev.evaluate()
    ev._exp_scores(None)  # the cached exp(z - max) for PN, built now rather than on the first PN move
    fig = go.FigureWidget()
    at = {g: np.flatnonzero(group == g) for g in GROUPS}
    for g in GROUPS:
        fig.add_bar(x=[ticks[k] for k in at[g]], y=[0.0] * len(at[g]), name=g, marker_color=GROUP_COLORS[g])
    fig.add_scatter(x=ticks, y=axis.reduce(box.base["per_class"])[0], mode="markers", name="no adjustment",
                    marker=dict(symbol="line-ew-open", size=14, color="#000000", line=dict(width=2)))
    fig.update_layout(template="simple_white", margin=dict(l=60, r=20, t=90, b=50), height=400, width=760,
                      bargap=0.15, title=dict(y=0.97, yanchor="top"),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
                      xaxis=dict(title="class (sorted by training count)" if axis.mode != "bins" else
                                 f"class ranks by training count ({len(ticks)} bins, bar = bin mean)",
                                 type="category", categoryorder="array", categoryarray=ticks,
                                 showticklabels=len(ticks) <= 60),
                      yaxis=dict(title="test accuracy", range=[0, 1.02]))
    box.figure, box.shots = fig, w.HTML()
    box.latency = w.HTML()

    def update(_=None):
        t0 = time.perf_counter()
        r = ev.evaluate(box.la_tau.value, box.pn_tau.value, box.tn_p.value if box.tn_on.value else None)
        box.last_update_ms = 1e3 * (time.perf_counter() - t0)
        with fig.batch_update():
            mean = axis.reduce(r["per_class"])[0]
            for k, g in enumerate(GROUPS):
                fig.data[k].y = mean[at[g]].tolist()
            fig.layout.title = f"Per-class test accuracy (overall {r['overall']:.3f})"
        box.shots.value = _shots_html(r, box.base)
        box.latency.value = (f"<small>update: {box.last_update_ms:.1f} ms "
                             f"({len(ev.labels)} x {ev.num_classes} logits)</small>")
        box.result = r

    for s in (box.la_tau, box.pn_tau, box.tn_p, box.tn_on):
        s.observe(update, names="value")
    box.update = update
    update()
    notes = [w.HTML(f"<i>{note}</i>")] if note else []
    box.children = [w.HTML("<b>Post-hoc adjustment</b> of saved test logits (no retraining)"),
                    box.la_tau, box.pn_tau, box.tn_on, box.tn_p, *notes, box.shots, fig, box.latency]
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


def _glag_beta_figure(counts, p: dict):
    from . import plotting
    beta, labels = plotting.synthetic_glag_beta(counts, p["epochs"], p["beta0"], p["step"])
    return plotting.glag_schedule(p["epochs"], p["s"], p["c"], beta=beta, beta_classes=labels,
                                  beta_source="synthetic accuracy history, no run")


def _schedule_builders() -> dict:
    """Method -> ``(class counts, slider values) -> figure``: the :mod:`ltlab.viz.plotting` builder that draws it."""
    from . import plotting
    return {"glag_alpha": lambda counts, p: plotting.glag_schedule(p["epochs"], p["s"], p["c"]),
            "glag_beta": _glag_beta_figure,
            "ala": lambda counts, p: plotting.ala_factors(counts, qf=(p["qf"],)),
            "gcl": lambda counts, p: plotting.gcl_cloud_widths(counts, p["noise_mul"]),
            "drw": lambda counts, p: plotting.drw_weights(counts, min(p["drw_start"], p["epochs"] - 1), p["epochs"],
                                                          p["cb_beta"])}


def schedule_figure(method: Literal["glag_alpha", "glag_beta", "ala", "gcl", "drw"], *, num_classes: int = 10,
                    imbalance_factor: float = 100.0, epochs: int = 200, s: float = 1.0, c: float = 2.0,
                    beta0: float = 0.6, step: float = 0.05, qf: Literal["paper", "code"] = "paper",
                    noise_mul: float = 0.5, drw_start: int = 160, cb_beta: float = 0.9999):
    """The :mod:`ltlab.viz.plotting` figure of one method's moving quantities, on the class counts
    ``longtail_counts(500, num_classes, imbalance_factor)``: ``glag_schedule`` (GLAG Eq. 4, s and c), with the
    beta of ``synthetic_glag_beta`` for "glag_beta" (LIB rule, beta0 0.6, step 0.05), ``ala_factors`` (ALA
    Eq. 6-7, ``qf``), ``gcl_cloud_widths`` (GCL Eq. 9-11, ``noise_mul`` 0.5 = official CIFAR code) and
    ``drw_weights`` (LDAM-DRW, effective-number weights with ``cb_beta``, from ``drw_start``).
    """
    builders = _schedule_builders()
    if method not in builders:
        raise ValueError(f"unknown schedule method {method!r}; valid: {', '.join(SCHEDULE_METHODS)}")
    params = dict(epochs=epochs, s=s, c=c, beta0=beta0, step=step, qf=qf, noise_mul=noise_mul, drw_start=drw_start,
                  cb_beta=cb_beta)
    return builders[method](longtail_counts(500, num_classes, imbalance_factor), params)


_SCHED_SLIDERS = {"glag_alpha": ("s", "c"), "glag_beta": ("s", "c", "beta0", "step"), "ala": ("qf",),
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
        "qf": w.Dropdown(options=["paper", "code"], value="paper", **opts("ALA QF form")),
        "noise_mul": fs(0.5, 0.0, 1.5, 0.05, "GCL noise_mul"),
        "drw_start": w.IntSlider(160, 0, 400, **opts("drw_start")),
        "cb_beta": w.SelectionSlider(options=[0.9, 0.99, 0.999, 0.9999, 0.99999], value=0.9999, **opts("DRW β")),
    }


def schedule_explorer(method: Literal["glag_alpha", "glag_beta", "ala", "gcl", "drw"] = "glag_alpha",
                      num_classes: int = 10, imbalance_factor: float = 100.0, epochs: int = 200) -> ipywidgets.VBox:
    """Method dropdown + hyper-parameter sliders that redraw :func:`schedule_figure` (no training).

    Returns a VBox with ``method`` (Dropdown), ``controls`` (dict name -> widget; only the method's own
    and the common ones are shown), ``figure`` (FigureWidget), ``shown`` (the plotting figure it shows) and
    ``redraw()``.
    """
    import ipywidgets as w
    import plotly.graph_objects as go

    if method not in SCHEDULE_METHODS:
        raise ValueError(f"unknown schedule method {method!r}; valid: {', '.join(SCHEDULE_METHODS)}")
    ctl = _schedule_controls(num_classes, imbalance_factor, epochs)
    dd = w.Dropdown(options=[(v, k) for k, v in SCHEDULE_METHODS.items()], value=method, description="method",
                    style={"description_width": "120px"}, layout=w.Layout(width="420px"))
    fig = go.FigureWidget()
    box = w.VBox()

    def redraw(_=None):
        m = dd.value
        for name, wid in ctl.items():
            wid.layout.display = None if name in _COMMON + _SCHED_SLIDERS[m] else "none"
        shown = schedule_figure(m, **{k: v.value for k, v in ctl.items()})
        with fig.batch_update():
            fig.data = ()
            fig.layout = shown.layout
            fig.add_traces(shown.data)
        box.shown = shown

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

        from ..data import DATASETS
        from ..losses import LOSSES
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
        from ..config import RunConfig
        from ..runs import runs_root
        params = dict(dataset=self.dataset.value, imbalance_factor=float(self.imbalance_factor.value),
                      loss=self.loss.value, lr=float(self.lr.value), epochs=int(self.epochs.value), **self.extra)
        return RunConfig(**params, run_dir=str(Path(self.run_root or runs_root()) / new_run_id(params, "panel_")))

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
        from ..engine import run
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
