"""The modules the loop calls: DDP-wrapped for training under torchrun, and compiled to static-shape graphs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .. import distributed

if TYPE_CHECKING:
    from ..config import RunConfig

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that replay CUDA graphs on GPU


def model_calls(call: nn.Module, config: RunConfig, device: torch.device,
                batch_sizes: tuple[int, int]) -> tuple[nn.Module, nn.Module]:
    """(train call, eval call) around ``call``: DDP-wrapped and/or compiled as configured; evaluation never goes
    through DDP.

    Compiled, each call sends batches of its loader's size (``batch_sizes`` = (train, eval)) through the
    compiled graph and any other size (the last, partial batch) through the same module eagerly, so one
    static-shape graph is built per mode instead of a dynamic-shape recompile for the odd batch. On CPU,
    ResNet-32: 2 graphs instead of 3 (see benchmarks/README.md).
    """
    train_call = call
    if distributed.context().enabled:
        train_call = nn.parallel.DistributedDataParallel(call, device_ids=[device.index] if device.type == "cuda"
                                                         else None)
    if not config.compile:
        return train_call, call
    mode = None if config.compile is True else config.compile  # True: torch.compile's default mode
    compiled = torch.compile(train_call, mode=mode, dynamic=False)
    compiled_eval = compiled if train_call is call else torch.compile(call, mode=mode, dynamic=False)
    graphs = mode in CUDA_GRAPH_MODES
    return (OneShapeCall(compiled, train_call, batch_sizes[0], cuda_graphs=graphs),
            OneShapeCall(compiled_eval, call, batch_sizes[1], cuda_graphs=graphs))


class OneShapeCall(nn.Module):
    """``compiled(x)`` for batches of ``batch_size`` items, ``eager(x)`` (the same weights) for any other size.

    ``eager`` is registered as ``_orig_mod``, so ``.train()``/``.eval()`` reach the real modules and
    :func:`~ltlab.engine.loop.unwrap` finds the plain model. ``cuda_graphs``: the compiled call replays CUDA
    graphs (modes in ``CUDA_GRAPH_MODES``), so every call starts a new step
    (``torch.compiler.cudagraph_mark_step_begin``) and its outputs live until the next call: callers copy what
    they keep (``evaluate`` does).
    """

    def __init__(self, compiled: Callable, eager: nn.Module, batch_size: int, *, cuda_graphs: bool = False):
        super().__init__()
        self._orig_mod = eager
        object.__setattr__(self, "compiled", compiled)  # not a submodule: it wraps ``eager`` again
        self.batch_size, self.cuda_graphs = int(batch_size), cuda_graphs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.batch_size:
            return self._orig_mod(x)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(x)
