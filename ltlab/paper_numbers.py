"""``figures/README.md``: per committed figure, the paper figure it mirrors, the runs it draws and the numbers a
reader should see on them, computed from the run directories (:func:`write_readme`, called by
:mod:`ltlab.paper_figures`). Where the paper's picture does not appear on these data the line says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .export import resolve_out_dir
from .features import load_run_model
from .losses import functional as LF
from .plot_classifier import own_class_cosine
from .plotstyle import group_of_classes
from .posthoc import pn_rebalance
from .runs import Run, atomic_write_bytes, write_json
from .schedules import effective_number_weights, glag_alpha
from .stages import scaled_test_logits


def _f(x: float) -> str:
    return f"{x:.2f}" if np.isfinite(x) else "n/a"


def _ratios(run: Run) -> dict[str, np.ndarray]:
    """Per-class gradient ratio (C,) under each statistic (first epoch, last epoch, accumulated, GALA code)."""
    p = run.probes
    return {"epoch 1": p["grad_ratio"][0], "last epoch": p["grad_ratio"][-1], "accumulated": p["grad_ratio_cum"][-1],
            "GALA code": p["grad_ratio_cumcum"][-1]}


def gradient_numbers(runs: dict[str, Run]) -> list[str]:
    """Head (largest class) and few-group mean of the ratio under each statistic, CE / EQL / GALA, and whether
    the paper's picture (CE's tail far below 1 and GALA nearer 1) shows under that statistic."""
    counts = np.asarray(runs["CE"].class_counts)
    head, few = int(np.argmax(counts)), group_of_classes(counts) == "few"
    table = {k: _ratios(runs[k]) for k in ("CE", "EQL", "GALA")}
    lines = ["| statistic | " + " | ".join(f"{k} head / few" for k in table) + " | paper's picture |",
             "|---|" + "---|" * (len(table) + 1)]
    for stat in table["CE"]:
        cells = [f"{_f(v[stat][head])} / {_f(_mean(v[stat][few]))}" for v in table.values()]
        ce_few, gala_few = _mean(table["CE"][stat][few]), _mean(table["GALA"][stat][few])
        shows = ce_few < 0.7 and gala_few > ce_few + 0.1
        lines.append(f"| {stat} | " + " | ".join(cells) + f" | {'yes' if shows else 'no'} |")
    return lines


def transient_numbers(runs: dict[str, Run]) -> str:
    """The epoch-1 transient of CE and GALA: head and rarest class after step 1, at the end of epoch 1 and in
    the last epoch (per-epoch sums)."""
    counts = np.asarray(runs["CE"].class_counts)
    head, tail = int(np.argmax(counts)), int(np.argmin(counts))
    n, c = counts.sum(), len(counts)
    out = [f"at initialisation n_c (C - 1) / (N - n_c) = {counts[head] * (c - 1) / (n - counts[head]):.2f} (head), "
           f"{counts[tail] * (c - 1) / (n - counts[tail]):.3f} (rarest)"]
    for k in ("CE", "GALA"):
        p = runs[k].probes
        step1 = p["grad_pos_steps"][0][0] / p["grad_neg_steps"][0][0]
        r = p["grad_ratio"]
        out.append(f"{k}: head {_f(step1[head])} after step 1, {_f(r[0][head])} over epoch 1, {_f(r[-1][head])} in "
                   f"the last epoch; rarest class {_f(step1[tail])}, {_f(r[0][tail])}, {_f(r[-1][tail])}")
    return "; ".join(out)


def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _group_mean(values: np.ndarray, counts, group: str) -> float:
    return _mean(np.asarray(values)[group_of_classes(counts) == group])


def classifier_numbers(runs: dict[str, Run]) -> dict[str, str]:
    counts = np.asarray(runs["CE"].class_counts)
    head, tail = int(np.argmax(counts)), int(np.argmin(counts))
    out = {}
    norms = {k: runs[k].probes["weight_norm"][-1] for k in ("CE", "CE + CAS", "GALA")}
    out["weight_norms"] = "; ".join(f"{k}: head {_f(v[head])}, rarest {_f(v[tail])} (ratio {_f(v[head] / v[tail])})"
                                    for k, v in norms.items())
    sims = []
    for k in ("CE", "GALA"):
        f = runs[k].features("test")
        w = load_run_model(runs[k])[0].head.weight_matrix().detach().numpy()
        s = own_class_cosine(f["features"], f["labels"], w)
        sims.append(f"{k}: many {_f(_group_mean(s, counts, 'many'))}, few {_f(_group_mean(s, counts, 'few'))}")
    out["class_feature_similarity"] = "; ".join(sims)
    many = group_of_classes(counts) == "many"
    shares = []
    for k in ("CE", "EQL", "GALA"):
        m = runs[k].probes["grad_neg_by_source_cum"][-1][tail]
        shares.append(f"{k} {m[many].sum() / m.sum():.0%}")
    data = counts[many].sum() / (counts.sum() - counts[tail])
    out["negative_gradient_sources"] = (f"share of the rarest classifier's accumulated negative gradient sent by the "
                                        f"{int(many.sum())} many-shot classes: {', '.join(shares)} (their share of the "
                                        f"other classes' training images: {data:.0%})")
    theta = runs["GALA"].probes["theta"][-1]
    out["gala_theta_phi"] = f"theta head {theta[head]:.3g}, rarest {theta[tail]:.3g} (theta = phi for softmax CE)"
    return out


def output_numbers(runs: dict[str, Run]) -> dict[str, str]:
    counts = np.asarray(runs["CE"].class_counts)
    head, few = int(np.argmax(counts)), group_of_classes(counts) == "few"
    preds = []
    for k in ("CE", "GALA"):
        z, y = scaled_test_logits(runs[k])
        for name, p in ((k, z.argmax(1)), (f"{k} + PN", pn_rebalance(z, 1.0).argmax(1))):
            n = np.bincount(p, minlength=len(counts))
            preds.append(f"{name}: head {n[head]}, few {n[few].mean():.0f} per class")
    out = {"prediction_counts": f"balanced: {len(y) // len(counts)} per class; " + "; ".join(preds)}
    hard = []
    for k in ("CE", "LDAM (DRW)", "ALA (DRW)"):
        z, y = scaled_test_logits(runs[k])
        p = np.exp(z - z.max(1, keepdims=True))
        py = (p / p.sum(1, keepdims=True))[np.arange(len(y)), y]
        g = group_of_classes(counts)[y]
        hard.append(f"{k}: " + ", ".join(f"{grp} {np.mean(py[g == grp] < 0.2):.0%}" for grp in ("many", "medium", "few")
                                         if (g == grp).any()))
    out["true_class_probability"] = "hard (p_y < 0.2) images per group, " + "; ".join(hard)
    ala = runs["ALA (DRW)"].probes
    df, qf = ala["difficulty_factor"], ala["quantity_factor"][-1]
    out["ala_adjustment_over_training"] = (
        f"DF many {_f(_group_mean(df[0], counts, 'many'))} -> {_f(_group_mean(df[-1], counts, 'many'))}, few "
        f"{_f(_group_mean(df[0], counts, 'few'))} -> {_f(_group_mean(df[-1], counts, 'few'))} (epoch 1 -> last); QF "
        f"many {_f(_group_mean(qf, counts, 'many'))}, few {_f(_group_mean(qf, counts, 'few'))}; DF x QF in the last "
        f"epoch many {_f(_group_mean(df[-1] * qf, counts, 'many'))}, few {_f(_group_mean(df[-1] * qf, counts, 'few'))}")
    return out


def tsne_numbers(figures: dict) -> dict[str, str]:
    """Mean silhouette per panel, read back from the figures' subplot titles (what the reader sees)."""
    out = {}
    for stem in ("tsne_glag_stage_one", "tsne_ce_vs_gcl"):
        if stem in figures:
            out[stem] = "; ".join(a.text for a in figures[stem].layout.annotations if "silhouette" in a.text
                                  and "<br>" not in a.text and "\u25a0" not in a.text)
    return out


def accuracy_numbers(runs: dict[str, Run], labels) -> str:
    return "; ".join(f"{k} {runs[k].summary()['acc']:.3f} (many {runs[k].summary()['acc_many']:.2f}, few "
                     f"{runs[k].summary()['acc_few']:.2f})" for k in labels)


def schedule_numbers(runs: dict[str, Run], afg_label: str) -> dict[str, str]:
    forms = ", ".join(f"{f} {glag_alpha(100, 200, 1.0, 2.0, f):.2f}" for f in ("convex", "linear", "concave"))
    beta = np.asarray(runs[afg_label].probes["glag_beta"])
    tail = [c for c in np.argsort(-np.asarray(runs["CE"].class_counts)) if np.isfinite(beta[:, c]).any()]
    moves = ", ".join(f"{beta[0, c]:.2f} -> {beta[-1, c]:.2f}" for c in tail)
    return {"glag_alpha_beta": f"alpha at mid-training (T = 100 of 200): {forms}; all reach 1.00 at T = 200. Beta "
                               f"of the {len(tail)} tail classes (by count, first -> last generation epoch): {moves}"}


# stem -> (paper figure, what it draws); the order of figures/README.md
FIGURES = {
    "gradient_ratio_by_class": ("GALA Fig. 1(b)", "pos / neg logit-gradient ratio per classifier, classes by training "
                                "count, under each statistic side by side: epoch 1, last epoch, accumulated from step 0, "
                                "GALA code (running sum of running sums); CE, EQL, GALA"),
    "gradient_ratio_curves": ("GALA Fig. 1(b), over training", "the same ratios per class over training (log x, epoch 1 "
                              "at step resolution): a row per statistic, a column per run"),
    "negative_gradient_sources": ("GALA Fig. 1(c)", "share of the rarest class's classifier's accumulated negative "
                                  "gradient sent by each source class, against each class's share of the images"),
    "weight_norms": ("GALA Fig. 1(a)", "classifier weight norm per class: CE, CE with class-aware sampling, GALA"),
    "class_feature_similarity": ("GALA Fig. 1(d)", "mean cosine of each class vector to its own test features: CE, GALA"),
    "prediction_counts": ("GALA Fig. 2", "test images predicted as each class vs the balanced 1,000: CE and GALA, "
                          "each with and without PN re-balancing (tau = 1)"),
    "gala_theta_phi": ("GALA Eq. 6 statistics", "GALA's theta (positive) and phi (negative) per class, theta over training"),
    "true_class_probability": ("ALA Fig. 3", "sorted predicted probability of the true class per many / medium / few "
                               "group: CE, LDAM-DRW, ALA-DRW"),
    "ala_adjustment_over_training": ("ALA Fig. 4", "DF (epoch mean per class), QF and DF x QF averaged per group over "
                                     "the epochs of the ALA-DRW run"),
    "ala_factors": ("ALA Fig. 2", "QF per class (paper and code forms) beside the LDAM margin, and DF vs target cosine"),
    "glag_alpha_beta": ("GLAG Fig. 3 + beta", "alpha(T) in convex (Eq. 4), linear and concave form (s = 1, c = 2, "
                        "200 epochs) and the beta each tail class was generated with in the GLAG stage-two (AFG) run"),
    "tsne_glag_stage_one": ("GLAG Fig. 4", "t-SNE of test features of 8 classes (all but count ranks 4 and 6): CE, "
                            "logit adjustment, GraLoss; mean silhouette per panel"),
    "tsne_ce_vs_gcl": ("GCL Figs. 1, 3", "t-SNE of train and test features of 4 classes (500, 107, 23, 5 images): "
                       "CE vs GCL (stage one); mean silhouette per panel"),
    "per_class_accuracy": ("ALA Fig. 1 style", "per-class test accuracy of CE and the five seed methods"),
    "accuracy_over_epochs": ("-", "overall / many / medium / few test accuracy at the evaluated epochs"),
    "ghm_cwap_bins": ("GHM-CWAP Fig. 2 (bins)", "GHM-CWAP's adaptive unit regions and counts of the head, middle and "
                      "tail class of the GHM-CWAP run"),
    "gcl_cloud_widths": ("GCL Eq. 9-11", "GCL cloud width per class (noise_mul 0.5)"),
    "drw_weights": ("LDAM-DRW", "DRW class weights (switch at epoch 24 of 30)"),
}

GRADIENT_NOTE = (
    "Why the picture depends on the statistic: with a softmax loss and a classifier bias, the bias gradient of class "
    "c is exactly neg_c - pos_c, so over any stretch of SGD neg - pos stays about -(b_end - b_start) / lr while pos "
    "and neg grow with the number of steps: every ratio of sums over a long stretch tends to 1 for every class and "
    "every loss. The head / tail imbalance GALA Fig. 1(b) shows lives in the early transient (epoch 1), and, "
    "weaker, in the GALA-code statistic, which weights the first steps most. On these data the paper's picture "
    "(CE's tail far below 1, GALA nearer 1) appears where the last column says yes, and not elsewhere.")


def write_readme(runs: dict[str, Run], figures: dict, out_dir: str | Path = "figures",
                 afg_label: str = "GLAG AFG") -> Path:
    """Write ``<out_dir>/README.md`` (and ``numbers.json``): one entry per figure with its paper figure, what it
    draws and the numbers on these runs."""
    from .paper_figures import EPOCHS, PROTOCOL

    seeds = ["CE", "GraLoss (GLAG)", "GCL", "ALA (DRW)", "GALA", "GHM-CWAP"]
    numbers = {**classifier_numbers(runs), **output_numbers(runs), **tsne_numbers(figures),
               **schedule_numbers(runs, afg_label)}
    numbers["gradient_ratio_curves"] = transient_numbers(runs)
    numbers["per_class_accuracy"] = numbers["accuracy_over_epochs"] = accuracy_numbers(runs, seeds)
    numbers["ghm_cwap_bins"] = accuracy_numbers(runs, ["GHM-CWAP"])
    counts = np.asarray(runs["CE"].class_counts)
    n = torch.as_tensor(counts, dtype=torch.float64)
    qf, m = LF.ala_quantity_factor(n, "paper").numpy(), LF.ldam_margins(n).numpy()
    numbers["ala_factors"] = (f"QF head {qf.min():.2f}, rarest {qf.max():.2f} ({qf.max() / qf.min():.1f}x); LDAM margin "
                              f"head {m.min():.2f}, rarest {m.max():.2f} ({m.max() / m.min():.1f}x)")
    widths = LF.gcl_delta_hat(n).numpy() * 0.5
    numbers["gcl_cloud_widths"] = f"max shift head {widths.min():.2f}, rarest {widths.max():.2f}"
    w = effective_number_weights(counts)
    numbers["drw_weights"] = f"weights after the switch: head {w.min():.3f}, rarest {w.max():.2f}"
    cfg = {k: v for k, v in PROTOCOL.items() if k not in ("device", "progress")}
    lines = ["# Committed figures", "",
             f"Regenerated by `make figures` (`tools/make_figures.py`, code in `ltlab/paper_figures.py`) or notebook "
             f"08. Data: Fashion-MNIST-LT, IF 100, head capped at 500 images: training counts "
             f"{' '.join(str(c) for c in counts)} (4 many, 3 medium, 3 few classes), balanced test split of 1,000 "
             f"images per class. Recipe (ours): {EPOCHS} epochs, {cfg}; DRW from epoch {int(0.8 * EPOCHS)} for "
             f"LDAM and ALA; GLAG stage two: 40 AFG epochs on the GraLoss run. Small CPU runs: the figures show the "
             f"shapes the papers argue with, not their numbers. Numbers below are read from the run directories.", ""]
    for stem, (paper, what) in FIGURES.items():
        lines += [f"## `{stem}.png` ({paper})", "", what + ".", ""]
        if stem == "gradient_ratio_by_class":
            lines += ["Ratio of the largest class (head) and mean over the 3 few-shot classes:", ""]
            lines += gradient_numbers(runs) + ["", GRADIENT_NOTE, ""]
        if stem in numbers:
            lines += [f"Numbers: {numbers[stem]}.", ""]
    path = resolve_out_dir(out_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "\n".join(lines).encode())
    write_json(path.with_name("numbers.json"), numbers)
    return path
