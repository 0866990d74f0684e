"""Output dataclasses, one per family and method, so a model always returns the same type, and the one rule
for computing only some of the logit rows.

Shape legend: B batch, S source length, T target (or language-model) length, D model width, V vocabulary,
N selected positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
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


@dataclass
class Seq2SeqOutput:
    logits: Tensor  # [B, T, V]; [N, V] with forward(tgt_positions=...), row i at tgt_positions[i]
    encoder: EncoderOutput


@dataclass
class LMOutput:
    logits: Tensor | None  # [B, T, V], or [B, 1, V] with last_only; None when target_log_probs replaces it
    cache: KVCache | None  # the cache passed in, now holding these positions too
    target_log_probs: Tensor | None = None  # [B, T] log p(target), 0 where not scored: forward(targets=...)
    # of a model with an adaptive-softmax head


def select_positions(hidden: Tensor, positions: Tensor) -> Tensor:
    """Rows of hidden [B, T, D] at flat row-major positions Long[N] into the B*T positions -> [N, D].

    Teacher-forced training needs logits at the real target positions only, and the V-wide output layer is
    the largest matmul of a step, so the models select before it. The positions are indices, not a bool mask:
    a mask would need nonzero to find N, which makes the host wait for a GPU; index_select does not.
    """
    if positions.dtype != torch.long or positions.dim() != 1:
        raise TypeError(
            f"tgt_positions must be Long[N] flat indices into the B*T target positions, got a {positions.dtype} "
            f"tensor of shape {tuple(positions.shape)} (from a Bool[B, T] mask: mask.flatten().nonzero().squeeze(1))"
        )
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, T, D], got shape {tuple(hidden.shape)}")
    return hidden.flatten(0, 1).index_select(0, positions)  # [B, T, D] -> [B*T, D] -> [N, D]
