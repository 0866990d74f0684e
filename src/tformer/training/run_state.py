"""What one Trainer.fit() call carries from step to step, and what it returns.

`Progress` is the part a checkpoint stores (as a plain JSON mapping, `to_dict`), so that a resumed run continues
exactly where the interrupted one stopped; `from_dict` reads it back and checks every field, because a
checkpoint may come from anywhere. The rest of `RunState` lives only as long as the process.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tformer.training import guards
from tformer.training.distributed import DistributedContext
from tformer.training.logging import RunLogger
from tformer.training.pending import PendingUpdate


@dataclass
class Progress:
    """The counters of a run, over resumes."""

    step: int = 0  # updates made
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` already consumed: resume skips exactly that many
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    skipped_steps: int = 0  # updates dropped for a non-finite loss or gradient (TrainConfig.nonfinite="skip")
    train_seconds: float = 0.0  # wall time in training updates (not evaluation or checkpoints)
    eval_seconds: float = 0.0  # wall time in periodic evaluations and checkpoint writes
    # the updates a budgeted run fixed after timing its first ones (budget.py)
    planned_steps: int | None = None
    budget_mark_seconds: float = 0.0  # train_seconds when a budgeted run's timed calibration window began

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, stored: Any, *, source: Path | str) -> Progress:
        """The progress a checkpoint at `source` stored, each field checked; fields added to Progress after the
        file was written take their defaults, as a run that never used them would have them."""
        if not isinstance(stored, dict):
            raise ValueError(f"{source}: progress must be a mapping, found {type(stored).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(stored) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown progress field(s) {unknown} (valid: {', '.join(known)})")
        missing = [name for name in ("step", "epoch", "batch_in_epoch") if name not in stored]
        if missing:
            raise ValueError(f"{source}: progress lacks {', '.join(missing)}, which a resume needs")
        for name, value in stored.items():
            _check_field(source, name, value)
        return cls(**stored)


_COUNTS = ("step", "epoch", "batch_in_epoch", "bad_evals", "skipped_steps")
_SECONDS = ("train_seconds", "eval_seconds", "budget_mark_seconds")
_OPTIONAL_COUNTS = ("best_step", "planned_steps")


def _check_field(source: Path | str, name: str, value: Any) -> None:
    def fail(valid: str) -> None:
        raise ValueError(f"{source}: progress.{name} must be {valid}, got {value!r}")

    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name in _COUNTS and not (is_int and value >= 0):
        fail("an int >= 0")
    if name in _OPTIONAL_COUNTS and value is not None and not (is_int and value >= 0):
        fail("an int >= 0 or null")
    if name in _SECONDS and not (is_number and math.isfinite(value) and value >= 0):
        fail("a finite number of seconds >= 0")
    if name == "best_metric" and value is not None and not is_number:
        fail("a number or null")


@dataclass
class Interval:
    """What the log line at the end of a log interval averages: the finite losses and the time since the last
    one (an update skipped for a non-finite loss adds its seconds only)."""

    loss_sum: float = 0.0
    n_items: float = 0.0
    seconds: float = 0.0


@dataclass
class FitResult:
    step: int
    best_metric: float | None
    best_step: int | None
    history: list[dict[str, Any]]  # the records logged by this fit() call (train and eval)
    progress: Progress = field(default_factory=Progress)  # the final counters, over resumes


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
    progress: Progress
    guard: guards.NonFiniteGuard
    saved_step: int | None  # the step of out_dir/last.safetensors, the last good checkpoint; None: none yet
    history: list[dict[str, Any]] = field(default_factory=list)
    interval: Interval = field(default_factory=Interval)  # since the last log line
    pending: list[PendingUpdate] = field(default_factory=list)  # updates whose numbers are not read yet
    pending_since: float = 0.0  # perf_counter() when the oldest pending update started
