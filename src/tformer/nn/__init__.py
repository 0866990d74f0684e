"""Reusable Transformer building blocks; this package knows nothing of tasks or data."""

from tformer.nn.attention import (
    AttentionConfig,
    AttentionKernel,
    AttentionKind,
    FullAttention,
    MultiHeadAttention,
    attend,
)
from tformer.nn.blocks import BlockConfig, DecoderBlock, EncoderBlock, NormPosition
from tformer.nn.dropout import Dropout
from tformer.nn.embeddings import PatchEmbedding1d, PatchEmbedding2d, TokenEmbedding
from tformer.nn.feedforward import FeedForwardKind, make_feedforward
from tformer.nn.heads import (
    AttentionPooling,
    ClassifierHead,
    ClsPooling,
    MeanPooling,
    PoolingKind,
    ProjectionHead,
    make_pooling,
)
from tformer.nn.kv_cache import KVCache, LayerKV
from tformer.nn.masks import causal_mask, combine, key_mask, padding_mask
from tformer.nn.positional import LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding
from tformer.nn.stacks import Decoder, Encoder

__all__ = [
    "AttentionConfig",
    "AttentionKernel",
    "AttentionKind",
    "AttentionPooling",
    "BlockConfig",
    "ClassifierHead",
    "ClsPooling",
    "Decoder",
    "DecoderBlock",
    "Dropout",
    "Encoder",
    "EncoderBlock",
    "FeedForwardKind",
    "FullAttention",
    "KVCache",
    "LayerKV",
    "LearnedPositionalEmbedding",
    "MeanPooling",
    "MultiHeadAttention",
    "NormPosition",
    "PatchEmbedding1d",
    "PatchEmbedding2d",
    "PoolingKind",
    "ProjectionHead",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "attend",
    "causal_mask",
    "combine",
    "key_mask",
    "make_feedforward",
    "make_pooling",
    "padding_mask",
]
