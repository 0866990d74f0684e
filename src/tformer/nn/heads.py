"""Output heads. Shape legend: B batch, T length, D model width, V vocabulary, C classes, E embedding width.

The language-model head is a plain `nn.Linear(D, V)` owned by each model, which ties it to the token embedding
where asked (`head.weight = embedding.weight`), or, for large word vocabularies, an adaptive softmax
(`AdaptiveSoftmaxHead`); `language_model_head` picks one from the config.

Sequence pooling comes before the classifier and projection heads. Every pooling module takes
`(x [B, T, D], mask Bool[B, T] | None)` (True = real token, the tformer mask convention) and returns
`(pooled [B, D], weights [B, T])`: each kind is a weighted sum over positions, and returning the weights lets a
model or the viz code show where a pooled vector came from, whatever the kind. Padding never reaches a pooled
vector, and a row without real tokens pools to zeros (finite, never NaN), as a fully masked attention row does.
"""

from __future__ import annotations

import enum
import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.checks import check_positive_int
from tformer.nn.dropout import Dropout


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


class PoolingKind(enum.Enum):
    CLS = "cls"  # the vector at position 0, where BERT and ViT put a learned [CLS] token
    MEAN = "mean"  # the average of the real tokens (sentence embeddings, ViT without a [CLS] token)
    ATTENTION = "attention"  # a softmax over real tokens against a learned query


def _check_inputs(x: Tensor, mask: Tensor | None) -> None:
    if x.dim() != 3 or x.shape[1] == 0:
        raise ValueError(f"pooling needs x of shape [B, T, D] with T >= 1, got shape {tuple(x.shape)}")
    if mask is None:
        return
    if mask.dtype != torch.bool:
        raise TypeError(f"pooling mask must be a bool tensor (True = real token), got dtype {mask.dtype}")
    if mask.shape != x.shape[:2]:
        raise ValueError(
            f"pooling mask must have shape [B, T] = {tuple(x.shape[:2])} to match x {tuple(x.shape)}, "
            f"got {tuple(mask.shape)}"
        )


class ClsPooling(nn.Module):
    """The vector at position 0 (weights: one-hot at 0).

    It assumes right padding, so position 0 holds the [CLS] token; a row whose position 0 is padding has no
    such token and pools to zeros, which keeps "padding never reaches the result" true for every row.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x [B, T, D], mask Bool[B, T] (True = token) -> (pooled [B, D], weights [B, T])."""
        _check_inputs(x, mask)
        first = torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device) if mask is None else mask[:, :1]
        weights = F.pad(first.to(x.dtype), (0, x.shape[1] - 1))  # [B, 1] -> [B, T]
        # where(), not a product: padding holding inf or NaN must still give zeros
        return torch.where(first, x[:, 0], 0.0), weights  # [B, D]


class MeanPooling(nn.Module):
    """The average over real tokens (weights: 1 / count on real tokens, 0 on padding)."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x [B, T, D], mask Bool[B, T] (True = token) -> (pooled [B, D], weights [B, T])."""
        _check_inputs(x, mask)
        if mask is None:
            return x.mean(dim=1), x.new_full(x.shape[:2], 1.0 / x.shape[1])
        # at least 1: a row without tokens divides a zero sum by 1, giving zeros rather than 0 / 0 = NaN
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)  # [B, 1]
        total = x.masked_fill(~mask.unsqueeze(-1), 0.0).sum(dim=1)  # [B, T, D] -> [B, D]
        return total / count, mask.to(x.dtype) / count


class AttentionPooling(nn.Module):
    """Pool a sequence into one vector with a learned query: weights = softmax(x q / sqrt(D)) over real tokens.

    The query starts at zero, so pooling starts as the mean over real tokens and learns where to look.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        self.query = nn.Parameter(torch.zeros(d_model))
        self.scale = 1.0 / math.sqrt(d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x [B, T, D], mask Bool[B, T] (True = token) -> (pooled [B, D], weights [B, T])."""
        _check_inputs(x, mask)
        if mask is not None:  # zeros, not a product with 0: padding holding inf or NaN must not leak through
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        scores = (x @ self.query) * self.scale  # [B, T]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        if mask is not None:  # a row without real tokens pools to zeros, not NaN (as in attention)
            weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
        return (weights.unsqueeze(-1) * x).sum(dim=1), weights


def make_pooling(kind: PoolingKind | str, d_model: int) -> nn.Module:
    """The pooling module of `kind` (a PoolingKind or its value, as a config holds it); only `attention` has
    parameters, so `d_model` sizes its query."""
    if not isinstance(kind, PoolingKind):
        valid = ", ".join(repr(k.value) for k in PoolingKind)
        try:
            kind = PoolingKind(kind)
        except ValueError:
            raise ValueError(f"pooling kind must be one of {valid}, got {kind!r}") from None
    if kind is PoolingKind.CLS:
        return ClsPooling()
    if kind is PoolingKind.MEAN:
        return MeanPooling()
    return AttentionPooling(d_model)


class ClassifierHead(nn.Module):
    """Pooled vector -> class logits: dropout -> Linear, or, with `hidden`, dropout -> Linear + tanh -> dropout
    -> Linear.

    The hidden layer is BERT's pooler (a dense layer with tanh over the [CLS] vector); dropout on the input of
    each Linear is RoBERTa's classification head, which matches BERT's dropout before the classifier.
    """

    def __init__(
        self, d_model: int, n_classes: int, *, dropout: float = 0.0, hidden: int | None = None
    ) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("n_classes", n_classes)
        check_positive_int("hidden", hidden, optional=True)
        self.dropout = Dropout(dropout)
        self.hidden = None if hidden is None else nn.Linear(d_model, hidden)
        self.out = nn.Linear(d_model if hidden is None else hidden, n_classes)

    def forward(self, pooled: Tensor) -> Tensor:
        """pooled [B, D] -> logits [B, C]."""
        h = self.dropout(pooled)
        if self.hidden is not None:
            h = self.dropout(torch.tanh(self.hidden(h)))  # [B, D] -> [B, hidden]
        return self.out(h)


class ProjectionHead(nn.Module):
    """A Linear into a shared embedding space (CLIP's image and text projections, which have no bias), then,
    with `normalize`, L2 normalisation, so a dot product of two embeddings is their cosine similarity."""

    def __init__(self, d_in: int, d_out: int, *, bias: bool = False, normalize: bool = True) -> None:
        super().__init__()
        check_positive_int("d_in", d_in)
        check_positive_int("d_out", d_out)
        self.proj = nn.Linear(d_in, d_out, bias=bias)
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        """x [..., d_in] -> [..., E]; unit length along the last axis when `normalize` (zero stays zero)."""
        y = self.proj(x)
        return F.normalize(y, dim=-1) if self.normalize else y

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"
