"""Training to a wall-clock budget: the plan's arithmetic, a fully decayed schedule, bit-exact resume, and the
config checks that reject a budget that cannot be honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tformer.training.budget import plan_steps
from tformer.training.checkpoint import load_checkpoint
from tformer.training.losses import LossOutput
from tformer.training.schedules import ScheduleConfig
from tformer.training.trainer import Trainer

from .toy_task import ToyBatch, ToyModel, ToyTask, toy_config

# 20 ms of sleep per update (the toy step itself takes about 1 ms) and 1 s of budget: a plan of about 50
# updates, and still over 30 on a machine loaded enough to triple the step's own time
SCHEDULE = ScheduleConfig(kind="cosine", warmup_steps=8, total_steps=100_000, min_lr_ratio=0.1)
DELAY_S = 0.02
BUDGET = {"budget_minutes": 1.0 / 60, "budget_calibration_steps": 6, "max_steps": 10_000}


def _model() -> ToyModel:
    torch.manual_seed(0)
    return ToyModel(dropout=0.2)


def _fit(out_dir: Path, task: ToyTask, *, resume: bool = False, **overrides: object) -> ToyModel:
    model = _model()
    settings = {"schedule": SCHEDULE, "eval_every": 10, "checkpoint_every": 10, **overrides}
    Trainer(model, task, toy_config(**settings), out_dir=out_dir, run_config={"task": "toy"}).fit(
        resume=resume
    )
    return model


def _records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_plan_fills_the_budget_at_the_calibrated_pace() -> None:
    plan = plan_steps(
        budget_seconds=600, calibration_steps=50, calibration_seconds=20.0, max_steps=10**6, min_steps=50
    )
    assert plan.steps == 1500 and plan.seconds_per_update == pytest.approx(0.4)  # 600 s / 0.4 s
    # 10 slow first updates took 12 s: the other 588 s at 0.4 s an update are 1470 more
    warm = plan_steps(
        budget_seconds=600,
        calibration_steps=40,
        calibration_seconds=16.0,
        max_steps=10**6,
        min_steps=50,
        untimed_steps=10,
        untimed_seconds=12.0,
    )
    assert warm.steps == 1480
    capped = plan_steps(
        budget_seconds=600, calibration_steps=50, calibration_seconds=20.0, max_steps=900, min_steps=50
    )
    assert capped.steps == 900 and "capped by train.max_steps=900" in capped.describe()
    short = plan_steps(
        budget_seconds=10, calibration_steps=50, calibration_seconds=20.0, max_steps=900, min_steps=101
    )
    assert short.steps == 101 and "overspend" in short.describe()
    with pytest.raises(ValueError, match="positive, finite time"):
        plan_steps(budget_seconds=10, calibration_steps=5, calibration_seconds=0.0, max_steps=9, min_steps=5)


def test_budgeted_run_ends_fully_decayed_and_equals_a_fixed_run_of_its_planned_length(tmp_path: Path) -> None:
    budgeted = _fit(tmp_path / "budget", ToyTask(delay_s=DELAY_S), **BUDGET)
    progress = load_checkpoint(tmp_path / "budget" / "last.safetensors").progress
    planned = progress["planned_steps"]
    assert planned is not None and planned > SCHEDULE.warmup_steps + 5
    assert progress["step"] == planned
    records = _records(tmp_path / "budget")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, planned + 1))
    assert train[-1]["lr"] == pytest.approx(1e-2 * SCHEDULE.min_lr_ratio)  # the last update at the floor
    assert train[-2]["lr"] > train[-1]["lr"]  # ... reached by decaying, not flat for a while
    assert [r["budget_planned_steps"] for r in records if "budget_planned_steps" in r] == [planned]
    assert progress["eval_seconds"] > 0

    # Once planned, the run is exactly a fixed-length run with that total.
    fixed_schedule = ScheduleConfig(**{**vars(SCHEDULE), "total_steps": planned})
    fixed = _fit(tmp_path / "fixed", ToyTask(), max_steps=planned, schedule=fixed_schedule)
    for (name, a), b in zip(budgeted.state_dict().items(), fixed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class CrashingTask(ToyTask):
    """Raises on one loss call, as a killed run stops: after its last checkpoint, before the end."""

    def __init__(self, *, crash_at_call: int, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self.crash_at_call = crash_at_call

    def loss(self, model: nn.Module, batch: ToyBatch) -> LossOutput:
        if self.loss_calls + 1 == self.crash_at_call:
            raise RuntimeError("simulated crash")
        return super().loss(model, batch)


def test_resume_keeps_the_plan_and_is_bit_exact(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(out, CrashingTask(crash_at_call=25, delay_s=DELAY_S), checkpoint_every=5, **BUDGET)
    progress = load_checkpoint(out / "last.safetensors").progress
    planned = progress["planned_steps"]
    assert progress["step"] == 20 and planned is not None and planned > 25
    # Resumed without the sleep: a new calibration would plan many more updates; the stored plan must win.
    resumed = _fit(out, ToyTask(), resume=True, checkpoint_every=5, **BUDGET)
    assert load_checkpoint(out / "last.safetensors").progress["step"] == planned

    fixed_schedule = ScheduleConfig(**{**vars(SCHEDULE), "total_steps": planned})
    fixed = _fit(
        tmp_path / "fixed", ToyTask(), checkpoint_every=5, max_steps=planned, schedule=fixed_schedule
    )
    for (name, a), b in zip(resumed.state_dict().items(), fixed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {
                "budget_calibration_steps": 50,
                "schedule": ScheduleConfig(kind="cosine", warmup_steps=48, total_steps=480),
            },
            r"budget_calibration_steps=50 exceeds schedule.warmup_steps=48.*set budget_calibration_steps <= 48",
        ),
        (
            {"max_steps": 50, "budget_calibration_steps": 50},
            r"max_steps=50 must exceed budget_calibration_steps=50",
        ),
        ({"budget_minutes": 0}, r"budget_minutes=0 is invalid"),
        ({"budget_minutes": float("inf")}, r"budget_minutes=inf is invalid"),
        ({"budget_calibration_steps": 0}, r"budget_calibration_steps=0 is invalid"),
    ],
)
def test_a_budget_that_cannot_be_honoured_is_rejected(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        toy_config(**{"budget_minutes": 1.0, "max_steps": 1000, **overrides})


def test_a_constant_schedule_needs_no_warmup_for_its_plan(tmp_path: Path) -> None:
    _fit(
        tmp_path, ToyTask(delay_s=DELAY_S), schedule=ScheduleConfig(kind="constant", warmup_steps=0), **BUDGET
    )
    assert load_checkpoint(tmp_path / "last.safetensors").progress["planned_steps"] is not None
