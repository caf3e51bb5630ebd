"""The committed paper figures: one protocol, the runs it needs, the figures and the numbers behind them.

``make figures`` (``tools/make_figures.py``) and the ``08_paper_figures`` notebook both call
:func:`train`, :func:`build` and :func:`write_readme` here. Data: Fashion-MNIST-LT, IF 100, head class
capped at 500 images (``dataset_params={"n_max": 500}``: 500 299 179 107 64 38 23 13 8 5, so 4 many,
3 medium and 3 few classes). Recipe (ours, CPU-sized): convnet_small, 30 epochs, batch 128, SGD lr 0.05
cosine with 1 warm-up epoch, wd 5e-4, seed 0, evaluation every 5 epochs; DRW from epoch 24 where a
method uses it; GLAG stage two: 40 AFG generation epochs on the GraLoss run. The runs are small, so
the figures show the shapes the papers argue with, not their numbers.

Runs (issue 27): ``METHODS`` (softmax EQL, the form GALA paper 003 compares with; ALA with DRW and without, the
latter OpenLT's ImageNet-LT recipe for ALA Fig. 4; GALA with and without a classifier bias for GALA Fig. 1(a)),
the runs behind a verdict that rests on a small difference again at ``EXTRA_SEEDS`` (ALA Fig. 3(a): LDAM-DRW and
ALA-DRW at seeds 1 and 2, directories ``<name>_s<seed>``), then GLAG's stage two: 18 runs. A finished run is
reused unless the training code changed since the commit it was trained at (:mod:`.paper_commits`);
``figures/README.md`` names that commit.
"""
from __future__ import annotations

import shutil
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
from .paper_commits import (COMMIT_FILE, TRAINING_CODE, head_commit, run_commit,  # noqa: F401
                            training_code_changed)
from .paper_numbers import SEED_METHODS, seed_label, seed_runs, write_readme  # noqa: F401  (re-exported: make figures, 08)

EPOCHS = 30
PROTOCOL = dict(dataset="fashion_mnist_lt", imbalance_factor=100, dataset_params={"n_max": 500},
                model="convnet_small", batch_size=128, lr=0.05, lr_schedule="cosine", warmup_epochs=1,
                weight_decay=5e-4, seed=0, device="cpu", progress=False, eval_every=5)
# legend -> (run directory name under runs/figures/, parameters on top of PROTOCOL); "drw": DRW at 0.8 * epochs
METHODS: dict[str, tuple[str, dict]] = {
    "CE": ("ce", dict(loss="ce")),
    "CE + CAS": ("ce_cas", dict(loss="ce", sampler="class_aware")),
    # GALA (paper 003) compares with softmax EQL; loss="eql" alone is the official sigmoid form
    "EQL (softmax)": ("eql_softmax", dict(loss="eql", loss_params={"form": "softmax"})),
    "LA": ("la", dict(loss="logit_adjusted")),
    "GraLoss (GLAG)": ("graloss", dict(loss="graloss", val_per_class=50)),
    "GCL": ("gcl", dict(loss="gcl")),
    "LDAM (DRW)": ("ldam_drw", dict(loss="ldam", drw=True)),
    "ALA (DRW)": ("ala_drw", dict(loss="ala", drw=True)),
    # OpenLT's ImageNet-LT ALA configuration: no DRW (ALA Fig. 4 without the re-weighting that moves DF)
    "ALA (no DRW)": ("ala", dict(loss="ala")),
    "GALA": ("gala", dict(loss="gala")),
    # GALA Fig. 1(a) without a classifier bias, so a reader can check that no bias absorbs GALA's shift
    "GALA (no bias)": ("gala_nobias", dict(loss="gala", head="linear_nobias")),
    "GHM-CWAP": ("ghm_cwap", dict(loss="ghm_cwap")),
    "GHM-CWAP margins only": ("ghm_cwap_margins", dict(loss="ghm_cwap", loss_params={"use_weights": False})),
}
# the runs behind a verdict that rests on a small difference (ALA Fig. 3(a): hard many-shot images, ALA vs LDAM)
# trained again at these seeds: legend "<label> (seed s)", directory "<name>_s<s>"; seed 0 is the run above
EXTRA_SEEDS: dict[str, tuple[int, ...]] = {"ALA (DRW)": (1, 2), "LDAM (DRW)": (1, 2)}


def all_methods() -> dict[str, tuple[str, dict]]:
    """``METHODS`` plus the extra seeds of ``EXTRA_SEEDS`` (directories ``<name>_s<seed>``)."""
    out = dict(METHODS)
    for label, seeds in EXTRA_SEEDS.items():
        name, params = METHODS[label]
        for s in seeds:
            out[seed_label(label, s)] = (f"{name}_s{s}", {**params, "seed": s})
    return out


# GLAG stage two: 40 generation epochs at a constant lr 0.1 ("step" with no milestones), wd 2e-4, written out
# (they were RunConfig's defaults when the committed figures were made; the defaults are the demo recipe now)
AFG = ("GLAG AFG", "glag_afg", dict(stage="afg", loss="ce", head="linear", classifier_init="stage_one", epochs=40,
                                    batch_size=64, eval_every=10, lr=0.1, weight_decay=2e-4, lr_schedule="step",
                                    milestones=[],
                                    afg_params={"k": 2, "beta": 0.6, "gamma": 0.1, "beta_step": 0.05}))
GCL_CLASSES = (0, 3, 6, 9)  # by count rank: 500, 107, 23, 5 images (GCL Fig. 3 t-SNE, four classes head to tail)
GLAG_CLASSES = (0, 1, 2, 3, 5, 7, 8, 9)  # by count rank: eight of ten, all of the few group (GLAG Fig. 4)


def _config(name: str, params: dict, epochs: int, root: Path, protocol: dict) -> dict:
    params = dict(params)
    drw = params.pop("drw", False)
    return {**protocol, **params, "epochs": epochs, "drw_start": int(0.8 * epochs) if drw else None,
            "run_dir": str(root / name)}


def _stamp(run: Run) -> None:
    """Record the commit a freshly trained run was trained at where config.json holds none."""
    if not run.config.get("git_commit"):
        commit = head_commit()
        if commit:
            (Path(run.dir) / COMMIT_FILE).write_text(commit + "\n")


def _train_one(label: str, cfg: dict, log: Callable[[str], None], check_code: bool = True) -> Run:
    """Load a finished run of ``cfg`` or train (resume) it; a directory holding another config is an error.

    A finished run is reused unless the training code changed since the commit it was trained at
    (:func:`training_code_changed`): then it is trained again from scratch, with one line saying why. When
    that cannot be told (no git, no commit recorded) the run is reused and the line says so.
    """
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
            changed, why = training_code_changed(run_commit(held)) if check_code else (False, "not checked")
            if not changed:
                log(f"{label:16s} reused {d}" + ("" if changed is False and "uncommitted" not in why else
                                                 f" ({why})" if changed is False else
                                                 f" ({why}: cannot tell whether the training code changed)"))
                return held
            log(f"{label:16s} retrained: {why} ({d})")
            shutil.rmtree(d)
    t0 = time.perf_counter()
    run = train_run(cfg, resume=(d / "checkpoint.pt").exists())
    _stamp(run)
    s = run.summary()
    log(f"{label:16s} acc {s['acc']:.3f} many {s['acc_many']:.3f} medium {s['acc_medium']:.3f} "
        f"few {s['acc_few']:.3f} ({time.perf_counter() - t0:.0f} s)")
    return run


def train(epochs: int = EPOCHS, root: str | Path | None = None, log: Callable[[str], None] = print, *,
          protocol: dict | None = None, afg_epochs: int | None = None, check_code: bool = True) -> dict[str, Run]:
    """Every run the figures need (``all_methods()``: ``METHODS`` and the extra seeds, then GLAG's stage two),
    trained once under ``root`` (default ``runs/figures``) and reused after, unless the training code changed
    since the commit a run was trained at (``check_code``; :func:`training_code_changed`).

    ``protocol`` updates ``PROTOCOL`` (e.g. another dataset for a quick check); ``afg_epochs`` replaces the
    40 generation epochs of GLAG's stage two.
    """
    root = Path(root) if root else runs_root() / "figures"
    protocol = {**PROTOCOL, **(protocol or {})}
    runs = {label: _train_one(label, _config(name, params, epochs, root, protocol), log, check_code)
            for label, (name, params) in all_methods().items()}
    label, name, params = AFG
    params = {**params, "epochs": afg_epochs or params["epochs"]}
    cfg = stage_two_config(runs["GraLoss (GLAG)"], **params).to_dict()
    runs[label] = _train_one(label, {**cfg, "run_dir": str(root / name), "progress": False}, log, check_code)
    return runs


def check_runs(runs: dict[str, Run]) -> dict[str, Run]:
    """``runs`` keyed by the legends of ``METHODS`` and ``AFG`` (values: Run or run directory); the extra seeds
    (``EXTRA_SEEDS``) are optional: without them a close verdict rests on one seed and says so."""
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
    trio, eql = [ce, r["EQL (softmax)"], gala], ["CE", "EQL (softmax)", "GALA"]
    seeds = SEED_METHODS
    gcl = _tsne(r, ["CE", "GCL"], ["train", "test"], GCL_CLASSES, max_points)
    gcl_n = ", ".join(str(n) for n in np.sort(np.asarray(counts))[::-1][list(GCL_CLASSES)])
    glag = _tsne(r, ["CE", "LA", "GraLoss (GLAG)"], ["test"], GLAG_CLASSES, max_points)
    return {
        "gradient_ratio_by_class": plotting.gradient_ratio_by_class(trio, eql),
        "gradient_ratio_curves": plotting.gradient_ratio_curves(trio, eql),
        "negative_gradient_sources": plotting.negative_gradient_sources(trio, eql),
        "weight_norms": plotting.weight_norms([ce, r["CE + CAS"], gala], ["CE", "CE + CAS", "GALA"]),
        "class_feature_similarity": plotting.class_feature_similarity([ce, gala], ["CE", "GALA"]),
        "prediction_counts": plotting.prediction_counts([ce, gala], ["CE", "GALA"], pn_tau=1.0),
        "gala_theta_phi": plotting.gala_theta_phi(gala),
        "true_class_probability": plotting.true_class_probability([ce, r["LDAM (DRW)"], r["ALA (DRW)"]],
                                                                  ["CE", "LDAM (DRW)", "ALA (DRW)"]),
        "ala_adjustment_over_training": plotting.ala_adjustment_curves(r["ALA (DRW)"]),
        "ala_adjustment_no_drw": plotting.ala_adjustment_curves(r["ALA (no DRW)"]),
        "ala_factors": plotting.ala_factors(counts),
        "glag_alpha_beta": plotting.glag_schedule(200, 1.0, 2.0, beta=r[AFG[0]], forms=("convex", "linear", "concave")),
        "tsne_glag_stage_one": plotting.tsne_scatter(glag, class_names=names, title="t-SNE of test features, 8 classes: "
                                                     "CE vs logit adjustment vs GraLoss (GLAG stage one)"),
        "tsne_ce_vs_gcl": plotting.tsne_scatter(gcl, class_names=names, cols=2, title="GCL Fig. 3: t-SNE of train "
                                                f"and test features, {len(GCL_CLASSES)} classes ({gcl_n} images), "
                                                "CE and GCL"),
        "gcl_fig1_class_spread": plotting.class_spread_by_count([ce, r["GCL"]], ["CE", "GCL"]),
        "per_class_accuracy": plotting.per_class_accuracy_curve([r[k] for k in seeds], seeds),
        "accuracy_over_epochs": plotting.accuracy_over_epochs([r[k] for k in seeds], seeds),
        "ghm_cwap_bins": plotting.ghm_cwap_bins(r["GHM-CWAP"]),
        "ghm_cwap_fig2": plotting.ghm_cwap_bins(r["GHM-CWAP"], view="distribution"),
        "gcl_cloud_widths": plotting.gcl_cloud_widths(counts, 0.5),
        "drw_weights": plotting.drw_weights(counts, int(0.8 * EPOCHS), EPOCHS),
    }


SIZES = {"gradient_ratio_by_class": (1300, 520), "gradient_ratio_curves": (1200, 860),
         "tsne_glag_stage_one": (1300, 560), "tsne_ce_vs_gcl": (1000, 900), "true_class_probability": (1200, 520),
         "ala_adjustment_over_training": (1200, 480), "ala_adjustment_no_drw": (1200, 480)}


def save(figures: dict, out_dir: str | Path = "figures", formats=("png", "svg", "pdf")) -> list[Path]:
    """Export every figure at its size (``SIZES``, else 1000 CSS pixels wide and the builder's height or 560)."""
    from .export import save_figures

    for name, fig in figures.items():
        w, h = SIZES.get(name, (1000, fig.layout.height or 560))
        fig.update_layout(width=w, height=h)
    return save_figures(figures, out_dir, formats)
