"""The committed paper figures: one protocol, the runs it needs, the figures and the numbers behind them.

``make figures`` (``tools/make_figures.py``) and the ``08_paper_figures`` notebook both call
:func:`train`, :func:`build` and :func:`write_readme` here. Data: Fashion-MNIST-LT, IF 100, head class
capped at 500 images (``dataset_params={"n_max": 500}``: 500 299 179 107 64 38 23 13 8 5, so 4 many,
3 medium and 3 few classes). Recipe (ours, CPU-sized): convnet_small, 30 epochs, batch 128, SGD lr 0.05
cosine with 1 warm-up epoch, wd 5e-4, seed 0, evaluation every 5 epochs; DRW from epoch 24 where a
method uses it; GLAG stage two: 40 AFG generation epochs on the GraLoss run. The runs are small, so
the figures show the shapes the papers argue with, not their numbers.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .. import features
from ..config import RESUME_FREE_FIELDS, RunConfig
from ..engine import run as train_run
from ..launch.presets import stage_two_config
from ..runs import Run, as_run, load_run, runs_root
from . import plotting
from .paper_numbers import SEED_METHODS, write_readme  # noqa: F401  (write_readme: re-exported for make figures, 08)

EPOCHS = 30
PROTOCOL = dict(dataset="fashion_mnist_lt", imbalance_factor=100, dataset_params={"n_max": 500},
                model="convnet_small", batch_size=128, lr=0.05, lr_schedule="cosine", warmup_epochs=1,
                weight_decay=5e-4, seed=0, device="cpu", progress=False, eval_every=5)
# legend -> (run directory name under runs/figures/, parameters on top of PROTOCOL); "drw": DRW at 0.8 * epochs
METHODS: dict[str, tuple[str, dict]] = {
    "CE": ("ce", dict(loss="ce")),
    "CE + CAS": ("ce_cas", dict(loss="ce", sampler="class_aware")),
    "EQL": ("eql", dict(loss="eql")),
    "LA": ("la", dict(loss="logit_adjusted")),
    "GraLoss (GLAG)": ("graloss", dict(loss="graloss", val_per_class=50)),
    "GCL": ("gcl", dict(loss="gcl")),
    "LDAM (DRW)": ("ldam_drw", dict(loss="ldam", drw=True)),
    "ALA (DRW)": ("ala_drw", dict(loss="ala", drw=True)),
    "GALA": ("gala", dict(loss="gala")),
    "GHM-CWAP": ("ghm_cwap", dict(loss="ghm_cwap")),
    "GHM-CWAP margins only": ("ghm_cwap_margins", dict(loss="ghm_cwap", loss_params={"use_weights": False})),
}
# GLAG stage two: 40 generation epochs at a constant lr 0.1 ("step" with no milestones), wd 2e-4, written out
# (they were RunConfig's defaults when the committed figures were made; the defaults are the demo recipe now)
AFG = ("GLAG AFG", "glag_afg", dict(stage="afg", loss="ce", head="linear", classifier_init="stage_one", epochs=40,
                                    batch_size=64, eval_every=10, lr=0.1, weight_decay=2e-4, lr_schedule="step",
                                    milestones=[],
                                    afg_params={"k": 2, "beta": 0.6, "gamma": 0.1, "beta_step": 0.05}))
GCL_CLASSES = (0, 3, 6, 9)  # by count rank: 500, 107, 23, 5 images (GCL Fig. 1 takes four, head to tail)
GLAG_CLASSES = (0, 1, 2, 3, 5, 7, 8, 9)  # by count rank: eight of ten, all of the few group (GLAG Fig. 4)


def _config(name: str, params: dict, epochs: int, root: Path, protocol: dict) -> dict:
    params = dict(params)
    drw = params.pop("drw", False)
    return {**protocol, **params, "epochs": epochs, "drw_start": int(0.8 * epochs) if drw else None,
            "run_dir": str(root / name)}


def _train_one(label: str, cfg: dict, log: Callable[[str], None]) -> Run:
    """Load a finished run of ``cfg`` or train (resume) it; a directory holding another config is an error."""
    d = Path(cfg["run_dir"])
    if (d / "config.json").exists():
        held = load_run(d) if (d / "metrics.csv").exists() else None
        old = held.config if held else {}
        # every result-relevant field of the full config, defaults included: a default that changed since the
        # run was trained (RunConfig's defaults became the demo recipe) must not pass as "the same run"
        want = RunConfig(**cfg).to_dict()
        diff = [k for k in want if k not in RESUME_FREE_FIELDS and k in old and old[k] != want[k]]
        if diff:
            raise ValueError(f"{d} holds a run with other parameters ({', '.join(diff)}); delete it or pass "
                             "another root")
        if held is not None and len(held.metrics) and int(held.metrics.epoch.iloc[-1]) == cfg["epochs"] - 1:
            log(f"{label:16s} reused {d}")
            return held
    t0 = time.perf_counter()
    run = train_run(cfg, resume=(d / "checkpoint.pt").exists())
    s = run.summary()
    log(f"{label:16s} acc {s['acc']:.3f} many {s['acc_many']:.3f} medium {s['acc_medium']:.3f} "
        f"few {s['acc_few']:.3f} ({time.perf_counter() - t0:.0f} s)")
    return run


def train(epochs: int = EPOCHS, root: str | Path | None = None, log: Callable[[str], None] = print, *,
          protocol: dict | None = None, afg_epochs: int | None = None) -> dict[str, Run]:
    """Every run the figures need, trained once under ``root`` (default ``runs/figures``) and reused after.

    ``protocol`` updates ``PROTOCOL`` (e.g. another dataset for a quick check); ``afg_epochs`` replaces the
    40 generation epochs of GLAG's stage two.
    """
    root = Path(root) if root else runs_root() / "figures"
    protocol = {**PROTOCOL, **(protocol or {})}
    runs = {label: _train_one(label, _config(name, params, epochs, root, protocol), log)
            for label, (name, params) in METHODS.items()}
    label, name, params = AFG
    params = {**params, "epochs": afg_epochs or params["epochs"]}
    cfg = stage_two_config(runs["GraLoss (GLAG)"], **params).to_dict()
    runs[label] = _train_one(label, {**cfg, "run_dir": str(root / name), "progress": False}, log)
    return runs


def check_runs(runs: dict[str, Run]) -> dict[str, Run]:
    """``runs`` keyed by the legends of ``METHODS`` and ``AFG`` (values: Run or run directory)."""
    need = [*METHODS, AFG[0]]
    missing = [k for k in need if k not in runs]
    if missing:
        raise ValueError(f"run_dirs lacks {missing}; it needs one run per legend: {need}")
    return {k: as_run(r) for k, r in runs.items()}


def _tsne(runs: dict[str, Run], labels: list[str], splits: list[str], ranks, max_points: int) -> dict:
    """{"<legend>, <split>": t-SNE DataFrame} of the classes at count ``ranks``."""
    counts = runs[labels[0]].class_counts
    classes = np.argsort(-np.asarray(counts), kind="stable")[list(ranks)]
    out = {}
    for split in splits:
        for label in labels:
            f = features.run_features(runs[label], split, extract=True)
            n = min(int(np.isin(f["labels"], classes).sum()), max_points)  # perplexity 30 needs > 91 points
            out[f"{label}, {split}"] = features.tsne(f["features"], f["labels"], class_counts=counts,
                                                    preds=f["logits"].argmax(1), classes=classes,
                                                    max_points=max_points, perplexity=min(30.0, (n - 2) / 3))
    return out


def build(runs: dict[str, Run], max_points: int = 3000) -> dict:
    """Every committed figure, by file stem."""
    runs = check_runs(runs)
    r = runs
    ce, gala = r["CE"], r["GALA"]
    counts, names = ce.class_counts, plotting.run_class_names(ce)
    trio = [ce, r["EQL"], gala]
    seeds = SEED_METHODS
    gcl = _tsne(r, ["CE", "GCL"], ["train", "test"], GCL_CLASSES, max_points)
    glag = _tsne(r, ["CE", "LA", "GraLoss (GLAG)"], ["test"], GLAG_CLASSES, max_points)
    return {
        "gradient_ratio_by_class": plotting.gradient_ratio_by_class(trio, ["CE", "EQL", "GALA"]),
        "gradient_ratio_curves": plotting.gradient_ratio_curves(trio, ["CE", "EQL", "GALA"]),
        "negative_gradient_sources": plotting.negative_gradient_sources(trio, ["CE", "EQL", "GALA"]),
        "weight_norms": plotting.weight_norms([ce, r["CE + CAS"], gala], ["CE", "CE + CAS", "GALA"]),
        "class_feature_similarity": plotting.class_feature_similarity([ce, gala], ["CE", "GALA"]),
        "prediction_counts": plotting.prediction_counts([ce, gala], ["CE", "GALA"], pn_tau=1.0),
        "gala_theta_phi": plotting.gala_theta_phi(gala),
        "true_class_probability": plotting.true_class_probability([ce, r["LDAM (DRW)"], r["ALA (DRW)"]],
                                                                  ["CE", "LDAM (DRW)", "ALA (DRW)"]),
        "ala_adjustment_over_training": plotting.ala_adjustment_curves(r["ALA (DRW)"]),
        "ala_factors": plotting.ala_factors(counts),
        "glag_alpha_beta": plotting.glag_schedule(200, 1.0, 2.0, beta=r[AFG[0]], forms=("convex", "linear", "concave")),
        "tsne_glag_stage_one": plotting.tsne_scatter(glag, class_names=names, title="t-SNE of test features, 8 classes: "
                                                     "CE vs logit adjustment vs GraLoss (GLAG stage one)"),
        "tsne_ce_vs_gcl": plotting.tsne_scatter(gcl, class_names=names, cols=2, title="t-SNE of train and test "
                                                "features, 4 classes (500, 107, 23, 5 images): CE vs GCL"),
        "per_class_accuracy": plotting.per_class_accuracy_curve([r[k] for k in seeds], seeds),
        "accuracy_over_epochs": plotting.accuracy_over_epochs([r[k] for k in seeds], seeds),
        "ghm_cwap_bins": plotting.ghm_cwap_bins(r["GHM-CWAP"]),
        "ghm_cwap_fig2": plotting.ghm_cwap_bins(r["GHM-CWAP"], view="distribution"),
        "gcl_cloud_widths": plotting.gcl_cloud_widths(counts, 0.5),
        "drw_weights": plotting.drw_weights(counts, int(0.8 * EPOCHS), EPOCHS),
    }


SIZES = {"gradient_ratio_by_class": (1300, 520), "gradient_ratio_curves": (1200, 860),
         "tsne_glag_stage_one": (1300, 560), "tsne_ce_vs_gcl": (1000, 900), "true_class_probability": (1200, 520),
         "ala_adjustment_over_training": (1200, 480)}


def save(figures: dict, out_dir: str | Path = "figures", formats=("png", "svg", "pdf")) -> list[Path]:
    """Export every figure at its size (``SIZES``, else 1000 CSS pixels wide and the builder's height or 560)."""
    from .export import save_figures

    for name, fig in figures.items():
        w, h = SIZES.get(name, (1000, fig.layout.height or 560))
        fig.update_layout(width=w, height=h)
    return save_figures(figures, out_dir, formats)
