"""Issue 8, acceptance 2: ltlab's fast loop and the standard research loop reach the same accuracy.

Both train ``convnet_small`` (width 16) on Fashion-MNIST-LT (imbalance factor 100, head class capped
at n_max=500 -> 1,236 images, 500 ... 5 per class) with the same recipe: batch 64, SGD lr 0.1 momentum
0.9 wd 2e-4, x0.1 at epoch 6, 8 epochs (160 steps), crop (padding 2) + flip, CE; both evaluate once on
the full balanced test set (10,000 images). The fast path is ``ltlab.run`` (device-resident uint8 data, batched tensor
augmentation, foreach SGD, metrics on device); the reference is benchmarks/reference_loop.py (PIL
transforms per image through a DataLoader, official per-batch meters). They cannot agree bit for bit
(different random streams), so the test compares accuracy with a tolerance measured across seeds
(see TOLERANCE). No timing is asserted anywhere.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_loop as ref  # noqa: E402

from ltlab import RunConfig, run  # noqa: E402
from ltlab.data import get_dataset  # noqa: E402
from ltlab.data.sources import FASHION_ROOT  # noqa: E402
from ltlab.models import create_model  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(FASHION_ROOT, "train-images-idx3-ubyte.gz").is_file(),
                       reason=f"Fashion-MNIST not installed at {FASHION_ROOT} (apt-get install dataset-fashion-mnist)"),
]

RECIPE = dict(epochs=8, batch_size=64, lr=0.1, milestones=[6])
DATA = dict(imbalance_factor=100, n_max=500)
WIDTH = 16
# Seeds 0-7 (benchmarks/README.md): ltlab 0.433-0.447, reference 0.429-0.460; the per-seed gap
# |ltlab - reference| was at most 0.016 (std 0.009). 0.04 (2.5x the largest gap, > 4 std) leaves room for
# other platforms' kernels; a fast path that learns worse (or not at all) fails the gap or the floor.
TOLERANCE = 0.04


def _ltlab_acc(seed: int, tmp_path: Path) -> float:
    cfg = RunConfig(dataset="fashion_mnist_lt", dataset_params={"n_max": DATA["n_max"]},
                    imbalance_factor=DATA["imbalance_factor"], model="convnet_small", model_params={"width": WIDTH},
                    loss="ce", seed=seed, device="cpu", progress=False, eval_every=RECIPE["epochs"],
                    run_dir=str(tmp_path / f"ltlab_{seed}"), **RECIPE)
    return float(run(cfg).metrics["acc"].iloc[-1])


def _reference_acc(seed: int) -> float:
    train = get_dataset("fashion_mnist_lt", split="train", **DATA)
    test = get_dataset("fashion_mnist_lt", split="test")
    tf = ref.train_transform(28, train.augment["crop_padding"], train.mean, train.std, flip=train.augment["flip"])
    tr = ref.ArrayImageDataset(ref.hwc(train.images), train.targets, tf)
    te = ref.ArrayImageDataset(ref.hwc(test.images), test.targets, ref.eval_transform(test.mean, test.std))
    torch.manual_seed(seed)
    model = create_model("convnet_small", 10, in_channels=1, width=WIDTH)
    rows = ref.fit_reference(model, tr, te, epochs=RECIPE["epochs"], batch_size=RECIPE["batch_size"],
                             lr=RECIPE["lr"], milestones=RECIPE["milestones"], eval_every=RECIPE["epochs"],
                             num_workers=0, seed=seed)
    return rows[-1]["acc"]


def test_fast_path_matches_reference_accuracy(tmp_path):
    fast, slow = _ltlab_acc(0, tmp_path), _reference_acc(0)
    print(f"Fashion-MNIST-LT accuracy: ltlab {fast:.4f}, reference {slow:.4f}")
    assert fast > 0.35 and slow > 0.35, f"a loop failed to learn (chance 0.1, seeds 0-7 gave >= 0.43): ltlab {fast}, reference {slow}"
    assert abs(fast - slow) <= TOLERANCE, f"ltlab {fast:.4f} vs reference {slow:.4f} differ by more than {TOLERANCE}"


def test_reference_transform_matches_ltlab_normalisation():
    """Without augmentation both pipelines feed the network the same normalised tensor."""
    from ltlab.data import DeviceLoader
    test = get_dataset("fashion_mnist_lt", split="test")
    sub = test.subset(np.arange(64))
    x_fast = next(iter(DeviceLoader(sub, 64, train=False)))[0].double()
    tf = ref.eval_transform(test.mean, test.std)
    x_ref = torch.stack([tf(img) for img, _ in ref.ArrayImageDataset(ref.hwc(sub.images), sub.targets)]).double()
    torch.testing.assert_close(x_fast, x_ref, rtol=0, atol=1e-5)
