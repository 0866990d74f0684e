"""Training to a wall-clock budget (TrainConfig.budget_minutes): how many updates fit, decided once.

A run that stops when the clock runs out would end at a random step with its learning rate still high, and
could not be repeated. Instead the trainer times the first `budget_calibration_steps` updates (all but their
first fifth, slower while allocators and caches warm up), fixes the total number of updates from them
(BudgetClock), stretches a cosine or linear decay to end exactly there, and stores the number in the
checkpoint's progress, so that `--resume` continues the same schedule bit for bit. After the plan the run is as
deterministic as one with a fixed max_steps; only the plan itself depends on the machine.

The budget counts the time spent in updates (Progress.train_seconds); periodic evaluations and checkpoint
writes are timed apart (Progress.eval_seconds) and come on top, so a recipe keeps them cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # for annotations only: run_state imports torch and the logger
    from tformer.training.run_state import Progress


@dataclass(frozen=True)
class BudgetPlan:
    steps: int  # the updates the run will make
    budget_seconds: float
    calibration_steps: int
    calibration_seconds: float
    affordable: int  # what the budget alone allows; steps differs when max_steps or the schedule bound it
    max_steps: int

    @property
    def seconds_per_update(self) -> float:
        return self.calibration_seconds / self.calibration_steps

    def describe(self) -> str:
        text = (
            f"budget {self.budget_seconds / 60:g} min: {self.calibration_steps} timed updates took "
            f"{self.calibration_seconds:.1f} s ({self.seconds_per_update:.3f} s each), so the run makes "
            f"{self.steps:,} updates"
        )
        if self.steps < self.affordable:
            text += (
                f" (capped by train.max_steps={self.max_steps:,}; the budget would allow {self.affordable:,})"
            )
        elif self.steps > self.affordable:
            text += (
                f" (the budget allows only {self.affordable:,}, fewer than the calibration and warmup need: "
                "the run will overspend it)"
            )
        return text + "; the learning-rate schedule ends there"


@dataclass(frozen=True)
class BudgetClock:
    """The trainer's side of a budget: which updates open and close the timed calibration window, the plan made
    at its close (stored in Progress.planned_steps), and the run's last update. minutes=None: no budget."""

    minutes: float | None
    calibration_steps: int
    max_steps: int
    warmup_steps: int
    decays: bool  # the schedule decays to its total_steps, so the plan moves its end

    def last_step(self, progress: Progress) -> int:
        """A budgeted run's plan once fixed, else max_steps."""
        planned = progress.planned_steps if self.minutes is not None else None
        return self.max_steps if planned is None else planned

    def due(self, step: int, progress: Progress) -> Literal["mark", "plan"] | None:
        """ "mark" after the update that opens the timed window, "plan" after the one that closes it."""
        if self.minutes is None or progress.planned_steps is not None:
            return None
        if step == pace_from(self.calibration_steps):
            return "mark"
        return "plan" if step == self.calibration_steps else None

    def plan(self, step: int, progress: Progress) -> BudgetPlan:
        """Fix the run's updates from the window's time (progress.train_seconds must hold it, read back from
        the device) and record them in progress.planned_steps."""
        assert self.minutes is not None, (
            "plan() is for budgeted runs: due() never says 'plan' without a budget"
        )
        untimed = pace_from(step)  # the updates before the window warm caches and allocators: not timed
        plan = plan_steps(
            budget_seconds=self.minutes * 60,
            calibration_steps=step - untimed,
            calibration_seconds=progress.train_seconds - progress.budget_mark_seconds,
            untimed_steps=untimed,
            untimed_seconds=progress.budget_mark_seconds,
            max_steps=self.max_steps,
            min_steps=max(step, self.warmup_steps + 1) if self.decays else step,
        )
        progress.planned_steps = plan.steps
        return plan


def pace_from(calibration_steps: int) -> int:
    """The update after which the calibration window is timed: the first fifth of it is left out, because the
    first updates of a process are slower (allocator and cache warm-up) than the run's pace."""
    return calibration_steps // 5


def plan_steps(
    *,
    budget_seconds: float,
    calibration_steps: int,
    calibration_seconds: float,
    max_steps: int,
    min_steps: int,
    untimed_steps: int = 0,
    untimed_seconds: float = 0.0,
) -> BudgetPlan:
    """The number of updates that fill `budget_seconds`, within [min_steps, max_steps]: the `untimed_steps`
    first updates (which took `untimed_seconds`), then as many as fit in the rest of the budget at the pace of
    the `calibration_steps` updates that followed them.

    min_steps is what the run needs regardless (the calibration updates done, and a decay that ends after
    warmup); max_steps (TrainConfig.max_steps) is an upper bound the user set.
    """
    if calibration_steps < 1 or not calibration_seconds > 0 or not math.isfinite(calibration_seconds):
        raise ValueError(
            f"cannot plan a budget from {calibration_steps} updates timed at {calibration_seconds!r} s: "
            "need at least one update and a positive, finite time"
        )
    pace = calibration_seconds / calibration_steps
    affordable = untimed_steps + max(0, int((budget_seconds - untimed_seconds) / pace))
    steps = max(min(affordable, max_steps), min_steps)
    return BudgetPlan(
        steps=steps,
        budget_seconds=budget_seconds,
        calibration_steps=calibration_steps,
        calibration_seconds=calibration_seconds,
        affordable=affordable,
        max_steps=max_steps,
    )


def spending_summary(progress: Progress, *, budget_minutes: float) -> str:
    """One line on how a budgeted run spent its time (for the log and `reproduce`)."""
    train, evals = progress.train_seconds, progress.eval_seconds
    return (
        f"budget {budget_minutes:g} min: {progress.step:,} updates in {train / 60:.1f} min "
        f"({100 * train / (budget_minutes * 60):.0f}% of the budget), evaluations and checkpoints "
        f"{evals / 60:.1f} min on top"
    )
