"""Token embeddings. Shape legend: B batch, T length, D model width, V vocabulary."""

from __future__ import annotations

import math

from torch import Tensor, nn


class TokenEmbedding(nn.Module):
    """Embedding lookup multiplied by sqrt(d_model), as in section 3.4 of the paper.

    The scale keeps token vectors (initialised with std d_model^-0.5) on the same footing as the positional
    encoding, whose entries are of order 1.
    """

    def __init__(self, vocab_size: int, d_model: int, *, padding_idx: int | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model)

    @property
    def weight(self):
        return self.embedding.weight

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(ids) * self.scale  # [B, T] -> [B, T, D]
