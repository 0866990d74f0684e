"""The one mask convention of tformer: boolean tensors where True means "may attend" (or "is a real token").

Shape legend: B batch, T query length, S key length.

Every other module builds masks through these helpers, so the polarity is decided in exactly one place.
PyTorch's `scaled_dot_product_attention` uses the same polarity for boolean masks; `nn.MultiheadAttention`
uses the opposite one (True = ignore), which is why tests convert with `~`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Bool[B, S]: True where `ids` holds a real token, False at padding."""
    return ids != pad_id


def causal_mask(query_len: int, key_len: int | None = None, *, device: torch.device | None = None) -> Tensor:
    """Bool[T, S]: query i may attend key j iff j <= i + (S - T).

    With a KV cache the T new queries are the *last* T positions of the S keys, so the diagonal is aligned
    bottom-right: a single query (T=1) sees every cached key, not just the first one.
    """
    key_len = query_len if key_len is None else key_len
    if key_len < query_len:
        raise ValueError(
            f"causal mask needs key_len >= query_len, got key_len={key_len}, query_len={query_len}"
        )
    offset = key_len - query_len
    rows = torch.arange(query_len, device=device).unsqueeze(1)  # [T, 1]
    cols = torch.arange(key_len, device=device).unsqueeze(0)  # [1, S]
    return cols <= rows + offset


def key_mask(keep: Tensor) -> Tensor:
    """Bool[B, S] per-key mask -> Bool[B, 1, 1, S], broadcastable over heads and queries."""
    return keep[:, None, None, :]


def combine(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of broadcastable masks; None means "no restriction" and is skipped."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out
