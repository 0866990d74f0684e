from __future__ import annotations

import math

import numpy as np
import pytest

from tformer.data.skipgram import (
    NegativeSampler,
    build_vocabulary,
    cbow_windows,
    iter_batches,
    keep_probabilities,
    skipgram_pairs,
)


def test_vocabulary_order_min_count_and_encode() -> None:
    vocab = build_vocabulary(["b a c a", "a b d  e", "b"], min_count=2)
    assert vocab.words == ("a", "b")  # a 3, b 3: ties alphabetical; c, d, e once
    assert vocab.counts.tolist() == [3, 3]
    encoded = vocab.encode(["c a b x", ""])
    assert [e.tolist() for e in encoded] == [[0, 1], []]  # rare and unseen words are dropped
    with pytest.raises(ValueError, match="min_count=5"):
        build_vocabulary(["a b"], min_count=5)
    with pytest.raises(TypeError, match="single str"):
        build_vocabulary("a b", min_count=1)


def test_keep_probabilities_match_the_formula() -> None:
    counts = np.array([5000, 300, 20, 1])
    t = 1e-3
    total = counts.sum()
    expected = [min(1.0, (math.sqrt((c / total) / t) + 1) * t / (c / total)) for c in counts]
    got = keep_probabilities(counts, sample=t)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    assert got[0] < 0.05 and got[-1] == 1.0  # the formula really discounts the frequent word
    assert keep_probabilities(counts, sample=0).tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="sample must be >= 0"):
        keep_probabilities(counts, sample=-1e-3)


def test_negatives_follow_unigram_to_the_three_quarters() -> None:
    counts = np.array([1000, 100, 10, 1])
    draws = NegativeSampler(counts).sample((400, 500), np.random.default_rng(0))
    assert draws.shape == (400, 500)
    empirical = np.bincount(draws.ravel(), minlength=4) / draws.size
    expected = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(empirical, expected, atol=0.004)  # 200k draws: sd <= 0.001
    plain_unigram = counts / counts.sum()
    assert np.abs(plain_unigram - expected).max() > 0.05  # so the check tells the two apart


def test_skipgram_pairs_stay_in_sentence_and_follow_the_dynamic_window() -> None:
    rng = np.random.default_rng(0)
    window = 4
    ids = np.arange(20_000)  # ids = positions, so a pair tells its distance
    sentence_ids = ids // 1000
    centres, contexts = skipgram_pairs(ids, sentence_ids, window=window, rng=rng)
    distance = np.abs(contexts - centres)
    assert distance.min() >= 1 and distance.max() <= window
    assert np.all(sentence_ids[centres] == sentence_ids[contexts])
    # a centre's window b is uniform on 1..W, so it reaches distance d with probability (W - d + 1) / W
    per_side = np.bincount(distance, minlength=window + 1)[1:] / (2 * len(ids))
    expected = [(window - d + 1) / window for d in range(1, window + 1)]
    np.testing.assert_allclose(per_side, expected, atol=0.01)


def test_cbow_windows_with_window_one_are_the_neighbours() -> None:
    ids = np.array([10, 11, 12, 20, 21, 30])
    sentence_ids = np.array([0, 0, 0, 1, 1, 2])
    contexts, mask, centres = cbow_windows(ids, sentence_ids, window=1, rng=np.random.default_rng(0))
    assert centres.tolist() == [10, 11, 12, 20, 21]  # 30 is alone in its sentence: no context, no example
    got = [sorted(c[m].tolist()) for c, m in zip(contexts, mask, strict=True)]
    assert got == [[11], [10, 12], [11], [21], [20]]


def _batches(mode: str, *, seed: int, keep: np.ndarray | None = None) -> list:
    sentences = [np.arange(i, i + 30) % 50 for i in range(40)]
    counts = np.bincount(np.concatenate(sentences), minlength=50)
    return list(
        iter_batches(
            sentences,
            mode=mode,
            window=3,
            keep_probability=np.ones(50) if keep is None else keep,
            sampler=NegativeSampler(counts),
            negatives=4,
            batch_size=64,
            rng=np.random.default_rng(seed),
            chunk_tokens=300,
        )
    )


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_batches_shapes_progress_and_seed(mode: str) -> None:
    batches = _batches(mode, seed=1)
    first = batches[0]
    width = 1 if mode == "skipgram" else 6
    assert (
        first.inputs.shape == (64, width)
        and first.targets.shape == (64,)
        and first.negatives.shape == (64, 4)
    )
    assert (first.input_mask is None) == (mode == "skipgram")
    progress = [b.progress for b in batches]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    again = _batches(mode, seed=1)
    assert all(a.targets.tolist() == b.targets.tolist() for a, b in zip(batches, again, strict=True))
    assert _batches(mode, seed=2)[0].targets.tolist() != first.targets.tolist()


def test_subsampled_away_words_never_appear() -> None:
    keep = np.ones(50)
    keep[7] = 0.0
    for batch in _batches("skipgram", seed=0, keep=keep):
        assert 7 not in batch.inputs.tolist() and 7 not in batch.targets.tolist()


def test_batch_argument_errors() -> None:
    with pytest.raises(ValueError, match="mode must be one of skipgram, cbow"):
        _batches("glove", seed=0)
    with pytest.raises(ValueError, match="window must be an int >= 1, got 0"):
        next(
            iter_batches(
                [],
                mode="cbow",
                window=0,
                keep_probability=np.ones(1),
                sampler=NegativeSampler(np.ones(1)),
                negatives=1,
                batch_size=1,
                rng=np.random.default_rng(0),
            )
        )
