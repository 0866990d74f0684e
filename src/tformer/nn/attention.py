"""Scaled dot-product attention and multi-head attention.

Shape legend: B batch, T query length, S key length, D model width, H query heads, G key/value heads
(G divides H; G < H is grouped-query attention), K head width (D / H).

Attention(Q, K, V) = softmax(Q K^T / sqrt(K)) V, computed by one of two paths that must agree:
- `sdpa_attention`: PyTorch's fused `scaled_dot_product_attention` (flash / memory-efficient kernels), the default;
- `reference_attention`: the formula written out, which can also return the attention weights (for plots and
  tests). It also trains with attention dropout on CPU: there SDPA runs its own unfused math path anyway, and
  this one draws the dropout mask with tformer's cheaper dropout (nn/dropout.py).
Both treat a query row whose keys are *all* masked the same way: its output (and weights) are zero, never NaN.

Which keys a query may reach, and at what cost, is the attention *kernel*: a small frozen config value with an
`attend(q, k, v, ...)` method that a model config carries (`model.attention: {type: full}`) and every block's
self-attention is given, so a family changes its attention by configuration, not by flags in its code.
`FullAttention` (every allowed key, the paper's O(T S) attention) is the only kernel today; sliding-window,
block-sparse and low-rank ones are further members of `AttentionConfig`, each with a `type` tag.

`AdditiveAttention` is the recurrent baseline's (Bahdanau et al. 2015): one query vector per decoder step.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.nn.dropout import check_probability, dropout
from tformer.nn.kv_cache import LayerKV
from tformer.nn.masks import causal_mask, combine
from tformer.nn.positional import RotaryEmbedding


def _repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """[B, G, S, K] -> [B, G * n_rep, S, K]: each key/value head serves n_rep consecutive query heads."""
    if n_rep == 1:
        return x
    b, g, s, k = x.shape
    return x[:, :, None].expand(b, g, n_rep, s, k).reshape(b, g * n_rep, s, k)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, dropout_p: float = 0.0):
    """Explicit softmax(QK^T/sqrt(K))V. q [B,H,T,K], k/v [B,H,S,K], mask Bool broadcastable to [B,H,T,S].

    Returns (output [B,H,T,K], weights [B,H,T,S]). Rows with no allowed key must be handled by the caller.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B, H, T, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return dropout(weights, dropout_p, training=True) @ v, weights


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, is_causal: bool, dropout_p: float = 0.0
):
    """PyTorch's fused kernel; same arguments and polarity as `reference_attention`."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Attention of q [B,H,T,K] over k, v [B,G,S,K] with a bool mask (True = may attend).

    `causal` aligns the diagonal bottom-right, so T new queries after S - T cached keys see the right keys.
    Returns (output [B,H,T,K], weights [B,H,T,S] if need_weights else None).
    """
    n_rep = q.shape[1] // k.shape[1]
    k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
    t, s = q.shape[-2], k.shape[-2]
    # A lone query (T=1) at the end of the keys may see all of them, so causality adds nothing there.
    use_causal = causal and t > 1
    explicit = need_weights or (dropout_p > 0.0 and q.device.type == "cpu")  # see the module docstring
    if use_causal and (mask is not None or explicit or t != s):
        mask = combine(causal_mask(t, s, device=q.device), mask)
        use_causal = False

    # Rows with no allowed key: attend to everything (finite), then zero the output.
    empty_rows = None
    if mask is not None:
        empty_rows = ~mask.any(dim=-1, keepdim=True)  # [B|1, H|1, T|1, 1]
        mask = mask | empty_rows

    if explicit:
        out, weights = reference_attention(q, k, v, mask=mask, dropout_p=dropout_p)
        weights = weights if need_weights else None
    else:
        out, weights = sdpa_attention(q, k, v, mask=mask, is_causal=use_causal, dropout_p=dropout_p), None
    if empty_rows is not None:
        out = out.masked_fill(empty_rows, 0.0)
        if weights is not None:
            weights = weights.masked_fill(empty_rows, 0.0)
    return out, weights


class AttentionKernel(Protocol):
    """What MultiHeadAttention calls once its heads are projected: `attend`'s arguments and return value."""

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        mask: Tensor | None,
        causal: bool,
        dropout_p: float,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]: ...


@dataclass(frozen=True)
class FullAttention:
    """Every query attends to every key the mask allows: `attend` above, through SDPA or the reference path."""

    type: Literal["full"] = "full"

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        mask: Tensor | None,
        causal: bool,
        dropout_p: float,
        need_weights: bool,
    ) -> tuple[Tensor, Tensor | None]:
        return attend(q, k, v, mask=mask, causal=causal, dropout_p=dropout_p, need_weights=need_weights)


# The attention kernels a model config may name, each a frozen dataclass with a `type: Literal[...]` tag (the
# config reader picks the member by that tag once there are several).
AttentionConfig = FullAttention


def check_heads(d_model: int, n_heads: int, n_kv_heads: int | None) -> None:
    """The head counts a model config may ask for: checked when the config is built, not only the model."""
    if d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
    if n_kv_heads is not None and (n_kv_heads < 1 or n_heads % n_kv_heads):
        raise ValueError(f"n_kv_heads={n_kv_heads} must be >= 1 and divide n_heads={n_heads}")


class AttentionKind(enum.Enum):
    SELF = "self"  # queries, keys and values from the same sequence: one fused QKV projection
    CROSS = "cross"  # queries from the decoder, keys/values from the encoder memory


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_H) W_O with head_i = Attention(Q W_Q_i, K W_K_i, V W_V_i)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        kind: AttentionKind = AttentionKind.SELF,
        n_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        rotary: RotaryEmbedding | None = None,
        kernel: AttentionKernel | None = None,
    ) -> None:
        super().__init__()
        check_heads(d_model, n_heads, n_kv_heads)
        check_probability(dropout)  # checked once here, not only on the CPU path that draws its own mask
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if rotary is not None and kind is AttentionKind.CROSS:
            raise ValueError("rotary positions apply to self-attention only, not cross-attention")
        self.kind, self.n_heads, self.n_kv_heads = kind, n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.rotary = rotary
        self.kernel = FullAttention() if kernel is None else kernel
        kv_width = 2 * n_kv_heads * self.head_dim
        if kind is AttentionKind.SELF:
            self.qkv_proj = nn.Linear(d_model, d_model + kv_width, bias=bias)  # one matmul for Q, K and V
        else:
            self.q_proj = nn.Linear(d_model, d_model, bias=bias)
            self.kv_proj = nn.Linear(d_model, kv_width, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _split_heads(self, x: Tensor, n_heads: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, n_heads, self.head_dim).transpose(1, 2)  # [B, T, n*K] -> [B, n, T, K]

    def _project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.kv_proj(source).chunk(2, dim=-1)
        return self._split_heads(k, self.n_kv_heads), self._split_heads(v, self.n_kv_heads)

    def forward(
        self,
        x: Tensor,
        *,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: LayerKV | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x [B,T,D] (queries); memory [B,S,D] for cross-attention; mask Bool broadcastable to [B,H,T,S].

        With a cache, self-attention appends this step's keys/values and attends over all cached positions;
        cross-attention projects the memory once and reuses it. Returns (output [B,T,D], weights [B,H,T,S]|None).
        """
        if self.kind is AttentionKind.SELF:
            d = self.n_heads * self.head_dim
            kv = self.n_kv_heads * self.head_dim
            q, k, v = self.qkv_proj(x).split([d, kv, kv], dim=-1)
            q, k, v = (
                self._split_heads(q, self.n_heads),
                self._split_heads(k, self.n_kv_heads),
                self._split_heads(v, self.n_kv_heads),
            )
            if self.rotary is not None:
                offset = 0 if cache is None else cache.length
                q, k = self.rotary(q, offset=offset), self.rotary(k, offset=offset)
            if cache is not None:
                k, v = cache.append(k, v)
        else:
            if memory is None:
                raise ValueError("cross-attention needs `memory` (the encoder output)")
            q = self._split_heads(self.q_proj(x), self.n_heads)
            if cache is None:
                k, v = self._project_kv(memory)
            else:
                if cache.cross_k is None:
                    cache.cross_k, cache.cross_v = self._project_kv(memory)
                k, v = cache.cross_k, cache.cross_v

        dropout_p = self.dropout if self.training else 0.0
        out, weights = self.kernel.attend(
            q, k, v, mask=mask, causal=causal, dropout_p=dropout_p, need_weights=need_weights
        )
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim)  # [B, H, T, K] -> [B, T, D]
        return self.out_proj(out), weights


class AdditiveAttention(nn.Module):
    """score(s, m_j) = v . tanh(W_q s + W_m m_j) (Bahdanau et al. 2015, eq. 6), softmax over real positions."""

    def __init__(self, d_query: int, d_memory: int, d_attention: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(d_query, d_attention, bias=False)
        self.memory_proj = nn.Linear(d_memory, d_attention)
        self.score = nn.Linear(d_attention, 1, bias=False)

    def forward(
        self, query: Tensor, *, memory: Tensor, memory_keys: Tensor, memory_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """query [B, H], memory [B, S, D], memory_keys = memory_proj(memory) [B, S, A] -> (context [B, D],
        weights [B, S]); the weights are exactly 0 where memory_mask is False, so a row with no real memory
        position gets a zero context (as nn.attention does), never NaN."""
        energy = torch.tanh(memory_keys + self.query_proj(query).unsqueeze(1))  # [B, S, A]
        scores = self.score(energy).squeeze(-1)  # [B, S]
        # The most negative finite score, not -inf: an all-masked row then softmaxes to finite values
        # that the masked_fill below zeroes; elsewhere exp(min - max) is already exactly 0.
        scores = scores.masked_fill(~memory_mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1).masked_fill(~memory_mask, 0.0)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # [B, 1, S] @ [B, S, D] -> [B, D]
        return context, weights
