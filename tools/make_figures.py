"""Regenerate the committed paper figures in figures/ from small CPU runs on Fashion-MNIST-LT (IF 100).

    .venv/bin/python tools/make_figures.py [--epochs 6] [--out figures]

Trains CE and the five seed methods (GraLoss = GLAG stage one, GCL, ALA with DRW, GALA, GHM-CWAP) with
one protocol (convnet_small, batch 128, SGD lr 0.05 cosine with 1 warm-up epoch, wd 5e-4, seed 0),
reusing finished runs under runs/figures_<loss>/, then writes PNG + SVG + PDF of: t-SNE of CE vs
GCL, per-class accuracy of all six, gradient ratios of CE vs GALA, GLAG alpha/beta schedules, and
the other schedule figures. About 10 minutes on 2 CPU cores; the runs are tiny, so the figures show
the shapes the papers argue with, not their numbers.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import ltlab
from ltlab import features, plotting
from ltlab.export import save_figures
from ltlab.runs import runs_root

# (legend, loss, uses DRW)
METHODS = [("CE", "ce", False), ("GraLoss (GLAG)", "graloss", False), ("GCL", "gcl", False),
           ("ALA (DRW)", "ala", True), ("GALA", "gala", False), ("GHM-CWAP", "ghm_cwap", False)]


def train(epochs: int) -> dict[str, ltlab.runs.Run]:
    """The six runs, each trained once and reused afterwards."""
    out = {}
    for label, loss, drw in METHODS:
        run_dir = runs_root() / f"figures_{loss}"
        cfg = dict(dataset="fashion_mnist_lt", imbalance_factor=100, model="convnet_small", loss=loss, epochs=epochs,
                   batch_size=128, lr=0.05, lr_schedule="cosine", warmup_epochs=1, weight_decay=5e-4, seed=0,
                   device="cpu", progress=False, run_dir=str(run_dir), drw_start=int(0.8 * epochs) if drw else None)
        t0 = time.perf_counter()
        done = (run_dir / "metrics.csv").exists() and len(ltlab.load_run(run_dir).metrics) == epochs
        run = ltlab.load_run(run_dir) if done else ltlab.run(cfg, resume=(run_dir / "checkpoint.pt").exists())
        s = run.summary()
        print(f"{label:16s} acc {s['acc']:.3f} many {s['acc_many']:.3f} medium {s['acc_medium']:.3f} "
              f"({'reused' if done else f'{time.perf_counter() - t0:.0f} s'})", flush=True)
        out[label] = run
    return out


def build(runs: dict, max_points: int) -> dict:
    labels, all_runs = list(runs), list(runs.values())
    ce, gcl, gala, ghm = runs["CE"], runs["GCL"], runs["GALA"], runs["GHM-CWAP"]
    counts, names = ce.class_counts, plotting.run_class_names(ce)
    emb = {}
    for label in ("CE", "GCL"):
        f = features.run_features(runs[label], "test", extract=True)
        emb[label] = features.tsne(f["features"], f["labels"], class_counts=counts, preds=f["logits"].argmax(1),
                                   max_points=max_points)
    beta, beta_labels = plotting.synthetic_glag_beta(counts, epochs=40, class_names=names)
    glag = plotting.glag_schedule(200, 1.0, 2.0, beta=beta, beta_classes=beta_labels)
    glag.layout.annotations[1].text = "beta per tail class (synthetic accuracy)"
    return {
        "tsne_ce_vs_gcl": plotting.tsne_scatter(emb, "label", class_names=names,
                                                title="t-SNE of test features: CE vs GCL (Fashion-MNIST-LT, IF 100)"),
        "tsne_ce_vs_gcl_groups": plotting.tsne_scatter(emb, "group", title="t-SNE of test features by training-count "
                                                                             "group: CE vs GCL"),
        "per_class_accuracy": plotting.per_class_accuracy_curve(all_runs, labels),
        "accuracy_over_epochs": plotting.accuracy_over_epochs(all_runs, labels),
        "gradient_ratio_ce_vs_gala": plotting.gradient_ratio_by_class([ce, gala], ["CE", "GALA"]),
        "gradient_ratio_curves_ce_vs_gala": plotting.gradient_ratio_curves([ce, gala], ["CE", "GALA"]),
        "gala_theta_phi": plotting.gala_theta_phi(gala),
        "glag_alpha_beta": glag,
        "ala_factors": plotting.ala_factors(counts),
        "gcl_cloud_widths": plotting.gcl_cloud_widths(counts, 0.5),
        "ghm_cwap_bins": plotting.ghm_cwap_bins(ghm),
        "drw_weights": plotting.drw_weights(counts, 160, 200),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default="figures")
    ap.add_argument("--max-points", type=int, default=3000, help="t-SNE subset of the 10,000 test images")
    args = ap.parse_args()
    t0 = time.perf_counter()
    figs = build(train(args.epochs), args.max_points)
    paths = save_figures(figs, args.out, ("png", "svg", "pdf"), width=1000, height=560)
    print(f"wrote {len(paths)} files to {Path(paths[0]).parent} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
