"""Training examples for word2vec, built as the original C code builds them (word2vec.c, Mikolov et al. 2013).

- Vocabulary: whitespace-separated words (the WikiText / word-level tokenizer convention) seen at least
  `min_count` times, most frequent first (ties alphabetical). Rarer words are dropped from the text before
  anything else, as the C code drops them, so they neither train nor take a window slot.
- Subsampling of frequent words: a word of corpus frequency f = count / total is kept with probability
  (sqrt(f / t) + 1) * t / f (capped at 1), the formula of word2vec.c; t = `sample`, default 1e-3 as there.
- Dynamic window: each centre word draws its window b uniformly from 1..window, so near words count more.
  Windows never cross a sentence (a line of the corpus), as the C code's never cross a newline.
- Negatives: drawn from the unigram distribution raised to 0.75 (the C code's 1e8-entry table, here exact).

One `np.random.Generator` drives every draw, so a seed fixes the whole stream. Examples are made per chunk of
sentences (about `chunk_tokens` words) and shuffled within it, which bounds memory on large corpora.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tformer.checks import check_positive_int

DEFAULT_SAMPLE = 1e-3  # word2vec.c's -sample default
UNIGRAM_POWER = 0.75
MODES = ("skipgram", "cbow")  # the values of models.word2vec.Word2VecMode (data does not import models)


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # index = word id
    counts: np.ndarray  # int64 [V], corpus counts, descending

    def __post_init__(self) -> None:
        assert len(self.words) == len(self.counts)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentences: Iterable[str]) -> list[np.ndarray]:
        """One int64 id array per sentence; words outside the vocabulary are dropped (not mapped to <unk>)."""
        index = {word: i for i, word in enumerate(self.words)}
        return [
            np.fromiter((index[w] for w in sentence.split() if w in index), dtype=np.int64)
            for sentence in sentences
        ]


def build_vocabulary(sentences: Iterable[str], *, min_count: int = 5) -> Vocabulary:
    """The words of `sentences` (split on whitespace) seen >= `min_count` times, most frequent first."""
    if isinstance(sentences, str):
        raise TypeError("sentences must be an iterable of strings, got a single str")
    check_positive_int("min_count", min_count)
    counter: Counter[str] = Counter()
    for sentence in sentences:
        counter.update(sentence.split())
    ranked = sorted(
        (item for item in counter.items() if item[1] >= min_count), key=lambda kv: (-kv[1], kv[0])
    )
    if not ranked:
        raise ValueError(f"no word occurs min_count={min_count} times; lower min_count or give more text")
    return Vocabulary(tuple(w for w, _ in ranked), np.array([c for _, c in ranked], dtype=np.int64))


def keep_probabilities(counts: np.ndarray, *, sample: float = DEFAULT_SAMPLE) -> np.ndarray:
    """P(keep) per word: min(1, (sqrt(f / sample) + 1) * sample / f), f = count / total; 1 when sample = 0."""
    if not sample >= 0:
        raise ValueError(f"sample must be >= 0 (0 turns subsampling off), got {sample!r}")
    counts = np.asarray(counts, dtype=np.float64)
    if sample == 0:
        return np.ones_like(counts)
    frequency = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(frequency / sample) + 1.0) * sample / frequency)


class NegativeSampler:
    """Draws word ids with probability count^power / sum(count^power)."""

    def __init__(self, counts: np.ndarray, *, power: float = UNIGRAM_POWER) -> None:
        weights = np.asarray(counts, dtype=np.float64) ** power
        if weights.ndim != 1 or not weights.size or weights.min() < 0 or weights.sum() <= 0:
            raise ValueError("counts must be a non-empty 1-d array of non-negative numbers, not all zero")
        self.probabilities = weights / weights.sum()
        self._cdf = np.cumsum(self.probabilities)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        # Inverse CDF: searchsorted of uniforms; the clip guards against the last cdf entry being 1 - eps.
        ids = np.searchsorted(self._cdf, rng.random(shape), side="right")
        return np.minimum(ids, len(self._cdf) - 1)


def skipgram_pairs(
    ids: np.ndarray, sentence_ids: np.ndarray, *, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(centres, contexts): every word paired with each word within its own dynamic window (1..window)."""
    reach = rng.integers(1, window + 1, size=len(ids))
    centres, contexts = [], []
    for offset in _offsets(window):
        position = _positions_reaching(offset, reach=reach, sentence_ids=sentence_ids)
        centres.append(ids[position])
        contexts.append(ids[position + offset])
    return np.concatenate(centres), np.concatenate(contexts)


def cbow_windows(
    ids: np.ndarray, sentence_ids: np.ndarray, *, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(contexts [N, 2 x window], mask [N, 2 x window], centres [N]) for the words with any context."""
    n = len(ids)
    reach = rng.integers(1, window + 1, size=n)
    contexts = np.zeros((n, 2 * window), dtype=np.int64)
    mask = np.zeros((n, 2 * window), dtype=bool)
    for column, offset in enumerate(_offsets(window)):
        position = _positions_reaching(offset, reach=reach, sentence_ids=sentence_ids)
        contexts[position, column] = ids[position + offset]
        mask[position, column] = True
    has_context = mask.any(axis=1)
    return contexts[has_context], mask[has_context], ids[has_context]


def _offsets(window: int) -> list[int]:
    return [o for o in range(-window, window + 1) if o != 0]


def _positions_reaching(offset: int, *, reach: np.ndarray, sentence_ids: np.ndarray) -> np.ndarray:
    """Positions i whose window reaches i + offset: inside the text, within reach[i], in the same sentence."""
    n = len(reach)
    position = np.arange(max(0, -offset), min(n, n - offset))
    valid = (reach[position] >= abs(offset)) & (sentence_ids[position] == sentence_ids[position + offset])
    return position[valid]


@dataclass
class Word2VecBatch:
    inputs: Tensor  # Long[B, C]: the centre (C = 1, skip-gram) or its window (CBOW)
    input_mask: Tensor | None  # Bool[B, C], True = a real context word; None for skip-gram
    targets: Tensor  # Long[B]
    negatives: Tensor  # Long[B, K]
    progress: float  # fraction of the epoch's corpus words consumed once this batch is done

    def to(self, device: torch.device | str) -> Word2VecBatch:
        mask = None if self.input_mask is None else self.input_mask.to(device)
        return Word2VecBatch(
            self.inputs.to(device), mask, self.targets.to(device), self.negatives.to(device), self.progress
        )


def iter_batches(
    sentences: Sequence[np.ndarray],
    *,
    mode: str,
    window: int,
    keep_probability: np.ndarray,
    sampler: NegativeSampler,
    negatives: int,
    batch_size: int,
    rng: np.random.Generator,
    chunk_tokens: int = 200_000,
) -> Iterator[Word2VecBatch]:
    """One epoch of shuffled batches over `sentences` (id arrays from `Vocabulary.encode`); `mode` is
    "skipgram" (inputs [B, 1], the centre) or "cbow" (inputs [B, 2 x window], the window, with a mask)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    for name, value in (("window", window), ("negatives", negatives), ("batch_size", batch_size)):
        check_positive_int(name, value)
    total = sum(len(s) for s in sentences)
    done = 0
    for chunk in _chunks(sentences, chunk_tokens):
        lengths = np.array([len(s) for s in chunk])
        ids = np.concatenate(chunk)
        sentence_ids = np.repeat(np.arange(len(chunk)), lengths)
        kept = rng.random(len(ids)) < keep_probability[ids]
        ids, sentence_ids = ids[kept], sentence_ids[kept]
        if mode == "skipgram":
            centres, contexts = skipgram_pairs(ids, sentence_ids, window=window, rng=rng)
            inputs, mask, targets = centres[:, None], None, contexts  # [N] -> [N, 1]
        else:
            inputs, mask, targets = cbow_windows(ids, sentence_ids, window=window, rng=rng)
        order = rng.permutation(len(targets))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield Word2VecBatch(
                inputs=torch.from_numpy(inputs[rows]),
                input_mask=None if mask is None else torch.from_numpy(mask[rows]),
                targets=torch.from_numpy(targets[rows]),
                negatives=torch.from_numpy(sampler.sample((len(rows), negatives), rng)),
                # examples are shuffled within the chunk, so its words count as consumed evenly across it
                progress=(done + lengths.sum() * min(1.0, (start + len(rows)) / len(order))) / total,
            )
        done += int(lengths.sum())


def _chunks(sentences: Sequence[np.ndarray], chunk_tokens: int) -> Iterator[list[np.ndarray]]:
    chunk: list[np.ndarray] = []
    size = 0
    for sentence in sentences:
        if len(sentence):
            chunk.append(sentence)
            size += len(sentence)
        if size >= chunk_tokens:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
