"""Updates whose numbers are still on the device, read in one go at the next log, evaluation or checkpoint step.

On a GPU, every `.item()` makes the host wait until the device has run everything queued so far, and then the
device idles while the host prepares the next step. So a training step only queues work: its loss, item count
and gradient norm stay on the device as a PendingUpdate, and the trainer reads all pending updates with one
transfer when it needs them (a log line, an evaluation, a checkpoint). A non-finite update has by then already
been dropped on the device (optim.step_unless_nonfinite); reading it late only delays the message about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tformer.training.guards import Window


@dataclass
class PendingUpdate:
    step: int
    lr: float  # the learning rate this update used
    window: Window
    # float64 [loss_sum, n_items, grad_norm] on the device; grad_norm is NaN when it was not computed
    numbers: torch.Tensor


@dataclass(frozen=True)
class ReadUpdate:
    """A PendingUpdate with its numbers on the host."""

    step: int
    lr: float
    window: Window
    loss_sum: float
    n_items: float
    grad_norm: float


def pending_update(step: int, lr: float, window: Window, grad_norm: torch.Tensor | None) -> PendingUpdate:
    """Bundles the update's device numbers into one small tensor (no host sync)."""
    assert window.totals is not None, "the trainer sets a window's totals before its update"
    norm = torch.full_like(window.totals[:1], torch.nan) if grad_norm is None else grad_norm.reshape(1)
    numbers = torch.cat([window.totals, norm.to(window.totals)])  # (a model without gradients: a CPU zero)
    return PendingUpdate(step, lr, window, numbers)


def read(pending: list[PendingUpdate]) -> list[ReadUpdate]:
    """The numbers of every pending update, oldest first, with one device-to-host transfer."""
    if not pending:
        return []
    rows = torch.stack([update.numbers for update in pending]).tolist()
    return [
        ReadUpdate(update.step, update.lr, update.window, loss_sum, n_items, grad_norm)
        for update, (loss_sum, n_items, grad_norm) in zip(pending, rows, strict=True)
    ]
