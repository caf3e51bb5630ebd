"""Device-resident batches with tensor augmentation (the CIFAR recipe of LDAM-DRW: crop 4 + flip).

The uint8 images go to the training device once; each batch is indexed there, randomly cropped
(zero padding) and flipped with batched gathers, converted to float32 and normalised. No per-batch
host syncs; index order and augmentation are seeded by (seed, epoch), so an epoch replays exactly.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .sources import LTDataset

_AUG_KEYS = {"crop_padding", "flip"}


def _mix_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed from (seed, epoch) (numpy SeedSequence; LIB)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _crop_flip_index(B: int, H: int, W: int, p: int, flip: bool, generator: torch.Generator | None,
                     device: torch.device) -> torch.Tensor | None:
    """Flat source positions (B, H * W) into each (H + 2p) x (W + 2p) zero-padded image; None: identity.

    Draws, in this order, the row offsets (B, 1) and column offsets (B, 1) uniform in 0..2p (when p > 0),
    then the flips (B, 1) with probability 1/2 (when ``flip``): the stream that :func:`crop_flip` consumes.
    """
    if p <= 0 and not flip:
        return None
    ar_h, ar_w = torch.arange(H, device=device), torch.arange(W, device=device)
    if p > 0:
        oy = torch.randint(0, 2 * p + 1, (B, 1), device=device, generator=generator)
        ox = torch.randint(0, 2 * p + 1, (B, 1), device=device, generator=generator)
        rows, cols = oy + ar_h, ox + ar_w  # (B, H), (B, W)
    else:
        rows, cols = ar_h.expand(B, H), ar_w.expand(B, W)
    if flip:
        f = torch.rand(B, 1, device=device, generator=generator) < 0.5
        cols = torch.where(f, cols.flip(1), cols)
    return (rows[:, :, None] * (W + 2 * p) + cols[:, None, :]).reshape(B, H * W)


def crop_flip(x: torch.Tensor, crop_padding: int, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image, on x's device.

    x: (B, C, H, W) any dtype. Offsets uniform in 0..2*crop_padding (torchvision RandomCrop(padding=p));
    flip with probability 1/2 (RandomHorizontalFlip). One gather, no Python loop over images.
    """
    B, C, H, W = x.shape
    p = max(int(crop_padding), 0)
    idx = _crop_flip_index(B, H, W, p, flip, generator, x.device)
    if idx is None:
        return x
    if p > 0:
        x = F.pad(x, (p, p, p, p))
    return x.flatten(2).gather(2, idx[:, None, :].expand(B, C, H * W)).view(B, C, H, W)


class DeviceLoader:
    """Batches ``(x float32 (B, C, H, W) normalised, y int64 (B,))`` on ``device``.

    Order: ``sampler`` if given, else a seeded random permutation (train) or sequential (eval).
    ``augment``: None -> ``dataset.augment`` when training, nothing otherwise; ``{}``/False -> none; or a
    dict with ``crop_padding`` (int) and ``flip`` (bool). ``set_epoch(k)`` re-seeds order and augmentation
    with (seed, k) and calls ``sampler.set_epoch(k)``; every pass then advances the epoch by one, so a loop
    that never calls ``set_epoch`` still sees a new order each epoch. Lazy file-list datasets
    (``images is None``) are read through a torch DataLoader (``num_workers``) and augmented on device.
    """

    def __init__(self, dataset: LTDataset, batch_size: int, *, device: str | torch.device = "cpu",
                 train: bool = True, sampler: torch.utils.data.Sampler | None = None, drop_last: bool = False,
                 augment: dict[str, Any] | bool | None = None, seed: int = 0, channels_last: bool = False,
                 num_workers: int = 0) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if augment is None:
            augment = dataset.augment if train else {}
        augment = {} if augment is False else dict(augment)
        if set(augment) - _AUG_KEYS:
            raise ValueError(f"unknown augment keys {sorted(set(augment) - _AUG_KEYS)}; valid: {sorted(_AUG_KEYS)}")
        self.dataset, self.batch_size, self.train = dataset, int(batch_size), train
        self.sampler, self.drop_last, self.seed = sampler, drop_last, int(seed)
        self.device, self.channels_last, self.num_workers = torch.device(device), channels_last, num_workers
        self.crop_padding, self.flip = int(augment.get("crop_padding", 0)), bool(augment.get("flip", False))
        mean = torch.tensor(dataset.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), mean / std
        self.images = None if dataset.images is None else dataset.images.to(self.device)
        self.targets = torch.as_tensor(dataset.targets, dtype=torch.int64).to(self.device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (0-based): its order and augmentation depend only on (seed, epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _prepare(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        if self.train:
            x = crop_flip(x, self.crop_padding, self.flip, g)
        x = x.float().mul_(self._scale).sub_(self._shift)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        g = torch.Generator(device=self.device).manual_seed(_mix_seed(self.seed, epoch))
        if self.images is None:
            yield from self._iter_lazy(g, epoch)
            return
        n = len(self.dataset)
        if self.sampler is not None:
            order = torch.as_tensor(list(self.sampler), dtype=torch.int64).to(self.device)
        elif self.train:
            order = torch.randperm(n, device=self.device, generator=g)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            # index_select: a row gather, much faster on CPU than advanced indexing (same values)
            yield self._prepare(self.images.index_select(0, idx), g), self.targets.index_select(0, idx)

    def _iter_lazy(self, g: torch.Generator, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = self.sampler
        if sampler is None and self.train:
            sampler = torch.utils.data.RandomSampler(
                self.dataset, generator=torch.Generator().manual_seed(_mix_seed(self.seed, epoch)))
        dl = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler,
                                         drop_last=self.drop_last, num_workers=self.num_workers,
                                         pin_memory=self.device.type == "cuda")
        for x, y in dl:
            x = x.to(self.device, non_blocking=True)
            yield self._prepare(x, g), y.to(self.device, non_blocking=True)
