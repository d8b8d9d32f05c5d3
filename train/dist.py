"""Process-group helpers: the trainer runs alone or under ``torchrun`` with the same code.

Collectives here work on gloo (CPU) and nccl (CUDA). :func:`gather_with_grad` exists because
a plain ``all_gather`` returns tensors with no autograd history, so negatives that come from
other ranks would contribute nothing to this rank's gradient (SPEC §6: "a known trap").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from headcam.shards.read import rank_world


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return rank_world()[1]


def rank() -> int:
    return rank_world()[0]


def pick_device(choice: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is a user error upstream."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def setup(device_choice: str) -> DistEnv:
    """Join the process group that ``torchrun`` describes in the environment (if any).

    gloo on CPU, nccl on CUDA; under torchrun each rank uses GPU ``LOCAL_RANK``.
    """
    device = pick_device(device_choice)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not is_distributed():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if
                                device.type == "cuda" else None)
    return DistEnv(rank=rank(), world=world_size(), local_rank=local_rank, device=device)


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sends each rank the summed gradient of its own slice.

    Backward is an all-reduce (SUM) of the full gradient followed by taking this rank's slice,
    rather than a reduce-scatter, because gloo has no reduce-scatter.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (same shape on every rank) from all ranks, in rank order, keeping gradient."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks in rank order, without autograd (MoCo keys, shuffles)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (preemption, NaN). A sync point."""
    if world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()
