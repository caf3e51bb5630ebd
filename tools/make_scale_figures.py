"""The analysis figures of a 1,000-class run, committed under figures/scale/ (issue 23): what notebooks 02-04 draw
above ``max_classes`` (rank bins, group x group confusion, sources by group, t-SNE coloured by group).

    .venv/bin/python tools/make_scale_figures.py [--out figures/scale] [--root runs/scale]

Trains (or reuses, under ``runs/scale/``) a CE and (``--losses ce gala``, the default) a GALA run on
``synthetic_lt`` with 1,000 classes (8x8 images, 200 to 2 training images per class, IF 100, 10 test images
per class; convnet_small, 4 epochs: 4-7 minutes an epoch on the shared, loaded 2-core machine), then writes
one PNG per figure and ``README.md`` (what a reader should see), which ``make figures`` appends to
figures/README.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import ltlab
from ltlab import features
from ltlab.viz import plotting
from ltlab.viz.export import resolve_out_dir, save_figures
from ltlab.runs import atomic_write_bytes

CONFIG = dict(dataset="synthetic_lt", dataset_params={"num_classes": 1000, "n_max": 200, "n_test_per_class": 10,
                                                      "noise": 0.35},
              imbalance_factor=100, model="convnet_small", epochs=4, batch_size=128, lr=0.05, device="cpu",
              progress=False)

# stem -> what a reader should see (numbers filled in from the runs)
SEE = {
    "per_class_accuracy": "per-class test accuracy in 50 rank bins of about 20 classes (line: bin "
                          "mean, band: 25-75 % of the bin's classes), many / medium / few shaded, training counts "
                          "as grey bars: accuracy falls from the head bins to the tail bins. {acc}",
    "prediction_counts": "test images predicted as each class, bin means, against the balanced 10 per class "
                         "(dotted), with PN re-balancing (tau 1, dashed): CE over-predicts the head bins and "
                         "never predicts the few bins; PN moves some predictions from the head to the medium "
                         "bins. {pred}",
    "confusion_ce": "the confusion as many / medium / few x many / medium / few (rows sum to 1) beside the 15 most "
                    "confused class pairs, instead of 1,000 x 1,000 cells: tail images land in the head columns. {conf}",
    "gradient_ratio_by_class": "pos / neg gradient ratio per classifier in rank bins under each statistic: in epoch "
                               "1 the head bins sit above 1 and the tail bins far below under CE.",
    "negative_gradient_sources": "where the rarest class's classifier gets its negative gradient, by source group "
                                 "(the run records no 1,000 x 1,000 matrix above 256 classes: summed from the "
                                 "by-group record when present), against each group's share of the images.",
    "weight_norms": "classifier weight norm per rank bin: under CE the head bins have the largest norms.",
    "gala_theta_phi_gala": "GALA's theta and phi per rank bin (left) and the mean theta per group over training "
                           "(right; one line per group instead of 1,000).",
    "tsne_ce": "t-SNE of 5 test images per class (5,000 points) coloured by many / medium / few (1,000 class "
               "colours are unreadable); the per-group silhouette is under the panel. On this tiny run the "
               "features barely separate (silhouette near 0): the figure shows the view, not a result.",
}


def train(root: str | Path, losses: list[str]) -> dict:
    """The runs of ``losses`` (of "ce", "gala"), trained once and reused from ``root``."""
    root = resolve_out_dir(root)
    runs = {}
    for loss in losses:
        d = root / loss
        runs[loss] = ltlab.load_run(d) if (d / "metrics.csv").exists() else ltlab.run(loss=loss, run_dir=str(d),
                                                                                       **CONFIG)
    return runs


def build(runs: dict) -> dict:
    ce = runs["ce"]
    both, names = [runs[k] for k in runs], [k.upper() for k in runs]
    f = features.run_features(ce, "test", extract=True)
    df = features.tsne(f["features"], f["labels"], class_counts=ce.class_counts, preds=f["logits"].argmax(1),
                       max_per_class=5, random_state=0)
    out = {"per_class_accuracy": plotting.per_class_accuracy_curve(both, names),
           "prediction_counts": plotting.prediction_counts(both, names, pn_tau=1.0),
           "confusion_ce": plotting.confusion_matrix(ce),
           "gradient_ratio_by_class": plotting.gradient_ratio_by_class(both, names),
           "weight_norms": plotting.weight_norms(both, names),
           "tsne_ce": plotting.tsne_scatter(df, title="t-SNE of test features: CE, 1,000 classes")}
    if not any(plotting.sources_missing(r) for r in both):
        out["negative_gradient_sources"] = plotting.negative_gradient_sources(both, names)
    if "gala" in runs:
        out["gala_theta_phi_gala"] = plotting.gala_theta_phi(runs["gala"])
    return out


def numbers(runs: dict) -> dict:
    """Short numbers per figure, read from the runs."""
    ce = runs["ce"]
    s = {k: r.summary() for k, r in runs.items()}
    acc = "; ".join(f"{k.upper()}: overall {s[k]['acc']:.3f}, many {s[k]['acc_many']:.3f}, medium "
                    f"{s[k]['acc_medium']:.3f}, few {s[k]['acc_few']:.3f}" for k in runs)
    pred = np.asarray(ce.per_class["test_logits"]).argmax(1)
    group = plotting.group_of_classes(ce.class_counts)
    per = {g: np.mean(np.bincount(pred, minlength=len(group))[group == g]) for g in ("many", "medium", "few")}
    conf = plotting.confused_pairs(ce, 1)
    return {"acc": f"Numbers: {acc}.",
            "pred": "Numbers: CE predicts on average " + ", ".join(f"{v:.1f} per {g} class" for g, v in per.items())
                    + " (balanced: 10).",
            "conf": f"Most confused pair: {conf['true'][0]} as {conf['predicted'][0]} ({conf['count'][0]} of 10)."
            if len(conf) else ""}


def write_readme(figures: dict, runs: dict, out: Path) -> Path:
    nums = numbers(runs)
    lines = ["## Figures at benchmark scale (`figures/scale/`, issue 23)", "",
             f"Regenerated by `tools/make_scale_figures.py`: {' and '.join(k.upper() for k in runs)} on synthetic_lt with 1,000 classes "
             "(200 to 2 training images per class, IF 100, 10 test images per class; convnet_small, 4 epochs). Above "
             "`max_classes=100` every class-axis figure draws rank bins and says so under its title; the numbers "
             "are small because the runs are tiny: the figures show how the views read at this class count.", ""]
    for stem in figures:
        lines.append(f"- `scale/{stem}.png`: " + SEE[stem].format(**nums).strip())
    path = out / "README.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="figures/scale")
    ap.add_argument("--root", default="runs/scale", help="where the runs live")
    ap.add_argument("--losses", nargs="+", default=["ce", "gala"], choices=["ce", "gala"],
                    help="runs to train or reuse (ce is needed)")
    args = ap.parse_args()
    runs = train(args.root, args.losses)
    figures = build(runs)
    out = resolve_out_dir(args.out)
    for path in save_figures(figures, out, ["png"]):
        print(path)
    print(write_readme(figures, runs, out))


if __name__ == "__main__":
    main()
