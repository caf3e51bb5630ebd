"""The optimiser and the image loaders of a run (its datasets and model come from :mod:`ltlab.build` and
its stage)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import distributed
from ..data import DeviceLoader, create_sampler
from ..data.samplers import ShardedSampler

if TYPE_CHECKING:
    from ..config import RunConfig


def make_sgd(params, config: RunConfig, device: torch.device) -> torch.optim.SGD:
    """SGD as the official recipes use it; one fused kernel per step on CUDA, multi-tensor (foreach) on CPU."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.nesterov and config.momentum > 0, **fast)


def make_sampler(config: RunConfig, train_ds):
    """The training sampler of ``config`` (None: the loader's own seeded permutation)."""
    if config.sampler == "instance" and not config.sampler_params:
        return None
    kw = dict(config.sampler_params)
    if config.sampler == "progressive":
        kw.setdefault("num_epochs", config.epochs)
    return create_sampler(config.sampler, train_ds.targets, seed=config.seed, **kw)


def image_loaders(config: RunConfig, train_ds, test_ds, device: torch.device) -> tuple[DeviceLoader, DeviceLoader]:
    """Train and test :class:`DeviceLoader`; under DDP this rank's shards (train: ShardedSampler over the
    global order with the per-rank batch; test: every world_size-th item, gathered after evaluation)."""
    ctx = distributed.context()
    sampler = make_sampler(config, train_ds)
    if ctx.enabled:
        if len(test_ds) < ctx.world_size:
            raise ValueError(f"the test split has {len(test_ds)} items, fewer than the {ctx.world_size} processes")
        sampler = ShardedSampler(sampler, len(train_ds), rank=ctx.rank, world_size=ctx.world_size,
                                 batch_size=config.batch_size, seed=config.seed, targets=train_ds.targets,
                                 device=device if train_ds.images is not None else "cpu")
        test_ds = test_ds.subset(np.arange(ctx.rank, len(test_ds), ctx.world_size))
    augment = None if config.augment else {}
    train_loader = DeviceLoader(train_ds, distributed.local_batch_size(config.batch_size, ctx), device=device,
                                train=True, sampler=sampler, seed=config.seed, channels_last=config.channels_last,
                                augment=augment, num_workers=config.num_workers)
    test_loader = DeviceLoader(test_ds, max(config.batch_size, 256), device=device, train=False,
                               channels_last=config.channels_last, num_workers=config.num_workers)
    return train_loader, test_loader
