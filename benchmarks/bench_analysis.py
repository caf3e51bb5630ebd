"""Analysis speed on CPU: t-SNE of 10,000 x 64 features and feature extraction of 10,000 CIFAR-sized images.

    .venv/bin/python benchmarks/bench_analysis.py [--n 10000] [--repeats 1] [--skip-sklearn]

Each ltlab path is timed next to its reference in the same process (same data, same machine state):
  * ``ltlab.features.tsne`` (openTSNE, FFT gradients, PCA to 50 first) vs scikit-learn's ``TSNE``
    (Barnes-Hut, PCA init, its defaults) on the same 64-d features; targets < 20 s for ltlab.
  * ``ltlab.features.extract_features`` (uint8 images resident on the device, batched normalisation,
    batch 128, inference mode) vs a plain ``torch.utils.data.DataLoader`` loop over per-image float
    tensors (batch 128, ``torch.no_grad``), both through an eval-mode ResNet-32 (10 classes); target
    < 8 s for ltlab. Outputs of the two paths are compared.
  * one update of the post-hoc panel (``ltlab.widgets.PosthocEvaluator``: logit adjustment then PN
    re-balancing on 10,000 x 100 logits, the ``ltlab.posthoc`` estimators) vs the bare numpy softmax
    re-balancing it has to do at least; target < 50 ms (a slider that follows the mouse).
  * papermill execution of the analysis notebooks 03 (per-class accuracy) and 04 (gradient ratios) on an
    existing run (digits-LT, 3 epochs, made first), figures shown but not exported, and 03 exporting its
    PNGs (kaleido + Chromium); target < 30 s each. Printed next to the floor every papermill execution
    pays: a one-cell notebook that only imports ltlab (kernel start, papermill's own work).
Prints a table of seconds and ratios (reference / ltlab). Timings are wall-clock medians of ``--repeats``,
after an untimed warm-up of both extraction paths on 512 images.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_tsne(n: int, repeats: int, skip_sklearn: bool) -> list[tuple]:
    from sklearn.manifold import TSNE

    from ltlab.features import tsne

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 100, n)
    centres = rng.normal(0, 4, size=(100, 64))
    x = (centres[labels] + rng.normal(size=(n, 64))).astype(np.float32)
    ours, df = _time(lambda: tsne(x, labels, method="opentsne", n_jobs=-1), repeats)
    rows = [("t-SNE 10k x 64", "ltlab.features.tsne (openTSNE)", ours, None)]
    if not skip_sklearn:
        ref, _ = _time(lambda: TSNE(n_components=2, init="pca", learning_rate="auto", random_state=0,
                                    n_jobs=-1).fit_transform(x), repeats)
        rows.append(("t-SNE 10k x 64", "sklearn.manifold.TSNE", ref, ref / ours))
    return rows


class _PerImage(torch.utils.data.Dataset):
    """Per-image float tensors normalised one at a time (torchvision ToTensor + Normalize style)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, mean, std):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return (self.images[i].float() / 255.0 - self.mean) / self.std, int(self.labels[i])


def bench_extract(n: int, repeats: int) -> list[tuple]:
    from ltlab.data import LTDataset
    from ltlab.data.sources import CIFAR_MEAN, CIFAR_STD
    from ltlab.features import extract_features
    from ltlab.models import create_model

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = np.arange(n) % 10
    ds = LTDataset("bench", "test", images, labels, [str(c) for c in range(10)], CIFAR_MEAN, CIFAR_STD, {})
    torch.manual_seed(0)
    model = create_model("resnet32", 10).eval()

    def reference(m: int = n):
        loader = torch.utils.data.DataLoader(_PerImage(images[:m], labels[:m], CIFAR_MEAN, CIFAR_STD), batch_size=128)
        feats, outs = [], []
        with torch.no_grad():
            for x, _ in loader:
                f = model.forward_features(x)
                feats.append(f)
                outs.append(model.forward_head(f))
        return torch.cat(feats).numpy(), torch.cat(outs).numpy()

    # warm-up of both paths on 512 images (oneDNN builds its kernels on first use), not timed
    extract_features(model, ds.subset(np.arange(512)))
    reference(512)
    ours, out = _time(lambda: extract_features(model, ds), repeats)
    ref, (f_ref, _) = _time(reference, repeats)
    err = float(np.abs(out["features"] - f_ref).max() / max(np.abs(f_ref).max(), 1e-12))
    return [("extract 10k CIFAR, ResNet-32", "ltlab.features.extract_features", ours, None),
            ("extract 10k CIFAR, ResNet-32", f"DataLoader loop, batch 128 (max rel. diff {err:.1e})", ref, ref / ours)]


def bench_posthoc(repeats: int, num_samples: int = 10_000, num_classes: int = 100) -> list[tuple]:
    from ltlab.data import longtail_counts
    from ltlab.widgets import PosthocEvaluator
    rng = np.random.default_rng(0)
    counts = longtail_counts(500, num_classes, 100)
    z = rng.normal(size=(num_samples, num_classes)) * 3
    ev = PosthocEvaluator(z, rng.integers(0, num_classes, num_samples), counts)
    ev.evaluate(0.5, 0.5)  # warm-up, as the panel does once at construction

    def bare():
        e = np.exp(z - z.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        return (p / p.sum(0, keepdims=True) ** 0.3).argmax(1)
    ours, _ = _time(lambda: ev.evaluate(0.5, 0.3), max(repeats, 20))
    ref, _ = _time(bare, max(repeats, 20))
    return [("post-hoc slider update, 10k x 100", "PosthocEvaluator.evaluate (LA + PN)", ours, None),
            ("post-hoc slider update, 10k x 100", "numpy softmax + PN only (floor)", ref, ref / ours)]


def _papermill(nb: Path, params: dict, out: Path) -> float:
    import papermill as pm
    t0 = time.perf_counter()
    pm.execute_notebook(str(nb), str(out), parameters=params, progress_bar=False, cwd=str(nb.parent))
    return time.perf_counter() - t0


def bench_notebooks(tmp: Path) -> list[tuple]:
    import nbformat

    import ltlab
    nbs = Path(__file__).resolve().parents[1] / "notebooks"
    run = ltlab.run(dataset="digits_lt", imbalance_factor=100, model="convnet_small", epochs=3, device="cpu",
                    progress=False, run_dir=str(tmp / "run"))
    floor = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import ltlab")])
    floor.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(floor, tmp / "floor.ipynb")
    _papermill(tmp / "floor.ipynb", {}, tmp / "warm.ipynb")  # untimed: first kernel start fills OS caches
    ref = statistics.median(_papermill(tmp / "floor.ipynb", {}, tmp / "floor_out.ipynb") for _ in range(3))
    rows = [("papermill", "one cell `import ltlab` (floor, median of 3)", ref, None)]
    runs = [str(run.dir)]
    for name, params in [("03_per_class_accuracy", {"run_dirs": runs}), ("04_gradient_ratios", {"run_dirs": runs}),
                         ("03_per_class_accuracy", {"run_dirs": runs, "export": True, "formats": ["png"],
                                                    "output_dir": str(tmp / "figs")})]:
        sec = _papermill(nbs / f"{name}.ipynb", params, tmp / f"{name}_out.ipynb")
        what = f"{name}" + (", PNG export" if params.get("export") else "")
        rows.append(("papermill, existing run", what, sec, None))  # vs the floor row above, not a ratio
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-sklearn", action="store_true", help="skip the (slow) scikit-learn t-SNE reference")
    ap.add_argument("--skip-notebooks", action="store_true", help="skip the papermill notebook timings")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, n = {args.n}")
    rows = bench_extract(args.n, args.repeats) + bench_tsne(args.n, args.repeats, args.skip_sklearn)
    rows += bench_posthoc(args.repeats)
    if not args.skip_notebooks:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            rows += bench_notebooks(Path(tmp))
    print(f"\n| task | path | seconds | reference / ltlab |\n|---|---|---:|---:|")
    for task, path, sec, ratio in rows:
        print(f"| {task} | {path} | {sec:.2f} | {'' if ratio is None else f'{ratio:.2f}x'} |")


if __name__ == "__main__":
    main()
