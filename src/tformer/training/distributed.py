"""torchrun / DDP setup: one context object that says who this process is and where it computes.

Launched by ``torchrun`` the environment holds RANK, WORLD_SIZE and LOCAL_RANK; without them the run is a
single process and every helper here degrades to a no-op, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is in the job. ``owns_process_group``: init_distributed created it, cleanup ends it."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    is_main: bool
    owns_process_group: bool = False


def resolve_device(device: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; anything else must name a device torch knows."""
    if not isinstance(device, str):
        raise TypeError(
            f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {type(device).__name__}"
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return resolved


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(
            f"environment variable {name}={value!r} must be an integer (set by torchrun)"
        ) from err


def init_distributed(device: str) -> DistributedContext:
    """Read torchrun's environment and join the process group (nccl on CUDA, gloo on CPU).

    Without torchrun's variables this is a single process on ``resolve_device(device)``. Under torchrun on
    CUDA each process takes the GPU of its LOCAL_RANK. A process group that the caller already initialised
    is reused and left for the caller to destroy.
    """
    base = resolve_device(device)
    if not all(name in os.environ for name in _TORCHRUN_VARS):
        return DistributedContext(rank=0, local_rank=0, world_size=1, device=base, is_main=True)
    rank, world_size, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"torchrun environment is inconsistent: RANK={rank}, WORLD_SIZE={world_size}")
    if base.type == "cuda":
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise ValueError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")
        dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo")
        owns = True
    return DistributedContext(
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        device=base,
        is_main=rank == 0,
        owns_process_group=owns,
    )


def wrap_ddp(model: nn.Module, ctx: DistributedContext) -> nn.Module:
    """DistributedDataParallel around ``model`` when there is more than one process, else ``model`` itself."""
    if ctx.world_size == 1:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; returns it for chaining."""
    if ctx.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_from_main(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Overwrite ``tensor`` on every process with rank 0's value, in place (rank-0-only results, e.g. eval)."""
    if ctx.world_size > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def cleanup(ctx: DistributedContext) -> None:
    """Destroy the process group if init_distributed created it."""
    if ctx.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()
