"""What every search shares: the decoder-state protocol, its step output, hypotheses, and the seq2seq state.

The searches never see a model. They drive a `DecoderState`: feed it the last chosen token of every active row,
get next-token logits back, and tell it which rows to keep (`select`) or how to permute beams (`reorder`).
Shape legend: B active rows, V vocabulary, S source length, D model width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from tformer.checks import check_positive_int

if TYPE_CHECKING:
    from tformer.nn.kv_cache import KVCache


@dataclass
class StepOutput:
    """Scores for the next token of every active row."""

    logits: Tensor  # Float[B, V]


class DecoderState(Protocol):
    """What a search drives. Index and token tensors may arrive on CPU; a state moves them to its device."""

    def step(self, tokens: Tensor) -> StepOutput:
        """Feed Long[B, 1], the last chosen token of each row; advance the cache; score the next token."""
        ...

    def select(self, indices: Tensor) -> None:
        """Keep (gather) these rows of everything: expand sentences to beams, drop finished rows."""
        ...

    def reorder(self, indices: Tensor) -> None:
        """Beam reorder: row i becomes old row indices[i]; indices never leave a sentence's own beams."""
        ...


@dataclass
class Hypothesis:
    """One decoded sequence. `tokens` has neither BOS nor EOS; `log_prob` counts the EOS when one was emitted."""

    tokens: list[int]
    score: float
    log_prob: float


class Seq2SeqModel(Protocol):
    """The part of `tformer.models.seq2seq.Seq2SeqTransformer` that decoding uses (duck-typed)."""

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Any: ...

    def decode(
        self,
        tgt_ids: Tensor,
        *,
        memory: Tensor,
        memory_mask: Tensor,
        cache: KVCache | None = None,
    ) -> Any: ...

    def new_cache(self, *, max_length: int | None = None) -> KVCache: ...


class Seq2SeqState:
    """A `DecoderState` over an encoder-decoder model: encodes once, then decodes one token at a time."""

    def __init__(
        self,
        model: Seq2SeqModel,
        src_ids: Tensor,
        src_mask: Tensor | None = None,
        *,
        max_length: int | None = None,
        compile: bool = False,
    ) -> None:
        """`compile`: decode through `torch.compile(model.decode, dynamic=True)`. Dynamic shapes let one graph
        serve every cache length and batch size (after a first graph for the step that projects the memory);
        the graph fuses the step's small kernels, which a GPU otherwise launches one by one. It compiles on
        the first batch (seconds on a GPU, tens of seconds of C++ on a CPU) and pays off over many."""
        self.model = model
        with torch.no_grad():
            encoded = model.encode(src_ids, src_mask)
        self.memory: Tensor = encoded.memory  # Float[B, S, D]
        self.memory_mask: Tensor = encoded.memory_mask  # Bool[B, S]
        self.cache = model.new_cache(max_length=max_length)
        self._decode = torch.compile(model.decode, dynamic=True) if compile else model.decode

    @torch.no_grad()
    def step(self, tokens: Tensor) -> StepOutput:
        out = self._decode(
            tokens.to(self.memory.device),
            memory=self.memory,
            memory_mask=self.memory_mask,
            cache=self.cache,
        )
        if out.cache is None:
            raise TypeError(
                "model.decode returned cache=None; Seq2SeqState needs a model that returns its KVCache"
            )
        self.cache = out.cache
        return StepOutput(logits=out.logits[:, -1])  # Float[B, V]

    def select(self, indices: Tensor) -> None:
        indices = indices.to(self.memory.device)
        self.memory = self.memory.index_select(0, indices)
        self.memory_mask = self.memory_mask.index_select(0, indices)
        self.cache.select(indices)

    def reorder(self, indices: Tensor) -> None:
        # Memory is identical across the beams of one sentence, so only the self-attention cache moves.
        self.cache.reorder(indices.to(self.memory.device))


def check_lengths(*, max_new_tokens: int, min_new_tokens: int) -> None:
    """Validate the length limits every search takes."""
    check_positive_int("max_new_tokens", max_new_tokens)
    if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int):
        raise ValueError(f"min_new_tokens must be an int, got {min_new_tokens!r}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(
            f"min_new_tokens must be in [0, max_new_tokens={max_new_tokens}], got {min_new_tokens}"
        )


def check_batch_size(batch_size: int) -> None:
    check_positive_int("batch_size", batch_size)


def check_step(out: StepOutput, *, rows: int, eos_id: int) -> None:
    """Catch a state that disagrees with the search about the batch or the vocabulary."""
    if out.logits.dim() != 2 or out.logits.size(0) != rows:
        raise ValueError(
            f"the decoder state returned logits of shape {tuple(out.logits.shape)}, expected ({rows}, vocab_size);"
            " does batch_size match the state's batch?"
        )
    if not 0 <= eos_id < out.logits.size(1):
        raise ValueError(f"eos_id={eos_id} is outside the vocabulary [0, {out.logits.size(1)})")


def forbid_token(scores: Tensor, token: int) -> Tensor:
    """A copy of Float[B, V] scores in which `token` can never be chosen."""
    scores = scores.clone()
    scores[:, token] = float("-inf")
    return scores
