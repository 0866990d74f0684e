from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tformer.training.losses import LossOutput, label_smoothed_cross_entropy, total_loss

V = 7


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, V, generator=gen) * 3
    targets = torch.randint(0, V, (3, 5), generator=gen)
    targets[0, 3:] = -100
    targets[2, 1] = -100
    return logits, targets


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_matches_torch_cross_entropy(reduction: str, smoothing: float) -> None:
    logits, targets = _batch()
    ours = label_smoothed_cross_entropy(logits, targets, smoothing=smoothing, reduction=reduction)
    # torch wants the class dim second; flatten the batch dims instead
    ref = F.cross_entropy(
        logits.reshape(-1, V),  # [B*T, V]
        targets.reshape(-1),  # [B*T]
        label_smoothing=smoothing,
        ignore_index=-100,
        reduction=reduction,
    )
    if reduction == "none":
        ref = ref.reshape(targets.shape)  # [B, T]
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_custom_ignore_index_matches_torch() -> None:
    logits, targets = _batch(1)
    targets = targets.clamp(min=0)  # pad id 0 is the ignore index here: the -100s become pads
    assert (targets == 0).sum() > 3
    ours = label_smoothed_cross_entropy(logits, targets, smoothing=0.1, ignore_index=0)
    ref = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), label_smoothing=0.1, ignore_index=0)
    torch.testing.assert_close(ours, ref)


def test_hand_computed_three_class_example() -> None:
    # logits = log([1, 2, 1]) so softmax p = [1/4, 1/2, 1/4]; smoothing eps = 0.3 spreads 0.1 on each class.
    # Item 1, target 1: q = [0.1, 0.8, 0.1]; loss = -(0.1 ln 1/4 + 0.8 ln 1/2 + 0.1 ln 1/4)
    #                     = 0.2 * 2 ln2 + 0.8 ln2 = 1.2 ln2
    # Item 2, target 0: q = [0.8, 0.1, 0.1]; loss = 0.8 * 2 ln2 + 0.1 ln2 + 0.1 * 2 ln2 = 1.9 ln2
    # Item 3 is ignored (target -100): 0.  sum = 3.1 ln2, mean over the 2 real items = 1.55 ln2.
    row = torch.log(torch.tensor([1.0, 2.0, 1.0]))
    logits = torch.stack([row, row, row * 5])  # the ignored row's logits are arbitrary
    targets = torch.tensor([1, 0, -100])
    ln2 = math.log(2.0)
    none = label_smoothed_cross_entropy(logits, targets, smoothing=0.3, reduction="none")
    torch.testing.assert_close(none, torch.tensor([1.2 * ln2, 1.9 * ln2, 0.0]))
    total = label_smoothed_cross_entropy(logits, targets, smoothing=0.3, reduction="sum")
    assert total.item() == pytest.approx(3.1 * ln2, rel=1e-6)
    mean = label_smoothed_cross_entropy(logits, targets, smoothing=0.3)
    assert mean.item() == pytest.approx(1.55 * ln2, rel=1e-6)


def test_ignored_positions_get_zero_gradient_even_with_nonfinite_logits() -> None:
    logits, targets = _batch(2)
    logits[0, 4] = float("nan")  # an ignored position (targets[0, 3:] == -100)
    logits.requires_grad_(True)
    loss = label_smoothed_cross_entropy(logits, targets, smoothing=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    ignored = targets == -100
    assert torch.equal(logits.grad[ignored], torch.zeros_like(logits.grad[ignored]))
    assert logits.grad[~ignored].abs().sum() > 0


def test_all_ignored_mean_is_zero_not_nan() -> None:
    logits = torch.randn(2, 3, V, requires_grad=True)
    targets = torch.full((2, 3), -100)
    loss = label_smoothed_cross_entropy(logits, targets, smoothing=0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits.grad))


def test_half_precision_logits_are_computed_in_float32() -> None:
    logits, targets = _batch(3)
    ours = label_smoothed_cross_entropy(logits.bfloat16(), targets, smoothing=0.1)
    ref = F.cross_entropy(logits.bfloat16().float().reshape(-1, V), targets.reshape(-1), label_smoothing=0.1)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5])
def test_smoothing_outside_unit_interval_raises(smoothing: float) -> None:
    logits, targets = _batch()
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothed_cross_entropy(logits, targets, smoothing=smoothing)


def test_bad_reduction_and_shapes_raise() -> None:
    logits, targets = _batch()
    with pytest.raises(ValueError, match="'avg'"):
        label_smoothed_cross_entropy(logits, targets, reduction="avg")
    with pytest.raises(ValueError, match="shape"):
        label_smoothed_cross_entropy(logits, targets[:, :-1])
    with pytest.raises(TypeError, match="torch.long"):
        label_smoothed_cross_entropy(logits, targets.float())


def test_loss_output_holds_sum_and_count() -> None:
    logits, targets = _batch()
    out = LossOutput(
        loss_sum=label_smoothed_cross_entropy(logits, targets, reduction="sum"),
        n_items=(targets != -100).sum(),
    )
    mean = label_smoothed_cross_entropy(logits, targets)
    torch.testing.assert_close(out.loss_sum / out.n_items, mean)


def test_total_loss_adds_sums_and_counts_in_float64() -> None:
    outputs = [
        LossOutput(torch.tensor(1.5), torch.tensor(3)),
        LossOutput(torch.tensor(2.25, dtype=torch.float16), torch.tensor(5)),
        LossOutput(torch.tensor(1e-8), torch.tensor(0)),  # float32 values are added exactly, in float64
    ]
    assert total_loss(outputs) == (1.5 + 2.25 + float(torch.tensor(1e-8)), 8)
    assert total_loss([]) == (0.0, 0)
