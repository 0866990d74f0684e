"""Output dataclasses, one per family and method, so a model always returns the same type.

Shape legend: B batch, S source length, T target (or language-model) length, D model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tformer.nn.kv_cache import KVCache


@dataclass
class EncoderOutput:
    memory: Tensor  # [B, S, D]
    memory_mask: Tensor  # Bool[B, S], True = real source token


@dataclass
class DecoderOutput:
    logits: Tensor  # [B, T, V]
    cache: KVCache | None
    cross_attention: Tensor | None = None  # [B, T, S], last layer, averaged over heads


@dataclass
class Seq2SeqOutput:
    logits: Tensor  # [B, T, V]
    encoder: EncoderOutput
    cross_attention: Tensor | None = None  # [B, T, S]


@dataclass
class LMOutput:
    logits: Tensor  # [B, T, V], or [B, 1, V] with last_only
    cache: KVCache | None  # the cache passed in, now holding these positions too
