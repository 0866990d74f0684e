"""Model parameters and optimizer state keyed by canonical parameter names, not by wrapper paths or positions.

Canonical names drop the `module.` (DDP) and `_orig_mod.` (torch.compile) path components, so a checkpoint fits
the bare model and any wrapping of it. torch numbers optimizer state by position in the param groups; keyed by
name, it survives a model whose parameters are registered in another order, and a mismatch can be named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

_WRAPPER_PREFIXES = ("module", "_orig_mod")
_SHOW = 5  # how many differing names an error message lists


def canonical_name(name: str) -> str:
    """`name` without DDP's `module.` and torch.compile's `_orig_mod.` components."""
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_PREFIXES)


def _param_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> canonical name; a tied parameter gets the first name it is registered under."""
    return {id(param): canonical_name(name) for name, param in model.named_parameters()}


def _names_of_optimizer_params(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[list[str]]:
    names = _param_names(model)
    groups = []
    for index, group in enumerate(optimizer.param_groups):
        unknown = [tuple(p.shape) for p in group["params"] if id(p) not in names]
        if unknown:
            raise ValueError(
                f"optimizer param group {index} holds parameters not in the model (shapes {unknown})"
            )
        groups.append([names[id(p)] for p in group["params"]])
    return groups


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, Any]:
    # torch numbers parameters 0, 1, ... in param-group order; swap each number for the parameter's name
    names = [name for group in _names_of_optimizer_params(optimizer, model) for name in group]
    state_dict = optimizer.state_dict()
    return {
        "state": {names[index]: value for index, value in state_dict["state"].items()},
        "param_groups": [
            {
                **{k: v for k, v in group.items() if k != "params"},
                "params": [names[i] for i in group["params"]],
            }
            for group in state_dict["param_groups"]
        ],
    }


def load_optimizer_state_by_name(
    optimizer: torch.optim.Optimizer, model: nn.Module, saved: dict[str, Any], source: Path | None
) -> None:
    current = optimizer.state_dict()
    if len(saved["param_groups"]) != len(current["param_groups"]):
        raise ValueError(
            f"{source} has {len(saved['param_groups'])} optimizer param groups, this optimizer "
            f"{len(current['param_groups'])}"
        )
    name_to_index: dict[str, int] = {}
    groups = []
    for index, (names, now, then) in enumerate(
        zip(
            _names_of_optimizer_params(optimizer, model),
            current["param_groups"],
            saved["param_groups"],
            strict=True,
        )
    ):
        if names != then["params"]:
            differ = sorted(set(names) ^ set(then["params"]))[:_SHOW]
            raise ValueError(
                f"optimizer param group {index} in {source} holds other parameters than this optimizer's "
                f"(first differences: {differ or 'same names, other order'})"
            )
        # JSON turned tuples (betas) into lists; current values fill in keys a newer torch added
        group = {**now, **{k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in then.items()}}
        group["params"] = now["params"]
        groups.append(group)
        name_to_index.update(zip(names, now["params"], strict=True))
    state = {name_to_index[name]: value for name, value in saved["state"].items()}
    optimizer.load_state_dict({"state": state, "param_groups": groups})
