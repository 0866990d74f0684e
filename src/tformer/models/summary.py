"""A model summary in the spirit of torchsummary: modules, output shapes, parameters, FLOPs per token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from tformer.nn.dropout import Dropout
from tformer.nn.modes import eval_mode
from tformer.nn.positional import NoAddedPositions


@dataclass
class ModuleRow:
    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    n_params: int


@dataclass
class ModelSummary:
    rows: list[ModuleRow]
    total_params: int
    trainable_params: int
    forward_flops_per_token: float  # measured by torch's FLOP counter on the example batch
    tokens: int

    def format(self, title: str) -> str:
        width = max(len(r.name) + len(r.kind) + 3 for r in self.rows)
        lines = [title, f"{'module':<{width}}  {'output shape':<18} {'params':>12}", "-" * (width + 33)]
        for r in self.rows:
            shape = "-" if r.output_shape is None else str(list(r.output_shape))
            lines.append(f"{r.name + ' (' + r.kind + ')':<{width}}  {shape:<18} {r.n_params:>12,}")
        lines += [
            "-" * (width + 33),
            f"total parameters:     {self.total_params:,}",
            f"trainable parameters: {self.trainable_params:,}",
            f"forward FLOPs/token:  {_si(self.forward_flops_per_token)} "
            f"(training ~3x: {_si(3 * self.forward_flops_per_token)}; counted on {self.tokens} tokens)",
        ]
        return "\n".join(lines)


def count_parameters(model: nn.Module) -> int:
    """Parameters counted once even when shared: a tied embedding is one Parameter, which parameters() yields
    once."""
    return sum(p.numel() for p in model.parameters())


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f} {prefix}"
    return f"{value:.0f} "


def _first_tensor(output) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    values = output if isinstance(output, (tuple, list)) else getattr(output, "__dict__", {}).values()
    return next((v for v in values if isinstance(v, Tensor)), None)


def _unique_params(module: nn.Module) -> list[nn.Parameter]:
    return list({id(p): p for p in module.parameters()}.values())


_SKIPPED = (nn.ModuleList, nn.Identity, nn.Dropout, Dropout, NoAddedPositions)


def _rows_to_show(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's direct children, with lists of layers expanded into one row per layer."""
    chosen = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            chosen += [(f"{name}.{i}", layer) for i, layer in enumerate(child)]
        elif isinstance(child, _SKIPPED):
            continue
        elif any(isinstance(c, nn.ModuleList) for c in child.children()):
            chosen += [(f"{name}.{n}", m) for n, m in _rows_to_show(child)]
        else:
            chosen.append((name, child))
    return chosen


def summarize(model: nn.Module, inputs: dict[str, Tensor], *, tokens: int) -> ModelSummary:
    """Run `model(**inputs)` once with hooks on the rows to show, and count FLOPs.

    `tokens` is the number of output tokens in `inputs`, to turn total FLOPs into FLOPs per token.
    """
    shapes: dict[str, tuple[int, ...] | None] = {}
    chosen = _rows_to_show(model)
    handles = []
    for name, module in chosen:

        def hook(_module, _args, output, name=name):
            tensor = _first_tensor(output)
            shapes[name] = None if tensor is None else tuple(tensor.shape)

        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    rows, seen = [], set()
    for (
        name,
        module,
    ) in chosen:  # a shared weight counts in the first row that uses it, so rows sum to the total
        params = [p for p in _unique_params(module) if id(p) not in seen]
        kind = type(module).__name__
        if len(params) < len(_unique_params(module)):
            kind += ", shares weights"
        seen.update(id(p) for p in params)
        rows.append(ModuleRow(name, kind, shapes.get(name), sum(p.numel() for p in params)))
    params = _unique_params(model)
    return ModelSummary(
        rows=rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        forward_flops_per_token=counter.get_total_flops() / tokens,
        tokens=tokens,
    )
