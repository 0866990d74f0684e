from __future__ import annotations

import json
import math

import pytest
import torch

from tformer.training.schedules import (
    ScheduleConfig,
    Scheduler,
    build_scheduler,
    cosine_lr,
    exponential_lr,
    inverse_sqrt_lr,
    linear_lr,
    step_lr,
)


def _optimizer(lr: float = 1.0, n_groups: int = 1) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr * (i + 1)} for i in range(n_groups)]
    return torch.optim.SGD(groups, lr=lr)


def _rates(scheduler: Scheduler, n: int) -> list[float]:
    """The rates updates 1..n use: read before each update, step after it."""
    rates = []
    for _ in range(n):
        rates.append(scheduler.lr)
        scheduler.step()
    return rates


def test_inverse_sqrt_matches_the_paper() -> None:
    # lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), d_model=512, warmup=4000 (section 5.3)
    peak = inverse_sqrt_lr(4000, d_model=512, warmup_steps=4000)
    assert peak == pytest.approx(6.9877e-4, rel=1e-4)
    assert peak == pytest.approx(1 / math.sqrt(512 * 4000), rel=1e-12)
    assert inverse_sqrt_lr(1, d_model=512, warmup_steps=4000) == pytest.approx(512**-0.5 * 4000**-1.5)
    assert inverse_sqrt_lr(2000, d_model=512, warmup_steps=4000) == pytest.approx(peak / 2)  # linear warmup
    assert inverse_sqrt_lr(16000, d_model=512, warmup_steps=4000) == pytest.approx(peak / 2)  # 1/sqrt decay
    assert inverse_sqrt_lr(100, d_model=512, warmup_steps=4000, scale=2.0) == pytest.approx(
        2 * 512**-0.5 * 100 * 4000**-1.5
    )
    assert inverse_sqrt_lr(9, d_model=64, warmup_steps=0) == pytest.approx(64**-0.5 / 3)


def test_inverse_sqrt_scheduler_ignores_optimizer_lr_and_peaks_at_warmup() -> None:
    opt = _optimizer(lr=123.0, n_groups=2)
    sched = build_scheduler(opt, ScheduleConfig(kind="inverse_sqrt", d_model=512, warmup_steps=40))
    rates = _rates(sched, 100)
    expected = [512**-0.5 * min(s**-0.5, s * 40**-1.5) for s in range(1, 101)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert max(range(100), key=rates.__getitem__) == 39  # update 40 has the highest rate
    # every group, whatever its own lr (123 and 246), holds the formula's rate for the next update, 101
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([512**-0.5 * 101**-0.5] * 2, rel=1e-12)


def test_cosine_warmup_then_decay_to_floor() -> None:
    base, warm, total, ratio = 0.5, 10, 50, 0.1
    sched = build_scheduler(
        _optimizer(base),
        ScheduleConfig(kind="cosine", warmup_steps=warm, total_steps=total, min_lr_ratio=ratio),
    )
    rates = _rates(sched, 60)
    for s in (1, 5, 10):
        assert rates[s - 1] == pytest.approx(base * s / warm)
    for s in (11, 30, 49):
        progress = (s - warm) / (total - warm)
        assert rates[s - 1] == pytest.approx(0.05 + 0.45 * (1 + math.cos(math.pi * progress)) / 2)
    assert rates[30 - 1] == pytest.approx((0.5 + 0.05) / 2)  # halfway through the decay: the mean
    assert rates[total - 1 :] == pytest.approx([base * ratio] * 11)  # reaches the floor, then flat
    assert cosine_lr(30, base_lr=base, warmup_steps=warm, total_steps=total, min_lr_ratio=ratio) == rates[29]


def test_linear_warmup_then_straight_decay_to_floor() -> None:
    base, warm, total, ratio = 0.5, 10, 50, 0.1
    sched = build_scheduler(
        _optimizer(base),
        ScheduleConfig(kind="linear", warmup_steps=warm, total_steps=total, min_lr_ratio=ratio),
    )
    rates = _rates(sched, 60)
    for s in (1, 5, 10):
        assert rates[s - 1] == pytest.approx(base * s / warm)
    # by hand: from 0.5 at update 10 down to 0.05 at update 50, 0.01125 per update
    for s in (11, 30, 49):
        assert rates[s - 1] == pytest.approx(0.5 - 0.01125 * (s - 10))
    assert rates[total - 1 :] == pytest.approx([base * ratio] * 11)
    assert linear_lr(30, base_lr=base, warmup_steps=warm, total_steps=total, min_lr_ratio=ratio) == rates[29]


def test_linear_with_zero_floor_matches_hf_get_linear_schedule_with_warmup() -> None:
    transformers = pytest.importorskip("transformers")
    warm, total = 4, 20
    reference_opt = _optimizer(1.0)
    reference = transformers.get_linear_schedule_with_warmup(reference_opt, warm, total)
    expected = []
    for _ in range(total):
        reference_opt.step()
        reference.step()
        # after k step() calls HF holds lambda(k) = the rate tformer gives update k (HF's own first update
        # runs at lambda(0) = 0; tformer's update 1 already uses 1 / warmup_steps)
        expected.append(reference_opt.param_groups[0]["lr"])
    config = ScheduleConfig(kind="linear", warmup_steps=warm, total_steps=total)
    assert _rates(build_scheduler(_optimizer(1.0), config), total) == pytest.approx(expected, abs=1e-12)


def test_set_total_steps_moves_the_end_of_the_decay_without_touching_warmup() -> None:
    config = ScheduleConfig(kind="cosine", warmup_steps=10, total_steps=1000, min_lr_ratio=0.0)
    sched = build_scheduler(_optimizer(1.0), config)
    early = _rates(sched, 8)
    sched.set_total_steps(40)
    assert early == _rates(build_scheduler(_optimizer(1.0), config), 8)
    later = _rates(sched, 40)  # updates 9..48
    assert later[40 - 9] == pytest.approx(0.0, abs=1e-12)  # update 40 is at the floor
    with pytest.raises(ValueError, match="warmup_steps=10 must be below total_steps=5"):
        sched.set_total_steps(5)


def test_step_decay_matches_torch_steplr_after_warmup() -> None:
    base = 0.2
    sched = build_scheduler(
        _optimizer(base), ScheduleConfig(kind="step", warmup_steps=0, step_size=3, gamma=0.1)
    )
    ref_opt = _optimizer(base)
    ref = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=3, gamma=0.1)
    ref_rates = []
    for _ in range(10):
        ref_rates.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert _rates(sched, 10) == pytest.approx(ref_rates)

    warmed = build_scheduler(
        _optimizer(base), ScheduleConfig(kind="step", warmup_steps=4, step_size=3, gamma=0.1)
    )
    expected = [0.05, 0.1, 0.15, 0.2, 0.2, 0.2, 0.2, 0.02, 0.02, 0.02, 0.002]
    assert _rates(warmed, 11) == pytest.approx(expected)
    assert step_lr(8, base_lr=base, step_size=3, gamma=0.1, warmup_steps=4) == pytest.approx(0.02)


def test_exponential_decay_is_smooth_and_meets_step_at_its_jumps() -> None:
    base = 1.0
    cfg = ScheduleConfig(kind="exponential", warmup_steps=2, step_size=4, gamma=0.5)
    rates = _rates(build_scheduler(_optimizer(base), cfg), 12)
    expected = [0.5, 1.0] + [0.5 ** ((s - 3) / 4) for s in range(3, 13)]
    assert rates == pytest.approx(expected)
    for s in (3, 7, 11):  # step decay's jumps
        kwargs = {"base_lr": base, "step_size": 4, "gamma": 0.5, "warmup_steps": 2}
        assert exponential_lr(s, **kwargs) == pytest.approx(step_lr(s, **kwargs))


def test_constant_with_warmup_and_per_group_base_rates() -> None:
    opt = _optimizer(0.3, n_groups=2)
    sched = build_scheduler(opt, ScheduleConfig(kind="constant", warmup_steps=3))
    assert _rates(sched, 5) == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    assert opt.param_groups[1]["lr"] == pytest.approx(0.6)  # second group's own base rate
    sched.step_metric(1.0)  # a no-op for non-plateau kinds
    assert sched.lr == pytest.approx(0.3)


def test_plateau_reduces_exactly_after_patience_bad_evaluations() -> None:
    cfg = ScheduleConfig(kind="plateau", warmup_steps=0, plateau_patience=2, plateau_factor=0.5)
    sched = build_scheduler(_optimizer(1.0), cfg)
    metrics = [5.0, 4.0, 4.0, 4.5, 3.0, 3.5, float("nan"), 2.9, 3.0, 3.0, 3.0, 3.0]
    # evaluation:  5 best, 4 best, 4 bad#1 (equal is no improvement), 4.5 bad#2 -> halve, 3 best, 3.5 bad#1,
    #              nan bad#2 -> halve, 2.9 best, 3 bad#1, 3 bad#2 -> halve, 3 bad#1, 3 bad#2 -> halve
    expected = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125, 0.0625]
    seen = []
    for m in metrics:
        sched.step()
        sched.step_metric(m)
        seen.append(sched.lr)
    assert seen == pytest.approx(expected)
    assert sched.best_metric == 2.9


def test_plateau_max_mode_and_floor() -> None:
    cfg = ScheduleConfig(
        kind="plateau",
        warmup_steps=0,
        plateau_patience=1,
        plateau_factor=0.1,
        plateau_mode="max",
        min_lr_ratio=0.05,
    )
    sched = build_scheduler(_optimizer(2.0), cfg)
    sched.step_metric(10.0)
    sched.step_metric(11.0)  # better in max mode
    assert sched.lr == pytest.approx(2.0)
    sched.step_metric(9.0)
    assert sched.lr == pytest.approx(0.2)
    sched.step_metric(9.0)
    assert sched.lr == pytest.approx(0.1)  # 0.02 would be below the floor 2.0 * 0.05


@pytest.mark.parametrize(
    "cfg",
    [
        ScheduleConfig(kind="inverse_sqrt", warmup_steps=5, d_model=16),
        ScheduleConfig(kind="cosine", warmup_steps=3, total_steps=20, min_lr_ratio=0.2),
        ScheduleConfig(kind="plateau", warmup_steps=2, plateau_patience=1),
    ],
)
def test_state_dict_round_trip_resumes_the_same_sequence(cfg: ScheduleConfig) -> None:
    original = build_scheduler(_optimizer(0.7, n_groups=2), cfg)
    for m in [3.0, 2.0, 2.5, 2.6, 1.0, 1.5, 1.7]:
        original.step()
        original.step_metric(m)
    state = json.loads(json.dumps(original.state_dict()))  # must survive JSON

    resumed_opt = _optimizer(99.0, n_groups=2)  # a fresh optimizer with a different lr
    resumed = build_scheduler(resumed_opt, cfg)
    resumed.load_state_dict(state)
    assert [g["lr"] for g in resumed_opt.param_groups] == [g["lr"] for g in original.optimizer.param_groups]
    for m in [1.4, 1.6, 1.8, 0.5, 0.9]:
        original.step_metric(m)
        resumed.step_metric(m)
    assert _rates(resumed, 15) == _rates(original, 15)


def test_load_state_dict_rejects_another_kind() -> None:
    state = build_scheduler(_optimizer(), ScheduleConfig(kind="cosine", warmup_steps=1)).state_dict()
    other = build_scheduler(_optimizer(), ScheduleConfig(kind="step"))
    with pytest.raises(ValueError, match="'cosine'.*'step'"):
        other.load_state_dict(state)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "triangular"}, "kind='triangular'"),
        ({"warmup_steps": -1}, "warmup_steps=-1"),
        ({"d_model": 0}, "d_model=0"),
        ({"step_size": 0}, "step_size=0"),
        ({"total_steps": -5}, "total_steps=-5"),
        ({"gamma": 1.5}, "gamma=1.5"),
        ({"min_lr_ratio": 2.0}, "min_lr_ratio=2.0"),
        ({"plateau_patience": 0}, "plateau_patience=0"),
        ({"plateau_factor": 1.0}, "plateau_factor=1.0"),
        ({"plateau_mode": "up"}, "plateau_mode='up'"),
        ({"kind": "cosine", "warmup_steps": 10, "total_steps": 10}, "warmup_steps=10"),
    ],
)
def test_config_validation_names_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ScheduleConfig(**overrides)


def test_update_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="s=0"):
        inverse_sqrt_lr(0, d_model=512, warmup_steps=4000)
