"""Analysis speed on CPU: t-SNE of 10,000 x 64 features and feature extraction of 10,000 CIFAR-sized images.

    .venv/bin/python benchmarks/bench_analysis.py [--n 10000] [--repeats 1] [--skip-sklearn]

Each ltlab path is timed next to its reference in the same process (same data, same machine state):
  * ``ltlab.features.tsne`` (openTSNE, FFT gradients, PCA to 50 first) vs scikit-learn's ``TSNE``
    (Barnes-Hut, PCA init, its defaults) on the same 64-d features; targets < 20 s for ltlab.
  * ``ltlab.features.extract_features`` (uint8 images resident on the device, batched normalisation,
    batch 128, inference mode) vs a plain ``torch.utils.data.DataLoader`` loop over per-image float
    tensors (batch 128, ``torch.no_grad``), both through an eval-mode ResNet-32 (10 classes); target
    < 8 s for ltlab. Outputs of the two paths are compared.
  * one update of the post-hoc panel (``ltlab.viz.widgets.PosthocEvaluator``: logit adjustment then PN
    re-balancing on 10,000 x 100 logits, the ``ltlab.posthoc`` estimators) vs the bare numpy softmax
    re-balancing it has to do at least; target < 50 ms (a slider that follows the mouse).
  * papermill execution of the analysis notebooks 03 (per-class accuracy) and 04 (gradient ratios) on an
    existing run (digits-LT, 3 epochs, made first), figures shown but not exported, and 03 exporting its
    PNGs (kaleido + Chromium); target < 30 s each. Printed next to the floor every papermill execution
    pays: a one-cell notebook that only imports ltlab (kernel start, papermill's own work).
Prints a table of seconds and ratios (reference / ltlab). Timings are wall-clock medians of ``--repeats``,
after an untimed warm-up of both extraction paths on 512 images.

Benchmark scale (issue 23; ``--scale``, or ``--only-scale`` for these rows alone; ``--classes 1000 8142``):
for each class count a synthetic run (``synthetic_lt``, 8x8 images, convnet_small, 2 epochs, ``--n-max``
images per class at most, ``--test-per-class`` test images per class) is trained with the defaults,
and printed beside "today" (ltlab before issue 23), measured in the same process:
  * run-directory size: today's checkpoint.pt and checkpoint_prev.pt each held the test logits again
    (measured by saving this run's checkpoint with them added), vs now (per_class.npz only);
  * ``load_run`` + ``summary()``: today's eager read of every array (``runs.read_npz``) vs the lazy one;
  * each analysis builder of notebooks 03 / 04 as it is on this branch (seconds, figure JSON size), each
    in a child process with an address-space cap (``--builder-gb``) so a C x C figure fails instead of
    swapping; a failure is reported as such;
  * one post-hoc update (logit adjustment + PN) on 50,000 x 1,000 float32 logits: ``PosthocEvaluator``
    as on this branch vs today's float64 numpy arithmetic and the float32 floor;
  * probe overhead per training step: ResNet-32 (``--probe-image-size`` px, batch 128) at C classes through
    ``ltlab.engine.loop.train_one_epoch`` with no probe vs probes off / cheap / full (by group above
    MATRIX_MAX_CLASSES) and today's forced by-source matrix (C x C float64), medians over ``--probe-steps``
    steps, interleaved.
"""
from __future__ import annotations

import argparse
import os
import shutil
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
    from ltlab.viz.widgets import PosthocEvaluator
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


# ---------------------------------------------------------------------- benchmark scale (issue 23)
def _dir_mb(d: Path) -> float:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file()) / 2 ** 20


def _scale_run(c: int, tmp: Path, n_max: int, test_per_class: int):
    import ltlab
    cfg = dict(dataset="synthetic_lt", dataset_params={"num_classes": c, "n_max": n_max,
                                                       "n_test_per_class": test_per_class, "image_size": 8},
               imbalance_factor=max(n_max / 2, 1.0), model="convnet_small", model_params={"width": 8}, epochs=2,
               batch_size=512, device="cpu", progress=False, run_dir=str(tmp / f"c{c}"))
    t0 = time.perf_counter()
    run = ltlab.run(cfg)
    return run.dir, time.perf_counter() - t0


def _today_size_mb(d: Path) -> float:
    """The run directory as ltlab wrote it before issue 23: both checkpoints also held the float32 test logits."""
    from ltlab.runs import load_checkpoint, read_npz, save_torch
    logits = read_npz(d / "per_class.npz")["test_logits"]
    extra = 0
    for name in ("checkpoint.pt", "checkpoint_prev.pt"):
        ckpt = load_checkpoint(d) if name == "checkpoint.pt" else None
        if ckpt is None:
            from ltlab.safe_io import load_torch
            ckpt = load_torch(d / name)
        ckpt["history"]["test_logits"] = logits
        out = d.parent / f".today_{name}"
        save_torch(out, ckpt)
        extra += out.stat().st_size - (d / name).stat().st_size
        out.unlink()
    return _dir_mb(d) + extra / 2 ** 20


def _load_times(d: Path, repeats: int = 3) -> tuple[float, float]:
    from ltlab.runs import load_run, read_config, read_metrics, read_npz

    def today():
        read_config(d / "config.json"), read_metrics(d / "metrics.csv")
        return read_npz(d / "per_class.npz"), read_npz(d / "probes.npz")

    def now():
        return load_run(d).summary()
    t_today = statistics.median(_time(today, 1)[0] for _ in range(repeats))
    t_now = statistics.median(_time(now, 1)[0] for _ in range(repeats))
    return t_today, t_now


BUILDERS = {  # notebook -> builder names in ltlab.viz.plotting (as they are on this branch)
    "03": ["per_class_accuracy_bar", "per_class_accuracy_curve", "accuracy_over_epochs", "confusion_matrix",
           "prediction_counts", "true_class_probability"],
    "04": ["gradient_ratio_by_class", "gradient_ratio_table", "gradient_ratio_curves", "negative_gradient_sources",
           "gradient_ratio_heatmap", "weight_norms", "gala_theta_phi"],
}


def _builder_child(d: str, name: str, gb: float, conn) -> None:
    import resource
    try:
        vm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmSize")) * 1024
        cap = vm + int(gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        import ltlab.viz.plotting as plotting
        from ltlab.runs import load_run
        run = load_run(d)
        t0 = time.perf_counter()
        fig = getattr(plotting, name)(run)
        sec = time.perf_counter() - t0
        size = len(fig.to_json()) / 2 ** 20 if hasattr(fig, "to_json") else float("nan")
        conn.send((sec, size, ""))
    except MemoryError:
        conn.send((float("nan"), float("nan"), f"out of memory (> {gb:g} GB more)"))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        conn.send((float("nan"), float("nan"), f"{type(exc).__name__}: {str(exc)[:90]}"))


def _builder_times(d: Path, gb: float, timeout: float) -> list[tuple[str, float, float, str]]:
    import multiprocessing as mp
    import plotly.graph_objects as go

    import ltlab.viz.plotting as plotting
    go.Figure(go.Bar(y=[1])).to_json()  # plotly's validators built once, before the children fork
    ctx = mp.get_context("fork")
    rows = []
    for nb, names in BUILDERS.items():
        for name in names:
            if not hasattr(plotting, name):
                continue
            here, there = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_builder_child, args=(str(d), name, gb, there))
            p.start()
            got = here.recv() if here.poll(timeout) else (float("nan"), float("nan"), f"over {timeout:g} s")
            p.kill()
            p.join()
            rows.append((f"{nb} {name}", *got))
    return rows


def _posthoc_times(repeats: int, m: int = 50_000, c: int = 1_000) -> list[tuple[str, float]]:
    from ltlab.data import longtail_counts
    from ltlab.viz.widgets import PosthocEvaluator
    rng = np.random.default_rng(0)
    counts = np.asarray(longtail_counts(1280, c, 256))
    z32 = (rng.normal(size=(m, c)) * 3).astype(np.float32)
    labels = rng.integers(0, c, m)

    def numpy_la_pn(z, dtype):
        z = z.astype(dtype, copy=False) - dtype(0.5) * np.log(counts / counts.sum()).astype(dtype)
        e = np.exp(z - z.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        return (p / p.sum(0, keepdims=True) ** dtype(0.3)).argmax(1)
    ev = PosthocEvaluator(z32, labels, counts)
    ev.evaluate(0.5, 0.3)  # warm-up, as the panel does at construction
    reps = max(repeats, 5)
    return [("PosthocEvaluator.evaluate(LA 0.5, PN 0.3), this branch", _time(lambda: ev.evaluate(0.5, 0.3), reps)[0]),
            ("today's arithmetic: float64 numpy LA + softmax + PN", _time(lambda: numpy_la_pn(z32, np.float64), reps)[0]),
            ("float32 numpy LA + softmax + PN (floor)", _time(lambda: numpy_la_pn(z32, np.float32), reps)[0])]


def _probe_step_times(c: int, steps: int, image_size: int, batch: int = 128) -> dict[str, float]:
    """Median seconds per ResNet-32 training step with each probe setting (interleaved, the same batches)."""
    from ltlab import probes
    from ltlab.engine.loop import TrainState, train_one_epoch
    from ltlab.losses import create_loss
    from ltlab.models import create_model
    torch.manual_seed(0)
    counts = [max(1, int(200 * (1 / 100) ** (i / (c - 1)))) for i in range(c)]
    model = create_model("resnet32", c)
    state = TrainState(model=model, loss_fn=create_loss("ce", counts),
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(batch, 3, image_size, image_size, generator=g),
                torch.randint(0, c, (batch,), generator=g)) for _ in range(2)]

    def make(kind):
        if kind == "none":
            return None
        if kind == "today: by-source forced":
            return probes.GradientProbe(c, by_source=True)
        p = probes.GradientProbe(c, class_counts=counts, mode=kind.split()[0])
        return p if p.active else None
    kinds = ["none", "off", "cheap", "full (default)", "today: by-source forced"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    device = torch.device("cpu")
    for k in kinds * 2:  # warm-up (allocations, oneDNN kernels), not timed
        train_one_epoch(state, batches[:1], device=device, probe=make(k))
    for i in range(steps):
        for k in (kinds if i % 2 == 0 else kinds[::-1]):
            probe = make(k)
            t0 = time.perf_counter()
            train_one_epoch(state, batches[i % 2:i % 2 + 1], device=device, probe=probe)
            times[k].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) for k, v in times.items()}
    out.update({f"min {k}": min(v) for k, v in times.items()})
    # the probe's own work per step, alone (min of 30; robust on a shared machine), against the fastest step
    grad = torch.randn(batch, c, generator=g) * 1e-3
    labels = batches[0][1]
    for k in kinds[1:]:
        probe = make(k)
        if probe is None:
            continue
        probe.update(grad, labels)
        reps = []
        for _ in range(30):
            t0 = time.perf_counter()
            probe.update(grad, labels)
            reps.append(time.perf_counter() - t0)
        out[f"update {k}"] = min(reps)
    return out


def bench_scale(classes: list[int], tmp: Path, args) -> None:
    """The issue-23 rows: printed as their own table (today | now | today / now)."""
    rows = []
    for c in classes:
        if args.probes_only:
            step = _probe_step_times(c, args.probe_steps, args.probe_image_size)
            for k, v in step.items():
                if k.startswith("update "):
                    rows.append((c, f"probe update alone ({k[7:]}), s (1 + update / fastest step without probe)",
                                 None, v, 1 + v / step["min none"]))
                elif not k.startswith("min "):
                    rows.append((c, f"ResNet-32 step {args.probe_image_size}px, probes {k}: median s (x no probe; "
                                 f"min-based {step['min ' + k] / step['min none']:.3f}x)", None, v, v / step["none"]))
            continue
        tpc = args.test_per_class if args.test_per_class else (5 if c <= 1000 else 1)
        d, train_s = _scale_run(c, tmp, args.n_max, tpc)
        m = tpc * c
        size_now, size_today = _dir_mb(d), _today_size_mb(d)
        rows.append((c, f"run directory after 2 epochs ({m:,} test logits x {c:,}), MB", size_today, size_now))
        t_today, t_now = _load_times(d)
        rows.append((c, "load_run (+ summary), warm, s", t_today, t_now))
        for name, sec, mb, err in _builder_times(d, args.builder_gb, args.builder_timeout):
            what = f"builder {name}, s" + (f" ({mb:.1f} MB JSON)" if mb == mb else f" [{err}]")
            rows.append((c, what, None, sec))
        step = _probe_step_times(c, args.probe_steps, args.probe_image_size)
        none, fastest = step["none"], step["min none"]
        for k, v in step.items():
            if k.startswith("min "):
                continue
            if k.startswith("update "):
                rows.append((c, f"probe update alone ({k[7:]}), s (1 + update / fastest step without probe)",
                             None, v, 1 + v / fastest))
                continue
            rows.append((c, f"ResNet-32 step {args.probe_image_size}px, probes {k}: median s (x no probe; "
                         f"min-based {step['min ' + k] / fastest:.3f}x)", None, v, v / none))
        shutil.rmtree(d, ignore_errors=True)
        print(f"[C = {c}: trained in {train_s:.0f} s]", flush=True)
    for name, sec in ([] if args.probes_only else _posthoc_times(args.repeats)):
        rows.append((1000, f"post-hoc update 50k x 1000: {name}, s", None, sec))
    print("\n| C | what | today | now | today / now |\n|---:|---|---:|---:|---:|")
    for row in rows:
        c, what, today, now = row[:4]
        ratio = (f"{today / now:.1f}x" if today is not None and now == now and now > 0 else
                 (f"({row[4]:.3f}x)" if len(row) > 4 else ""))
        fmt = (lambda v: "" if v is None else ("n/a" if v != v else f"{v * 1e3:.2f} ms" if v < 0.01 else
                                              f"{v:,.3f}" if v < 10 else f"{v:,.1f}"))
        print(f"| {c:,} | {what} | {fmt(today)} | {fmt(now)} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-sklearn", action="store_true", help="skip the (slow) scikit-learn t-SNE reference")
    ap.add_argument("--skip-notebooks", action="store_true", help="skip the papermill notebook timings")
    ap.add_argument("--scale", action="store_true", help="also the benchmark-scale rows (issue 23)")
    ap.add_argument("--only-scale", action="store_true", help="only the benchmark-scale rows")
    ap.add_argument("--classes", type=int, nargs="+", default=[1000, 8142])
    ap.add_argument("--n-max", type=int, default=4, help="scale runs: training images of the largest class")
    ap.add_argument("--test-per-class", type=int, default=0, help="scale runs: test images per class (0: 5 at "
                    "C <= 1000, 1 above)")
    ap.add_argument("--probe-steps", type=int, default=10)
    ap.add_argument("--probe-image-size", type=int, default=32)
    ap.add_argument("--probes-only", action="store_true", help="scale rows: the probe overhead rows only")
    ap.add_argument("--builder-gb", type=float, default=4.0)
    ap.add_argument("--builder-timeout", type=float, default=120.0)
    args = ap.parse_args()
    if args.only_scale:
        import tempfile
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
        with tempfile.TemporaryDirectory() as tmp:
            bench_scale(args.classes, Path(tmp), args)
        return
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
    if args.scale:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            bench_scale(args.classes, Path(tmp), args)


if __name__ == "__main__":
    main()
