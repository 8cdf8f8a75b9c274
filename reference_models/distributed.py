"""torchrun support: process group set-up, rank helpers, gathering evaluation results.

Under ``torchrun --nproc_per_node=N -m latentdiag train ...`` the environment carries RANK,
WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; without them training runs as one process.
The backend is NCCL on CUDA and gloo elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_gather_tensors",
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "from_env",
    "setup",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """Read torchrun's environment; a plain process is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def setup(info: DistInfo, device: torch.device) -> None:
    """Join the process group when running under torchrun (no-op otherwise)."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_tensors(t: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``t`` (same shape everywhere), in rank order; ``[t]`` when alone.

    Tensors travel on the process group's device (CUDA under NCCL) and come back on ``t``'s.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [t]
    home = t.device
    if dist.get_backend() == "nccl":
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return [o.to(home) for o in out]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over processes (in place; returns it)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
