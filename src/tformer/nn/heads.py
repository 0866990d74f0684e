"""Output heads. Shape legend: B batch, T length, D model width, V vocabulary.

The language-model head is a plain `nn.Linear(D, V)` owned by each model, which ties it to the token embedding
where asked (`head.weight = embedding.weight`), or, for large word vocabularies, an adaptive softmax
(`AdaptiveSoftmaxHead`); `language_model_head` picks one from the config.
"""

from __future__ import annotations

import itertools
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


class AdaptiveSoftmaxHead(nn.Module):
    """The adaptive softmax of Grave et al. (2017), "Efficient softmax approximation for GPUs", returning the
    full log-probabilities [..., V], so every consumer of logits (losses, beam search, sampling) works unchanged:
    log_softmax of normalised log-probabilities is the identity, so the loss is exactly -log p(target).

    The vocabulary is cut into frequency bands at `cutoffs`: the head is a Linear(D, cutoffs[0] + n_tails)
    over the frequent words plus one entry per tail band, and tail band i scores its words from a projection
    of width D / div**(i+1), so rare words cost far fewer multiply-adds than a full Linear(D, V) (about 6x
    fewer for 33k words cut at 2,000 and 10,000). That only helps when token ids are ordered by frequency
    (tformer's word tokenizer orders them so). Every band is computed for every position, so the saving is
    the low-rank tails, not the target-only evaluation of torch's own forward(input, target). The parameters
    and the arithmetic are torch.nn.AdaptiveLogSoftmaxWithLoss's; this wrapper gives it the head interface.
    """

    def __init__(
        self, d_model: int, vocab_size: int, *, cutoffs: tuple[int, ...], div_value: float, bias: bool = False
    ) -> None:
        super().__init__()
        check_adaptive_softmax(cutoffs, div_value, d_model=d_model, vocab_size=vocab_size)
        self.vocab_size = vocab_size
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
            d_model, vocab_size, list(cutoffs), div_value=div_value, head_bias=bias
        )

    def forward(self, x: Tensor) -> Tensor:
        """x [..., D] -> log-probabilities Float[..., V] (each row's exp sums to 1)."""
        # float32: torch builds the [N, V] result in its input's dtype, and V half-precision log-probabilities
        # would lose the loss's precision (an LSTM's output stays 16-bit under autocast)
        log_probs = self.adaptive.log_prob(x.reshape(-1, x.size(-1)).float())  # [..., D] -> [N, D] -> [N, V]
        return log_probs.view(*x.shape[:-1], self.vocab_size)  # [N, V] -> [..., V]

    def target_log_probs(self, x: Tensor, targets: Tensor) -> Tensor:
        """x [..., D], targets Long[...] (negative = not scored) -> log p(target) Float[...], 0 where not scored.

        Grave et al.'s training path (torch's forward(input, target)): each tail band is computed only for the
        positions whose target falls in it, and no [N, V] tensor is built. Finding those positions reads the
        targets on the host, so on a GPU it waits for them.
        """
        flat_x, flat_targets = x.reshape(-1, x.size(-1)).float(), targets.reshape(-1)  # [N, D], [N]
        scored = flat_targets >= 0
        out = flat_x.new_zeros(flat_targets.shape)  # [N]
        out[scored] = self.adaptive(flat_x[scored], flat_targets[scored]).output
        return out.view(targets.shape)


def check_adaptive_softmax(
    cutoffs: tuple[int, ...],
    div_value: float,
    *,
    d_model: int,
    vocab_size: int | None = None,
    tie_embeddings: bool = False,
) -> None:
    """A model config's adaptive_softmax_* fields: cutoffs rise strictly from 0 (to below vocab_size, when it is
    known), each marking where a frequency band ends; every tail band's projection, d_model / div**(i+1) wide,
    keeps at least one dimension; and no tying, for the head has no V x D matrix to share."""
    bound = () if vocab_size is None else (vocab_size,)
    if not cutoffs or any(b <= a for a, b in itertools.pairwise((0, *cutoffs, *bound))):
        raise ValueError(
            "adaptive_softmax_cutoffs must rise strictly from 0"
            + ("" if vocab_size is None else f" to below vocab_size={vocab_size}")
            + f", got {list(cutoffs)} (e.g. [2000, 10000] for a 33k-word vocabulary)"
        )
    if not div_value > 0 or int(d_model // div_value ** len(cutoffs)) < 1:
        raise ValueError(
            f"adaptive_softmax_div={div_value} must be > 0 and leave the last of {len(cutoffs)} tail bands at "
            f"least one dimension of d_model={d_model} (d_model / div**{len(cutoffs)} >= 1)"
        )
    if tie_embeddings:
        raise ValueError(
            f"adaptive_softmax_cutoffs={list(cutoffs)} needs tie_embeddings=False: the adaptive softmax has no "
            "V x D matrix to share with the token embedding"
        )


def apply_lm_head(head: nn.Module, x: Tensor, targets: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """(logits [..., V], None) from x [..., D]; or (None, log p(target) [...]) when the head is an adaptive
    softmax and targets are given, its faster training path. A Linear head always gives logits."""
    if targets is not None and isinstance(head, AdaptiveSoftmaxHead):
        return None, head.target_log_probs(x, targets)
    return head(x), None


def language_model_head(
    d_model: int, vocab_size: int, *, bias: bool, cutoffs: tuple[int, ...], div_value: float
) -> nn.Module:
    """nn.Linear(D, V) when `cutoffs` is empty, else the adaptive softmax over those frequency bands."""
    if cutoffs:
        return AdaptiveSoftmaxHead(d_model, vocab_size, cutoffs=cutoffs, div_value=div_value, bias=bias)
    return nn.Linear(d_model, vocab_size, bias=bias)
