"""What one Trainer.fit() call carries from step to step, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tformer.training import guards
from tformer.training.distributed import DistributedContext
from tformer.training.logging import RunLogger
from tformer.training.pending import PendingUpdate


@dataclass
class FitResult:
    step: int
    best_metric: float | None
    best_step: int | None
    history: list[dict[str, Any]]  # the records logged by this fit() call (train and eval)
    # the final progress: steps, epoch, train_seconds, eval_seconds, planned_steps of a budgeted run
    progress: dict[str, Any] = field(default_factory=dict)


def fresh_progress() -> dict[str, Any]:
    # batch_in_epoch counts the batches of `epoch` already consumed: resume skips exactly that many.
    return {
        "step": 0,
        "epoch": 0,
        "batch_in_epoch": 0,
        "best_metric": None,
        "best_step": None,
        "bad_evals": 0,
        "skipped_steps": 0,  # updates dropped for a non-finite loss or gradient (TrainConfig.nonfinite="skip")
        "train_seconds": 0.0,  # wall time in training updates (not evaluation or checkpoints), over resumes
        "eval_seconds": 0.0,  # wall time in periodic evaluations and checkpoint writes, over resumes
        "planned_steps": None,  # the updates a budgeted run fixed after timing its first ones (training/budget.py)
        "budget_mark_seconds": 0.0,  # train_seconds when a budgeted run's timed calibration window began
    }


@dataclass
class RunState:
    """Everything one fit() call builds; passed around instead of a dozen arguments."""

    ctx: DistributedContext
    model: nn.Module  # the unwrapped module: checkpoints and evaluation use it, canonical names
    train_model: nn.Module  # compiled and/or DDP-wrapped view of the same parameters
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    logger: RunLogger
    progress: dict[str, Any]
    guard: guards.NonFiniteGuard
    saved_step: int | None  # the step of out_dir/last.safetensors, the last good checkpoint; None: none yet
    history: list[dict[str, Any]] = field(default_factory=list)
    # since the last log line; an update skipped for a non-finite loss adds its seconds only
    interval: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("loss_sum", "n_items", "seconds"), 0.0)
    )
    pending: list[PendingUpdate] = field(default_factory=list)  # updates whose numbers are not read yet
    pending_since: float = 0.0  # perf_counter() when the oldest pending update started
