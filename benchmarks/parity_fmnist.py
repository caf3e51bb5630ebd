"""Accuracy parity on real data: ltlab's fast loop vs the standard research loop (issue 8, acceptance 2).

    .venv/bin/python benchmarks/parity_fmnist.py [--device cuda] [--epochs 30] [--model resnet32]
                                                 [--n-max N] [--root DIR] [--methods ce gcl ala_drw]

Both loops train the same network (``ltlab.models.create_model``, same seed) on Fashion-MNIST-LT
(imbalance factor 100; the full 14,886 images unless ``--n-max``) with one recipe: batch 128, SGD
lr 0.1 momentum 0.9 wd 2e-4, 5 linear warm-up epochs, x0.1 at 80% and 90% of ``--epochs``, crop
(padding 2) + flip, CE, one evaluation on the balanced 10,000-image test split at the end. The
reference is benchmarks/reference_loop.py (PIL per image in DataLoader workers, fp32); ltlab runs
``ltlab.run`` in fp32 and in bf16 + channels_last. Prints overall and many/medium/few accuracy and
wall time of each. ``--methods`` adds further ltlab runs with the same recipe (a real training run
of seed methods: ``ala_drw`` is ALA with DRW at 80%). tests/test_speed_parity.py is the small CPU
version of this check; no timing is asserted anywhere.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference_loop as ref  # noqa: E402

from ltlab import RunConfig, run  # noqa: E402
from ltlab.data import get_dataset  # noqa: E402
from ltlab.data.sources import FASHION_ROOT  # noqa: E402
from ltlab.models import create_model  # noqa: E402
from ltlab.posthoc import shot_scores  # noqa: E402


def recipe(epochs: int) -> dict:
    return dict(epochs=epochs, batch_size=128, lr=0.1, weight_decay=2e-4, warmup_epochs=min(5, epochs - 1),
                milestones=[int(0.8 * epochs), int(0.9 * epochs)])


def groups(preds: np.ndarray, labels: np.ndarray, counts) -> dict[str, float]:
    """``ltlab.posthoc.shot_scores`` under the keys of ``Run.summary()`` (acc, acc_many, ...)."""
    s = shot_scores(preds, labels, counts)
    return {"acc": s.pop("overall"), **{f"acc_{k}": v for k, v in s.items()}}


def ltlab_run(args, out: Path, loss: str = "ce", precision: str = "fp32", channels_last: bool = False,
              **extra) -> tuple[dict, float]:
    data = dict(dataset_params={"n_max": args.n_max}) if args.n_max else {}
    cfg = RunConfig(dataset="fashion_mnist_lt", root=args.root, imbalance_factor=100, model=args.model, loss=loss,
                    seed=args.seed, device=args.device, precision=precision, channels_last=channels_last,
                    progress=False, eval_every=args.epochs, run_dir=str(out), **data, **recipe(args.epochs), **extra)
    t0 = time.perf_counter()
    r = run(cfg)
    sec = time.perf_counter() - t0
    s = r.summary()
    return {k: float(s[k]) for k in ("acc", "acc_many", "acc_medium", "acc_few")}, sec


def reference_run(args) -> tuple[dict, float]:
    kw = dict(root=args.root)
    train = get_dataset("fashion_mnist_lt", split="train", imbalance_factor=100,
                        **({"n_max": args.n_max} if args.n_max else {}), **kw)
    test = get_dataset("fashion_mnist_lt", split="test", **kw)
    tf = ref.train_transform(28, train.augment["crop_padding"], train.mean, train.std, flip=train.augment["flip"])
    tr = ref.ArrayImageDataset(ref.hwc(train.images), train.targets, tf)
    te = ref.ArrayImageDataset(ref.hwc(test.images), test.targets, ref.eval_transform(test.mean, test.std))
    torch.manual_seed(args.seed)
    model = create_model(args.model, 10, in_channels=1)
    r = recipe(args.epochs)
    t0 = time.perf_counter()
    ref.fit_reference(model, tr, te, epochs=r["epochs"], batch_size=r["batch_size"], lr=r["lr"],
                      milestones=r["milestones"], warmup_epochs=r["warmup_epochs"], eval_every=args.epochs,
                      num_workers=args.workers, device=args.device, seed=args.seed)
    preds, labels = ref.evaluate(model, ref.make_loader(te, 100, train=False, num_workers=args.workers,
                                                        device=args.device), args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
    return groups(preds, labels, train.class_counts), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--model", default="resnet32")
    p.add_argument("--n-max", type=int, default=None, help="cap the head class (default: the full 6,000)")
    p.add_argument("--root", default=FASHION_ROOT, help="folder with the four IDX .gz files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the reference loop")
    p.add_argument("--methods", nargs="*", default=[], help="extra ltlab runs, e.g. gcl ala_drw gala ghm_cwap")
    p.add_argument("--skip-reference", action="store_true")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("parity_fmnist: error: --device cuda but torch sees no CUDA device; run it on a GPU machine "
                         "(bash benchmarks/gpu_check.sh parity) or pass --device cpu (slow)")
    if not any((Path(args.root) / f"train-images-idx3-ubyte{ext}").exists() for ext in (".gz", "")):
        raise SystemExit(f"parity_fmnist: error: no Fashion-MNIST IDX files in {args.root}; install the Debian package "
                         "dataset-fashion-mnist or pass --root <folder with the four IDX .gz files>")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []

    def show(name: str, res: dict, sec: float) -> None:
        rows.append((name, res, sec))
        print(f"{name:28s} overall {res['acc']:.4f}  many {res['acc_many']:.4f}  medium {res['acc_medium']:.4f}  "
              f"few {res['acc_few']:.4f}  {sec:7.1f} s", flush=True)

    print(f"Fashion-MNIST-LT IF 100{f' n_max {args.n_max}' if args.n_max else ''}, {args.model}, "
          f"{args.epochs} epochs, batch 128, seed {args.seed}, device {args.device}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        show("ltlab fp32", *ltlab_run(args, Path(tmp) / "fp32"))
        show("ltlab bf16 channels_last", *ltlab_run(args, Path(tmp) / "bf16", precision="bf16", channels_last=True)
             if args.device == "cuda" else ltlab_run(args, Path(tmp) / "bf16", precision="bf16"))
        if not args.skip_reference:
            show("reference (PIL + DataLoader)", *reference_run(args))
        for m in args.methods:
            loss, drw = (m[:-4], True) if m.endswith("_drw") else (m, False)
            extra = {"drw_start": int(0.8 * args.epochs)} if drw else {}
            show(f"ltlab {m} bf16", *ltlab_run(args, Path(tmp) / m, loss=loss, precision="bf16",
                                               channels_last=args.device == "cuda", **extra))


if __name__ == "__main__":
    main()
