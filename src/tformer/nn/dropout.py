"""Dropout, the same function as torch.nn.Dropout, with a mask that is cheap to draw on CPU.

PyTorch's CPU dropout draws a 64-bit Mersenne-Twister number per element through `bernoulli_`; in the
`small` seq2seq preset that made dropout about 8% of a training step (profile in docs/results.md). Sixteen
random bits per element are plenty to decide "keep or drop", and one 64-bit draw gives four of them: the
mask costs a quarter of the random numbers.

The drop probability is rounded to a multiple of 2^-16 (at most 7.7e-6 away from `p`), and kept values are
scaled by 1 / (1 - that probability), so the expectation of the output is exactly the input, as in
torch.nn.Dropout. Other devices, and models under torch.compile, use torch's own dropout. All draw from
torch's default generator, so torch.manual_seed and the checkpointed RNG state make a run repeatable.
Shape legend: N elements of the input, whatever its shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 16  # a 16-bit random integer takes this many values, uniformly
# random_(low, high) draws uniformly from [low, high): every int64 but the largest, i.e. 64 random bits
# (one of 2^64 values never comes up; its bias is 2^-64).
_INT64_LOW, _INT64_HIGH = -(1 << 63), (1 << 63) - 1


def check_probability(p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be a number in [0, 1], got {p!r}")


def drop_threshold(p: float) -> int:
    """How many of the 2^16 values of a 16-bit draw mean "drop": p rounded to a multiple of 2^-16."""
    return round(p * _LEVELS)


def keep_mask(shape: tuple[int, ...] | torch.Size, *, p: float, device: torch.device) -> Tensor:
    """Bool mask of `shape`, each element False with probability drop_threshold(p) / 2^16, independently."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(_INT64_LOW, _INT64_HIGH)
    bits = words.view(torch.int16)[:n].view(shape)  # [ceil(N/4)] int64 -> [N] int16 -> shape: 4 draws a word
    return bits >= drop_threshold(p) - _LEVELS // 2  # int16 runs from -2^15: this many values lie below


def dropout(x: Tensor, p: float, *, training: bool) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) while training."""
    check_probability(p)
    if not training or p == 0.0:
        return x
    dropped = drop_threshold(p)
    # torch.compile fuses its own dropout into the graph (and cannot trace random_); p within 2^-17 of 1
    # would keep nothing here.
    if x.device.type != "cpu" or torch.compiler.is_compiling() or dropped == _LEVELS:
        return F.dropout(x, p, training=True)
    keep = keep_mask(x.shape, p=p, device=x.device)
    # autograd keeps only the bool mask for the backward of where; the scale multiplies in place
    return torch.where(keep, x, 0.0).mul_(_LEVELS / (_LEVELS - dropped))


class Dropout(nn.Module):
    """Drop-in for torch.nn.Dropout (see the module docstring for what differs on CPU: only the random draws)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        check_probability(p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
