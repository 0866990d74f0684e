"""Encoder and decoder blocks: sub-layers wrapped in a residual connection with layer normalisation.

Shape legend: B batch, S source length, T target length, D model width, H heads.

Post-norm (the paper): x = LayerNorm(x + Dropout(Sublayer(x))).
Pre-norm (GPT-2 and most later models; trains more stably when deep): x = x + Dropout(Sublayer(LayerNorm(x))).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor, nn

from tformer.nn.attention import AttentionConfig, AttentionKind, FullAttention, MultiHeadAttention
from tformer.nn.dropout import Dropout
from tformer.nn.feedforward import FeedForwardKind, make_feedforward
from tformer.nn.kv_cache import LayerKV
from tformer.nn.positional import RotaryEmbedding


class NormPosition(enum.Enum):
    POST = "post"
    PRE = "pre"


@dataclass(frozen=True)
class BlockConfig:
    """What every block of a stack shares."""

    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.0
    # inside the FFN, on its hidden activations: None = `dropout` (as torch.nn.Transformer); GPT-2 has none
    activation_dropout: float | None = None
    n_kv_heads: int | None = None
    feedforward: FeedForwardKind = FeedForwardKind.RELU
    norm_position: NormPosition = NormPosition.POST
    norm_eps: float = 1e-5
    bias: bool = True  # biases in every Linear and LayerNorm of the block (False: nanoGPT's leaner option)
    attention: AttentionConfig = FullAttention()  # the self-attention kernel (nn/attention.py)

    @classmethod
    def of(cls, model_config: Any) -> BlockConfig:
        """The block settings of any model config: each field above that the model config has too, by the
        same name, so a family declares d_model, dropout, ... once, in its own config. A family's own choices
        that its config does not expose (GPT-2: pre-norm) go on top with dataclasses.replace."""
        return cls(
            **{f.name: getattr(model_config, f.name) for f in fields(cls) if hasattr(model_config, f.name)}
        )


class Residual(nn.Module):
    """The residual connection around one sub-layer, with its LayerNorm before (pre) or after (post)."""

    def __init__(self, config: BlockConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm_position is NormPosition.PRE
        self.norm = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def sublayer_input(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.pre_norm else x

    def add(self, x: Tensor, sublayer_output: Tensor) -> Tensor:
        out = x + self.dropout(sublayer_output)
        return out if self.pre_norm else self.norm(out)


def _attention(
    config: BlockConfig, kind: AttentionKind, rotary: RotaryEmbedding | None = None
) -> MultiHeadAttention:
    return MultiHeadAttention(
        config.d_model,
        config.n_heads,
        kind=kind,
        n_kv_heads=config.n_kv_heads,
        dropout=config.attention_dropout,
        bias=config.bias,
        rotary=rotary,
        # the configured kernel serves self-attention, whose cost grows with the square of the sequence;
        # cross-attention over the source memory stays full
        kernel=config.attention if kind is AttentionKind.SELF else FullAttention(),
    )


def _feedforward(config: BlockConfig) -> nn.Module:
    inner = config.dropout if config.activation_dropout is None else config.activation_dropout
    return make_feedforward(
        config.d_model, config.d_ff, kind=config.feedforward, dropout=inner, bias=config.bias
    )


class EncoderBlock(nn.Module):
    """Self-attention, then the position-wise feed-forward network.

    Over the whole source in an encoder; with `causal=True` (and a cache when generating) it is a GPT block.
    """

    def __init__(self, config: BlockConfig, *, rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        self.self_attn = _attention(config, AttentionKind.SELF, rotary)
        self.attn_residual = Residual(config)
        self.feedforward = _feedforward(config)
        self.ff_residual = Residual(config)

    def forward(
        self, x: Tensor, *, mask: Tensor | None = None, causal: bool = False, cache: LayerKV | None = None
    ) -> Tensor:
        """x [B, S, D]; mask Bool broadcastable to [B, H, S, S] (usually the key padding mask [B, 1, 1, S]).

        With a cache, x holds only the new positions; their keys/values are appended and attention runs over
        every cached position.
        """
        attn, _ = self.self_attn(self.attn_residual.sublayer_input(x), mask=mask, causal=causal, cache=cache)
        x = self.attn_residual.add(x, attn)
        return self.ff_residual.add(x, self.feedforward(self.ff_residual.sublayer_input(x)))


class DecoderBlock(nn.Module):
    """Masked (causal) self-attention, cross-attention over the encoder memory, then the feed-forward network."""

    def __init__(self, config: BlockConfig, *, rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        self.self_attn = _attention(config, AttentionKind.SELF, rotary)
        self.self_residual = Residual(config)
        self.cross_attn = _attention(config, AttentionKind.CROSS)
        self.cross_residual = Residual(config)
        self.feedforward = _feedforward(config)
        self.ff_residual = Residual(config)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: LayerKV | None = None,
    ) -> Tensor:
        """x [B, T, D], memory [B, S, D] -> x [B, T, D]."""
        attn, _ = self.self_attn(
            self.self_residual.sublayer_input(x), mask=self_mask, causal=True, cache=cache
        )
        x = self.self_residual.add(x, attn)
        cross, _ = self.cross_attn(
            self.cross_residual.sublayer_input(x), memory=memory, mask=memory_mask, cache=cache
        )
        x = self.cross_residual.add(x, cross)
        return self.ff_residual.add(x, self.feedforward(self.ff_residual.sublayer_input(x)))
