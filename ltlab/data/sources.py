"""Image sources: CIFAR-10/100, Fashion-MNIST, digits, synthetic and file-list sets, with long-tailed train splits.

Each builder returns the full split as an :class:`LTDataset` (uint8 images held in memory, or lazy
paths for file lists); :func:`get_dataset` then applies the standard CIFAR-LT selection
(Cao et al. 2019, ``imbalance_cifar.py``) to the train split. Test splits are never subsampled.
"""
from __future__ import annotations

import gzip
import inspect
import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from ..safe_io import UnsafeFileError, unpickle_cifar
from .longtail import longtail_counts, longtail_indices

Split = Literal["train", "val", "test"]
# LDAM-DRW / MiSLAS / GCL normalise CIFAR-10 and CIFAR-100 alike with these.
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]


class LTDataset(torch.utils.data.Dataset):
    """One split of an image classification set; ``ds[i] -> (uint8 image (C, H, W), int label)``.

    ``images`` is a uint8 tensor (N, C, H, W), or None for lazy file-list sets whose items are decoded
    from ``paths`` and resized to ``image_shape``. ``source_indices`` are the positions of the kept
    items in the full split (the long-tail selection). ``augment`` is the default *train* augmentation.
    """

    def __init__(self, name: str, split: str, images: torch.Tensor | None, targets: Sequence[int],
                 classes: Sequence[str], mean: Sequence[float], std: Sequence[float],
                 augment: dict[str, Any], *, image_shape: tuple[int, ...] | None = None,
                 paths: np.ndarray | None = None, lines: np.ndarray | None = None,
                 list_file: str | None = None, source_indices: np.ndarray | None = None) -> None:
        self.name, self.split = name, split
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        if len(self.targets) and not 0 <= self.targets.min() <= self.targets.max() < self.num_classes:
            raise ValueError(f"{name}: labels must lie in 0..{self.num_classes - 1}, got "
                             f"{self.targets.min()}..{self.targets.max()}")
        if images is not None and len(images) != len(self.targets):
            raise ValueError(f"{name}: {len(images)} images but {len(self.targets)} labels")
        self.class_counts = np.bincount(self.targets, minlength=self.num_classes).astype(int).tolist()
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.augment = dict(augment)
        self.image_shape = tuple(images.shape[1:]) if images is not None else tuple(image_shape)
        self.paths, self.lines, self.list_file = paths, lines, list_file
        self.source_indices = (np.arange(len(self.targets)) if source_indices is None
                               else np.asarray(source_indices, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.images is not None:
            return self.images[i], int(self.targets[i])
        return _decode(self.paths[i], int(self.lines[i]), self.list_file, self.image_shape[1:]), int(self.targets[i])

    def subset(self, indices: Sequence[int]) -> "LTDataset":
        """The items at ``indices`` (same classes, normalisation and augmentation)."""
        idx = np.asarray(indices, dtype=np.int64)
        return LTDataset(self.name, self.split, None if self.images is None else self.images[torch.from_numpy(idx)],
                         self.targets[idx], self.classes, self.mean, self.std, self.augment,
                         image_shape=self.image_shape,
                         paths=None if self.paths is None else self.paths[idx],
                         lines=None if self.lines is None else self.lines[idx], list_file=self.list_file,
                         source_indices=self.source_indices[idx])

    def __repr__(self) -> str:
        return (f"LTDataset({self.name!r}, split={self.split!r}, n={len(self)}, num_classes={self.num_classes}, "
                f"image_shape={self.image_shape}, max/min count={max(self.class_counts)}/{min(self.class_counts)})")


def _default_root() -> Path:
    return Path(os.environ.get("LTLAB_DATA", Path.home() / ".cache" / "ltlab" / "data")).expanduser()


class DownloadError(FileNotFoundError):
    """A dataset download that failed (offline, blocked, bad checksum): names the dataset, the URL, the files."""


def _download(title: str, url: str, by_hand: str, fetch: Any) -> None:
    """Call ``fetch()``; a failure raises one DownloadError saying what failed and where to put the files."""
    try:
        fetch()
    except (OSError, RuntimeError, ValueError) as exc:  # URLError/HTTPError are OSErrors; md5 -> RuntimeError
        raise DownloadError(f"downloading {title} from {url} failed ({type(exc).__name__}: {exc}); without "
                            f"internet, fetch it on another machine and {by_hand}") from exc


# ----------------------------------------------------------------------------------------- CIFAR
_CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", title="CIFAR-10", tar="cifar-10-python.tar.gz",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"], meta="batches.meta",
                    labels="labels", names="label_names"),
    "cifar100": dict(folder="cifar-100-python", title="CIFAR-100", tar="cifar-100-python.tar.gz",
                     train=["train"], test=["test"], meta="meta", labels="fine_labels", names="fine_label_names"),
}


def _str(x: Any) -> str:
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (real files give str keys under latin1, fakes give bytes).

    Read by :class:`ltlab.safe_io.CifarUnpickler`: any object but numpy's arrays raises UnsafeFileError.
    """
    if not path.is_file():
        raise FileNotFoundError(f"missing CIFAR file {path}")
    try:
        d = unpickle_cifar(path)
    except UnsafeFileError:
        raise
    except Exception as e:  # truncated/corrupt pickles raise many different types
        raise ValueError(f"corrupt or truncated CIFAR file {path}: {type(e).__name__}: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"corrupt CIFAR file {path}: expected a dict, got {type(d).__name__}")
    return {_str(k): v for k, v in d.items()}


def _read_cifar(which: str, root: str | Path | None, split: str, download: bool) -> LTDataset:
    spec = _CIFAR[which]
    root = Path(root).expanduser() if root is not None else _default_root()
    folder = root / spec["folder"]
    files = ", ".join([*spec["train"], *spec["test"], spec["meta"]])
    if not folder.is_dir() and download:
        import torchvision.datasets as tvd  # the official archive, md5-checked; read below like any folder
        cls = tvd.CIFAR10 if which == "cifar10" else tvd.CIFAR100  # (building cls would unpickle it with pickle)
        _download(spec["title"], cls.url, f"extract it so that {folder} holds {files}",
                  lambda: tvd.utils.download_and_extract_archive(cls.url, str(root), filename=cls.filename,
                                                                 md5=cls.tgz_md5))
    if not folder.is_dir():
        raise FileNotFoundError(f"{spec['title']} not found: expected folder {folder} with {files}; pass "
                                f"download=True (command line: -p download True) or put the extracted {spec['tar']} "
                                f"there (root=<folder>, $LTLAB_DATA or ~/.cache/ltlab/data)")
    images, labels = [], []
    for fname in spec[split]:
        d = _unpickle(folder / fname)
        data, lab = np.asarray(d.get("data")), d.get(spec["labels"])
        if data.ndim != 2 or data.shape[1] != 3072 or lab is None or len(lab) != data.shape[0]:
            raise ValueError(f"corrupt CIFAR file {folder / fname}: data {data.shape}, "
                             f"{spec['labels']} {None if lab is None else len(lab)}")
        images.append(data.astype(np.uint8, copy=False))
        labels.append(np.asarray(lab, dtype=np.int64))
    meta = _unpickle(folder / spec["meta"])
    classes = [_str(n) for n in meta[spec["names"]]]
    x = torch.from_numpy(np.concatenate(images).reshape(-1, 3, 32, 32))
    return LTDataset(f"{which}_lt", split, x, np.concatenate(labels), classes, CIFAR_MEAN, CIFAR_STD,
                     {"crop_padding": 4, "flip": True})


def _cifar10(root, split, download):
    return _read_cifar("cifar10", root, split, download)


def _cifar100(root, split, download):
    return _read_cifar("cifar100", root, split, download)


# ---------------------------------------------------------------------------------- Fashion-MNIST
def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX ubyte array (magic 0x0000 08 ndim, big-endian uint32 sizes) from a .gz or raw file."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"corrupt or truncated IDX file {path}: {e}") from e
    head = 4 + 4 * ndim
    if len(raw) < head or raw[:4] != bytes([0, 0, 8, ndim]):
        raise ValueError(f"bad IDX file {path}: magic {raw[:4].hex()} (want 000008{ndim:02x})")
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(np.int64)
    if len(raw) != head + int(np.prod(dims)):
        raise ValueError(f"truncated IDX file {path}: {len(raw) - head} bytes of data, header says {tuple(dims)}")
    return np.frombuffer(raw, np.uint8, offset=head).reshape(dims)


def _idx_path(folder: Path, stem: str) -> Path:
    gz = folder / f"{stem}.gz"
    return gz if gz.is_file() or not (folder / stem).is_file() else folder / stem


def _fashion_mnist(root, split, download):
    folder = Path(root).expanduser() if root is not None else Path(FASHION_ROOT)
    prefix = "train" if split == "train" else "t10k"
    img_p, lab_p = (_idx_path(folder, f"{prefix}-{k}") for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    if not (img_p.is_file() and lab_p.is_file()) and download:
        import torchvision.datasets as tvd
        url = tvd.FashionMNIST.mirrors[0]
        _download("Fashion-MNIST", url, f"put {prefix}-images-idx3-ubyte.gz and {prefix}-labels-idx1-ubyte.gz "
                  f"(from {url}) in {folder}, or pass root=<that folder>",
                  lambda: tvd.FashionMNIST(str(folder), train=split == "train", download=True))
        folder = folder / "FashionMNIST" / "raw"
        img_p, lab_p = (_idx_path(folder, f"{prefix}-{k}") for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    for p in (img_p, lab_p):
        if not p.is_file():
            raise FileNotFoundError(f"Fashion-MNIST file {p} not found; install the Debian package "
                                    f"(apt-get install dataset-fashion-mnist, files in {FASHION_ROOT}), "
                                    f"pass root=<folder with the IDX .gz files> or download=True (-p download True)")
    x, y = _read_idx(img_p, 3), _read_idx(lab_p, 1)
    if len(x) != len(y):
        raise ValueError(f"Fashion-MNIST {img_p} has {len(x)} images but {lab_p} has {len(y)} labels")
    return LTDataset("fashion_mnist_lt", split, torch.from_numpy(x.copy()).unsqueeze(1), y, FASHION_CLASSES,
                     (0.2860,), (0.3530,), {"crop_padding": 2, "flip": True})


# ----------------------------------------------------------------------------------------- digits
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float 0..16, labels (1797,) int64): what ``sklearn.datasets.load_digits()`` returns,
    read from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``) without importing
    scikit-learn, whose import (with SciPy) is about 1 s of every digits run's start; ``load_digits`` itself
    when that file is not where this scikit-learn keeps it."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without running its __init__
    path = Path(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits
        d = load_digits()
        return d.images, d.target.astype(np.int64)
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def _digits(root, split, download, n_test_per_class: int = 50):
    """sklearn's 8x8 digits (values 0..16 -> uint8 0..255, :func:`digits_arrays`); a balanced test split of
    ``n_test_per_class`` per class chosen by a fixed ``RandomState(0)`` permutation (LIB), independent of
    ``seed``."""
    images, y = digits_arrays()
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    perm = np.random.RandomState(0).permutation(len(y))
    test = np.sort(np.concatenate([perm[y[perm] == c][:n_test_per_class] for c in range(10)]))
    keep = test if split != "train" else np.setdiff1d(np.arange(len(y)), test)
    mean, std = (float(x.mean() / 255),), (float(x.std() / 255),)
    return LTDataset("digits_lt", split, torch.from_numpy(x[keep]), y[keep], [str(c) for c in range(10)],
                     mean, std, {"crop_padding": 1, "flip": False}, source_indices=keep)


# -------------------------------------------------------------------------------------- synthetic
def _synthetic(root, split, download, num_classes: int = 10, n_max: int = 100, image_size: int = 8,
               channels: int = 3, n_test_per_class: int = 20, noise: float = 0.25, data_seed: int = 0):
    """Gaussian clusters in pixel space: class c = a random prototype image + N(0, noise^2) per pixel
    (LIB). Train pool ``n_max`` per class, test ``n_test_per_class``; both drawn from ``data_seed``."""
    rs = np.random.RandomState(data_seed)
    protos = rs.uniform(0.15, 0.85, size=(num_classes, channels, image_size, image_size))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rs.permutation(np.repeat(np.arange(num_classes), n))
        x = protos[y] + rs.normal(0.0, noise, size=(len(y),) + protos.shape[1:])
        return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), y

    train, test = draw(n_max), draw(n_test_per_class)
    x, y = train if split == "train" else test
    return LTDataset("synthetic_lt", split, torch.from_numpy(x), y, [f"class_{c}" for c in range(num_classes)],
                     (0.5,) * channels, (0.25,) * channels, {"crop_padding": 0, "flip": False})


# -------------------------------------------------------------------------------------- file list
def _decode(path: str, line: int, list_file: str | None, size: Sequence[int]) -> torch.Tensor:
    """Decode an image to uint8 RGB (3, H, W): shorter side resized to ``size`` then centre crop.

    Decoding uses Pillow (torchvision.io's decoders are deprecated from torchvision 0.29 on)."""
    import torchvision.transforms.v2.functional as TF
    from PIL import Image, UnidentifiedImageError
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path} (line {line} of {list_file}) not found")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot decode image {path} (line {line} of {list_file}): {e}") from e
    img = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return TF.center_crop(TF.resize(img, [min(size)], antialias=True), list(size))


def _file_list(root, split, download, list_file=None, train_list=None, val_list=None, test_list=None,
               image_size: int = 224, num_classes: int | None = None, classes: Sequence[str] | None = None,
               mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """ImageNet-LT / Places-LT / iNat lists: lines ``relative/path label`` (OLTR / classifier-balancing format)."""
    lf = list_file or {"train": train_list, "val": val_list, "test": test_list}[split]
    if lf is None:
        raise ValueError(f"file_list needs list_file=... or {split}_list=... for split={split!r}")
    if root is None:
        raise ValueError("file_list needs root=<image root> (paths in the list are relative to it)")
    if not Path(lf).is_file():
        raise FileNotFoundError(f"list file {lf} not found")
    paths, labels, lines = [], [], []
    with open(lf) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                labels.append(int(parts[1]))
            except (IndexError, ValueError):
                raise ValueError(f"line {n} of {lf}: expected 'relative/path label', got {line.strip()!r}") from None
            paths.append(os.path.join(str(root), parts[0]))
            lines.append(n)
    if not labels or min(labels) < 0:
        raise ValueError(f"list file {lf}: no entries or a negative label")
    c = num_classes or (len(classes) if classes is not None else max(labels) + 1)
    return LTDataset("file_list", split, None, labels, classes or [str(i) for i in range(c)], mean, std,
                     {"crop_padding": 0, "flip": True}, image_shape=(3, image_size, image_size),
                     paths=np.asarray(paths, dtype=object), lines=np.asarray(lines), list_file=str(lf))


DATASETS: dict[str, Callable[..., LTDataset]] = {
    "cifar10_lt": _cifar10, "cifar100_lt": _cifar100, "fashion_mnist_lt": _fashion_mnist,
    "digits_lt": _digits, "synthetic_lt": _synthetic, "file_list": _file_list,
}


def _lt_counts(ds: LTDataset, imbalance_factor: float | None, profile: str, n_max: int | None) -> list[int]:
    """Per-class train counts: ``longtail_counts(n_max, C, IF, profile)``; n_max defaults to the smallest pool."""
    pool = min(ds.class_counts)  # per-class pool size; digits' classes differ slightly, so the minimum
    if n_max is None:
        n_max = pool
    elif n_max > pool:
        raise ValueError(f"{ds.name}: n_max={n_max} exceeds the smallest class pool ({pool} training images); "
                         f"use n_max <= {pool}")
    imbalance_factor = 1.0 if imbalance_factor is None else float(imbalance_factor)
    counts = longtail_counts(n_max, ds.num_classes, imbalance_factor, profile)
    for c, n in enumerate(counts):
        if n == 0:
            raise ValueError(f"{ds.name}: class {c} ({ds.classes[c]!r}) would keep 0 of {n_max} training images "
                             f"at imbalance_factor={imbalance_factor}; use a smaller imbalance factor (<= {n_max})")
    return counts


def _long_tail(ds: LTDataset, imbalance_factor: float | None, seed: int, profile: str,
               n_max: int | None = None) -> LTDataset:
    return ds.subset(longtail_indices(ds.targets, _lt_counts(ds, imbalance_factor, profile, n_max), seed))


def _val_split(ds: LTDataset, imbalance_factor: float | None, seed: int, profile: str, n_max: int | None,
               val_per_class: int, val_policy: str = "strict") -> LTDataset:
    """Balanced validation split: the LAST ``val_per_class`` images of each class's seeded shuffle (LIB).

    The long-tailed train split keeps the FIRST ``n_c`` of the same per-class shuffle
    (:func:`longtail_indices`), so the two never overlap when ``n_c + val_per_class`` fits in the pool;
    the split depends only on ``seed`` (not on the imbalance factor). ``val_policy="available"`` takes
    fewer (down to 0) where a class has no room instead of failing, e.g. the head class of the
    standard CIFAR-LT split, which uses every image (then the split is not balanced).
    """
    subsample = n_max is not None or (imbalance_factor is not None and imbalance_factor != 1)
    counts = _lt_counts(ds, imbalance_factor, profile, n_max) if subsample else ds.class_counts
    rs, keep = np.random.RandomState(seed), []
    for c, n_c in enumerate(counts):
        idx = np.where(ds.targets == c)[0]
        rs.shuffle(idx)
        if n_c + val_per_class > len(idx) and val_policy == "available":
            keep.append(np.sort(idx[n_c:]))
            continue
        if n_c + val_per_class > len(idx):
            raise ValueError(
                f"{ds.name}: no room for a validation split of {val_per_class} per class: class {c} "
                f"({ds.classes[c]!r}) has {len(idx)} training images and the train split keeps {n_c}. "
                f"Cap the head class with n_max <= {len(idx) - val_per_class}, lower val_per_class or pass "
                f"val_policy='available'")
        keep.append(np.sort(idx[len(idx) - val_per_class:]))
    out = ds.subset(np.concatenate(keep))
    out.split = "val"
    return out


def get_dataset(name: str, root: str | Path | None = None, *, split: Split = "train",
                imbalance_factor: float | None = None, seed: int = 0, download: bool = False,
                profile: Literal["exp", "step"] = "exp", n_max: int | None = None,
                val_per_class: int | None = None, val_policy: Literal["strict", "available"] = "strict",
                **kw: Any) -> LTDataset:
    """A dataset split; the train split is long-tailed when ``imbalance_factor`` > 1 (Cao et al. 2019).

    Counts ``longtail_counts(n_max, C, imbalance_factor, profile)`` with n_max the per-class size of the
    train pool; images chosen by ``longtail_indices(targets, counts, seed)`` (np.random.seed(seed), per-class
    shuffle in class order). ``imbalance_factor`` None or 1 keeps the full train set; test/val splits are
    never subsampled. ``root`` defaults to $LTLAB_DATA or ~/.cache/ltlab/data (Fashion-MNIST:
    /usr/share/datasets/fashion-mnist). Extra ``kw`` go to the builder (see each builder's docstring).

    ``n_max`` (LIB) caps the head class below the pool size (e.g. Fashion-MNIST-LT with n_max=500 has
    non-empty many/medium/few groups at IF 100); None keeps the standard selection. ``split="val"``
    with ``val_per_class=k`` (in-memory sets) is a balanced split of k images per class taken from
    training images the long-tailed train split does not use (see ``_val_split``); file_list sets take
    their ``val_list`` instead; ``val_policy="available"`` lets a class without room give fewer. ``n_max``
    and ``val_per_class`` do not affect the test split.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if imbalance_factor is not None:
        if isinstance(imbalance_factor, bool) or not float(imbalance_factor) >= 1:  # also rejects NaN
            raise ValueError(f"imbalance_factor must be a number >= 1 (1 = balanced) or None, got {imbalance_factor}")
        if name == "file_list" and imbalance_factor != 1:
            raise ValueError("file_list sets are long-tailed by their list; leave imbalance_factor=None")
    if profile not in ("exp", "step"):
        raise ValueError(f"profile must be 'exp' or 'step', got {profile!r}")
    for key, value in (("n_max", n_max), ("val_per_class", val_per_class)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{key} must be None or an integer >= 1, got {value!r}")
    if val_policy not in ("strict", "available"):
        raise ValueError(f"val_policy must be 'strict' or 'available', got {val_policy!r}")
    if name == "file_list" and (n_max is not None or val_per_class is not None):
        raise ValueError("file_list sets take their splits from the list files (train_list/val_list/test_list); "
                         "n_max and val_per_class do not apply")
    if split == "val" and name != "file_list" and val_per_class is None:
        raise ValueError(f"split='val' of {name} needs val_per_class=<images per class>, drawn from training "
                         "images the long-tailed train split does not use")
    allowed = list(inspect.signature(DATASETS[name]).parameters)[3:]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        valid = allowed + ["n_max", "val_per_class", "val_policy"]
        raise ValueError(f"{name}: unknown keyword(s) {unknown}; valid: {valid}")
    if "n_max" in allowed and n_max is not None:  # synthetic_lt: n_max is the pool size itself
        kw["n_max"], n_max = n_max, None
    if name == "file_list":
        return DATASETS[name](root, split, download, **kw)
    ds = DATASETS[name](root, "train" if split == "val" else split, download, **kw)
    if split == "val":
        return _val_split(ds, imbalance_factor, seed, profile, n_max, int(val_per_class), val_policy)
    if split == "train" and (n_max is not None or (imbalance_factor is not None and imbalance_factor != 1)):
        ds = _long_tail(ds, imbalance_factor, seed, profile, n_max)
    return ds
