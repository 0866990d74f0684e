"""Attention weights of any model, collected by forward hooks: no model needs a new argument or output field.

    with capture_attention(model) as maps:
        model(src_ids, tgt_ids)
    maps.cross_attention(layer=-1)  # Float[B, H, T, S]: the last decoder layer's cross-attention, every head

While the capture is open, every MultiHeadAttention is called with need_weights=True (its reference path,
which computes the same output as the fused kernel) and every AdditiveAttention's weights are kept. Shape
legend: B batch, H heads, T queries, S keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tformer.nn.attention import AdditiveAttention, AttentionKind, MultiHeadAttention


@dataclass
class AttentionMaps:
    """Per attention module (by its name in the model, in model order): the weights of each call."""

    calls: dict[str, list[Tensor]] = field(default_factory=dict)  # each call Float[B, H, T, S]
    cross: set[str] = field(default_factory=set)  # the names of the cross-attention modules

    def names(self, *, kind: AttentionKind | None = None) -> list[str]:
        """Module names, in model order; only cross- or self-attention ones with `kind`."""
        if kind is None:
            return list(self.calls)
        return [n for n in self.calls if (n in self.cross) == (kind is AttentionKind.CROSS)]

    def weights(self, name: str) -> Tensor:
        """Float[B, H, T, S] of module `name`; calls one query step each (a recurrent decoder, or a decoder
        stepping with a cache over a fixed memory) are joined along T."""
        if name not in self.calls:
            raise KeyError(
                f"no attention captured from {name!r} (captured: {', '.join(self.calls) or 'none'})"
            )
        calls = self.calls[name]
        if not calls:
            raise ValueError(f"{name!r} was not called while the capture was open")
        if len({c.shape[-1] for c in calls}) > 1:
            raise ValueError(
                f"{name!r} was called over {len(calls)} different key lengths; join them yourself from .calls"
            )
        return torch.cat(calls, dim=2)

    def cross_attention(self, *, layer: int = -1) -> Tensor:
        """Float[B, H, T, S] of the `layer`-th cross-attention module (negative counts from the last)."""
        names = self.names(kind=AttentionKind.CROSS)
        if not names:
            raise ValueError("the model has no cross-attention (it is not an encoder-decoder)")
        if not -len(names) <= layer < len(names):
            raise ValueError(
                f"layer {layer} is out of range: the model has {len(names)} cross-attention layer(s), "
                f"valid: {-len(names)}..{len(names) - 1}"
            )
        return self.weights(names[layer])


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[AttentionMaps]:
    """Record the attention weights of every attention module of `model` until the block ends."""
    maps = AttentionMaps()
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, MultiHeadAttention):
            maps.calls[name] = []
            if module.kind is AttentionKind.CROSS:
                maps.cross.add(name)
            handles.append(module.register_forward_pre_hook(_ask_for_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(_recorder(maps.calls[name], heads_first=True)))
        elif isinstance(module, AdditiveAttention):
            maps.calls[name] = []
            maps.cross.add(name)
            handles.append(module.register_forward_hook(_recorder(maps.calls[name], heads_first=False)))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def _ask_for_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    return args, {**kwargs, "need_weights": True}


def _recorder(calls: list[Tensor], *, heads_first: bool):
    def record(module: nn.Module, args: tuple, output: tuple[Tensor, Tensor]) -> None:
        weights = output[1].detach()
        # MultiHeadAttention: [B, H, T, S]; AdditiveAttention, one query per call: [B, S] -> [B, 1, 1, S]
        calls.append(weights if heads_first else weights[:, None, None, :])

    return record
