"""TrainConfig: the trainer's settings, each checked when the config is built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from tformer.training.guards import NONFINITE_POLICIES
from tformer.training.schedules import DECAYING_TO_TOTAL, ScheduleConfig

_PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_METRIC_MODES = ("min", "max")
_AT_LEAST_ONE = ("max_steps", "grad_accum_steps", "eval_every", "checkpoint_every", "log_every")


def _int_at_least(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number_above(value: Any, low: float, *, inclusive: bool = False) -> bool:
    # finite too: an infinite rate passes "> 0" but turns the first update into NaN
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= low if inclusive else value > low


@dataclass
class TrainConfig:
    max_steps: int = 1000
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_accum_steps: int = 1
    clip_norm: float | None = 1.0
    eval_every: int = 200
    checkpoint_every: int = 200
    keep_last: int = 3  # numbered checkpoints kept; last and best are always kept
    metric: str = "val_loss"
    metric_mode: str = "min"
    early_stopping_patience: int | None = None  # in evaluations without improvement
    precision: str = "fp32"  # "auto": bf16 autocast on a CUDA device that supports it, else fp32
    device: str = "auto"
    seed: int = 0
    log_every: int = 50
    # torch.compile the training forward/backward: "auto" does on CUDA, where it pays for its minute of
    # compilation; on CPU inductor's C++ build costs more than a short run saves. Evaluation stays eager.
    compile: bool | Literal["auto"] = "auto"
    progress_bar: bool = True
    # A NaN/inf loss or gradient norm: "stop" (keep the last good checkpoint, name the step and batch) or
    # "skip" the update and count it. Stop is the default: such a loss usually means divergence or bad data,
    # which silently skipping would hide; skip suits long runs with a few bad batches.
    nonfinite: str = "stop"
    # Train for this many minutes of updates instead of a step count (training/budget.py): the first
    # budget_calibration_steps updates are timed, the total is fixed from them and stored in the checkpoint,
    # and a cosine or linear schedule's total_steps becomes that total. max_steps stays an upper bound.
    budget_minutes: float | None = None
    budget_calibration_steps: int = 50

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # YAML has no tuples
            self.betas = tuple(self.betas)
        if not isinstance(self.schedule, ScheduleConfig):
            raise TypeError(
                f"TrainConfig.schedule must be a ScheduleConfig, got {type(self.schedule).__name__}"
            )
        betas_ok = isinstance(self.betas, tuple) and len(self.betas) == 2
        patience = self.early_stopping_patience
        checks = [
            *((name, _int_at_least(getattr(self, name), 1), "an integer >= 1") for name in _AT_LEAST_ONE),
            ("keep_last", _int_at_least(self.keep_last, 0), "an integer >= 0"),
            ("seed", _int_at_least(self.seed, 0), "an integer >= 0"),
            ("lr", _number_above(self.lr, 0), "a finite number > 0"),
            ("eps", _number_above(self.eps, 0), "a finite number > 0"),
            ("weight_decay", _number_above(self.weight_decay, 0, inclusive=True), "a finite number >= 0"),
            (
                "betas",
                betas_ok and all(_number_above(b, 0, inclusive=True) and b < 1 for b in self.betas),
                "two numbers in [0, 1)",
            ),
            (
                "clip_norm",
                self.clip_norm is None or _number_above(self.clip_norm, 0),
                "None or a finite number > 0",
            ),
            ("metric", isinstance(self.metric, str) and self.metric != "", "a metric name"),
            ("metric_mode", self.metric_mode in _METRIC_MODES, f"one of {_METRIC_MODES}"),
            (
                "early_stopping_patience",
                patience is None or _int_at_least(patience, 1),
                "None or an integer >= 1",
            ),
            ("precision", self.precision in _PRECISIONS, f"one of {_PRECISIONS}"),
            ("compile", isinstance(self.compile, bool) or self.compile == "auto", "true, false or 'auto'"),
            ("nonfinite", self.nonfinite in NONFINITE_POLICIES, f"one of {NONFINITE_POLICIES}"),
            ("device", isinstance(self.device, str), "'auto', 'cpu', 'cuda' or 'cuda:N'"),
            (
                "budget_minutes",
                self.budget_minutes is None or _number_above(self.budget_minutes, 0),
                "None or a finite number of minutes > 0",
            ),
            ("budget_calibration_steps", _int_at_least(self.budget_calibration_steps, 1), "an integer >= 1"),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} is invalid: must be {valid}")
        if self.budget_minutes is not None:
            self._check_budget()

    def _check_budget(self) -> None:
        calibration, schedule = self.budget_calibration_steps, self.schedule
        if self.max_steps <= calibration:
            raise ValueError(
                f"TrainConfig.max_steps={self.max_steps} must exceed budget_calibration_steps={calibration} "
                f"when budget_minutes={self.budget_minutes} is set: with a budget, max_steps is only an upper "
                "bound on the planned updates (raise it, or drop budget_minutes to train a fixed step count)"
            )
        if schedule.kind in DECAYING_TO_TOTAL and schedule.warmup_steps < calibration:
            raise ValueError(
                f"TrainConfig.budget_calibration_steps={calibration} exceeds schedule.warmup_steps="
                f"{schedule.warmup_steps}: a {schedule.kind} decay depends on the planned total, so the plan "
                f"must be fixed before warmup ends; set budget_calibration_steps <= {schedule.warmup_steps} "
                "or raise warmup_steps"
            )


def resolve_auto_settings(config: TrainConfig, device: torch.device) -> TrainConfig:
    """`config` with its "auto" settings decided for `device`: bf16 autocast where the CUDA device supports
    it (else fp32), and torch.compile on CUDA only."""
    changes: dict[str, Any] = {}
    if config.precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        changes["precision"] = "bf16" if bf16 else "fp32"
    if config.compile == "auto":
        changes["compile"] = device.type == "cuda"
    return dataclasses.replace(config, **changes)
