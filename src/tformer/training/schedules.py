"""Learning-rate schedules: the paper's warmup + inverse-sqrt, warmup + cosine or linear decay, step,
exponential, plateau.

Every formula is a pure function of s, the 1-based number of the optimizer update the rate is used for, so
tests can check it against the paper. `Scheduler` applies one of them to an optimizer: after construction the
optimizer holds the rate for update 1, and each `.step()` (called after an update) moves it to the next.

All kinds but inverse_sqrt (whose formula has its own warmup and gives the absolute rate) scale the
optimizer's own lr, ramped up linearly over `warmup_steps` updates: lr(s) = base_lr * s / warmup_steps for
s <= warmup_steps. Step and exponential decay then count t = s - warmup_steps - 1, the updates done since
warmup ended (torch's StepLR); cosine and linear decay reach their floor exactly at total_steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

KINDS = ("constant", "inverse_sqrt", "cosine", "linear", "step", "exponential", "plateau")
# kinds whose rate depends on total_steps: a wall-clock budget must fix it before their decay begins
DECAYING_TO_TOTAL = ("cosine", "linear")
PLATEAU_MODES = ("min", "max")


@dataclass
class ScheduleConfig:
    """Which schedule and its sizes; fields a kind does not use are ignored by it."""

    kind: str = "inverse_sqrt"
    warmup_steps: int = 4000
    d_model: int = 512  # inverse_sqrt
    scale: float = 1.0  # inverse_sqrt: multiplies the paper's rate
    total_steps: int = 100_000  # cosine, linear: the rate reaches base_lr * min_lr_ratio here
    min_lr_ratio: float = 0.0  # cosine and linear end point; plateau floor
    step_size: int = 1000  # step: updates between decays; exponential: updates per factor gamma
    gamma: float = 0.5  # step, exponential
    plateau_patience: int = 2  # evaluations without improvement before a reduction
    plateau_factor: float = 0.5
    plateau_mode: str = "min"  # "min" for a loss, "max" for an accuracy/BLEU

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ScheduleConfig.kind={self.kind!r} is unknown; valid kinds: {', '.join(KINDS)}")
        if self.plateau_mode not in PLATEAU_MODES:
            raise ValueError(f"ScheduleConfig.plateau_mode={self.plateau_mode!r}; valid: 'min' or 'max'")
        checks = [
            ("warmup_steps", self.warmup_steps >= 0, "an integer >= 0"),
            ("d_model", self.d_model > 0, "an integer > 0"),
            ("scale", self.scale > 0, "a number > 0"),
            ("total_steps", self.total_steps > 0, "an integer > 0"),
            ("min_lr_ratio", 0.0 <= self.min_lr_ratio <= 1.0, "a number in [0, 1]"),
            ("step_size", self.step_size > 0, "an integer > 0"),
            ("gamma", 0.0 < self.gamma <= 1.0, "a number in (0, 1]"),
            ("plateau_patience", self.plateau_patience >= 1, "an integer >= 1"),
            ("plateau_factor", 0.0 < self.plateau_factor < 1.0, "a number in (0, 1)"),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise ValueError(f"ScheduleConfig.{name}={getattr(self, name)!r}; it must be {valid}")
        if self.kind in DECAYING_TO_TOTAL and self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"ScheduleConfig.warmup_steps={self.warmup_steps} must be below "
                f"total_steps={self.total_steps} for the {self.kind} schedule"
            )


def _check_update(s: int) -> None:
    if s < 1:
        raise ValueError(f"update number s={s} must be >= 1 (updates are counted from 1)")


def warmup_factor(s: int, warmup_steps: int) -> float:
    """Linear ramp s / warmup_steps up to 1 (1 throughout when warmup_steps is 0)."""
    _check_update(s)
    return 1.0 if warmup_steps == 0 else min(1.0, s / warmup_steps)


def inverse_sqrt_lr(s: int, *, d_model: int, warmup_steps: int, scale: float = 1.0) -> float:
    """The paper's rate (section 5.3): scale * d_model^-0.5 * min(s^-0.5, s * warmup_steps^-1.5)."""
    _check_update(s)
    if warmup_steps == 0:
        return scale * d_model**-0.5 * s**-0.5
    return scale * d_model**-0.5 * min(s**-0.5, s * warmup_steps**-1.5)


def constant_lr(s: int, *, base_lr: float, warmup_steps: int = 0) -> float:
    """base_lr after the linear warmup."""
    return base_lr * warmup_factor(s, warmup_steps)


def cosine_lr(s: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to base_lr, then half a cosine down to base_lr * min_lr_ratio at total_steps, flat after."""
    if s <= warmup_steps:
        return base_lr * warmup_factor(s, warmup_steps)
    progress = min(1.0, (s - warmup_steps) / (total_steps - warmup_steps))
    min_lr = base_lr * min_lr_ratio
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_lr(s: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup to base_lr, then a straight line down to base_lr * min_lr_ratio at total_steps, flat
    after (BERT's and HF's "linear" schedule when min_lr_ratio is 0)."""
    if s <= warmup_steps:
        return base_lr * warmup_factor(s, warmup_steps)
    progress = min(1.0, (s - warmup_steps) / (total_steps - warmup_steps))
    min_lr = base_lr * min_lr_ratio
    return base_lr - (base_lr - min_lr) * progress


def step_lr(s: int, *, base_lr: float, step_size: int, gamma: float, warmup_steps: int = 0) -> float:
    """Linear warmup, then base_lr * gamma^(t // step_size) with t = s - warmup_steps - 1 (torch's StepLR)."""
    if s <= warmup_steps:
        return base_lr * warmup_factor(s, warmup_steps)
    return base_lr * gamma ** ((s - warmup_steps - 1) // step_size)


def exponential_lr(s: int, *, base_lr: float, step_size: int, gamma: float, warmup_steps: int = 0) -> float:
    """Linear warmup, then base_lr * gamma^(t / step_size): step_lr's smooth twin, equal at its jumps."""
    if s <= warmup_steps:
        return base_lr * warmup_factor(s, warmup_steps)
    return base_lr * gamma ** ((s - warmup_steps - 1) / step_size)


class Scheduler:
    """Sets every param group's lr from a ScheduleConfig; step() after each optimizer update.

    Each group's base rate is its lr when first scheduled, kept in the group as "initial_lr" (as torch's
    schedulers do) so that it survives an optimizer state round trip.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: ScheduleConfig) -> None:
        self.optimizer = optimizer
        self.config = config
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.step_count = 0  # optimizer updates done so far
        # plateau bookkeeping
        self.num_reductions = 0
        self.best_metric: float | None = None
        self.bad_evals = 0
        self._apply()

    def set_total_steps(self, total_steps: int) -> None:
        """Stretch or shrink a cosine or linear decay to end at `total_steps` (a wall-clock budget fixes it
        after timing the first updates, while the rate is still warming up, so no rate already used changes)."""
        self.config = dataclasses.replace(self.config, total_steps=total_steps)  # validates it too
        self._apply()

    @property
    def lr(self) -> float:
        """The rate the next update will use (first param group's)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self) -> None:
        """Advance to the rate for the next update; call once after each optimizer.step()."""
        self.step_count += 1
        self._apply()

    def step_metric(self, value: float) -> None:
        """Report an evaluation metric; only the plateau schedule uses it.

        After `plateau_patience` evaluations in a row without a strict improvement on the best so far, the
        rate is multiplied by `plateau_factor` and the count restarts. Unlike torch's ReduceLROnPlateau
        (which waits for patience + 1) the reduction happens on the patience-th bad evaluation. A NaN or
        infinite metric never counts as an improvement.
        """
        cfg = self.config
        if cfg.kind != "plateau":
            return
        value = float(value)
        improved = math.isfinite(value) and (
            self.best_metric is None
            or (value < self.best_metric if cfg.plateau_mode == "min" else value > self.best_metric)
        )
        if improved:
            self.best_metric = value
            self.bad_evals = 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= cfg.plateau_patience:
                self.num_reductions += 1
                self.bad_evals = 0
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (the config itself lives in the run config)."""
        return {
            "kind": self.config.kind,
            "step_count": self.step_count,
            "base_lrs": list(self.base_lrs),
            "num_reductions": self.num_reductions,
            "best_metric": self.best_metric,
            "bad_evals": self.bad_evals,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from state_dict(); the optimizer's lrs are set for the next update at once."""
        if state.get("kind") != self.config.kind:
            raise ValueError(
                f"scheduler state is for kind {state.get('kind')!r} but this scheduler is {self.config.kind!r}"
            )
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"scheduler state has {len(state['base_lrs'])} base lrs but the optimizer has "
                f"{len(self.optimizer.param_groups)} param groups"
            )
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["initial_lr"] = base_lr
        self.num_reductions = int(state["num_reductions"])
        self.best_metric = None if state["best_metric"] is None else float(state["best_metric"])
        self.bad_evals = int(state["bad_evals"])
        self._apply()

    def _apply(self) -> None:
        s = self.step_count + 1
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self._lr_at(s, base_lr)

    def _lr_at(self, s: int, base_lr: float) -> float:
        cfg = self.config
        if cfg.kind == "inverse_sqrt":
            return inverse_sqrt_lr(s, d_model=cfg.d_model, warmup_steps=cfg.warmup_steps, scale=cfg.scale)
        decay_to_total = {"cosine": cosine_lr, "linear": linear_lr}.get(cfg.kind)
        if decay_to_total is not None:
            return decay_to_total(
                s,
                base_lr=base_lr,
                warmup_steps=cfg.warmup_steps,
                total_steps=cfg.total_steps,
                min_lr_ratio=cfg.min_lr_ratio,
            )
        decay = {"step": step_lr, "exponential": exponential_lr}.get(cfg.kind)
        if decay is not None:
            return decay(
                s, base_lr=base_lr, step_size=cfg.step_size, gamma=cfg.gamma, warmup_steps=cfg.warmup_steps
            )
        if cfg.kind == "plateau":
            reduction = max(cfg.plateau_factor**self.num_reductions, cfg.min_lr_ratio)
            return constant_lr(s, base_lr=base_lr, warmup_steps=cfg.warmup_steps) * reduction
        assert cfg.kind == "constant", cfg.kind
        return constant_lr(s, base_lr=base_lr, warmup_steps=cfg.warmup_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig) -> Scheduler:
    """The Scheduler for `config`, already holding the rate for the first update in `optimizer`."""
    return Scheduler(optimizer, config)
