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
from .paper_commits import run_commit
from .plot_classifier import own_class_cosine
from .style import group_of_classes

GROUPS = ("many", "medium", "few")
EQL = "EQL (softmax)"  # GALA (paper 003) compares with the softmax form of EQL


def seed_label(label: str, seed: int) -> str:
    """The legend of ``label``'s run at ``seed``: ``label`` itself for seed 0 (the protocol's), else
    ``"<label> (seed <seed>)"`` (``paper_figures.EXTRA_SEEDS``; run directories ``<name>_s<seed>``)."""
    return label if seed == 0 else f"{label} (seed {seed})"


def seed_runs(runs: dict, label: str) -> list:
    """``label``'s run and its extra seeds present in ``runs`` (seed 0 first, then by seed)."""
    extra = sorted((int(k[len(label) + 7:-1]), k) for k in runs
                   if k.startswith(f"{label} (seed ") and k.endswith(")") and k[len(label) + 7:-1].isdigit())
    return [runs[label]] + [runs[k] for _, k in extra]


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
    table = {k: _ratios(runs[k]) for k in ("CE", EQL, "GALA")}
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
    out["weight_norms"] = weight_norm_numbers(runs)
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
    for k in ("CE", EQL, "GALA"):
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


def weight_norm_numbers(runs: dict[str, Run]) -> str:
    """GALA Fig. 1(a) (paper 003): head / rarest class-vector norm of CE, CE + CAS, GALA (and GALA without a
    classifier bias when that run is there), and what the GALA run measures about the bias: the range of its
    final classifier biases against the span of the per-class logit shift ``lambda1 log(theta + eps)`` the
    official code adds, and the rarest class's norm against the norm every class vector starts with
    (nn.Linear's default init draws U(-1/sqrt(D), 1/sqrt(D)), so E||w_c||^2 = 1/3)."""
    from ..losses import create_loss

    counts = np.asarray(runs["CE"].class_counts)
    head, tail = int(np.argmax(counts)), int(np.argmin(counts))
    keys = [k for k in ("CE", "CE + CAS", "GALA", "GALA (no bias)") if k in runs]
    norms = {k: np.asarray(runs[k].probes["weight_norm"][-1], dtype=np.float64) for k in keys}
    ratio = {k: norms[k][head] / norms[k][tail] for k in keys}
    gala = runs["GALA"]
    loss = create_loss("gala", gala.class_counts, **(gala.config.get("loss_params") or {}))
    shift = loss.lambda1 * np.log(np.asarray(gala.probes["theta"][-1], dtype=np.float64) + loss.eps)
    bias = rebuild_model(gala).head.bias
    init = float(np.sqrt(1.0 / 3.0))
    text = "head / rarest class norm: " + ", ".join(f"{k} {_f(v)}" for k, v in ratio.items()) + (
        f". GALA's per-class logit shift lambda1 log(theta_c + eps) spans {_f(shift.max() - shift.min())} logits "
        f"(lambda1 = {loss.lambda1:g})")
    if bias is not None:
        b = bias.detach().double().numpy()
        text += f"; the final classifier biases of the GALA run lie in [{b.min():+.2f}, {b.max():+.2f}]"
    text += (f". Class-vector norms start at about sqrt(1/3) = {init:.2f} (nn.Linear's default init); at the end the "
             f"rarest class's norm is " + ", ".join(f"{k} {_f(norms[k][tail])}" for k in keys) + " and the head's "
             + ", ".join(f"{k} {_f(norms[k][head])}" for k in keys))
    even = ratio["GALA"] < 0.8 * ratio["CE"]
    if even:
        why = "GALA's norms are more even than CE's"
    else:
        stays = abs(norms["GALA"][tail] / init - 1) < 0.25
        grows = norms["GALA"][head] > 1.25 * init and norms["GALA"][head] > 0.75 * norms["CE"][head]
        why = ("class-aware sampling evens the norms, GALA does not" + (
            f": under GALA the rarest class's vector stays near its initial norm ({_f(norms['GALA'][tail])} vs "
            f"{init:.2f})" if stays else "") + (
            f"{' while' if stays else ': under GALA'} the head's grows as under CE ({_f(norms['GALA'][head])}, CE "
            f"{_f(norms['CE'][head])})" if grows else "") + (
            f". The biases do not take up GALA's shift (their range is {_f(np.ptp(b))} logits against "
            f"{_f(np.ptp(shift))})" if bias is not None else ""))
        if "GALA (no bias)" in ratio:
            why += (f"; without a classifier bias GALA's head / rarest ratio is {_f(ratio['GALA (no bias)'])} "
                    f"(with one {_f(ratio['GALA'])}, CE {_f(ratio['CE'])})")
    return text + "." + _picture(even, why)


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
    out["true_class_probability"] = hard_image_numbers(runs)
    out["ala_adjustment_over_training"] = ala_df_numbers(runs["ALA (DRW)"], runs.get("ALA (no DRW)"))
    if "ALA (no DRW)" in runs:
        out["ala_adjustment_no_drw"] = ala_df_numbers(runs["ALA (no DRW)"])
    return out


def _hard_share(run: Run, counts, threshold: float = 0.2) -> dict[str, float]:
    """Share of each group's test images whose true-class probability is below ``threshold`` (ALA Fig. 3)."""
    group = group_of_classes(counts)
    py, y = _true_class_probability(run)
    return {g: float(np.mean(py[group[y] == g] < threshold)) for g in GROUPS if (group[y] == g).any()}


def hard_image_numbers(runs: dict[str, Run]) -> str:
    """ALA Fig. 3 (paper 002): hard (p_y < 0.2) test images per group for CE, LDAM-DRW and ALA-DRW. The many-group
    claim of Fig. 3(a) (ALA keeps fewer hard many-shot images than LDAM) rests on a small difference, so it is
    judged over the seeds of both runs (``seed_runs``): mean ± std per run and of the per-seed difference; the
    picture appears only when ALA is lower by more than one standard deviation of that difference."""
    from .paper_stats import seed_summary

    counts = np.asarray(runs["CE"].class_counts)
    hard = {k: [_hard_share(r, counts) for r in seed_runs(runs, k)] for k in ("CE", "LDAM (DRW)", "ALA (DRW)")}
    text = "hard (p_y < 0.2) test images per group (seed 0): " + "; ".join(
        f"{k} " + ", ".join(f"{g} {v:.1%}" for g, v in h[0].items()) for k, h in hard.items())
    many = {k: [h.get("many", np.nan) for h in hard[k]] for k in ("LDAM (DRW)", "ALA (DRW)")}
    n = min(len(v) for v in many.values())
    diff = np.asarray(many["ALA (DRW)"][:n]) - np.asarray(many["LDAM (DRW)"][:n])
    text += (". Hard many-shot images, in %: " + ", ".join(
        f"{k} {seed_summary(np.asarray(v) * 100, 1)}" for k, v in many.items())
        + f"; ALA minus LDAM {seed_summary(diff * 100, 1)}")
    ok_few = np.mean([h.get("few", 0) for h in hard["ALA (DRW)"]]) < np.mean([h.get("few", 0) for h in hard["CE"]])
    spread = float(np.std(diff, ddof=1)) if n > 1 else float("nan")
    diff = diff[np.isfinite(diff)]
    n = len(diff)
    if n == 0:
        many_why, ok_many = "the many-group claim cannot be judged (no many-shot test images)", False
    elif n < 2:
        many_why, ok_many = "the many-group difference rests on one seed (train the extra seeds to judge it)", False
    elif diff.mean() < 0 and -diff.mean() > spread:
        many_why, ok_many = "and ALA keeps fewer hard many-shot images than LDAM over the seeds", True
    elif abs(diff.mean()) <= spread:
        many_why, ok_many = ("but ALA and LDAM keep about as many hard many-shot images: the difference is within "
                             "the seed spread (the paper's Fig. 3(a) claim is not resolved)"), False
    else:
        many_why, ok_many = ("but ALA keeps more hard many-shot images than LDAM over the seeds, the opposite of the "
                             "paper's Fig. 3(a) claim (fewer)"), False
    return text + "." + _picture(ok_few and ok_many, ("LDAM and ALA cut the hard few-shot images, " if ok_few else
                                                       "ALA does not cut the hard few-shot images, ") + many_why)


def ala_df_numbers(run: Run, no_drw: Run | None = None) -> str:
    """ALA Fig. 4 (paper 002, Sec. 3.2): the few group's difficulty factor DF stays above the many group's.
    Judged over the epochs before DRW switches on (:func:`ltlab.viz.paper_stats.df_before_drw`): DRW multiplies
    each sample's loss by its class's effective-number weight, which changes the training DF is measured under.
    After the switch the line reports where the few group's DF goes and names the DRW weights; ``no_drw`` (a
    run without DRW, OpenLT's ImageNet-LT recipe) is set beside it."""
    from .paper_stats import df_before_drw

    counts = np.asarray(run.class_counts)
    p = run.probes
    df, qf = np.asarray(p["difficulty_factor"], dtype=np.float64), np.asarray(p["quantity_factor"][-1], np.float64)
    drw = run.config.get("drw_start")
    st = df_before_drw(df, counts, drw)
    before, few, many = st["before"], st["few"], st["many"]
    n_before = int(before.sum())
    text = (f"DF many {_f(many[0])} -> {_f(many[-1])}, few {_f(few[0])} -> {_f(few[-1])} (epoch 1 -> last); QF many "
            f"{_f(_group_mean(qf, counts, 'many'))}, few {_f(_group_mean(qf, counts, 'few'))}; DF x QF in the last "
            f"epoch many {_f(_group_mean(df[-1] * qf, counts, 'many'))}, few {_f(_group_mean(df[-1] * qf, counts, 'few'))}")
    if drw is None:
        text += (f". No DRW: the few group's DF is above the many group's at {int(round(st['share'] * len(few)))} of "
                 f"{len(few)} epochs")
        return text + "." + _picture(st["few_above_many"], "the few group's DF stays above the many group's at every "
                                     "epoch" if st["few_above_many"] else "the few group's DF falls below the many "
                                     "group's at some epochs without any DRW")
    after = ~before
    if n_before:
        text += (f". Before DRW (epochs 1-{n_before}): the few group's DF is above the many group's at "
                 f"{int(round(st['share'] * n_before))} of {n_before} epochs (few {_f(_mean(few[before]))}, many "
                 f"{_f(_mean(many[before]))} on average)")
    else:
        text += ". DRW is on from the first epoch: no epoch before it to judge the claim by"
    below_after = bool(after.any() and (few[after] < many[after]).any())
    if after.any():
        first = int(np.argmax(after))
        w = effective_number_weights(counts)
        text += (f"; DRW switches on at epoch {int(drw) + 1} (loss weights: head {w[int(np.argmax(counts))]:.3f}, rarest "
                 f"{w[int(np.argmin(counts))]:.2f}) and at that epoch DF is few {_f(few[first])}, many {_f(many[first])}")
    nd = None
    if no_drw is not None:
        nd = df_before_drw(np.asarray(no_drw.probes["difficulty_factor"], np.float64), counts, None)
        text += (f"; the ALA run without DRW keeps the few group's DF above the many group's at "
                 f"{int(round(nd['share'] * len(nd['few'])))} of {len(nd['few'])} epochs (last epoch few "
                 f"{_f(nd['few'][-1])}, many {_f(nd['many'][-1])})")
    if st["few_above_many"]:
        why = "before DRW switches on the few group's DF stays above the many group's at every epoch"
        if below_after:
            why += "; it drops below once the DRW weights apply"
            # the same epochs without DRW tell re-weighting from fitting (the end of training)
            late = np.arange(len(nd["few"])) >= int(drw) if nd is not None else np.zeros(0, bool)
            if late.any() and (nd["few"][late] > nd["many"][late]).all():
                why += (", and without DRW it stays above over the same epochs: the cause is the re-weighting (it "
                        "raises the few classes' loss weight, so their training images are fitted harder), not the "
                        "end of training")
    elif not n_before:
        why = "the run has no epoch before DRW switches on"
    else:
        why = "the few group's DF is not above the many group's at every epoch before DRW switches on"
    return text + "." + _picture(st["few_above_many"], why)


def tsne_numbers(figures: dict) -> dict[str, str]:
    """Mean silhouette per panel, read back from the figures' subplot titles (what the reader sees)."""
    out = {}
    for stem, ref, method in (("tsne_glag_stage_one", "CE", "GraLoss (GLAG)"), ("tsne_ce_vs_gcl", "CE", "GCL")):
        if stem not in figures:
            continue
        titles = [a.text for a in figures[stem].layout.annotations if " · silhouette " in a.text]
        sil = {t.split(" · ")[0]: float(t.rsplit(" ", 1)[1]) for t in titles}
        better = all(v > sil.get(k.replace(method, ref), v) + 0.01 for k, v in sil.items() if k.startswith(method))
        if method == "GCL":  # GCL Fig. 3 is the t-SNE comparison; its Fig. 1 claim is judged by class spread
            method_note = " (GCL Fig. 3; the paper judges by eye, GCL Fig. 1 is judged by class spread above)"
        else:
            method_note = " (the paper judges by eye)"
        out[stem] = "mean silhouette " + "; ".join(titles).replace(" · silhouette", "") + "." + _picture(
            better, f"{method}'s classes are better separated" if better else
            f"{method}'s classes are not better separated than {ref}'s by the silhouette{method_note}")
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
                                "GALA code (running sum of running sums); CE, softmax EQL (the form GALA compares "
                                "with), GALA"),
    "gradient_ratio_curves": ("GALA Fig. 1(b), over training", "the same ratios per class over training (log x, epoch 1 "
                              "at step resolution): a row per statistic, a column per run"),
    "negative_gradient_sources": ("GALA Fig. 1(c)", "share of the rarest class's classifier's accumulated negative "
                                  "gradient sent by each source class, against each class's share of the images"),
    "weight_norms": ("GALA Fig. 1(a)", "classifier weight norm per class: CE, CE with class-aware sampling, GALA "
                     "(the GALA run without a classifier bias, head linear_nobias, is in the numbers)"),
    "class_feature_similarity": ("GALA Fig. 1(d)", "mean cosine of each class vector to its own test features: CE, GALA"),
    "prediction_counts": ("GALA Fig. 2", "test images predicted as each class vs the balanced 1,000: CE and GALA, "
                          "each with and without PN re-balancing (tau = 1)"),
    "gala_theta_phi": ("GALA Eq. 6 statistics", "GALA's theta (positive) and phi (negative) per class, theta over training"),
    "true_class_probability": ("ALA Fig. 3", "sorted predicted probability of the true class per many / medium / few "
                               "group: CE, LDAM-DRW, ALA-DRW"),
    "ala_adjustment_over_training": ("ALA Fig. 4", "DF (epoch mean per class), QF and DF x QF averaged per group over "
                                     "the epochs of the ALA-DRW run; the dashed line marks where DRW switches on, "
                                     "and the paper's claim is judged over the epochs before it"),
    "ala_adjustment_no_drw": ("ALA Fig. 4, no DRW", "the same for ALA without DRW (OpenLT's ImageNet-LT recipe)"),
    "ala_factors": ("ALA Fig. 2", "QF per class (paper and code forms) beside the LDAM margin, and DF vs target cosine"),
    "glag_alpha_beta": ("GLAG Fig. 3 + beta", "alpha(T) in convex (Eq. 4), linear and concave form (s = 1, c = 2, "
                        "200 epochs) and the beta each tail class was generated with in the GLAG stage-two (AFG) run"),
    "tsne_glag_stage_one": ("GLAG Fig. 4", "t-SNE of test features of 8 of the 10 classes (all but count ranks 4 and "
                            "6: Coat and Shirt on Fashion-MNIST-LT): CE, logit adjustment, GraLoss; mean silhouette "
                            "per panel in its title, per class in the panel (Euclidean, on the t-SNE input)"),
    "gcl_fig1_class_spread": ("GCL Fig. 1", "per-class spread of the training features (RMS distance to the class "
                              "mean) over the global spread, by training count (log x): CE, the run GCL Fig. 1 is "
                              "about, with GCL beside it"),
    "tsne_ce_vs_gcl": ("GCL Fig. 3", "t-SNE of train and test features of 4 classes (500, 107, 23, 5 images): "
                       "CE and GCL (stage one); silhouettes as above"),
    "per_class_accuracy": ("ALA Fig. 1 style", "per-class test accuracy of CE and the five seed methods"),
    "accuracy_over_epochs": ("-", "overall / many / medium / few test accuracy at the evaluated epochs"),
    "ghm_cwap_bins": ("GHM-CWAP Alg. 1 / Eq. 1", "GHM-CWAP's adaptive unit regions, counts and the weight each bin "
                      "gives (Eq. 1, next epoch) for the head, middle and tail class of the GHM-CWAP run, beside "
                      "our first empty-bin rule"),
    "ghm_cwap_fig2": ("GHM-CWAP Fig. 2", "distribution of g = 1 - p_y over the training samples, all classes and "
                      "per group, and for the head and the tail class the equal-width (URA) vs adaptive (AURA) bins "
                      "against it (last epoch of the GHM-CWAP run); the numbers give each group's share of all "
                      "samples and of each g bin, the paper's statistic"),
    "gcl_cloud_widths": ("GCL Eq. 9-11", "GCL cloud width per class (noise_mul 0.5)"),
    "drw_weights": ("LDAM-DRW", "DRW class weights (switch at epoch 24 of 30)"),
}

# the per-class and over-epochs accuracy figures: CE and the five seed methods (GHM-CWAP also margins only)
SEED_METHODS = ["CE", "GraLoss (GLAG)", "GCL", "ALA (DRW)", "GALA", "GHM-CWAP", "GHM-CWAP margins only"]


G_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the g bins the GHM-CWAP Fig. 2 verdict reports shares of
G_RUNS = ("CE", "GCL", "ALA (DRW)")  # set beside the GHM-CWAP run: the picture depends on the run drawn


def _ghm_probe_hist(run: Run, edges=G_EDGES) -> np.ndarray:
    """(C, K) training samples per class and g bin from a GHM-CWAP run's last-epoch histograms (what
    ``ghm_cwap_fig2`` draws), rebinned onto ``edges``."""
    from .plotting import ghm_cwap_rebin

    widths, hist = run.probes["bin_widths"][-1], run.probes["bin_counts"][-1]
    e = np.asarray(edges, dtype=np.float64)
    return np.array([ghm_cwap_rebin(w, h, e) * np.diff(e) for w, h in zip(widths, hist)])


def _train_g_hist(run: Run, edges=G_EDGES) -> np.ndarray:
    """(C, K) training images per class and g bin under the trained model (``features_train.npz`` logits, times
    the loss's scale s for a cosine head)."""
    from ..features import run_features
    from ..posthoc.steps import logit_scale
    from .paper_stats import g_histogram

    f = run_features(run, "train", extract=True)
    return g_histogram(np.asarray(f["logits"], np.float64) * logit_scale(run), f["labels"], len(run.class_counts),
                       edges)


def _g_shares_text(name: str, hist: np.ndarray, counts, edges=G_EDGES, split: float = 0.6) -> tuple[str, dict]:
    from .paper_stats import g_group_shares

    sh = g_group_shares(hist, counts)
    group = group_of_classes(np.asarray(counts))
    few = hist[group == "few"]
    hard = np.asarray(edges[:-1]) >= split
    few_hard = few[:, hard].sum() / max(few.sum(), 1e-12)
    bins = ", ".join(f"[{lo:g}, {hi:g}{']' if hi == 1 else ')'} " + (
        f"{sh['per_bin']['many'][k]:.0%} / {sh['per_bin']['few'][k]:.0%}" if sh["samples"][k] > 0 else "empty")
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])))
    return (f"{name}: many-shot {sh['total']['many']:.0%} and few-shot {sh['total']['few']:.1%} of all samples; "
            f"many / few share of each g bin {bins}; {few_hard:.0%} of the few-shot samples at g >= {split:g}"), sh


def _g_short_text(name: str, hist: np.ndarray, counts, edges=G_EDGES, split: float = 0.6) -> str:
    """The GHM-CWAP Fig. 2 shares of a run set beside the figure's: the many-shot share of all samples and of
    those below ``split``, and the few-shot samples at g >= ``split``."""
    from .paper_stats import g_group_shares

    low = np.asarray(edges[:-1]) < split
    sh = g_group_shares(np.stack([hist[:, low].sum(1), hist[:, ~low].sum(1)], axis=1), counts)
    few = hist[group_of_classes(np.asarray(counts)) == "few"]
    below = (f"{sh['per_bin']['many'][0]:.0%} of those below g = {split:g}" if sh["samples"][0] > 0 else
             f"no sample below g = {split:g}")
    return (f"{name}: many-shot {sh['total']['many']:.0%} of all samples and {below}, "
            f"{few[:, ~low].sum() / max(few.sum(), 1e-12):.0%} of the few-shot samples at g >= {split:g}")


def ghm_distribution_numbers(runs: dict[str, Run]) -> str:
    """GHM-CWAP Fig. 2 (paper 004, Sec. 3.1): the overall distribution of g = 1 - p_y is dominated by the head
    and the tail is submerged in it. Each group's share of all training samples and of each g bin
    (:func:`ltlab.viz.paper_stats.g_group_shares`): for the GHM-CWAP run the figure draws (its last-epoch
    histograms) and, because the picture depends on the run, for ``G_RUNS`` under their trained models. The
    picture appears when the many-shot classes hold most samples and a larger share than the few-shot classes of
    every non-empty bin."""
    counts = np.asarray(runs["GHM-CWAP"].class_counts)
    text, sh = _g_shares_text("GHM-CWAP (the figure's run, last-epoch histograms)", _ghm_probe_hist(runs["GHM-CWAP"]),
                              counts)
    others = [_g_short_text(k, _train_g_hist(runs[k]), counts) for k in G_RUNS if k in runs]
    if others:
        text += "; the trained models on the training images (the picture depends on the run drawn): " + \
            "; ".join(others)
    full = sh["samples"] > 0
    most = sh["total"]["many"] >= 0.5
    every = bool((sh["per_bin"]["many"][full] >= sh["per_bin"]["few"][full]).all())
    if most and every:
        why = ("the many-shot classes hold most of the distribution and at least the few-shot classes' share of "
               "every g bin, so the tail is submerged in the head's samples")
    elif not most:
        why = f"the many-shot classes hold only {sh['total']['many']:.0%} of the samples, not most of them"
    else:
        why = "the few-shot classes hold a larger share than the many-shot classes of some g bin"
    return text + "." + _picture(most and every, why)


def class_spread_numbers(runs: dict[str, Run], split: str = "train") -> str:
    """GCL Fig. 1 (paper 001, Sec. 3.1), a CE-only claim: tail classes occupy a smaller region of feature space
    than head classes. Per-class spread / global spread of the training features
    (:func:`ltlab.viz.paper_stats.class_spread`), rarest over head class, CE and GCL beside it. The picture
    appears when CE's rarest / head ratio is below 1."""
    from ..features import run_features
    from .paper_stats import class_spread, rarest_over_head

    counts = np.asarray(runs["CE"].class_counts)
    ratio, spread = {}, {}
    for k in ("CE", "GCL"):
        f = run_features(runs[k], split, extract=True)
        spread[k] = class_spread(f["features"], f["labels"], len(counts))
        ratio[k] = rarest_over_head(spread[k], counts)
    head, tail = int(np.argmax(counts)), int(np.argmin(counts))
    text = (f"class spread / global spread ({split} features), head ({counts[head]} images) and rarest "
            f"({counts[tail]}): " + ", ".join(f"{k} {_f(v[head])} and {_f(v[tail])}" for k, v in spread.items())
            + "; rarest / head: " + ", ".join(f"{k} {_f(v)}" for k, v in ratio.items()))
    weak = 0.5 <= ratio["CE"] < 1
    return text + "." + _picture(ratio["CE"] < 1, (
        f"under CE the rarest class is {'somewhat ' if weak else ''}narrower than the head class "
        f"(ratio {_f(ratio['CE'])}{', weakly' if weak else ''})" if ratio["CE"] < 1 else
        "under CE the rarest class is not narrower than the head class") + (
        f"; GCL's ratio is {_f(ratio['GCL'])}" + (" (GCL widens the tail)" if ratio["GCL"] > ratio["CE"] else
                                                   " (GCL does not widen the tail by this measure)")))


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


def commit_line(runs: dict[str, Run]) -> str:
    """Which commit(s) the runs were trained at (``paper_figures.run_commit``): one sentence for the README."""
    by: dict[str, list[str]] = {}
    for label, run in runs.items():
        by.setdefault(run_commit(run) or "unknown", []).append(label)
    if len(by) == 1:
        (commit, _), = by.items()
        return (f"All {len(runs)} runs were trained at commit `{commit}`." if commit != "unknown" else
                "The commit the runs were trained at is not recorded (trained outside a git checkout).")
    return "The runs were trained at several commits: " + "; ".join(
        f"`{commit}`: {', '.join(labels)}" for commit, labels in by.items()) + "."


def _header(runs: dict[str, Run], afg_label: str) -> list[str]:
    counts = np.asarray(runs["CE"].class_counts)
    c = runs["CE"].config
    group = group_of_classes(counts)
    groups = ", ".join(f"{int((group == g).sum())} {g}" for g in GROUPS)
    test = len(runs["CE"].per_class["test_labels"]) // len(counts)
    extra = {k.split(" (seed ")[0] for k in runs if " (seed " in k}
    seeds = (f"{', '.join(sorted(extra))} also at seeds " + ", ".join(sorted({k.split(' (seed ')[1][:-1] for k in runs
                                                                          if ' (seed ' in k}))
             + " (the verdicts resting on a small difference give mean ± std over the seeds)") if extra else \
        "one seed per run"
    return ["# Committed figures", "",
            "Regenerated by `make figures` (`tools/make_figures.py`; the code is `ltlab/viz/paper_figures.py`, which "
            f"notebook 08 calls too). It trains {len(runs)} small runs once (30-40 s each on 2 idle cores, several "
            "minutes each on a machine busy with other work) and reuses them from `runs/figures/` afterwards (then "
            "about 4 minutes: features, t-SNE, export), unless "
            "the training code (`ltlab/engine`, `losses`, `stages`, `models`, `data` and the modules they build on) "
            "changed since the commit a run was trained at: that run is trained again.", "",
            f"Data: {c['dataset']}, IF {c['imbalance_factor']:g}, {c.get('dataset_params') or 'full pool'}: training "
            f"counts {' '.join(str(n) for n in counts)} ({groups}); balanced test split, {test} images per class. "
            f"Recipe (ours, CPU-sized): {c['model']}, {c['epochs']} epochs, batch {c['batch_size']}, SGD lr "
            f"{c['lr']:g} {c['lr_schedule']} with {c['warmup_epochs']} warm-up epoch(s), weight decay "
            f"{c['weight_decay']:g}, seed {c['seed']}, evaluation every {c['eval_every']} epochs; DRW from epoch "
            f"{int(0.8 * c['epochs'])} for LDAM and ALA-DRW (ALA is also trained without DRW, OpenLT's ImageNet-LT "
            f"recipe); EQL in its softmax form; {seeds}; GLAG stage two: {runs[afg_label].config['epochs']} AFG "
            "generation epochs on the GraLoss run. The figures show the shapes the papers argue with, not "
            "their numbers. Every number below is read from the run directories; each entry says whether the "
            "paper's picture appears on these runs, judged by the paper's own statistic, and, where it does not, "
            "why.", "", commit_line(runs), ""]


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
    numbers["ghm_cwap_fig2"] = ghm_distribution_numbers(runs)
    numbers["gcl_fig1_class_spread"] = class_spread_numbers(runs)
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
