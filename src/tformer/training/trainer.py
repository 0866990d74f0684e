"""Trainer.fit(): one short, linear training loop that any task plugs into through TrainingTask.

Per update (training/step.py, readable top to bottom): take ``grad_accum_steps`` micro-batches, backward each
one's *summed* loss, then divide the gradients once by the window's item count summed over all processes, so k
micro-batches on W processes equal one batch of k*W micro-batches exactly (up to float rounding); clip, step,
schedule. Then, here: log; every ``eval_every`` evaluate (best checkpoint, plateau schedule, early stopping);
every ``checkpoint_every`` and at the end save everything a bit-exact resume needs, including the data position
and the RNG state. The run's counters are one typed record, Progress (training/run_state.py), which checkpoints
store and a resume reads back with every field checked.

A step only queues work on the device: its loss, item count and gradient norm are read in one go at the next
log, evaluation or checkpoint step (training/pending.py), so the host never waits for the GPU in between.

Faults (training/guards.py): a non-finite loss or gradient norm never changes the weights (the update is dropped
on the device); when it is read, it stops the run or is counted as skipped (TrainConfig.nonfinite), always
before the next checkpoint is written. Out-of-memory and OS errors become one-line messages naming the step, the
batch and the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

import tformer
from tformer.seeding import capture_rng_state, restore_rng_state, seed_everything
from tformer.training import budget, guards
from tformer.training.checkpoint import load_checkpoint, restore_training_state, save_checkpoint
from tformer.training.distributed import (
    DistributedContext,
    broadcast_from_main,
    cleanup,
    init_distributed,
    resolve_device,
    wrap_ddp,
)
from tformer.training.logging import RunLogger
from tformer.training.optim import build_optimizer
from tformer.training.pending import ReadUpdate, read
from tformer.training.rotation import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    link_or_copy,
    numbered_checkpoint,
    prune_numbered,
)
from tformer.training.run_state import FitResult, Interval, Progress, RunState
from tformer.training.schedules import DECAYING_TO_TOTAL, build_scheduler
from tformer.training.step import MicroBatches, autocast, one_update
from tformer.training.task_protocol import TrainingTask, micro_batches, optimizer_groups
from tformer.training.train_config import (  # TrainConfig is also imported from here by tasks and tests
    TrainConfig,
    resolve_auto_settings,
)


class Trainer:
    """Trains `model` on `task` with `config`; writes logs and checkpoints to `out_dir`."""

    def __init__(
        self,
        model: nn.Module,
        task: TrainingTask,
        config: TrainConfig,
        *,
        out_dir: Path,
        run_config: dict[str, Any],
        task_state: str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(run_config, dict):
            raise TypeError(
                f"run_config must be a dict (the resolved run config), got {type(run_config).__name__}"
            )
        device = resolve_device(config.device)
        config = resolve_auto_settings(config, device)
        if config.precision != "fp32" and device.type != "cuda":
            raise ValueError(
                f"TrainConfig.precision={config.precision!r} needs a CUDA device, but device is {device.type!r}; "
                "use precision='fp32' on this device"
            )
        self.model = model
        self.task = task
        self.config = config
        self.out_dir = Path(out_dir)
        self.run_config = run_config
        self.task_state = task_state  # the task's JSON every checkpoint carries (tokenizers)
        self.clock = budget.BudgetClock(
            minutes=config.budget_minutes,
            calibration_steps=config.budget_calibration_steps,
            max_steps=config.max_steps,
            warmup_steps=config.schedule.warmup_steps,
            decays=config.schedule.kind in DECAYING_TO_TOTAL,
        )

    def fit(self, *, resume: bool = False) -> FitResult:
        """Train until max_steps or early stopping; ``resume`` continues exactly from out_dir/last.safetensors."""
        ctx = init_distributed(self.config.device)
        try:
            run = self._setup(ctx, resume=resume)
            try:
                self._loop(run)
            finally:
                run.logger.close()
            progress = run.progress
            return FitResult(progress.step, progress.best_metric, progress.best_step, run.history, progress)
        finally:
            cleanup(ctx)

    def _setup(self, ctx: DistributedContext, *, resume: bool) -> RunState:
        cfg = self.config
        seed_everything(cfg.seed + ctx.rank)  # distinct dropout streams per rank
        model = self.model.to(ctx.device)
        groups = optimizer_groups(self.task, model, weight_decay=cfg.weight_decay)
        optimizer = build_optimizer(
            model, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, groups=groups
        )
        scheduler = build_scheduler(optimizer, cfg.schedule)
        scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.precision == "fp16")
        progress = Progress()
        last = self.out_dir / LAST_CHECKPOINT
        resumed = resume and last.exists()
        if resumed:
            ckpt = load_checkpoint(last)
            progress = Progress.from_dict(ckpt.progress, source=last)
            if self.clock.minutes is not None and self.clock.decays and progress.planned_steps is not None:
                scheduler.set_total_steps(progress.planned_steps)  # the interrupted run's plan, not a new one
            restore_training_state(
                ckpt,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler if scaler.is_enabled() else None,
            )
            if ctx.rank == 0 and ckpt.rng_state is not None:
                restore_rng_state(ckpt.rng_state)
            else:
                # Only rank 0's RNG is checkpointed; other ranks get a fresh stream tied to the resume step.
                seed_everything((cfg.seed + ctx.rank + 1_000_003 * progress.step) % 2**32)
        logger = RunLogger(
            self.out_dir,
            enabled=ctx.is_main,
            start_step=progress.step,
            total_steps=self.clock.last_step(progress),
            progress_bar=cfg.progress_bar,
        )
        if resumed:
            logger.info(f"resuming from {last} at step {progress.step}")
            # compare as the checkpoint stores it: JSON turned tuples into lists
            if ckpt.run_config != json.loads(json.dumps(self.run_config, default=str)):
                logger.warning(f"the run config differs from the one stored in {last}")
        elif resume:
            logger.info(f"no {last} to resume from; starting a fresh run")
        logger.write_run_info(self._run_info(ctx, resumed_from=progress.step if resumed else None))
        train_model = torch.compile(model) if cfg.compile else model
        train_model = wrap_ddp(train_model, ctx)
        guard, saved_step = guards.NonFiniteGuard(cfg.nonfinite), progress.step if resumed else None
        return RunState(
            ctx, model, train_model, optimizer, scheduler, scaler, logger, progress, guard, saved_step
        )

    def _run_info(self, ctx: DistributedContext, *, resumed_from: int | None) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "tformer": tformer.__version__,
            "device": str(ctx.device),
            "device_name": torch.cuda.get_device_name(ctx.device)
            if ctx.device.type == "cuda"
            else platform.processor(),
            "world_size": ctx.world_size,
            "resumed_from_step": resumed_from,
            "train_config": asdict(self.config),
            "run_config": self.run_config,
        }

    def _loop(self, run: RunState) -> None:
        progress = run.progress
        batches = micro_batches(self.task, epoch=progress.epoch, skip=progress.batch_in_epoch, ctx=run.ctx)
        stop = self._patience_exhausted(progress)
        run.model.train()
        while progress.step < self.clock.last_step(progress) and not stop:
            step = progress.step + 1
            with guards.explain_faults(step=step, out_dir=self.out_dir, context=lambda: self._where(run)):
                stop = self._step(run, step, batches)
        if self.clock.minutes is not None:
            run.logger.info(budget.spending_summary(progress, budget_minutes=self.clock.minutes))

    def _plan_budget(self, run: RunState, step: int) -> None:
        """Close the budget's calibration window: fix the run's updates, end the schedule's decay there, say so."""
        plan = self.clock.plan(step, run.progress)
        if self.clock.decays:
            run.scheduler.set_total_steps(plan.steps)
        run.logger.set_total(plan.steps)
        run.logger.info(plan.describe())
        record = {"budget_planned_steps": plan.steps, "budget_seconds_per_update": plan.seconds_per_update}
        self._record(run, {"step": step, **record})

    def _step(self, run: RunState, step: int, batches: MicroBatches) -> bool:
        """One update (training/step.py), then its log line, evaluation and checkpoint when due; returns True
        when early stopping triggers. Only those three read anything back from the device."""
        cfg, progress = self.config, run.progress
        if not run.pending:
            run.pending_since = time.perf_counter()
        run.pending.append(
            one_update(
                run,
                self.task,
                batches,
                step=step,
                grad_accum_steps=cfg.grad_accum_steps,
                clip_norm=cfg.clip_norm,
                precision=cfg.precision,
            )
        )
        progress.step = step
        run.logger.advance()
        due = self.clock.due(step, progress)
        last = self.clock.last_step(progress)
        evaluate = step % cfg.eval_every == 0 or step == last  # the final model is always evaluated
        save = step % cfg.checkpoint_every == 0 or step == last
        if step % cfg.log_every == 0 or evaluate or save or due:
            self._settle(run)
        if due == "mark":
            progress.budget_mark_seconds = progress.train_seconds
        elif due == "plan":
            self._plan_budget(run, step)
        started = time.perf_counter()
        stop = self._evaluate(run, step) if evaluate else False
        if save or stop:
            self._save_periodic(run, step)
        progress.eval_seconds += time.perf_counter() - started
        return stop

    def _settle(self, run: RunState) -> None:
        """Read the pending updates from the device and account for them in order: a non-finite one stops the
        run or is counted as skipped (TrainConfig.nonfinite), the others add to the interval's mean loss; at a
        log step, write the log line."""
        updates = read(run.pending)
        seconds = time.perf_counter() - run.pending_since  # the device has finished them: read() waited
        run.pending = []
        run.interval.seconds += seconds
        run.progress.train_seconds += seconds
        for update in updates:
            self._account(run, update)
        last, items = updates[-1], sum(update.n_items for update in updates)
        run.logger.show(
            loss=f"{last.loss_sum / last.n_items:.4f}", lr=f"{last.lr:.3g}", items_s=f"{items / seconds:.0f}"
        )
        if last.step % self.config.log_every == 0:
            self._log_interval(run, last)

    def _account(self, run: RunState, update: ReadUpdate) -> None:
        """One update as read: count its finite loss in the interval, and apply TrainConfig.nonfinite to it."""
        step, window = update.step, update.window
        if update.n_items <= 0:
            raise ValueError(
                f"training stopped at step {step}: {window.describe()} hold no items "
                f"(n_items={update.n_items}); task.loss must count the items its loss sums over"
            )
        if not math.isfinite(update.loss_sum):
            what, where = f"non-finite loss ({update.loss_sum})", window.first_nonfinite()
        else:
            run.interval.loss_sum += update.loss_sum  # a finite loss counts even if its gradients did not
            run.interval.n_items += update.n_items
            if run.scaler.is_enabled() or math.isfinite(update.grad_norm):
                run.guard.passed()
                return
            what, where = f"non-finite gradient norm ({update.grad_norm})", window.describe()
        run.guard.reject(what=what, step=step, where=where, last_good=self._last_good(run))
        run.progress.skipped_steps += 1
        run.logger.warning(f"step {step}: update skipped: {what} ({where})")

    def _log_interval(self, run: RunState, last: ReadUpdate) -> None:
        interval, items = run.interval, run.interval.n_items
        record = {
            "step": last.step,
            "loss": interval.loss_sum / items if items else float("nan"),  # nan: every update skipped
            "lr": last.lr,
            "items_per_s": items / interval.seconds,
            "train_seconds": run.progress.train_seconds,
        }
        if self.config.clip_norm is not None:
            record["grad_norm"] = last.grad_norm
        if run.progress.skipped_steps:
            record["skipped_steps"] = run.progress.skipped_steps
        self._record(run, record)
        run.interval = Interval()

    def _last_good(self, run: RunState) -> str:
        return guards.last_good(self.out_dir / LAST_CHECKPOINT, run.saved_step)

    def _where(self, run: RunState) -> str:
        position = guards.position_of(run.progress.epoch, run.progress.batch_in_epoch)
        return f"{position}; {self._last_good(run)}"

    def _evaluate(self, run: RunState, step: int) -> bool:
        """Evaluate on rank 0, share the metric, track the best; returns True when early stopping triggers."""
        cfg, progress = self.config, run.progress
        value = torch.zeros(1, dtype=torch.float64, device=run.ctx.device)
        if run.ctx.is_main:
            run.model.eval()
            with torch.no_grad(), autocast(cfg.precision, run.ctx.device):
                metrics = self.task.evaluate(run.model)
            run.model.train()
            if cfg.metric not in metrics:
                raise ValueError(
                    f"TrainConfig.metric={cfg.metric!r} is not among the task's evaluation metrics {sorted(metrics)}"
                )
            value[0] = float(metrics[cfg.metric])
            metrics = {**metrics, "train_seconds": progress.train_seconds}  # BLEU against wall time
            self._record(run, {"step": step, **{key: float(v) for key, v in metrics.items()}})
        metric = broadcast_from_main(value, run.ctx).item()
        run.scheduler.step_metric(metric)
        best = progress.best_metric
        # a NaN metric never becomes the best (every comparison with it is False, so nothing would beat it)
        improved = math.isfinite(metric) and (
            best is None or (metric < best if cfg.metric_mode == "min" else metric > best)
        )
        if improved:
            progress.best_metric, progress.best_step, progress.bad_evals = metric, step, 0
            self._save(run, self.out_dir / BEST_CHECKPOINT)
        else:
            progress.bad_evals += 1
        stop = self._patience_exhausted(progress)
        if stop:
            run.logger.info(
                f"early stopping at step {step}: {cfg.metric} has not improved for {progress.bad_evals} "
                f"evaluations (best {progress.best_metric} at step {progress.best_step})"
            )
        return stop

    def _patience_exhausted(self, progress: Progress) -> bool:
        patience = self.config.early_stopping_patience
        return patience is not None and progress.bad_evals >= patience

    def _save_periodic(self, run: RunState, step: int) -> None:
        """last.safetensors plus step-NNNNNN.safetensors, keeping the newest keep_last numbered ones."""
        last = self.out_dir / LAST_CHECKPOINT
        if self.config.keep_last == 0:
            self._save(run, last)
        else:
            numbered = numbered_checkpoint(self.out_dir, step)
            self._save(run, numbered)
            if run.ctx.is_main:
                link_or_copy(numbered, last)
        run.saved_step = step  # each write above is atomic: until here, last is still the previous one
        if self.config.keep_last and run.ctx.is_main:
            prune_numbered(self.out_dir, self.config.keep_last)

    def _save(self, run: RunState, path: Path) -> None:
        if not run.ctx.is_main:
            return
        save_checkpoint(
            path,
            model=run.model,
            optimizer=run.optimizer,
            scheduler=run.scheduler,
            scaler=run.scaler if run.scaler.is_enabled() else None,
            progress=run.progress.to_dict(),
            run_config=self.run_config,
            task_state=self.task_state,
            rng_state=capture_rng_state(),
        )

    def _record(self, run: RunState, record: dict[str, Any]) -> None:
        run.history.append(record)
        run.logger.log(record)
