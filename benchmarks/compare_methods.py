"""Accuracy table of CE, Seesaw and the seed methods on one protocol, over seeds (not a speed benchmark).

    python benchmarks/compare_methods.py --seeds 0 1 2 --only ce seesaw ghm_cwap ghm_cwap_margins ghm_cwap_first

Defaults: Fashion-MNIST-LT IF 100 with the head capped at 500 images, convnet_small, 30 epochs, batch 128,
lr 0.05 cosine with 1 warm-up epoch, wd 5e-4. Every method gets the same model, data, epochs, batch size
and learning-rate schedule; only the loss (and its DRW switch where the method uses one) changes. Prints
a markdown table of overall and many/medium/few accuracy at the last epoch, mean ± sample std over the
seeds, the overall accuracy of every seed and the training minutes, and writes it as CSV beside the
runs. A finished run with the same settings is reused (its minutes show as reused).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import ltlab
from ltlab.runs import runs_root

# (key, label, loss, loss_params, uses DRW in its recipe)
METHODS = [
    ("ce", "CE", "ce", {}, False),
    ("ldam", "LDAM-DRW", "ldam", {}, True),
    ("balanced_softmax", "Balanced Softmax", "balanced_softmax", {}, False),
    ("seesaw", "Seesaw", "seesaw", {}, False),
    ("graloss", "GLAG stage 1 (GraLoss)", "graloss", {}, False),
    ("gcl", "GCL stage 1", "gcl", {}, False),
    ("ala", "ALA (DRW)", "ala", {}, True),
    ("gala", "GALA", "gala", {}, False),
    ("ghm_cwap", "GHM-CWAP (full)", "ghm_cwap", {}, False),
    ("ghm_cwap_margins", "GHM-CWAP margins only (Eq. 2)", "ghm_cwap", {"use_weights": False}, False),
    ("ghm_cwap_weights", "GHM-CWAP weights only (Eq. 1, gamma 0)", "ghm_cwap", {"gamma": 0.0}, False),
    ("ghm_cwap_first", "GHM-CWAP first rules (density, mean)", "ghm_cwap",
     {"empty_bin": "density", "reduction": "mean"}, False),
    ("ghm_cwap_density", "GHM-CWAP full, empty_bin density", "ghm_cwap", {"empty_bin": "density"}, False),
    ("ghm_cwap_mean", "GHM-CWAP full, reduction mean", "ghm_cwap", {"reduction": "mean"}, False),
    ("ghm_cwap_nonorm", "GHM-CWAP full, weight_norm none", "ghm_cwap", {"weight_norm": "none"}, False),
]
ACC = {"overall": "acc", "many": "acc_many", "medium": "acc_medium", "few": "acc_few"}


def run_one(args: argparse.Namespace, key: str, loss: str, params: dict, drw: bool, seed: int, out: Path):
    """Train (or reuse) one run; returns (Run, minutes of training, NaN for a reused run)."""
    run_dir = out / f"{key}_s{seed}"
    cfg = dict(dataset=args.dataset, imbalance_factor=args.imbalance_factor, model=args.model, loss=loss,
               dataset_params={"n_max": args.n_max} if args.n_max else {},
               loss_params=params, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
               lr_schedule="cosine", warmup_epochs=min(1, args.epochs - 1), weight_decay=5e-4, seed=seed, progress=False,
               eval_every=10, run_dir=str(run_dir), drw_start=int(0.8 * args.epochs) if drw else None)
    t0 = time.perf_counter()
    if args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: give at least 1")
    if (run_dir / "metrics.csv").exists():
        run = ltlab.load_run(run_dir)
        old = {k: run.config.get(k) for k in ("loss", "loss_params", "epochs", "seed")}
        if old != {k: cfg[k] for k in old} or len(run.metrics) == 0 or run.summary()["epoch"] != args.epochs - 1:
            raise SystemExit(f"{run_dir} holds a different or unfinished run ({old}); move it away first")
        return run, float("nan")
    return ltlab.run(cfg), (time.perf_counter() - t0) / 60


def tables(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean ± sample std over seeds per method, and the overall accuracy per seed."""
    g = rows.groupby("method", sort=False)
    # "--": an empty shot group (no class in it at this imbalance factor / n_max), as the CLI and sweep tables say
    summary = pd.DataFrame({c: ["--" if n == 0 else f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"
                                for m, s, n in zip(g[c].mean(), g[c].std(ddof=1), g[c].count())] for c in ACC},
                           index=g[list(ACC)].mean().index)
    summary["min overall"] = g["overall"].min().map("{:.3f}".format)
    summary["minutes"] = g["minutes"].sum(min_count=1).map(lambda v: "reused" if v != v else f"{v:.1f}")
    per_seed = rows.pivot(index="method", columns="seed", values="overall").loc[summary.index]
    per_seed.columns = [f"overall s{s}" for s in per_seed.columns]
    return summary, per_seed.round(3)


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs the optional tabulate package)."""
    lines = ["| method | " + " | ".join(df.columns) + " |", "|---|" + "---:|" * len(df.columns)]
    return "\n".join(lines + [f"| {i} | " + " | ".join(str(v) for v in row) + " |" for i, row in df.iterrows()])


def main() -> None:
    """Run the table; a bad option or missing data ends in one ``compare_methods: error:`` line (exit 2)."""
    try:
        compare()
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"compare_methods: error: {' '.join(str(exc).split())}") from None


def compare() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion_mnist_lt")
    ap.add_argument("--imbalance-factor", type=float, default=100)
    ap.add_argument("--n-max", type=int, default=500,
                    help="head-class size (Fashion-MNIST-LT: 500 keeps the few group non-empty at IF 100)")
    ap.add_argument("--model", default="convnet_small")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="*", help=f"method keys to run (default all): {[m[0] for m in METHODS]}")
    args = ap.parse_args()
    out = runs_root() / f"compare_{args.dataset}_if{args.imbalance_factor:g}_n{args.n_max}_e{args.epochs}"
    rows, t_all = [], time.perf_counter()
    for seed in args.seeds:
        for key, label, loss, params, drw in METHODS:
            if args.only and key not in args.only:
                continue
            run, minutes = run_one(args, key, loss, params, drw, seed, out)
            s = run.summary()
            rows.append({"method": label, "key": key, "seed": seed, "minutes": minutes,
                         **{k: s[v] for k, v in ACC.items()}})
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    rows = pd.DataFrame(rows)
    rows.to_csv(out / "per_run.csv", index=False)
    summary, per_seed = tables(rows)
    summary.join(per_seed).to_csv(out / "table.csv")
    print(f"\n{args.dataset} IF {args.imbalance_factor:g} (n_max {args.n_max}), {args.model}, {args.epochs} epochs, "
          f"bs {args.batch_size}, lr {args.lr} cosine, 1 warm-up epoch, wd 5e-4; seeds {args.seeds}; "
          f"mean ± sample std; {(time.perf_counter() - t_all) / 60:.1f} min in all\n")
    print(markdown(summary.join(per_seed)))


if __name__ == "__main__":
    main()
