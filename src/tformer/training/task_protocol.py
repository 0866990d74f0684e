"""What the Trainer asks of a task, and the endless stream of micro-batches it draws from one.

A task is anything with `train_batches`, `loss` and `evaluate` (TranslationTask, LanguageModelTask, the tests'
toy task); a batch is anything with `.to(device)`. The stream remembers how far into an epoch it is, which is
what a bit-exact resume needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Protocol

import torch
from torch import nn

from tformer.training.distributed import DistributedContext
from tformer.training.losses import LossOutput


class Batch(Protocol):
    def to(self, device: torch.device) -> Batch: ...


class TrainingTask(Protocol):
    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterable[Batch]:
        """Deterministic given (task seed, epoch, rank, world_size); each rank gets its shard of one order."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...


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
