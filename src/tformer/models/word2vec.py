"""word2vec (Mikolov et al., 2013): skip-gram and CBOW with negative sampling, as in the original C code.

Shape legend: B batch (one training example per row), C context slots (1 for skip-gram, 2 x window for CBOW,
padded), K negatives per example, D vector width, V vocabulary.

    inputs Long[B, C] --input_vectors, masked mean--> h [B, D]
    h . output_vectors[target]      -> positive logit [B]     (should be high)
    h . output_vectors[negatives]   -> negative logits [B, K] (should be low)

Skip-gram feeds one word (the centre) as input and a word of its window as target; CBOW feeds the window
(averaged, the C code's default `cbow 1` mean) and predicts the centre. The network is the same for both, so
`Word2VecConfig.mode` only tells the data pipeline which examples to build, and records it with the vectors.

Two tables, as the C code: `input_vectors` (syn0, the embeddings people use) starts uniform in
(-0.5/D, 0.5/D); `output_vectors` (syn1neg) starts at zero, so every first prediction is sigmoid(0) = 0.5.
Both are sparse embeddings: an SGD step touches only the rows of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.checks import check_positive_ints


class Word2VecMode(str, Enum):
    SKIPGRAM = "skipgram"  # centre word -> each word of its window
    CBOW = "cbow"  # mean of the window -> centre word


def parse_mode(value: Word2VecMode | str) -> Word2VecMode:
    """The mode named by `value`; the plain string ("cbow") is accepted, as a config file or the CLI gives it."""
    try:
        return Word2VecMode(value)
    except ValueError:
        valid = ", ".join(m.value for m in Word2VecMode)
        raise ValueError(f"mode must be one of {valid}, got {value!r}") from None


@dataclass(frozen=True)
class Word2VecConfig:
    vocab_size: int
    dim: int = 100  # the C code's -size default
    mode: Word2VecMode = Word2VecMode.SKIPGRAM

    def __post_init__(self) -> None:
        check_positive_ints(self, "vocab_size", "dim")
        object.__setattr__(self, "mode", parse_mode(self.mode))


@dataclass
class Word2VecOutput:
    positive_logits: Tensor  # [B]
    negative_logits: Tensor  # [B, K]


class Word2Vec(nn.Module):
    def __init__(self, config: Word2VecConfig) -> None:
        super().__init__()
        self.config = config
        self.input_vectors = nn.Embedding(config.vocab_size, config.dim, sparse=True)
        self.output_vectors = nn.Embedding(config.vocab_size, config.dim, sparse=True)
        bound = 0.5 / config.dim  # word2vec.c InitNet: (rand/65536 - 0.5) / layer1_size
        nn.init.uniform_(self.input_vectors.weight, -bound, bound)
        nn.init.zeros_(self.output_vectors.weight)

    def forward(
        self, inputs: Tensor, *, input_mask: Tensor | None = None, targets: Tensor, negatives: Tensor
    ) -> Word2VecOutput:
        """inputs Long[B, C] (input_mask Bool[B, C], True = a real word; None = all real), targets Long[B],
        negatives Long[B, K] -> the logits of the target and of each negative."""
        if inputs.dim() != 2 or targets.dim() != 1 or negatives.dim() != 2:
            raise ValueError(
                f"expected inputs [B, C], targets [B], negatives [B, K]; got {tuple(inputs.shape)}, "
                f"{tuple(targets.shape)}, {tuple(negatives.shape)}"
            )
        hidden = self.input_vectors(inputs)  # [B, C] -> [B, C, D]
        if input_mask is None:
            hidden = hidden.mean(dim=1)  # [B, C, D] -> [B, D]
        else:
            weights = input_mask.to(hidden.dtype)
            # clamp: a row without any context word gives a zero vector rather than 0/0
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
            hidden = torch.einsum("bcd,bc->bd", hidden, weights)  # [B, C, D] -> [B, D]
        positive = (hidden * self.output_vectors(targets)).sum(dim=-1)  # [B]
        negative = torch.einsum("bkd,bd->bk", self.output_vectors(negatives), hidden)  # [B, K]
        return Word2VecOutput(positive_logits=positive, negative_logits=negative)

    @property
    def vectors(self) -> Tensor:
        """The word vectors [V, D]: the input table, detached."""
        return self.input_vectors.weight.detach()


def negative_sampling_loss(
    positive_logits: Tensor,
    negative_logits: Tensor,
    *,
    negative_mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Skip-gram/CBOW negative-sampling loss per example: -log s(pos) - sum_k log s(-neg_k), s = sigmoid.

    `negative_mask` Bool[B, K] (True = counts) drops negatives that hit the target, as the C code skips them.
    `reduction` "mean" or "sum" over the batch; "sum" makes one batched SGD step the sum of the C code's
    per-example steps.
    """
    negative_terms = F.logsigmoid(-negative_logits)  # [B, K]
    if negative_mask is not None:
        negative_terms = negative_terms * negative_mask.to(negative_terms.dtype)
    per_example = -(F.logsigmoid(positive_logits) + negative_terms.sum(dim=-1))  # [B]
    if reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
