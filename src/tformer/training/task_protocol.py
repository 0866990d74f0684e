"""What the Trainer asks of a task, and the endless stream of micro-batches it draws from one.

A task is anything with `train_batches`, `loss` and `evaluate` (TranslationTask, LanguageModelTask, the tests'
toy task), and optionally its own optimizer parameter groups; a batch is anything with `.to(device)`. The stream remembers how far into an epoch it is, which is
what a bit-exact resume needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import torch
from torch import nn

from tformer.training.distributed import DistributedContext
from tformer.training.losses import LossOutput
from tformer.training.optim import parameter_groups


class Batch(Protocol):
    def to(self, device: torch.device) -> Batch: ...


class TrainingTask(Protocol):
    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterable[Batch]:
        """Deterministic given (task seed, epoch, rank, world_size); each rank gets its shard of one order."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    # Optional: `parameter_groups(model, *, weight_decay) -> list[dict]`, the task's own optimizer groups
    # (layer-wise learning-rate decay, a frozen tower); see optimizer_groups.


def optimizer_groups(task: TrainingTask, model: nn.Module, *, weight_decay: float) -> list[dict[str, Any]]:
    """The task's own parameter groups when it defines them, else the default split (optim.parameter_groups):
    weight decay on matrices only."""
    own = getattr(task, "parameter_groups", None)
    if own is None:
        return parameter_groups(model, weight_decay=weight_decay)
    return own(model, weight_decay=weight_decay)


def micro_batches(
    task: TrainingTask, *, epoch: int, skip: int, ctx: DistributedContext
) -> Iterator[tuple[int, int, Batch]]:
    """Endless stream of (epoch, batches of that epoch consumed so far, batch), starting after `skip`."""
    while True:
        consumed = skip
        epoch_batches = task.train_batches(epoch, rank=ctx.rank, world_size=ctx.world_size)
        for batch in itertools.islice(epoch_batches, skip, None):
            consumed += 1
            yield epoch, consumed, batch
        if consumed == 0:
            raise ValueError(f"task.train_batches(epoch={epoch}, rank={ctx.rank}) yielded no batches")
        epoch, skip = epoch + 1, 0
