"""Decoding driven by the real Seq2SeqTransformer: batching, padding and cache invariances, and the searches'
agreements (beam 1 = greedy, top-k 1 sampling = greedy).

A randomly initialised tiny model emits long, varied outputs with flat distributions (near-ties and late or
missing EOS): a harsh test of batching and of sentences leaving the batch at different steps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.data.batching import pad_sequences
from tformer.decoding import Hypothesis, Seq2SeqState, beam_search, greedy_search, sample
from tformer.models.seq2seq import Seq2SeqTransformer, preset_config

PAD, BOS, EOS = 0, 1, 2
VOCAB = 24
MAX_NEW_TOKENS = 20
BEAM = dict(beam_size=4, length_penalty=0.6, n_best=2)
# Seven sentences of different lengths (EOS is appended when they are batched).
SOURCES = [
    [5, 9, 3, 17],
    [12],
    [4, 4, 20, 7, 8, 21, 6, 3, 11],
    [23, 10],
    [6, 15, 15, 9, 22, 13],
    [19, 3, 8],
    [7, 11, 14, 5, 16, 12, 18],
]


@pytest.fixture(scope="module")
def model() -> Seq2SeqTransformer:
    """A random tiny model whose sentences end at different steps, some only at the length limit.

    With a tied output projection a random model mostly repeats its input token and never ends; an untied one
    with its EOS row scaled up emits EOS now and then (checked in the invariance test below). One shared
    embedding table keeps the initialisation independent of the order in which the model initialises two.
    """
    torch.manual_seed(0)
    config = preset_config(
        "tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, share_embeddings=True, tie_output=False
    )
    model = Seq2SeqTransformer(config).eval()
    with torch.no_grad():
        model.output_projection.weight[EOS] *= 3.0
    return model


def source_batch(sources: list[list[int]], *, extra_padding: int = 0) -> tuple[Tensor, Tensor]:
    """(src_ids Long[B, S], src_mask Bool[B, S]): sentences + EOS, right-padded, plus `extra_padding` pad columns."""
    ids, mask = pad_sequences([[*s, EOS] for s in sources], pad_id=PAD)
    return F.pad(ids, (0, extra_padding), value=PAD), F.pad(mask, (0, extra_padding), value=False)


def run_search(
    model: Seq2SeqTransformer,
    search: str,
    sources: list[list[int]],
    *,
    extra_padding: int = 0,
    max_length: int | None = None,
) -> list[list[Hypothesis]]:
    """The hypotheses of every sentence (greedy: one; beam: the n-best), decoded as one batch."""
    ids, mask = source_batch(sources, extra_padding=extra_padding)
    state = Seq2SeqState(model, ids, mask, max_length=max_length)
    common = dict(batch_size=len(sources), bos_id=BOS, eos_id=EOS, max_new_tokens=MAX_NEW_TOKENS)
    if search == "greedy":
        return [[h] for h in greedy_search(state, **common)]
    return beam_search(state, **common, **BEAM)


def assert_same_hypotheses(actual: list[list[Hypothesis]], expected: list[list[Hypothesis]]) -> None:
    assert [[h.tokens for h in hyps] for hyps in actual] == [[h.tokens for h in hyps] for hyps in expected]
    for got, want in zip(actual, expected, strict=True):
        for g, w in zip(got, want, strict=True):
            assert g.score == pytest.approx(w.score, abs=1e-4)
            assert g.log_prob == pytest.approx(w.log_prob, abs=1e-4)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_alone_batched_and_extra_padding_give_identical_outputs(model, search):
    alone = [run_search(model, search, [s])[0] for s in SOURCES]
    batched = run_search(model, search, SOURCES)
    padded = run_search(model, search, SOURCES, extra_padding=6)
    assert_same_hypotheses(batched, alone)
    assert_same_hypotheses(padded, alone)
    # The stress is real: sentences end at different steps, some at EOS and some at the length limit.
    lengths = {len(hyps[0].tokens) for hyps in alone}
    assert len(lengths) > 2 and MAX_NEW_TOKENS in lengths and min(lengths) < MAX_NEW_TOKENS


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_static_cache_gives_the_same_hypotheses_as_the_growing_cache(model, search):
    growing = run_search(model, search, SOURCES)
    static = run_search(model, search, SOURCES, max_length=MAX_NEW_TOKENS)
    assert_same_hypotheses(static, growing)


def test_beam_size_one_equals_greedy(model):
    # With length_penalty 0 both rank by log-probability; with a positive one a single beam may rightly keep
    # extending past an EOS that greedy takes, hoping for a better length-normalised score.
    ids, mask = source_batch(SOURCES)
    common = dict(batch_size=len(SOURCES), bos_id=BOS, eos_id=EOS, max_new_tokens=MAX_NEW_TOKENS)
    greedy = greedy_search(Seq2SeqState(model, ids, mask), **common)
    beam = beam_search(Seq2SeqState(model, ids, mask), **common, beam_size=1, length_penalty=0.0)
    assert_same_hypotheses(beam, [[h] for h in greedy])


def test_top_k_one_sampling_equals_greedy(model):
    ids, mask = source_batch(SOURCES)
    common = dict(batch_size=len(SOURCES), bos_id=BOS, eos_id=EOS, max_new_tokens=MAX_NEW_TOKENS)
    greedy = greedy_search(Seq2SeqState(model, ids, mask), **common)
    sampled = sample(
        Seq2SeqState(model, ids, mask), **common, top_k=1, generator=torch.Generator().manual_seed(5)
    )
    assert_same_hypotheses([[h] for h in sampled], [[h] for h in greedy])


def test_sampling_with_the_same_generator_seed_is_reproducible(model):
    ids, mask = source_batch(SOURCES)
    common = dict(batch_size=len(SOURCES), bos_id=BOS, eos_id=EOS, max_new_tokens=MAX_NEW_TOKENS)

    def draw(seed: int, global_seed: int) -> list[list[int]]:
        torch.manual_seed(global_seed)  # must not matter: only the generator passed in may be used
        hyps = sample(Seq2SeqState(model, ids, mask), **common, generator=torch.Generator().manual_seed(seed))
        return [h.tokens for h in hyps]

    first = draw(seed=3, global_seed=0)
    assert draw(seed=3, global_seed=1) == first
    assert draw(seed=4, global_seed=0) != first  # the generator really drives the draws


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_the_source_is_encoded_once(model, search, monkeypatch):
    calls = []
    encode = model.encode

    def counting_encode(*args, **kwargs):
        calls.append(args[0].shape)
        return encode(*args, **kwargs)

    monkeypatch.setattr(model, "encode", counting_encode)
    run_search(model, search, SOURCES)
    assert calls == [torch.Size([len(SOURCES), max(map(len, SOURCES)) + 1])]
