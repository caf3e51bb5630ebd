"""Regenerate the committed paper figures in figures/ (``make figures``): the code is ``ltlab.viz.paper_figures``.

    .venv/bin/python tools/make_figures.py [--epochs 30] [--out figures]

Trains (or reuses, under runs/figures/) the Fashion-MNIST-LT IF 100 runs the figures need, writes PNG +
SVG + PDF of every figure and figures/README.md with the numbers a reader should see. About 30 minutes
on 2 CPU cores the first time, a few minutes with every run reused.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ltlab.viz import paper_figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=paper_figures.EPOCHS)
    ap.add_argument("--out", default="figures")
    ap.add_argument("--root", default=None, help="where the runs live (default runs/figures)")
    ap.add_argument("--max-points", type=int, default=3000, help="t-SNE subset per panel")
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = paper_figures.train(args.epochs, args.root)
    figures = paper_figures.build(runs, args.max_points)
    paths = paper_figures.save(figures, args.out)
    readme = paper_figures.write_readme(runs, figures, args.out)
    print(f"wrote {len(paths)} files and {readme} to {Path(paths[0]).parent} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
