"""Output heads. Shape legend: B batch, T length, D model width.

The language-model head is a plain bias-free `nn.Linear(D, V)` owned by each model, which ties it to the token
embedding where asked (`head.weight = embedding.weight`), so it needs no class here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class AttentionPooling(nn.Module):
    """Pool a sequence into one vector with a learned query: weights = softmax(x q / sqrt(D)) over real tokens.

    The query starts at zero, so pooling starts as the mean over real tokens and learns where to look.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(d_model))
        self.scale = 1.0 / math.sqrt(d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x [B, T, D], mask Bool[B, T] (True = token) -> (pooled [B, D], weights [B, T])."""
        scores = (x @ self.query) * self.scale  # [B, T]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        if mask is not None:  # a row without real tokens pools to zeros, not NaN (as in attention)
            weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
        return (weights.unsqueeze(-1) * x).sum(dim=1), weights
