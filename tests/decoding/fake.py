"""Stand-ins for a model: a decoder state with scripted probabilities (fairseq style) and a copying seq2seq model.

Vocabulary of the scripted tests: 0 BOS, 1 EOS, 2 "a", 3 "b", 4 "c".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.decoding import StepOutput

BOS, EOS, A, B, C = 0, 1, 2, 3, 4
VOCAB = 5

Prefix = tuple[int, ...]
# Next-token probabilities of one sentence given the tokens chosen so far (after BOS).
Script = Mapping[Prefix, Sequence[float]] | Callable[[Prefix], Sequence[float]]


class ScriptedState:
    """A DecoderState whose next-token distribution is looked up per sentence and per prefix.

    Each row remembers its sentence and the tokens it was fed, so the log-probabilities follow the rows through
    select and reorder exactly as a real cache would. A prefix missing from a dict script gets `default`.
    Every call is recorded in `calls`.
    """

    def __init__(self, scripts: Sequence[Script], *, default: Sequence[float] | None = None) -> None:
        self.scripts = list(scripts)
        self.default = default
        self.fed: list[tuple[int, list[int]]] = [(sentence, []) for sentence in range(len(self.scripts))]
        self.calls: list[tuple[str, list[int]]] = []

    def probs(self, sentence: int, prefix: Prefix) -> Sequence[float]:
        script = self.scripts[sentence]
        if callable(script):
            return script(prefix)
        if prefix in script:
            return script[prefix]
        assert self.default is not None, f"sentence {sentence} has no script for prefix {prefix}"
        return self.default

    def step(self, tokens: Tensor) -> StepOutput:
        assert tokens.shape == (len(self.fed), 1), tokens.shape
        self.calls.append(("step", [sentence for sentence, _ in self.fed]))
        logits = []
        for (sentence, fed), token in zip(self.fed, tokens[:, 0].tolist(), strict=True):
            assert (token == BOS) == (not fed), f"row of sentence {sentence} fed {token} after {fed}"
            fed.append(token)
            logits.append([math.log(p) if p > 0 else -math.inf for p in self.probs(sentence, tuple(fed[1:]))])
        return StepOutput(logits=torch.tensor(logits))

    def select(self, indices: Tensor) -> None:
        self.calls.append(("select", indices.tolist()))
        self.fed = [(self.fed[i][0], list(self.fed[i][1])) for i in indices.tolist()]

    def reorder(self, indices: Tensor) -> None:
        self.calls.append(("reorder", indices.tolist()))
        new = [(self.fed[i][0], list(self.fed[i][1])) for i in indices.tolist()]
        assert [s for s, _ in new] == [s for s, _ in self.fed], "reorder moved a beam to another sentence"
        self.fed = new


def random_script(seed: int, *, eos_boost: float = 0.6) -> Callable[[Prefix], list[float]]:
    """A reproducible random distribution per prefix; EOS grows likelier with length so sentences end."""

    def probs(prefix: Prefix) -> list[float]:
        # Digits 1..5 in base 7: a different seed for every prefix, of any length.
        key = sum((t + 1) * 7**i for i, t in enumerate(prefix))
        generator = torch.Generator().manual_seed(seed * 1_000_003 + key)
        logits = 2.0 * torch.randn(VOCAB, generator=generator, dtype=torch.float64)
        logits[BOS] = -math.inf
        logits[EOS] += eos_boost * len(prefix)
        return logits.softmax(dim=0).tolist()

    return probs


def sequence_log_prob(state: ScriptedState, sentence: int, tokens: list[int], *, ended: bool) -> float:
    """The scripted log-probability of `tokens` (plus EOS when `ended`), computed independently of the search."""
    path = tokens + [EOS] if ended else tokens
    return sum(math.log(state.probs(sentence, tuple(path[:i]))[t]) for i, t in enumerate(path))


# A seq2seq model that copies its source, to drive Seq2SeqState end to end.


@dataclass
class FakeEncoderOutput:
    memory: Tensor
    memory_mask: Tensor


@dataclass
class FakeDecoderOutput:
    logits: Tensor
    cache: FakeCache | None


class FakeCache:
    """Stores every row's fed tokens like a KV cache stores keys; records select and reorder calls."""

    def __init__(self, max_length: int | None) -> None:
        self.max_length = max_length
        self.tokens: Tensor | None = None  # Long[B, length]
        self.calls: list[tuple[str, list[int]]] = []

    @property
    def length(self) -> int:
        return 0 if self.tokens is None else self.tokens.size(1)

    def append(self, tokens: Tensor) -> None:
        self.tokens = tokens if self.tokens is None else torch.cat([self.tokens, tokens], dim=1)

    def select(self, indices: Tensor) -> None:
        self.calls.append(("select", indices.tolist()))
        if self.tokens is not None:
            self.tokens = self.tokens[indices]

    def reorder(self, indices: Tensor) -> None:
        self.calls.append(("reorder", indices.tolist()))
        assert self.tokens is not None
        self.tokens = self.tokens[indices]


class CopyModel:
    """memory = one-hot source; the query at target position p predicts source token p (the last one past the end).

    The logits are `sharpness` times the one-hot source row, so greedy and beam search both copy the source.
    """

    def __init__(self, *, vocab_size: int, pad_id: int = 0, sharpness: float = 5.0) -> None:
        self.vocab_size, self.pad_id, self.sharpness = vocab_size, pad_id, sharpness
        self.encode_calls = 0
        self.caches_seen: list[FakeCache | None] = []

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> FakeEncoderOutput:
        self.encode_calls += 1
        memory = F.one_hot(src_ids, self.vocab_size).float()  # Float[B, S, V]: D = V
        return FakeEncoderOutput(memory, src_ids != self.pad_id if src_mask is None else src_mask)

    def new_cache(self, *, max_length: int | None = None) -> FakeCache:
        return FakeCache(max_length)

    def decode(
        self,
        tgt_ids: Tensor,
        *,
        memory: Tensor,
        memory_mask: Tensor,
        cache: FakeCache | None = None,
    ) -> FakeDecoderOutput:
        assert memory.size(0) == tgt_ids.size(0) == memory_mask.size(0)
        self.caches_seen.append(cache)
        start = 0 if cache is None else cache.length
        source_length = memory.size(1)
        positions = torch.arange(start, start + tgt_ids.size(1)).clamp(max=source_length - 1)  # Long[T]
        logits = self.sharpness * memory[:, positions]  # Float[B, T, V]
        if cache is not None:
            cache.append(tgt_ids)
        return FakeDecoderOutput(logits, cache)
