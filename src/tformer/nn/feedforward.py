"""Position-wise feed-forward networks. Shape legend: B batch, T length, D model width, F inner width."""

from __future__ import annotations

import enum
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from tformer.nn.dropout import Dropout


class FeedForwardKind(enum.Enum):
    RELU = "relu"  # FFN(x) = max(0, x W1 + b1) W2 + b2, the paper
    GELU = "gelu"  # BERT (the exact erf form)
    GELU_TANH = "gelu_tanh"  # GPT-2's "gelu_new": the tanh approximation its weights were trained with
    SWIGLU = "swiglu"  # gated: (silu(x W1) * x W3) W2 (Shazeer 2020)
    GEGLU = "geglu"  # gated with GELU


_ACTIVATIONS = {
    FeedForwardKind.RELU: F.relu,
    FeedForwardKind.GELU: F.gelu,
    FeedForwardKind.GELU_TANH: partial(F.gelu, approximate="tanh"),
    FeedForwardKind.SWIGLU: F.silu,
    FeedForwardKind.GEGLU: F.gelu,
}


class FeedForward(nn.Module):
    """linear2(dropout(act(linear1(x)))): applied to each position separately and identically."""

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        kind: FeedForwardKind = FeedForwardKind.RELU,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if kind in (FeedForwardKind.SWIGLU, FeedForwardKind.GEGLU):
            raise ValueError(f"{kind.value} is gated: use GatedFeedForward (or make_feedforward)")
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.activation = _ACTIVATIONS[kind]
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class GatedFeedForward(nn.Module):
    """w2(dropout(act(w1 x) * w3 x)): the gated linear unit variants; no biases, as in the usual recipe.

    The output layer has FeedForward's name (`linear2`), so code that reaches for a block's FFN output (the
    residual-scaled init of GPT-2, weight copying) needs no case for the gated kinds."""

    def __init__(
        self, d_model: int, d_ff: int, *, kind: FeedForwardKind = FeedForwardKind.SWIGLU, dropout: float = 0.0
    ):
        super().__init__()
        if kind not in (FeedForwardKind.SWIGLU, FeedForwardKind.GEGLU):
            raise ValueError(f"{kind.value} is not gated: use FeedForward (or make_feedforward)")
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)  # w1 and w3 fused into one matmul
        self.linear2 = nn.Linear(d_ff, d_model, bias=False)  # w2
        self.activation = _ACTIVATIONS[kind]
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # [B, T, 2F] -> 2 x [B, T, F]
        return self.linear2(self.dropout(self.activation(gate) * up))


def make_feedforward(
    d_model: int, d_ff: int, *, kind: FeedForwardKind, dropout: float, bias: bool = True
) -> nn.Module:
    """The FFN of `kind`; `bias` applies to the plain kinds (the gated ones have none)."""
    if kind in (FeedForwardKind.SWIGLU, FeedForwardKind.GEGLU):
        return GatedFeedForward(d_model, d_ff, kind=kind, dropout=dropout)
    return FeedForward(d_model, d_ff, kind=kind, dropout=dropout, bias=bias)
