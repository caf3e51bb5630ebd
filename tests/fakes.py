"""Fake datasets on disk in the exact layouts the readers expect (random pixels, real structure)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal, Sequence

import numpy as np


def _dump(obj: dict, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def _split(rng: np.random.Generator, num_classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.repeat(np.arange(num_classes), per_class))  # shuffled class order, like the real files
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return data, labels


def make_fake_cifar(root: str | Path, which: Literal["cifar10", "cifar100"] = "cifar10",
                    per_class_train: int | None = None, per_class_test: int | None = None, seed: int = 0) -> Path:
    """Write ``cifar-10-batches-py/`` or ``cifar-100-python/`` under ``root`` (torchvision layout).

    Pickled dicts with bytes keys: ``b"data"`` uint8 (N, 3072), ``b"labels"`` / ``b"fine_labels"`` lists;
    meta files with ``b"label_names"`` / ``b"fine_label_names"``. Defaults: the real sizes (5000/1000 per class
    for CIFAR-10, 500/100 for CIFAR-100). Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    c10 = which == "cifar10"
    num_classes = 10 if c10 else 100
    per_class_train = per_class_train or (5000 if c10 else 500)
    per_class_test = per_class_test or (1000 if c10 else 100)
    train, test = _split(rng, num_classes, per_class_train), _split(rng, num_classes, per_class_test)
    names = [f"class{c:03d}".encode() for c in range(num_classes)]
    if c10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (d, lab) in enumerate(zip(np.array_split(train[0], 5), np.array_split(train[1], 5)), 1):
            _dump({b"batch_label": f"training batch {i} of 5".encode(), b"labels": lab.tolist(), b"data": d,
                   b"filenames": [b"x.png"] * len(lab)}, folder / f"data_batch_{i}")
        _dump({b"batch_label": b"testing batch 1 of 1", b"labels": test[1].tolist(), b"data": test[0],
               b"filenames": [b"x.png"] * len(test[1])}, folder / "test_batch")
        _dump({b"num_cases_per_batch": len(train[1]) // 5, b"label_names": names, b"num_vis": 3072},
              folder / "batches.meta")
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for fname, (d, lab) in (("train", train), ("test", test)):
            _dump({b"filenames": [b"x.png"] * len(lab), b"batch_label": fname.encode(), b"fine_labels": lab.tolist(),
                   b"coarse_labels": (lab // 5).tolist(), b"data": d}, folder / fname)
        _dump({b"fine_label_names": names, b"coarse_label_names": [f"super{c}".encode() for c in range(20)]},
              folder / "meta")
    return root


def make_fake_file_list(root: str | Path, counts: Sequence[int] = (4, 2, 1), size: tuple[int, int] = (12, 20),
                        seed: int = 0, list_name: str = "train.txt") -> Path:
    """PNG images under ``root/train/<class>/`` and a list file ``root/<list_name>`` of lines ``path label``.

    Image i of class c is filled with the value ``10 * c + i`` (so items are recognisable). Returns the list path.
    """
    from PIL import Image
    root = Path(root)
    rng = np.random.default_rng(seed)
    lines = []
    for c, n in enumerate(counts):
        (root / "train" / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rel = f"train/c{c}/img_{i}.png"
            Image.fromarray(np.full((*size, 3), 10 * c + i, dtype=np.uint8)).save(root / rel)
            lines.append(f"{rel} {c}")
    lines = [lines[i] for i in rng.permutation(len(lines))]
    list_path = root / list_name
    list_path.write_text("\n".join(lines) + "\n")
    return list_path
