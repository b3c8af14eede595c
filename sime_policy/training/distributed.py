"""Distributed training context: rank and world size from torchrun, the process group, cross-rank means."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and local rank of this process (from torchrun's environment variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "DistContext":
        """Read RANK / WORLD_SIZE / LOCAL_RANK (defaults: a single process)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        return cls(rank, world, int(os.environ.get("LOCAL_RANK", str(rank))))

    @property
    def is_main(self) -> bool:
        """True on the process that writes files (rank 0)."""
        return self.rank == 0


def init_distributed(ctx: DistContext, device: torch.device) -> bool:
    """Join the process group when running under torchrun; True if this call created it."""
    if ctx.world_size <= 1 or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=ctx.rank,
                            world_size=ctx.world_size)
    return True


def reduce_mean(value: torch.Tensor, ctx: DistContext) -> float:
    """Mean of a scalar tensor over all ranks (the value itself in a single process)."""
    if ctx.world_size > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world_size
    return float(value)
