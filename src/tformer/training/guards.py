"""What the trainer does when a step goes wrong, so that an unattended run fails in a way its owner can act on.

- A non-finite loss or gradient norm never reaches the weights: the optimizer drops that update on the device
  (training/optim.py). When the trainer next reads its numbers (at the next log, evaluation or checkpoint step,
  always before a checkpoint is written), TrainConfig.nonfinite="stop" raises NonFiniteLossError naming the
  step and the batch; "skip" counts the dropped update and goes on.
- A GPU out-of-memory error becomes one line with advice (TrainingOutOfMemoryError, still a
  torch.OutOfMemoryError for code that catches that).
- Any other OSError (an unwritable or full output directory) keeps its errno and gains the step and the last
  good checkpoint, which checkpoint.py's atomic writes leave complete and unchanged.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

NONFINITE_POLICIES = ("stop", "skip")
# In "skip" mode a run whose every update is non-finite has diverged; it stops rather than spin for hours.
MAX_CONSECUTIVE_SKIPS = 20


class NonFiniteLossError(ValueError):
    """The loss or the gradients of an update were NaN or infinite and the run stopped."""


class TrainingOutOfMemoryError(torch.OutOfMemoryError):
    """The device ran out of memory during a training step; the message says what to change."""


@dataclass(frozen=True)
class BatchPosition:
    """Where a micro-batch sits in the data: its epoch and its index in that epoch, both counted from 0."""

    epoch: int
    index: int

    def __str__(self) -> str:
        return f"epoch {self.epoch}, batch index {self.index}"


def position_of(epoch: int, batch_in_epoch: int) -> str:
    """The batch a run took last, from its progress counters (batch_in_epoch counts the consumed ones)."""
    if batch_in_epoch == 0:
        return f"epoch {epoch}, before its first batch"
    return str(BatchPosition(epoch, batch_in_epoch - 1))


def last_good(path: Path, saved_step: int | None) -> str:
    """Names the last good checkpoint for an error message."""
    if saved_step is None:
        return "no checkpoint has been written yet"
    return f"the last good checkpoint is {path} (step {saved_step}), unchanged"


@dataclass
class Window:
    """One update's micro-batches: each one's position and loss, and the loss and item totals over all
    processes. The tensors stay on the device: the trainer reads them at its next log, evaluation or checkpoint
    step (training/pending.py), not per update."""

    positions: list[BatchPosition] = field(default_factory=list)
    micro_losses: list[torch.Tensor] = field(default_factory=list)  # detached, on the device
    totals: torch.Tensor | None = None  # float64 [loss_sum, n_items], summed over processes, on the device

    def describe(self) -> str:
        if len(self.positions) == 1:
            return str(self.positions[0])
        return f"micro-batches from {self.positions[0]} to {self.positions[-1]}"

    def first_nonfinite(self) -> str:
        """The first micro-batch whose loss is not finite on this process (read only on failure)."""
        for loss, position in zip(self.micro_losses, self.positions, strict=True):
            value = loss.item()
            if not math.isfinite(value):
                return f"{position}, loss sum {value}"
        # Only the all-reduced total was non-finite: the bad micro-batch belongs to another process.
        return f"{self.describe()} on this process; the non-finite loss came from another process"


def total_grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together, as clip_grad_norm_ computes it (for runs without clipping)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


@dataclass
class NonFiniteGuard:
    """Applies the TrainConfig.nonfinite policy to non-finite updates; stops a run that only skips."""

    policy: str
    skipped_in_a_row: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.policy not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite policy must be one of {NONFINITE_POLICIES}, got {self.policy!r}")

    def reject(self, *, what: str, step: int, where: str, last_good: str) -> None:
        """An update is non-finite: raise NonFiniteLossError ("stop", or too many skips in a row) or return,
        and the caller drops the update. `what` names the bad value, `where` the batch.
        """
        problem = f"{what} at step {step} ({where})"
        if self.policy == "stop":
            raise NonFiniteLossError(
                f"training stopped: {problem}; {last_good}. Resume with a lower learning rate or stronger "
                "clipping (train.lr, train.clip_norm), or set train.nonfinite=skip to skip such updates"
            )
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteLossError(
                f"training stopped: {problem} is the {MAX_CONSECUTIVE_SKIPS}th non-finite update in a row, "
                f"so the run has diverged; {last_good}. Resume with a lower learning rate (train.lr)"
            )

    def passed(self) -> None:
        """An update was applied: the run of skips is broken."""
        self.skipped_in_a_row = 0


_MEMORY_ADVICE = (
    "use less memory per micro-batch: a smaller batch (the task's batch size or data.max_tokens) with a larger "
    "train.grad_accum_steps to keep the effective batch, a smaller model, or precision=bf16 where the GPU has it"
)


@contextlib.contextmanager
def explain_faults(*, step: int, out_dir: Path, context: Callable[[], str]) -> Iterator[None]:
    """Re-raise an out-of-memory or OS error from inside as a one-line error naming the step and `context()`.

    `context` is called only on failure; it says where the data is and which checkpoint is the last good one.
    """
    try:
        yield
    except torch.OutOfMemoryError as error:
        if isinstance(error, TrainingOutOfMemoryError):
            raise
        first_line = (str(error).strip().splitlines() or ["out of memory"])[0]
        raise TrainingOutOfMemoryError(
            f"out of memory at step {step} ({context()}): {first_line} To fix it, {_MEMORY_ADVICE}"
        ) from error
    except OSError as error:
        reason = error.strerror or str(error)
        if error.filename is not None and str(error.filename) not in reason:
            reason = f"{reason}: {error.filename}"
        # OSError(errno, message) keeps the subclass (PermissionError for EACCES, ...) for callers that check it
        raise OSError(
            error.errno,
            f"training stopped at step {step} ({context()}): {reason}. Free disk space or make {out_dir} "
            "writable, then continue with --resume",
        ) from error
