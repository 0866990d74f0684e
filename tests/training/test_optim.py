from __future__ import annotations

import pytest
import torch
from torch import nn

from tformer.training.optim import build_optimizer, parameter_groups, step_unless_nonfinite


class TinyLM(nn.Module):
    """Embedding tied to the output Linear, a norm, a biased projection and a frozen buffer-like parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 11, bias=False)
        self.head.weight = self.embed.weight  # weight tying
        self.frozen = nn.Parameter(torch.ones(8, 8), requires_grad=False)


def _ids(params) -> list[int]:
    return sorted(id(p) for p in params)


def test_groups_put_only_matrices_under_decay() -> None:
    torch.manual_seed(0)
    model = TinyLM()
    groups = parameter_groups(model, weight_decay=0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    decay, no_decay = groups
    assert _ids(decay["params"]) == _ids([model.proj.weight])
    assert _ids(no_decay["params"]) == _ids(
        [model.embed.weight, model.proj.bias, model.norm.weight, model.norm.bias]
    )


def test_every_trainable_parameter_appears_exactly_once() -> None:
    model = TinyLM()
    grouped = [id(p) for g in parameter_groups(model, weight_decay=0.01) for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(grouped) == trainable
    assert id(model.frozen) not in grouped
    assert id(model.head.weight) in grouped  # the tied head weight is the embedding, listed once


def test_empty_group_dropped_and_negative_decay_rejected() -> None:
    groups = parameter_groups(nn.LayerNorm(4), weight_decay=0.1)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="-0.5"):
        parameter_groups(nn.Linear(2, 2), weight_decay=-0.5)


def test_build_optimizer_hyperparameters() -> None:
    model = TinyLM()
    opt = build_optimizer(model, lr=3e-4, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)
    for group in opt.param_groups:
        assert group["betas"] == (0.9, 0.98)  # the paper's
        assert group["eps"] == 1e-9
        assert group["lr"] == 3e-4
        assert group["fused"] is True  # CPU parameters: torch's fused CPU kernel
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    custom = build_optimizer(model, lr=1.0, betas=(0.8, 0.9), eps=1e-6)
    assert custom.param_groups[0]["betas"] == (0.8, 0.9) and custom.param_groups[0]["eps"] == 1e-6


def test_fused_steps_equal_the_multi_tensor_ones_and_other_devices_are_not_fused() -> None:
    torch.manual_seed(0)
    fused_model = TinyLM()
    plain_model = TinyLM()
    plain_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, lr=1e-2, weight_decay=0.1)
    plain = build_optimizer(plain_model, lr=1e-2, weight_decay=0.1, fused=False)
    assert fused.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
    for step in range(3):
        for model, optimizer in ((fused_model, fused), (plain_model, plain)):
            torch.manual_seed(step)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            optimizer.step()
    for a, b in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert build_optimizer(TinyLM().to("meta"), lr=1.0).param_groups[0]["fused"] is False


def test_decoupled_decay_shrinks_only_the_decayed_group() -> None:
    # With zero gradients Adam's moment update is 0, so one AdamW step only applies p *= (1 - lr * wd).
    torch.manual_seed(0)
    model = TinyLM()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = build_optimizer(model, lr=0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(model.proj.weight, before["proj.weight"] * (1 - 0.1 * 0.5))
    for name in ("embed.weight", "proj.bias", "norm.weight", "norm.bias"):
        assert torch.equal(dict(model.named_parameters())[name], before[name]), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": 1e-3, "betas": (0.9, 1.0)}, "betas"),
        ({"lr": 1e-3, "eps": 0.0}, "eps"),
    ],
)
def test_build_optimizer_rejects_bad_hyperparameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_optimizer(TinyLM(), **kwargs)


def test_model_without_trainable_parameters_raises() -> None:
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="Linear has no trainable parameters"):
        build_optimizer(model, lr=1e-3)


def test_a_tasks_own_groups_keep_their_rates_and_leave_out_what_they_omit() -> None:
    model = TinyLM()
    groups = [{"params": [model.proj.weight], "lr": 1e-4}, {"params": [model.embed.weight]}]
    optimizer = build_optimizer(model, lr=1e-3, groups=groups)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-3]
    assert _ids(p for g in optimizer.param_groups for p in g["params"]) == _ids(
        [model.proj.weight, model.embed.weight]
    )


@pytest.mark.parametrize(
    "make_groups, message",
    [
        (lambda m: [{"params": []}], "group 0 must be a dict with a non-empty list"),
        (lambda m: [{"params": [torch.zeros(2, requires_grad=True)]}], "not a parameter of the model"),
        (
            lambda m: [{"params": [m.proj.weight]}, {"params": [m.proj.weight]}],
            "'proj.weight' is in more than",
        ),
        (lambda m: [{"params": [m.frozen]}], "'frozen' is frozen"),
    ],
)
def test_a_tasks_own_groups_are_checked(make_groups, message: str) -> None:
    model = TinyLM()
    with pytest.raises(ValueError, match=message):
        build_optimizer(model, lr=1e-3, groups=make_groups(model))


@pytest.mark.parametrize("fused", [True, False])  # fused: decided on the device; multi-tensor: one read
def test_step_unless_nonfinite_leaves_weights_moments_and_step_count_alone(fused: bool) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = build_optimizer(model, lr=0.1, fused=fused)

    def step(norm: float) -> None:
        for param in model.parameters():
            param.grad = torch.randn_like(param)
        step_unless_nonfinite(optimizer, torch.tensor(norm))

    step(1.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in optimizer.state[model.weight].items()}
    for bad in (float("nan"), float("inf")):
        step(bad)
        assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
        assert all(torch.equal(v, optimizer.state[model.weight][k]) for k, v in state.items())
    assert not hasattr(optimizer, "found_inf")  # nothing left behind for a later, unguarded step
    step(1.0)
    assert not torch.equal(model.weight, before["weight"])
    assert optimizer.state[model.weight]["step"].item() == 2
