"""``figures/README.md``: per committed figure, the paper figure it mirrors, the runs it draws and the numbers a
reader should see on them, computed from the run directories (:func:`write_readme`, called by
:mod:`ltlab.viz.paper_figures`). Where the paper's picture does not appear on these data the line says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..build import rebuild_model
from ..losses import functional as LF
from ..posthoc import pn_rebalance, scaled_test_logits
from ..runs import Run, atomic_write_bytes, write_json
from ..schedules import effective_number_weights, glag_alpha
from .export import resolve_out_dir
from .plot_classifier import own_class_cosine
from .style import group_of_classes

GROUPS = ("many", "medium", "few")


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
    lines = [f"Ratio of the largest class (head) and mean over the {int(few.sum())} few-shot classes:", "",
             "| statistic | " + " | ".join(f"{k} head / few" for k in table) + " | paper's picture |",
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
        first = "no image of it in the first batch" if step1[tail] == 0 else f"{_f(step1[tail])} after step 1"
        peak = f", with a peak of {_f(_max(r[1:, tail]))} in between" if len(r) > 2 else ""
        out.append(f"{k}: head {_f(step1[head])} after step 1, {_f(r[0][head])} over epoch 1, {_f(r[-1][head])} in "
                   f"the last epoch; rarest class {first}, {_f(r[0][tail])} over epoch 1, {_f(r[-1][tail])} in the "
                   f"last epoch{peak}")
    return "; ".join(out) + (". The per-epoch ratio of the tail overshoots 1 after epoch 1: its bias, pushed down in "
                             "epoch 1, comes back up, which needs more positive than negative gradient")


def _max(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmax(v)) if np.isfinite(v).any() else float("nan")


def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _group_mean(values: np.ndarray, counts, group: str) -> float:
    return _mean(np.asarray(values)[group_of_classes(counts) == group])


def _picture(shows: bool, why: str) -> str:
    return f" The paper's picture {'appears' if shows else 'does not appear'} on these runs: {why}"


def classifier_numbers(runs: dict[str, Run]) -> dict[str, str]:
    counts = np.asarray(runs["CE"].class_counts)
    head, tail = int(np.argmax(counts)), int(np.argmin(counts))
    out = {}
    ratio = {k: runs[k].probes["weight_norm"][-1][head] / runs[k].probes["weight_norm"][-1][tail]
             for k in ("CE", "CE + CAS", "GALA")}
    out["weight_norms"] = "head / rarest class norm: " + ", ".join(f"{k} {_f(v)}" for k, v in ratio.items()) + "." + \
        _picture(ratio["GALA"] < 0.8 * ratio["CE"], "class-aware sampling evens the norms, GALA does not. At any "
                 "step the official GALA code shifts column c of every sample by the same lambda1 log(theta_c) (its "
                 "phi term is the same for every column of a row and cancels in the softmax), a logit adjustment "
                 "the classifier bias can take up, so nothing forces the weight norms to even out"
                 if ratio["GALA"] >= 0.8 * ratio["CE"] else "GALA's norms are more even")
    sims = {}
    for k in ("CE", "GALA"):
        f = runs[k].features("test")
        w = rebuild_model(runs[k]).head.weight_matrix().detach().numpy()
        s = own_class_cosine(f["features"], f["labels"], w)
        sims[k] = (_group_mean(s, counts, "many"), _group_mean(s, counts, "few"))
    out["class_feature_similarity"] = "mean cosine many / few: " + ", ".join(
        f"{k} {_f(a)} / {_f(b)}" for k, (a, b) in sims.items()) + "." + _picture(
        sims["GALA"][1] > sims["CE"][1] + 0.05, "GALA's tail class vectors point more towards their own test features")
    many = group_of_classes(counts) == "many"
    shares = {}
    for k in ("CE", "EQL", "GALA"):
        m = runs[k].probes["grad_neg_by_source_cum"][-1][tail]
        shares[k] = m[many].sum() / m.sum()
    data = counts[many].sum() / (counts.sum() - counts[tail])
    out["negative_gradient_sources"] = (
        f"share of the rarest class's accumulated negative gradient sent by the {int(many.sum())} many-shot classes: "
        + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) + f" (their share of the other classes' training "
        f"images: {data:.0%}; below it because head images are classified confidently early and then push little)."
        + _picture(shares["CE"] > 0.5 and shares["GALA"] < shares["CE"] - 0.03,
                   "under CE most of it comes from the head classes, and GALA lowers that share"
                   if shares["GALA"] < shares["CE"] - 0.03 else "GALA does not lower the head classes' share"))
    theta = runs["GALA"].probes["theta"][-1]
    out["gala_theta_phi"] = f"theta head {theta[head]:.3g}, rarest {theta[tail]:.3g} (theta = phi for softmax CE)"
    return out


def _true_class_probability(run: Run) -> tuple[np.ndarray, np.ndarray]:
    z, y = scaled_test_logits(run)
    p = np.exp(z - z.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True))[np.arange(len(y)), y], y


def output_numbers(runs: dict[str, Run]) -> dict[str, str]:
    counts = np.asarray(runs["CE"].class_counts)
    head, few, group = int(np.argmax(counts)), group_of_classes(counts) == "few", group_of_classes(counts)
    preds = {}
    for k in ("CE", "GALA"):
        z, y = scaled_test_logits(runs[k])
        for name, p in ((k, z.argmax(1)), (f"{k} + PN", pn_rebalance(z, 1.0).argmax(1))):
            n = np.bincount(p, minlength=len(counts))
            preds[name] = (n[head], n[few].mean())
    balanced = len(y) / len(counts)
    out = {"prediction_counts": f"balanced: {balanced:g} per class; head / few (mean per class): " + ", ".join(
        f"{k} {a} / {b:.0f}" for k, (a, b) in preds.items()) + "." + _picture(
        preds["CE"][0] > 1.5 * balanced and preds["GALA + PN"][0] < preds["CE"][0],
        "CE predicts the head class far more often than the balanced count and the tail far less; GALA and PN "
        "bring both towards it")}
    hard = {}
    for k in ("CE", "LDAM (DRW)", "ALA (DRW)"):
        py, y = _true_class_probability(runs[k])
        hard[k] = {g: float(np.mean(py[group[y] == g] < 0.2)) for g in GROUPS if (group[y] == g).any()}
    ok_few = hard["ALA (DRW)"].get("few", 0) < hard["CE"].get("few", 0)
    ok_many = hard["ALA (DRW)"].get("many", 0) <= hard["LDAM (DRW)"].get("many", 0)
    out["true_class_probability"] = "hard (p_y < 0.2) test images per group: " + "; ".join(
        f"{k} " + ", ".join(f"{g} {v:.0%}" for g, v in h.items()) for k, h in hard.items()) + "." + _picture(
        ok_few and ok_many, "LDAM and ALA cut the hard few-shot images" + (
            " and ALA keeps fewer hard many-shot images than LDAM" if ok_many else
            ", but ALA does not keep fewer hard many-shot images than LDAM (the paper's Fig. 3(a) claim)"))
    ala = runs["ALA (DRW)"].probes
    df, qf = ala["difficulty_factor"], ala["quantity_factor"][-1]
    g = {k: (_group_mean(df[0], counts, k), _group_mean(df[-1], counts, k)) for k in ("many", "few")}
    out["ala_adjustment_over_training"] = (
        f"DF many {_f(g['many'][0])} -> {_f(g['many'][1])}, few {_f(g['few'][0])} -> {_f(g['few'][1])} (epoch 1 -> "
        f"last); QF many {_f(_group_mean(qf, counts, 'many'))}, few {_f(_group_mean(qf, counts, 'few'))}; DF x QF in "
        f"the last epoch many {_f(_group_mean(df[-1] * qf, counts, 'many'))}, few "
        f"{_f(_group_mean(df[-1] * qf, counts, 'few'))}." + _picture(
            g["few"][1] > g["many"][1], "DF falls over training and stays larger for the tail" if g["few"][1] >
            g["many"][1] else "DF falls over training and starts larger for the few group, but by the last epochs "
            "the few group's DF drops below the many group's: DF is measured on training images, and the 5-13 "
            "images of a few-shot class are fitted by then; DF x QF still adjusts the few group most"))
    return out


def tsne_numbers(figures: dict) -> dict[str, str]:
    """Mean silhouette per panel, read back from the figures' subplot titles (what the reader sees)."""
    out = {}
    for stem, ref, method in (("tsne_glag_stage_one", "CE", "GraLoss (GLAG)"), ("tsne_ce_vs_gcl", "CE", "GCL")):
        if stem not in figures:
            continue
        titles = [a.text for a in figures[stem].layout.annotations if " · silhouette " in a.text]
        sil = {t.split(" · ")[0]: float(t.rsplit(" ", 1)[1]) for t in titles}
        better = all(v > sil.get(k.replace(method, ref), v) + 0.01 for k, v in sil.items() if k.startswith(method))
        out[stem] = "mean silhouette " + "; ".join(titles).replace(" · silhouette", "") + "." + _picture(
            better, f"{method}'s classes are better separated" if better else
            f"{method}'s classes are not better separated than {ref}'s by the silhouette (the paper judges by eye)")
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
                               f"of the {len(tail)} tail classes (by count, first -> last generation epoch): {moves}; "
                               f"AFG run accuracy {runs[afg_label].summary()['acc']:.3f} (few "
                               f"{runs[afg_label].summary()['acc_few']:.2f}) on top of GraLoss "
                               f"{runs['GraLoss (GLAG)'].summary()['acc']:.3f}"}


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
    "tsne_glag_stage_one": ("GLAG Fig. 4", "t-SNE of test features of 8 of the 10 classes (all but count ranks 4 and "
                            "6: Coat and Shirt on Fashion-MNIST-LT): CE, logit adjustment, GraLoss; mean silhouette "
                            "per panel in its title, per class in the panel (Euclidean, on the t-SNE input)"),
    "tsne_ce_vs_gcl": ("GCL Figs. 1, 3", "t-SNE of train and test features of 4 classes (500, 107, 23, 5 images): "
                       "CE vs GCL (stage one); silhouettes as above"),
    "per_class_accuracy": ("ALA Fig. 1 style", "per-class test accuracy of CE and the five seed methods"),
    "accuracy_over_epochs": ("-", "overall / many / medium / few test accuracy at the evaluated epochs"),
    "ghm_cwap_bins": ("GHM-CWAP Alg. 1 / Eq. 1", "GHM-CWAP's adaptive unit regions, counts and the weight each bin "
                      "gives (Eq. 1, next epoch) for the head, middle and tail class of the GHM-CWAP run, beside "
                      "our first empty-bin rule"),
    "ghm_cwap_fig2": ("GHM-CWAP Fig. 2", "distribution of g = 1 - p_y over the training samples, all classes and "
                      "per group, and for the head and the tail class the equal-width (URA) vs adaptive (AURA) bins "
                      "against it (last epoch of the GHM-CWAP run)"),
    "gcl_cloud_widths": ("GCL Eq. 9-11", "GCL cloud width per class (noise_mul 0.5)"),
    "drw_weights": ("LDAM-DRW", "DRW class weights (switch at epoch 24 of 30)"),
}

# the per-class and over-epochs accuracy figures: CE and the five seed methods (GHM-CWAP also margins only)
SEED_METHODS = ["CE", "GraLoss (GLAG)", "GCL", "ALA (DRW)", "GALA", "GHM-CWAP", "GHM-CWAP margins only"]


def ghm_distribution_numbers(run: Run, split: float = 0.6) -> str:
    """GHM-CWAP Fig. 2 on a run: who holds the training samples below and above g = ``split`` (last epoch)."""
    from .plotting import ghm_cwap_rebin

    widths, hist = run.probes["bin_widths"][-1], run.probes["bin_counts"][-1]
    parts = np.array([ghm_cwap_rebin(w, h, np.array([0.0, split, 1.0])) * [split, 1.0 - split]
                      for w, h in zip(widths, hist)])  # (C, 2) samples below / above split
    group = group_of_classes(np.asarray(run.class_counts))
    low, high = parts.sum(0)
    total = np.maximum(parts.sum(0), 1e-12)  # a side of the split can be empty (a run of one epoch)
    share = {g: parts[group == g].sum(0) / total for g in ("many", "few")}  # group share below / above
    few_high = parts[group == "few", 1].sum() / max(parts[group == "few"].sum(), 1e-12)
    return (f"below g = {split}: {low:.0f} samples, {share['many'][0]:.0%} many-shot (as in the paper, the head "
            f"dominates the easy end); above g = {split}: {high:.0f} samples, {share['many'][1]:.0%} many-shot and "
            f"{share['few'][1]:.0%} few-shot, and {few_high:.0%} of all few-shot samples sit there. The paper draws "
            f"the tail's few hard samples drowned among the head's; here the head holds only {share['many'][1]:.0%} of the "
            "hard end")


GRADIENT_NOTE = (
    "Why the picture depends on the statistic: with a softmax loss and a classifier bias, the bias gradient of class "
    "c is exactly neg_c - pos_c, so over any stretch of SGD neg - pos stays about -(b_end - b_start) / lr while pos "
    "and neg grow with the number of steps: every ratio of sums over a long stretch tends to 1 for every class and "
    "every loss. The head / tail imbalance GALA Fig. 1(b) shows lives in the early transient (epoch 1), and, "
    "weaker, in the GALA-code statistic, which weights the first steps most. On these data the paper's picture "
    "(CE's tail far below 1, GALA nearer 1) appears where the last column says yes, and not elsewhere.")


def count_numbers(counts) -> dict[str, str]:
    """Numbers of the figures that depend on the class counts only (ALA Fig. 2, GCL widths, DRW weights)."""
    n = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    qf, m = LF.ala_quantity_factor(n, "paper").numpy(), LF.ldam_margins(n).numpy()
    widths = LF.gcl_delta_hat(n).numpy() * 0.5
    w = effective_number_weights(counts)
    return {"ala_factors": f"QF head {qf.min():.2f}, rarest {qf.max():.2f} ({qf.max() / qf.min():.1f}x); LDAM margin "
                           f"head {m.min():.2f}, rarest {m.max():.2f} ({m.max() / m.min():.1f}x)",
            "gcl_cloud_widths": f"max shift head {widths.min():.2f}, rarest {widths.max():.2f}",
            "drw_weights": f"weights after the switch: head {w.min():.3f}, rarest {w.max():.2f}"}


def _header(runs: dict[str, Run], afg_label: str) -> list[str]:
    counts = np.asarray(runs["CE"].class_counts)
    c = runs["CE"].config
    group = group_of_classes(counts)
    groups = ", ".join(f"{int((group == g).sum())} {g}" for g in GROUPS)
    test = len(runs["CE"].per_class["test_labels"]) // len(counts)
    return ["# Committed figures", "",
            "Regenerated by `make figures` (`tools/make_figures.py`; the code is `ltlab/viz/paper_figures.py`, which "
            f"notebook 08 calls too). It trains {len(runs)} small runs once (2-8 minutes each, about an hour in all "
            "on the shared 2-core machine under load) and reuses them from `runs/figures/` afterwards (then about 4 "
            "minutes: features, t-SNE, export).", "",
            f"Data: {c['dataset']}, IF {c['imbalance_factor']:g}, {c.get('dataset_params') or 'full pool'}: training "
            f"counts {' '.join(str(n) for n in counts)} ({groups}); balanced test split, {test} images per class. "
            f"Recipe (ours, CPU-sized): {c['model']}, {c['epochs']} epochs, batch {c['batch_size']}, SGD lr "
            f"{c['lr']:g} {c['lr_schedule']} with {c['warmup_epochs']} warm-up epoch(s), weight decay "
            f"{c['weight_decay']:g}, seed {c['seed']}, evaluation every {c['eval_every']} epochs; DRW from epoch "
            f"{int(0.8 * c['epochs'])} for LDAM and ALA; GLAG stage two: {runs[afg_label].config['epochs']} AFG "
            "generation epochs on the GraLoss run. The figures show the shapes the papers argue with, not "
            "their numbers. Every number below is read from the run directories; each entry says whether the "
            "paper's picture appears on these runs and, where it does not, why.", ""]


def write_readme(runs: dict[str, Run], figures: dict, out_dir: str | Path = "figures",
                 afg_label: str = "GLAG AFG") -> Path:
    """Write ``<out_dir>/README.md`` (and ``numbers.json``): one entry per figure with its paper figure, what it
    draws and the numbers on these runs."""
    numbers = {**classifier_numbers(runs), **output_numbers(runs), **tsne_numbers(figures),
               **schedule_numbers(runs, afg_label), **count_numbers(runs["CE"].class_counts)}
    numbers["gradient_ratio_curves"] = transient_numbers(runs)
    numbers["per_class_accuracy"] = numbers["accuracy_over_epochs"] = accuracy_numbers(runs, SEED_METHODS)
    numbers["ghm_cwap_bins"] = accuracy_numbers(runs, ["GHM-CWAP", "GHM-CWAP margins only", "CE"]) + (
        ". The intra-category weights (Eq. 1) did not help on these data: over 3 seeds GHM-CWAP scored below CE "
        "and its margins alone (Eq. 2) above it (docs/ghm_cwap.md)")
    numbers["ghm_cwap_fig2"] = ghm_distribution_numbers(runs["GHM-CWAP"])
    lines = _header(runs, afg_label)
    for stem, (paper, what) in FIGURES.items():
        lines += [f"## `{stem}.png` ({paper})", "", what[0].upper() + what[1:] + ".", ""]
        if stem == "gradient_ratio_by_class":
            lines += gradient_numbers(runs) + ["", GRADIENT_NOTE, ""]
        if stem in numbers:
            lines += [f"Numbers: {numbers[stem].rstrip('.')}.", ""]
    path = resolve_out_dir(out_dir) / "README.md"
    scale = path.with_name("scale") / "README.md"
    if scale.exists():  # the benchmark-scale section, written by tools/make_scale_figures.py (issue 23)
        lines += [scale.read_text().rstrip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "\n".join(lines).encode())
    write_json(path.with_name("numbers.json"), numbers)
    return path
