"""Positional information: sinusoidal (the paper), learned, and rotary.

Shape legend: B batch, T length, D model width, H heads, K head width.
"""

from __future__ import annotations

import enum

import torch
from torch import Tensor, nn


class PositionalKind(enum.Enum):
    SINUSOIDAL = "sinusoidal"
    LEARNED = "learned"
    ROTARY = "rotary"


def sinusoidal_table(n_positions: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)); [T, D]."""
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # [T, 1]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # [D/2]
    angle = pos / torch.pow(10000.0, two_i / d_model)  # [T, D/2]; float64 so large positions stay exact
    table = torch.empty(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to x [B, T, D]; positions start at `offset` (the cache length)."""

    def __init__(self, d_model: int, *, max_len: int = 1024) -> None:
        super().__init__()
        self.d_model = d_model
        # Not persistent: it is a formula, not a weight, so checkpoints stay free of it.
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        end = offset + x.shape[1]
        if end > self.table.shape[0]:  # longer than planned: extend, the formula has no limit
            self.table = sinusoidal_table(max(end, 2 * self.table.shape[0]), self.d_model).to(
                self.table.device
            )
        return x + self.table[offset:end].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position, added to x [B, T, D]; at most `max_len` positions."""

    def __init__(self, d_model: int, *, max_len: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        end = offset + x.shape[1]
        if end > self.embedding.num_embeddings:
            raise ValueError(
                f"position {end - 1} is beyond the learned table (max_len={self.embedding.num_embeddings}); "
                "use a shorter input or a model with a larger max_len"
            )
        positions = torch.arange(offset, end, device=x.device)
        return x + self.embedding(positions)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer): rotates pairs of query/key features by a position-dependent angle.

    Applied to q and k ([B, H, T, K]) inside self-attention, so attention scores depend on relative position.
    Uses the half-split pairing (feature j with feature j + K/2).
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head width, got {head_dim}")
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        t = x.shape[-2]
        positions = torch.arange(offset, offset + t, device=x.device, dtype=torch.float32)
        angle = torch.outer(positions, self.inv_freq)  # [T, K/2]
        cos = torch.cat([angle.cos(), angle.cos()], dim=-1).to(x.dtype)  # [T, K]
        sin = torch.cat([angle.sin(), angle.sin()], dim=-1).to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return x * cos + rotated * sin


class NoAddedPositions(nn.Module):
    """Adds nothing: for rotary positions, which self-attention applies to queries and keys instead."""

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        return x


def make_positions(kind: PositionalKind, d_model: int, *, max_len: int) -> nn.Module:
    """The module that adds positions to token embeddings, `positions(x, offset=...)` for every kind; with
    rotary positions it adds nothing (make_rotary builds what the attention applies)."""
    if kind is PositionalKind.SINUSOIDAL:
        return SinusoidalPositionalEncoding(d_model, max_len=max_len)
    if kind is PositionalKind.LEARNED:
        return LearnedPositionalEmbedding(d_model, max_len=max_len)
    return NoAddedPositions()


def make_rotary(kind: PositionalKind, head_dim: int) -> RotaryEmbedding | None:
    """The rotary embedding self-attention applies for rotary positions; None for the added kinds."""
    return RotaryEmbedding(head_dim) if kind is PositionalKind.ROTARY else None
