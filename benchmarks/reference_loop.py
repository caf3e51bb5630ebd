"""The standard research training loop, as the LDAM-DRW / MiSLAS / GCL code writes it (issue 8 baseline).

A torchvision-style ``Dataset`` over uint8 HWC numpy arrays; every image goes through PIL in a
``DataLoader`` worker: ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` + ``ToTensor()`` +
``Normalize(mean, std)`` (official ``cifar_train.py``). The loop is the official one: ``model(x)``,
cross-entropy, ``zero_grad`` / ``backward`` / ``step`` of ``SGD(momentum=0.9, weight_decay=2e-4)``
(official defaults), fp32, NCHW, and per-batch ``loss.item()`` + top-1 accuracy meters as the official
``train()`` keeps them. The model is ``ltlab.models.create_model(...)``, so both loops train the same
network. Used by ``benchmarks/bench_train.py`` (speed) and ``tests/test_speed_parity.py`` (accuracy).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch import nn


class ArrayImageDataset(torch.utils.data.Dataset):
    """``ds[i] -> (transform(PIL image), int label)`` over uint8 images (N, H, W, C) or (N, H, W).

    Like ``torchvision.datasets.CIFAR10``: the array stays uint8 HWC; ``Image.fromarray`` per item.
    """

    def __init__(self, images_hwc: np.ndarray, targets: Sequence[int], transform=None) -> None:
        images_hwc = np.asarray(images_hwc)
        if images_hwc.dtype != np.uint8 or images_hwc.ndim not in (3, 4):
            raise ValueError(f"images must be uint8 (N, H, W[, C]), got {images_hwc.dtype} {images_hwc.shape}")
        if images_hwc.ndim == 4 and images_hwc.shape[-1] == 1:
            images_hwc = images_hwc[..., 0]  # PIL mode "L" for grey images, as torchvision's MNIST does
        self.data, self.targets, self.transform = images_hwc, [int(t) for t in targets], transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.data[i])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[i]


def train_transform(size: int, padding: int, mean: Sequence[float], std: Sequence[float],
                    flip: bool = True) -> T.Compose:
    """The official CIFAR train transform: RandomCrop(size, padding) + flip + ToTensor + Normalize."""
    ops = [T.RandomCrop(size, padding=padding)] if padding > 0 else []
    ops += [T.RandomHorizontalFlip()] if flip else []
    return T.Compose(ops + [T.ToTensor(), T.Normalize(mean, std)])


def eval_transform(mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(mean, std)])


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, *, train: bool, num_workers: int = 2,
                device: torch.device | str = "cpu", seed: int = 0) -> torch.utils.data.DataLoader:
    """``DataLoader(shuffle=train, num_workers, pin_memory=cuda)`` as in the official scripts (seeded)."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=train, num_workers=num_workers,
                                       pin_memory=torch.device(device).type == "cuda", drop_last=False,
                                       generator=torch.Generator().manual_seed(seed) if train else None)


def make_optimizer(model: nn.Module, lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 2e-4) -> torch.optim.SGD:
    """``SGD(lr, momentum=0.9, weight_decay=2e-4)`` with PyTorch's default kernels (official code)."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, device: torch.device | str,
                max_batches: int | None = None) -> dict[str, float]:
    """One epoch of the official ``train()``: CE, SGD step, per-batch ``.item()`` meters.

    Returns ``{"loss", "acc", "images"}`` (means over the epoch; ``images`` seen). ``max_batches``
    stops early (benchmark warm-up only).
    """
    model.train()
    criterion = nn.CrossEntropyLoss()
    loss_sum, correct, seen = 0.0, 0, 0
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(x)
        loss = criterion(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * y.shape[0]  # AverageMeter.update(loss.item(), n): one sync per batch
        correct += (out.argmax(1) == y).sum().item()
        seen += y.shape[0]
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | str) -> tuple[np.ndarray, np.ndarray]:
    """The official ``validate()``: eval mode, no grad; returns predictions (M,) and labels (M,)."""
    model.eval()
    preds, labels = [], []
    for x, y in loader:
        out = model(x.to(device, non_blocking=True))
        preds.append(out.argmax(1).cpu().numpy())
        labels.append(y.numpy())
    return np.concatenate(preds), np.concatenate(labels)


def lr_at(epoch: int, base_lr: float, milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    """Step schedule: ``base_lr * gamma ** (number of milestones <= epoch)`` (0-based epoch)."""
    return base_lr * gamma ** sum(epoch >= m for m in milestones)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def hwc(images_nchw: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) tensor -> uint8 (N, H, W, C) numpy array (the layout torchvision keeps)."""
    return np.ascontiguousarray(images_nchw.permute(0, 2, 3, 1).numpy())


def fit_reference(model: nn.Module, train_set, test_set, *, epochs: int, batch_size: int = 128, lr: float = 0.1,
                  milestones: Sequence[int] = (), warmup_epochs: int = 0, eval_every: int = 1,
                  num_workers: int = 2, device: torch.device | str = "cpu", seed: int = 0,
                  eval_batch_size: int = 100, max_epochs: int | None = None) -> list[dict[str, float]]:
    """The official ``main()``: per epoch set the lr, train, and every ``eval_every`` epochs validate.

    lr: linear warm-up ``lr * (epoch + 1) / warmup_epochs`` for the first ``warmup_epochs`` (LDAM-DRW's
    ``adjust_learning_rate``), then the step schedule. ``max_epochs`` stops early (the schedule stays
    that of ``epochs``). Returns one row per evaluation: ``epoch``, ``train_loss``, ``acc``.
    """
    model.to(device)
    opt = make_optimizer(model, lr=lr)
    train_loader = make_loader(train_set, batch_size, train=True, num_workers=num_workers, device=device, seed=seed)
    test_loader = make_loader(test_set, eval_batch_size, train=False, num_workers=num_workers, device=device)
    rows = []
    for epoch in range(epochs if max_epochs is None else min(epochs, max_epochs)):
        set_lr(opt, lr * (epoch + 1) / warmup_epochs if epoch < warmup_epochs else lr_at(epoch, lr, milestones))
        out = train_epoch(model, train_loader, opt, device)
        if (epoch + 1) % eval_every == 0 or epoch == epochs - 1:
            preds, labels = evaluate(model, test_loader, device)
            rows.append({"epoch": epoch, "train_loss": out["loss"], "acc": float((preds == labels).mean())})
    return rows
