"""One training update, top to bottom: the micro-batches' forward and backward passes, then one optimizer step.

    for each of grad_accum_steps micro-batches:  loss_sum = task.loss(model, batch);  backward(loss_sum)
    gradients *= world_size / n_items            (the mean over the window's items on all processes)
    clip to clip_norm;  optimizer step unless the loss or the norm is non-finite;  scheduler step

Nothing here reads a number back from the device: the update's loss, item count and gradient norm come back as
a PendingUpdate that the trainer reads with others at its next log, evaluation or checkpoint step
(training/pending.py). A non-finite loss or gradient norm never reaches the weights: the optimizer drops the
update on the device (training/optim.py), and the trainer applies TrainConfig.nonfinite when it reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from tformer.training import guards
from tformer.training.distributed import all_reduce_sum
from tformer.training.losses import LossOutput
from tformer.training.optim import step_unless_nonfinite
from tformer.training.pending import PendingUpdate, pending_update
from tformer.training.run_state import RunState
from tformer.training.task_protocol import Batch, TrainingTask

# (epoch, batches of it consumed so far, batch), as micro_batches() yields them
MicroBatches = Iterator[tuple[int, int, Batch]]


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The mixed-precision context of TrainConfig.precision ("fp32": none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def one_update(
    run: RunState,
    task: TrainingTask,
    batches: MicroBatches,
    *,
    step: int,
    grad_accum_steps: int,
    clip_norm: float | None,
    precision: str,
) -> PendingUpdate:
    """Update number `step`: accumulate gradients over `grad_accum_steps` micro-batches, then apply them."""
    window = accumulate(run, task, batches, k=grad_accum_steps, precision=precision)
    lr = run.scheduler.lr  # the rate this update uses; the scheduler then moves to the next one
    grad_norm = apply_gradients(run, window, clip_norm=clip_norm)
    return pending_update(step, lr, window, grad_norm)


def accumulate(
    run: RunState, task: TrainingTask, batches: MicroBatches, *, k: int, precision: str
) -> guards.Window:
    """Forward/backward k micro-batches; the window's global loss and item totals, still on the device."""
    totals = torch.zeros(2, dtype=torch.float64, device=run.ctx.device)  # [loss_sum, n_items]
    window = guards.Window()
    for micro in range(k):
        epoch, consumed, batch = next(batches)
        # kept current per micro-batch, so a fault mid-window names the batch that caused it
        run.progress.epoch, run.progress.batch_in_epoch = epoch, consumed
        window.positions.append(guards.BatchPosition(epoch, consumed - 1))
        batch = batch.to(run.ctx.device)
        # DDP all-reduces gradients only on the window's last backward; no_sync must cover the forward too.
        is_last = micro == k - 1
        sync = contextlib.nullcontext() if is_last or run.ctx.world_size == 1 else run.train_model.no_sync()
        with sync:
            with autocast(precision, run.ctx.device):
                out = task.loss(run.train_model, batch)
            if not isinstance(out, LossOutput):
                raise TypeError(f"task.loss must return a LossOutput, got {type(out).__name__}")
            run.scaler.scale(out.loss_sum).backward()
        window.micro_losses.append(out.loss_sum.detach())
        totals[0] += window.micro_losses[-1].to(torch.float64)
        totals[1] += torch.as_tensor(out.n_items, device=run.ctx.device).to(torch.float64)
    all_reduce_sum(totals, run.ctx)
    window.totals = totals
    return window


def apply_gradients(run: RunState, window: guards.Window, *, clip_norm: float | None) -> torch.Tensor | None:
    """Normalise, clip and apply the accumulated gradients; returns the pre-clip gradient norm (None under fp16
    without clipping, where GradScaler checks finiteness itself)."""
    loss_sum, n_items = window.totals
    # Gradients hold the sum over the window's items (DDP averaged them over W processes): x W / N gives
    # the mean over all N items of the global window. A non-finite loss, or a window without items,
    # scales them by NaN instead, so that the one finiteness check below (or GradScaler's) drops it.
    usable = torch.isfinite(loss_sum) & (n_items > 0)
    scale = torch.where(usable, run.ctx.world_size / n_items, torch.nan).to(torch.float32)
    params = [p for p in run.model.parameters() if p.grad is not None]
    torch._foreach_mul_([param.grad for param in params], scale)
    run.scaler.unscale_(run.optimizer)
    grad_norm = None
    if clip_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
    if run.scaler.is_enabled():
        run.scaler.step(run.optimizer)  # skips the step if fp16 gradients overflowed (or were poisoned)
        run.scaler.update()
    else:
        # Every process holds the same all-reduced gradients, so all of them take the same decision.
        if grad_norm is None:
            grad_norm = guards.total_grad_norm(params)
        step_unless_nonfinite(run.optimizer, grad_norm)
    # a dropped update still counts as a step and the schedule moves on, as with fp16's overflow skips
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    return grad_norm
