"""Several GPUs (or CPU processes) with PyTorch's own DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node N -m minidiff.training train ...`` starts N copies of the same program
and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in each. Every copy holds the whole model;
each computes the gradient on its own ``1/N`` of the global batch, and DDP averages the gradients
across copies during ``backward`` (an all-reduce), so every copy takes the same optimizer step as
one process would with the whole batch. The rule for the batch: the global batch size must be
divisible by the number of processes (``shard_size`` checks it).

What must differ across copies, differs: each draws its own dropout masks (a seed of its own per
step, :func:`rank_seed`), and its shard of the global batch's timesteps and noise. What must
agree, agrees: the recorded loss is the mean over all copies (:func:`all_reduce_mean`), and one
copy (rank 0) writes the checkpoint, the log and the sample grids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._validation import check_positive_int

__all__ = [
    "DistInfo",
    "init_distributed",
    "shard_size",
    "wrap_ddp",
    "barrier",
    "cleanup",
    "all_reduce_mean",
    "any_rank",
    "rank_seed",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` in ``0..world_size-1``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, sample grids and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (``nccl`` for CUDA,
    ``gloo`` for the CPU); return ``DistInfo()`` (one process) when ``WORLD_SIZE`` is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def shard_size(global_batch: int, world_size: int) -> int:
    """Per-process batch ``global_batch / world_size``, both positive ints (``TypeError`` /
    ``ValueError`` naming them otherwise); ``ValueError`` unless it divides exactly (unequal
    shards would weight the examples of the smaller shards more after averaging)."""
    check_positive_int(global_batch, "batch_size")
    check_positive_int(world_size, "world_size")
    if global_batch % world_size:
        raise ValueError(
            f"batch_size={global_batch} (the global batch) must be divisible by the number of "
            f"processes world_size={world_size}; use e.g. batch_size="
            f"{max(world_size, global_batch - global_batch % world_size)}"
        )
    return global_batch // world_size


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when running distributed, else ``model`` itself."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else info.local_rank]
    return DistributedDataParallel(model, device_ids=ids if device.type == "cuda" else None)


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.distributed and dist.is_initialized():
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: Tensor, info: DistInfo) -> Tensor:
    """The mean of ``values`` over all processes (``values`` itself for one process): each
    process's loss is that of its shard, and the loss of the step is their mean."""
    if not info.distributed or not dist.is_initialized():
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / info.world_size


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (so that all stop at the same step)."""
    if not info.distributed or not dist.is_initialized():
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def rank_seed(seed: int, step: int, rank: int) -> int:
    """A seed for the global RNG of process ``rank`` at optimizer step ``step``: a function of
    the step alone, so that a resumed run (on any number of processes) draws the same dropout
    masks, and different across processes, so that copies draw independent ones.

    The value is ``((seed * 1_000_003 + step) * 65_537 + rank) mod 2**63``: distinct for distinct
    ``(seed, step, rank)`` with ``0 <= rank < 65_537``, ``0 <= step < 1_000_003`` and
    ``0 <= seed < 10**8``. Beyond these ranges two triples can share a seed
    (``rank_seed(0, 1_000_003, 0) == rank_seed(1, 0, 0)``).
    """
    return ((seed * 1_000_003 + step) * 65_537 + rank) % 2**63
