"""Data sources and long-tailed splits (issue 3 acceptance: CIFAR-LT counts and the standard selection)."""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import make_fake_cifar, make_fake_file_list
from ltlab.data import DATASETS, get_dataset

ROOT = Path(__file__).resolve().parent.parent

C10_COUNTS = {  # Cao et al. 2019's counts
    10: [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500],
    50: [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100],
    100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50],
    200: [5000, 2775, 1540, 854, 474, 263, 146, 81, 45, 25],
}
TOTALS = {"cifar10": {10: 20431, 50: 13996, 100: 12406, 200: 11203},
          "cifar100": {10: 19573, 50: 12608, 100: 10847, 200: 9502}}
C100_NMIN = {10: 50, 50: 10, 100: 5, 200: 2}
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _raw_cifar(root: Path, which: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Independent reader of the fake pickles: (data (N, 3072) uint8, labels (N,))."""
    if which == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        folder, key = root / "cifar-10-batches-py", b"labels"
    else:
        files, folder, key = [split], root / "cifar-100-python", b"fine_labels"
    ds = [pickle.load(open(folder / f, "rb"), encoding="bytes") for f in files]
    return np.concatenate([d[b"data"] for d in ds]), np.concatenate([np.asarray(d[key]) for d in ds])


def _standard_selection(labels: np.ndarray, counts: list[int], seed: int = 0) -> np.ndarray:
    """Cao et al. imbalance_cifar.py: np.random.seed; per class in order shuffle positions, keep first n_c."""
    np.random.seed(seed)
    keep = []
    for c, n_c in enumerate(counts):
        pos = np.where(labels == c)[0]
        np.random.shuffle(pos)
        keep.extend(pos[:n_c].tolist())
    return np.asarray(keep)


@pytest.fixture(scope="module")
def raw(fake_cifar10_root, fake_cifar100_root):
    roots = {"cifar10": fake_cifar10_root, "cifar100": fake_cifar100_root}
    return {w: (roots[w], _raw_cifar(roots[w], w, "train")) for w in roots}


@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
@pytest.mark.parametrize("imbalance_factor", [10, 50, 100, 200])
def test_cifar_lt_counts_and_standard_selection(raw, which, imbalance_factor):
    root, (data, labels) = raw[which]
    ds = get_dataset(f"{which}_lt", root, imbalance_factor=imbalance_factor)
    C, n_max = (10, 5000) if which == "cifar10" else (100, 500)
    expected = [int(n_max * (1 / imbalance_factor) ** (c / (C - 1))) for c in range(C)]
    if which == "cifar10":
        assert expected == C10_COUNTS[imbalance_factor]
    else:
        assert expected[-1] == C100_NMIN[imbalance_factor]
    assert ds.class_counts == expected
    assert len(ds) == sum(ds.class_counts) == TOTALS[which][imbalance_factor]
    keep = _standard_selection(labels, expected)
    np.testing.assert_array_equal(ds.source_indices, keep)
    np.testing.assert_array_equal(ds.targets, labels[keep])
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(keep), 3, 32, 32)
    np.testing.assert_array_equal(ds.images.reshape(len(keep), -1).numpy(), data[keep])
    assert ds.num_classes == C and len(ds.classes) == C and ds.classes[3] == "class003"


@pytest.mark.parametrize("which,per_class", [("cifar10", 1000), ("cifar100", 100)])
def test_cifar_test_split_is_balanced_and_untouched(raw, which, per_class):
    root = raw[which][0]
    data, labels = _raw_cifar(root, which, "test")
    ds = get_dataset(f"{which}_lt", root, split="test", imbalance_factor=100)
    assert set(ds.class_counts) == {per_class}
    np.testing.assert_array_equal(ds.targets, labels)
    np.testing.assert_array_equal(ds.images.reshape(len(ds), -1).numpy(), data)
    x, y = ds[7]
    assert x.shape == (3, 32, 32) and y == labels[7]


def test_cifar_full_train_when_no_imbalance(raw):
    root = raw["cifar100"][0]
    for imbalance_factor in (None, 1):
        ds = get_dataset("cifar100_lt", root, imbalance_factor=imbalance_factor)
        assert len(ds) == 50000 and set(ds.class_counts) == {500}
    assert ds.augment == {"crop_padding": 4, "flip": True} and ds.mean == (0.4914, 0.4822, 0.4465)


def test_larger_imbalance_keeps_a_prefix(raw):
    root = raw["cifar10"][0]
    a = get_dataset("cifar10_lt", root, imbalance_factor=10)
    b = get_dataset("cifar10_lt", root, imbalance_factor=100)
    for c in range(10):
        ia, ib = a.source_indices[a.targets == c], b.source_indices[b.targets == c]
        np.testing.assert_array_equal(ia[: len(ib)], ib)


def test_unknown_name_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="cifar10_lt.*synthetic_lt"):
        get_dataset("cifar11_lt")
    for bad in (0.5, 0, -3, float("nan")):
        with pytest.raises(ValueError, match="imbalance_factor"):
            get_dataset("synthetic_lt", imbalance_factor=bad)
    with pytest.raises(ValueError, match="split"):
        get_dataset("synthetic_lt", split="validation")
    with pytest.raises(ValueError, match="n_max_typo"):
        get_dataset("synthetic_lt", n_max_typo=3)
    with pytest.raises(ValueError, match="profile"):
        get_dataset("synthetic_lt", imbalance_factor=10, profile="linear")
    assert set(DATASETS) == {"cifar10_lt", "cifar100_lt", "fashion_mnist_lt", "digits_lt", "synthetic_lt",
                             "file_list"}


def test_missing_cifar_root_message(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        get_dataset("cifar10_lt", tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg and "download=True" in msg
    assert "cifar-10-python.tar.gz" in msg
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        get_dataset("cifar100_lt", tmp_path)


def test_corrupt_cifar_pickle_names_the_file(tmp_path):
    make_fake_cifar(tmp_path, "cifar10", per_class_train=3, per_class_test=2)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(ValueError, match="data_batch_3"):
        get_dataset("cifar10_lt", tmp_path)
    get_dataset("cifar10_lt", tmp_path, split="test")  # other files still fine
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        get_dataset("cifar10_lt", tmp_path, split="test")


def _write_idx(path: Path, arr: np.ndarray, cut: int = 0) -> None:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    payload = head + arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(payload[: len(payload) - cut])


def test_fashion_idx_reader_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 28, 28)), np.repeat(np.arange(10), 4)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", y)
    ds = get_dataset("fashion_mnist_lt", tmp_path)
    assert ds.images.shape == (40, 1, 28, 28) and ds.class_counts == [4] * 10
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), x)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", x, cut=50)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        get_dataset("fashion_mnist_lt", tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(20)))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        get_dataset("fashion_mnist_lt", tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        get_dataset("fashion_mnist_lt", tmp_path / "missing")


@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_if100():
    ds = get_dataset("fashion_mnist_lt", imbalance_factor=100)
    expected = [int(6000 * (1 / 100) ** (c / 9)) for c in range(10)]
    assert ds.class_counts == expected and len(ds) == sum(expected)
    assert ds.image_shape == (1, 28, 28) and ds.images.dtype == torch.uint8
    test = get_dataset("fashion_mnist_lt", split="test", imbalance_factor=100)
    assert test.class_counts == [1000] * 10


def test_digits_balanced_test_split(digits_ds):
    test = get_dataset("digits_lt", split="test", seed=5)
    assert test.class_counts == [50] * 10 and test.image_shape == (1, 8, 8)
    full = get_dataset("digits_lt")
    assert len(full) + len(test) == 1797
    assert not set(full.source_indices) & set(test.source_indices)
    n_max = min(full.class_counts)
    assert digits_ds.class_counts == [int(n_max * 0.1 ** (c / 9)) for c in range(10)]
    assert set(digits_ds.source_indices) <= set(full.source_indices)
    assert int(full.images.max()) == 255 and digits_ds.augment["flip"] is False
    np.testing.assert_array_equal(get_dataset("digits_lt", split="test").source_indices, test.source_indices)


def test_digits_read_without_scikit_learn_are_load_digits(monkeypatch):
    """ltlab reads scikit-learn's digits file itself (no 1 s scikit-learn import per digits run): the same
    arrays as ``load_digits()``; with the file elsewhere, ``load_digits`` itself."""
    import importlib.util

    from sklearn.datasets import load_digits

    from ltlab.data.sources import digits_arrays

    ref = load_digits()
    images, labels = digits_arrays()
    assert images.shape == (1797, 8, 8) and labels.dtype == np.int64
    np.testing.assert_array_equal(images, ref.images)
    np.testing.assert_array_equal(labels, ref.target)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # a layout without the file
    images2, labels2 = digits_arrays()
    np.testing.assert_array_equal(images2, ref.images)
    np.testing.assert_array_equal(labels2, ref.target)


@pytest.mark.subprocess
def test_a_digits_run_does_not_import_scikit_learn(tmp_path):
    import subprocess
    import sys

    code = ("import sys, ltlab; ltlab.run(dataset='digits_lt', epochs=1, progress=False, device='cpu', "
            f"run_dir={str(tmp_path / 'r')!r}); print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_empty_class_after_subsampling():
    with pytest.raises(ValueError, match=r"class 7 .*smaller imbalance factor"):
        get_dataset("digits_lt", imbalance_factor=500)


def test_step_profile():
    ds = get_dataset("synthetic_lt", imbalance_factor=10, profile="step")
    assert ds.class_counts == [100] * 5 + [10] * 5


def test_synthetic_is_deterministic_and_learnable():
    tr = get_dataset("synthetic_lt", imbalance_factor=10, num_classes=5, n_max=60)
    te = get_dataset("synthetic_lt", split="test", num_classes=5, n_max=60)
    assert tr.image_shape == (3, 8, 8) and te.class_counts == [20] * 5
    assert torch.equal(tr.images, get_dataset("synthetic_lt", imbalance_factor=10, num_classes=5, n_max=60).images)
    xtr, xte = tr.images.flatten(1).double(), te.images.flatten(1).double()
    means = torch.stack([xtr[torch.from_numpy(tr.targets == c)].mean(0) for c in range(5)])
    pred = torch.cdist(xte, means).argmin(1).numpy()
    assert (pred == te.targets).mean() > 0.9


def test_subset_keeps_metadata(digits_ds):
    sub = digits_ds.subset([0, 5, 10])
    assert len(sub) == 3 and sub.mean == digits_ds.mean and sub.classes == digits_ds.classes
    assert sum(sub.class_counts) == 3 and len(sub.class_counts) == 10
    np.testing.assert_array_equal(sub.source_indices, digits_ds.source_indices[[0, 5, 10]])
    assert torch.equal(sub[1][0], digits_ds[5][0]) and sub[1][1] == digits_ds[5][1]


def test_file_list(tmp_path):
    list_path = make_fake_file_list(tmp_path, counts=(4, 2, 1), size=(12, 20))
    ds = get_dataset("file_list", tmp_path, list_file=list_path, image_size=10)
    assert ds.images is None and ds.class_counts == [4, 2, 1] and ds.num_classes == 3
    assert ds.image_shape == (3, 10, 10)
    for i in range(len(ds)):
        x, y = ds[i]
        value = 10 * y + int(Path(ds.paths[i]).stem.split("_")[1])
        assert x.shape == (3, 10, 10) and x.dtype == torch.uint8 and bool((x == value).all())
    with pytest.raises(ValueError, match="imbalance_factor"):
        get_dataset("file_list", tmp_path, list_file=list_path, imbalance_factor=10)
    first = list_path.read_text().splitlines()[0].split()[0]
    (tmp_path / first).unlink()
    ds = get_dataset("file_list", tmp_path, train_list=list_path)
    with pytest.raises(FileNotFoundError, match=rf"{first}.*line 1 of .*train.txt"):
        ds[0]
    second = list_path.read_text().splitlines()[1].split()[0]
    (tmp_path / second).write_bytes(b"not an image")
    with pytest.raises(ValueError, match=rf"cannot decode.*{second}.*line 2"):
        ds[1]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png 0\nb.png\n")
    with pytest.raises(ValueError, match="line 2 of"):
        get_dataset("file_list", tmp_path, list_file=bad)


def test_dataset_pickles(tmp_path):
    """Datasets survive pickling (DataLoader workers with the spawn start method)."""
    make_fake_cifar(tmp_path, "cifar100", per_class_train=4, per_class_test=1)
    ds = get_dataset("cifar100_lt", tmp_path, imbalance_factor=4)
    back = pickle.loads(pickle.dumps(ds))
    assert back.class_counts == ds.class_counts and torch.equal(back.images, ds.images)
    assert ds.class_counts[0] == 4 and ds.class_counts[-1] == 1
