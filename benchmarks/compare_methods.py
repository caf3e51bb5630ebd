"""Accuracy table of CE and the seed methods on one protocol (not a speed benchmark).

    python benchmarks/compare_methods.py --dataset fashion_mnist_lt --imbalance-factor 100 --n-max 500 --epochs 30

Every method gets the same model, data, epochs, batch size and learning-rate schedule; only the loss
(and its DRW switch where the method uses one) changes. Prints a markdown table of overall and
many/medium/few accuracy at the last epoch and writes it as CSV beside the runs.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import ltlab
from ltlab.runs import runs_root

# (label, loss, loss_params, uses DRW in its recipe)
METHODS = [
    ("CE", "ce", {}, False),
    ("LDAM-DRW", "ldam", {}, True),
    ("Balanced Softmax", "balanced_softmax", {}, False),
    ("GLAG stage 1 (GraLoss)", "graloss", {}, False),
    ("GCL stage 1", "gcl", {}, False),
    ("ALA (DRW)", "ala", {}, True),
    ("GALA", "gala", {}, False),
    ("GHM-CWAP", "ghm_cwap", {}, False),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion_mnist_lt")
    ap.add_argument("--imbalance-factor", type=float, default=100)
    ap.add_argument("--n-max", type=int, default=500,
                    help="head-class size (Fashion-MNIST-LT: 500 keeps the few group non-empty at IF 100)")
    ap.add_argument("--model", default="convnet_small")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="losses to run (default all)")
    args = ap.parse_args()
    out = runs_root() / f"compare_{args.dataset}_if{args.imbalance_factor:g}_n{args.n_max}_e{args.epochs}_s{args.seed}"
    rows = []
    for label, loss, params, drw in METHODS:
        if args.only and loss not in args.only:
            continue
        run_dir = out / loss
        cfg = dict(dataset=args.dataset, imbalance_factor=args.imbalance_factor, model=args.model, loss=loss,
                   dataset_params={"n_max": args.n_max} if args.n_max else {},
                   loss_params=params, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   lr_schedule="cosine", warmup_epochs=1, weight_decay=5e-4, seed=args.seed, progress=False,
                   eval_every=10, run_dir=str(run_dir), drw_start=int(0.8 * args.epochs) if drw else None)
        t0 = time.perf_counter()
        run = ltlab.load_run(run_dir) if (run_dir / "metrics.csv").exists() else ltlab.run(cfg)
        s = run.summary()
        rows.append({"method": label, "loss": loss, "overall": s["acc"], "many": s["acc_many"],
                     "medium": s["acc_medium"], "few": s["acc_few"], "minutes": (time.perf_counter() - t0) / 60})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "table.csv", index=False)
    print(f"\n{args.dataset} IF {args.imbalance_factor:g} (n_max {args.n_max}), {args.model}, {args.epochs} epochs, bs {args.batch_size}, "
          f"lr {args.lr} cosine, seed {args.seed}\n")
    print(df.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
