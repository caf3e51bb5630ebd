"""Multi-process training on PyTorch's own stack: torchrun environment, process group, sharded sampling.

``torchrun --nproc_per_node=N -m ltlab train ...`` starts N processes; :func:`setup` reads the
torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``), starts the
process group (nccl on CUDA, gloo on CPU) and puts each rank on its own device. ``batch_size`` stays
the GLOBAL batch: :class:`ltlab.data.samplers.ShardedSampler` cuts every global batch of the single-process order into
``world_size`` equal blocks, so the union over ranks of step t is exactly the single-process batch t
(docs/multi_gpu.md). Without torchrun (``WORLD_SIZE`` unset or 1) everything here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` (1 = single process), ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes the run directory, prints and calls callbacks."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def launched_distributed() -> bool:
    """True under torchrun with more than one process, or when a process group is already running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return _env_int("WORLD_SIZE", 1) > 1


def context() -> DistContext:
    """The current :class:`DistContext` (single process when no group with > 1 rank is running)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        rank = dist.get_rank()
        return DistContext(rank, dist.get_world_size(), _env_int("LOCAL_RANK", rank))
    return DistContext()


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """Start the process group from the torchrun environment (if needed) and pick this rank's device.

    ``device`` is the resolved single-process device: CUDA gives backend nccl and ``cuda:LOCAL_RANK``,
    CPU gives gloo. A group started by the caller (``dist.init_process_group``) is used as it is.
    """
    if not launched_distributed():
        return DistContext(), device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {var} is not set; start multi-process "
                                 f"runs with torchrun --nproc_per_node=N -m ltlab train ...")
        dist.init_process_group(backend)
    ctx = context()
    if device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={ctx.local_rank} but only {torch.cuda.device_count()} CUDA device(s) are "
                             f"visible; use --nproc_per_node <= {torch.cuda.device_count()}")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return ctx, device


def cleanup() -> None:
    """Destroy the process group if one is running (end of ``python -m ltlab train``)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(batch_size: int, ctx: DistContext) -> int:
    """Per-rank batch: the global ``batch_size`` divided by the world size (must divide exactly)."""
    if batch_size % ctx.world_size:
        raise ValueError(f"RunConfig.batch_size={batch_size} is the global batch and must be divisible by the "
                         f"number of processes ({ctx.world_size}); use e.g. batch_size="
                         f"{max(ctx.world_size, batch_size - batch_size % ctx.world_size)}")
    return batch_size // ctx.world_size


# ---------------------------------------------------------------------- reductions
def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum``, ``min`` or ``max``) over ranks; identity in a single process."""
    if context().enabled:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return t


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` in a single process)."""
    ctx = context()
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers_(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so all ranks evaluate one model."""
    if context().enabled:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def barrier() -> None:
    if context().enabled:
        dist.barrier()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (one collective)."""
    t = torch.tensor(int(bool(flag)), device=device)
    return bool(all_reduce_(t, "max"))
