"""DeviceLoader: shapes, normalisation, tensor crop/flip, seeding by (seed, epoch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fakes import make_fake_file_list
from ltlab.data import DeviceLoader, LTDataset, create_sampler, get_dataset
from ltlab.data.loaders import crop_flip


def _toy(n=12, c=2, h=5, w=6, augment=None):
    """Images whose pixels are all distinct and non-zero: 1 + (i*C*H*W + offset) % 250."""
    x = (1 + torch.arange(n * c * h * w) % 250).to(torch.uint8).reshape(n, c, h, w)
    return LTDataset("toy", "train", x, np.arange(n) % 3, ["a", "b", "c"], (0.5,) * c, (0.25,) * c,
                     augment or {"crop_padding": 1, "flip": True})


def _candidates(img: torch.Tensor, pad: int, flip: bool) -> list[torch.Tensor]:
    """Every crop (and flip) of ``img`` zero-padded by ``pad``, built with plain slicing."""
    C, H, W = img.shape
    padded = torch.zeros(C, H + 2 * pad, W + 2 * pad, dtype=img.dtype)
    padded[:, pad:pad + H, pad:pad + W] = img
    out = []
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            crop = padded[:, oy:oy + H, ox:ox + W]
            out += [crop, crop.flip(-1)] if flip else [crop]
    return out


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=0, atol=1e-5)


def test_shapes_dtypes_len(digits_ds):
    dl = DeviceLoader(digits_ds, 64)
    assert len(dl) == -(-len(digits_ds) // 64)
    batches = list(dl)
    assert len(batches) == len(dl)
    x, y = batches[0]
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sum(len(b[1]) for b in batches) == len(digits_ds)
    dl = DeviceLoader(digits_ds, 64, drop_last=True)
    assert len(dl) == len(digits_ds) // 64 == len(list(dl))
    assert sorted(torch.cat([b[1] for b in DeviceLoader(digits_ds, 100)]).tolist()) == sorted(digits_ds.targets)


def test_eval_is_sequential_and_normalised(digits_ds):
    dl = DeviceLoader(digits_ds, 50, train=False)
    x = torch.cat([b[0] for b in dl]).double()
    y = torch.cat([b[1] for b in dl])
    ref = (digits_ds.images.double() / 255 - digits_ds.mean[0]) / digits_ds.std[0]
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-5)
    assert torch.equal(y, torch.from_numpy(digits_ds.targets))


def test_crop_flip_keeps_content_and_varies():
    ds = _toy(n=40)
    out = crop_flip(ds.images, 1, True, torch.Generator().manual_seed(0))
    assert out.shape == ds.images.shape and out.dtype == torch.uint8
    which = []
    for i in range(len(ds)):
        cands = _candidates(ds.images[i], 1, True)
        hits = [j for j, c in enumerate(cands) if torch.equal(out[i], c)]
        assert hits, f"image {i} is not a padded crop/flip of its source"
        which.append(hits[0])
    assert len(set(which)) > 5  # offsets and flips vary per image
    assert any(h % 2 for h in which) and any(h % 2 == 0 for h in which)


def test_flip_of_known_image():
    img = torch.arange(12, dtype=torch.uint8).reshape(1, 1, 3, 4).repeat(64, 1, 1, 1)
    out = crop_flip(img, 0, True, torch.Generator().manual_seed(1))
    flipped = torch.tensor([[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]], dtype=torch.uint8)
    is_flip = (out[:, 0] == flipped).flatten(1).all(1)
    is_same = (out[:, 0] == img[0, 0]).flatten(1).all(1)
    assert bool((is_flip | is_same).all()) and 10 < int(is_flip.sum()) < 54


def test_crop_pads_with_zero_before_normalisation():
    ds = _toy(n=64, augment={"crop_padding": 2, "flip": False})
    x, _ = next(iter(DeviceLoader(ds, 64, seed=3)))
    zero = (0 - 0.5) / 0.25  # a zero pixel after normalisation
    assert bool((x == zero).any()) and bool((x != zero).any())


def test_train_loader_augments_and_eval_does_not():
    ds = _toy(n=24)
    ref = (ds.images.float() / 255 - 0.5) / 0.25
    xs, _ = next(iter(DeviceLoader(ds, 24, train=True)))
    moved = sum(not any(close(xs[i], r) for r in ref) for i in range(24))
    assert moved > 0
    xe, _ = next(iter(DeviceLoader(ds, 24, train=False)))
    torch.testing.assert_close(xe, ref, rtol=0, atol=1e-6)
    xn, _ = next(iter(DeviceLoader(ds, 24, train=True, augment=False)))
    assert all(any(close(xn[i], r) for r in ref) for i in range(24))


def test_same_seed_and_epoch_replay_different_epoch_differs(digits_ds):
    def run(epoch, seed=0):
        dl = DeviceLoader(digits_ds, 32, seed=seed)
        dl.set_epoch(epoch)
        return [b for b in dl]

    a, b = run(3), run(3)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    c = run(4)
    assert not torch.equal(a[0][1], c[0][1])
    d = run(3, seed=1)
    assert not torch.equal(a[0][1], d[0][1])
    dl = DeviceLoader(digits_ds, 32)  # no set_epoch: consecutive passes are epochs 0, 1, ...
    first, second = [y for _, y in dl], [y for _, y in dl]
    assert not torch.equal(first[0], second[0])
    dl.set_epoch(1)
    assert all(torch.equal(p, q) for p, q in zip(second, [y for _, y in dl]))


def test_same_order_different_augmentation_is_replayed():
    ds = _toy(n=30)
    dl = DeviceLoader(ds, 10, sampler=None, seed=7)
    dl.set_epoch(2)
    x1 = torch.cat([x for x, _ in dl])
    dl.set_epoch(2)
    x2 = torch.cat([x for x, _ in dl])
    assert torch.equal(x1, x2)


def test_sampler_drives_order_and_gets_epochs(digits_ds):
    s = create_sampler("class_aware", digits_ds.targets, num_samples_cls=4, seed=0)
    dl = DeviceLoader(digits_ds, 40, sampler=s)
    dl.set_epoch(5)
    y = torch.cat([b[1] for b in dl]).numpy()
    assert s.epoch == 5 and len(y) == len(s)
    s.set_epoch(5)
    np.testing.assert_array_equal(y, digits_ds.targets[list(s)])
    blocks = y[: len(y) // 4 * 4].reshape(-1, 4)
    assert np.all(blocks == blocks[:, :1])


def test_channels_last_and_bad_augment(digits_ds):
    x, _ = next(iter(DeviceLoader(_toy(n=8), 8, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="crop_padding"):
        DeviceLoader(digits_ds, 8, augment={"cutout": 16})
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(digits_ds, 0)


def test_lazy_file_list_loader(tmp_path):
    list_path = make_fake_file_list(tmp_path, counts=(3, 2), size=(9, 9))
    ds = get_dataset("file_list", tmp_path, list_file=list_path, image_size=8, mean=(0.0,) * 3, std=(1.0,) * 3)
    dl = DeviceLoader(ds, 2, train=False)
    batches = list(dl)
    assert len(batches) == len(dl) == 3
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (5, 3, 8, 8) and y.tolist() == ds.targets.tolist()
    values = [10 * t + int(p.split("_")[-1].split(".")[0]) for t, p in zip(ds.targets, ds.paths)]
    torch.testing.assert_close(x[:, 0, 0, 0].double(), torch.tensor(values, dtype=torch.float64) / 255,
                               rtol=0, atol=1e-6)
    dl = DeviceLoader(ds, 5, train=True, seed=1)
    dl.set_epoch(0)
    ya = next(iter(dl))[1]
    dl.set_epoch(0)
    assert torch.equal(ya, next(iter(dl))[1])
