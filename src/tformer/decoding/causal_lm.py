"""Generation from a decoder-only language model: a `DecoderState` over its KV cache and a sampling loop.

Shape legend: B rows (samples), P prompt length, L cached length, V vocabulary.

The prompt goes through the model once (prefill); after that every step feeds one token and reads one row of
logits. A model has a fixed context window: when the cache is full, it is rebuilt from the last half of the
window, so generation can run past the window while every token still sees at least half a window of context.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from tformer.checks import check_positive_int
from tformer.decoding.sampling import apply_repetition_penalty, check_filters, filter_logits
from tformer.decoding.state import StepOutput
from tformer.nn.kv_cache import KVCache


class CausalLM(Protocol):
    """The part of `tformer.models.gpt.GPT` that generation uses (duck-typed)."""

    config: Any  # has `context_length`

    def __call__(
        self, input_ids: Tensor, *, cache: KVCache | None = None, last_only: bool = False
    ) -> Any: ...

    def new_cache(self, *, max_length: int | None = None) -> KVCache: ...


class CausalLMState:
    """A `DecoderState` over a decoder-only model, started from one prompt per row.

    The constructor caches all prompt tokens but the last; the first `step` feeds that last token (exactly as a
    seq2seq search feeds BOS first), so `step` always means "feed the newest token, score the next one".
    """

    def __init__(self, model: CausalLM, prompt_ids: Tensor) -> None:
        if prompt_ids.dim() != 2 or prompt_ids.size(1) < 1:
            raise ValueError(
                f"prompt_ids must be Long[B, P] with P >= 1, got shape {tuple(prompt_ids.shape)}"
            )
        self.model = model
        self.context_length: int = model.config.context_length
        if prompt_ids.size(1) > self.context_length:
            raise ValueError(
                f"prompt of {prompt_ids.size(1)} tokens is longer than the context window "
                f"({self.context_length}); truncate it first"
            )
        self.history = prompt_ids[:, :-1]  # Long[B, L]: exactly the tokens whose keys/values are cached
        self.cache = self._prefill(self.history)

    @torch.no_grad()
    def _prefill(self, tokens: Tensor) -> KVCache:
        cache = self.model.new_cache()
        if tokens.size(1) > 0:
            cache = self.model(tokens, cache=cache, last_only=True).cache
        return cache

    @torch.no_grad()
    def step(self, tokens: Tensor) -> StepOutput:
        tokens = tokens.to(self.history.device)  # Long[B, 1]
        if self.cache.length + 1 > self.context_length:
            self.history = self.history[:, -(self.context_length // 2) :]
            self.cache = self._prefill(self.history)
        out = self.model(tokens, cache=self.cache, last_only=True)
        self.cache = out.cache
        self.history = torch.cat([self.history, tokens], dim=1)
        return StepOutput(logits=out.logits[:, -1])  # Float[B, V]

    def select(self, indices: Tensor) -> None:
        indices = indices.to(self.history.device)
        self.history = self.history.index_select(0, indices)
        self.cache.select(indices)

    def reorder(self, indices: Tensor) -> None:
        self.select(indices)  # no encoder memory: a beam reorder moves everything


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token. temperature 0 = greedy (argmax); top-k/top-p filter before sampling."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prompt or the output (CTRL)

    def __post_init__(self) -> None:
        check_positive_int("max_new_tokens", self.max_new_tokens)
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty!r}")
        check_filters(top_k=self.top_k, top_p=self.top_p)


@torch.no_grad()
def generate_tokens(
    model: CausalLM,
    prompt_ids: Tensor,
    *,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Yield Long[B], the next token of every row, up to `config.max_new_tokens` times; stop early by
    breaking out of the loop. prompt_ids Long[B, P] on the model's device; `generator` lives there too."""
    state = CausalLMState(model, prompt_ids)
    seen: Tensor | None = None  # Bool[B, V]: tokens of the prompt and the output so far
    last = prompt_ids[:, -1:]  # Long[B, 1]
    for _ in range(config.max_new_tokens):
        logits = state.step(last).logits.float()  # Float[B, V]
        if seen is None:
            seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, prompt_ids, True)
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
        if config.temperature == 0:
            chosen = logits.argmax(dim=-1)  # Long[B]
        else:
            filtered = filter_logits(logits / config.temperature, top_k=config.top_k, top_p=config.top_p)
            chosen = torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator).squeeze(1)
        seen.scatter_(1, chosen[:, None], True)
        yield chosen
        last = chosen[:, None]
