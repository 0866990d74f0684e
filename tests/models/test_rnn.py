"""The LSTM baselines: additive attention over real source tokens only, cached == teacher-forced decoding, the
searches drive the seq2seq model unchanged, both models learn, configs reject bad values by name."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.data.batching import make_seq2seq_batch, pad_sequences
from tformer.decoding import Seq2SeqState, beam_search, greedy_search
from tformer.decoding.causal_lm import SamplingConfig, generate_tokens
from tformer.models.rnn import (
    LSTMAttentionSeq2Seq,
    LSTMCache,
    LSTMLanguageModel,
    LSTMLMConfig,
    LSTMSeq2SeqConfig,
)
from tformer.training.losses import label_smoothed_cross_entropy
from tformer.viz.capture import capture_attention

from .test_learning import BOS, EOS, PAD, VOCAB, greedy_outputs, held_out_set, training_sources

SOURCES = [[5, 9, 3, 11], [12], [4, 4, 10, 7, 8, 13, 6, 3, 11], [13, 10], [6, 5, 9, 12, 13, 4]]
MAX_NEW_TOKENS = 12


def seq2seq_model(**overrides) -> LSTMAttentionSeq2Seq:
    torch.manual_seed(0)
    fields = dict(
        src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_embed=16, d_hidden=32, n_layers=2, dropout=0.0
    )
    return LSTMAttentionSeq2Seq(LSTMSeq2SeqConfig(**{**fields, **overrides})).eval()


def source_batch(sources: list[list[int]], *, extra_padding: int = 0) -> tuple[Tensor, Tensor]:
    """(src_ids Long[B, S], src_mask Bool[B, S]): sentences + EOS, right-padded, plus `extra_padding` columns."""
    ids, mask = pad_sequences([[*s, EOS] for s in sources], pad_id=PAD)
    return F.pad(ids, (0, extra_padding), value=PAD), F.pad(mask, (0, extra_padding), value=False)


def random_targets(batch_size: int, length: int, *, seed: int) -> Tensor:
    return torch.randint(3, VOCAB, (batch_size, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def eos_model() -> LSTMAttentionSeq2Seq:
    """A random model whose outputs depend on its input and end at different steps (checked in the beam-1
    test), so rows leave the batch at different times. At the usual uniform(-0.1, 0.1) init a random model
    emits the same token for every input and never EOS; every weight x8 makes its choices sharp."""
    model = seq2seq_model()
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(8.0)
    return model


def test_attention_weights_are_zero_on_padding_and_sum_to_one_over_real_tokens():
    model = seq2seq_model()
    ids, mask = source_batch(SOURCES, extra_padding=2)
    tgt = random_targets(len(SOURCES), 6, seed=1)
    with capture_attention(model) as maps:
        model(ids, tgt, src_mask=mask)
    weights = maps.cross_attention()[:, 0]  # one additive "head": [B, 1, T, S] -> [B, T, S]
    assert weights.shape == (len(SOURCES), 6, ids.size(1))
    assert torch.all(weights.masked_select(~mask[:, None, :]) == 0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(len(SOURCES), 6))
    assert torch.all(weights.masked_select(mask[:, None, :]) > 0)


def test_a_sentence_decodes_the_same_alone_and_in_a_padded_batch():
    """Packing keeps padding out of the bidirectional encoder: without it the backward direction of a short
    row would start on pad embeddings and every logit of that row would change."""
    model = seq2seq_model()
    tgt = random_targets(len(SOURCES), 5, seed=2)
    ids, mask = source_batch(SOURCES, extra_padding=3)
    batched = model(ids, tgt, src_mask=mask).logits
    for i, sentence in enumerate(SOURCES):
        alone_ids, alone_mask = source_batch([sentence])
        alone = model(alone_ids, tgt[i : i + 1], src_mask=alone_mask).logits
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=0)


def test_teacher_forced_decode_equals_cached_decode_in_chunks():
    model = seq2seq_model()
    ids, mask = source_batch(SOURCES)
    tgt = random_targets(len(SOURCES), 7, seed=3)
    enc = model.encode(ids, mask)
    with capture_attention(model) as full_maps:
        full = model.decode(tgt, memory=enc.memory, memory_mask=enc.memory_mask)
    cache = model.new_cache(max_length=99)
    logits = []
    with capture_attention(model) as chunked_maps:  # the chunks' weights join along T
        for start, end in [(0, 3), (3, 4), (4, 5), (5, 7)]:  # a multi-token prefix, then single steps
            out = model.decode(tgt[:, start:end], memory=enc.memory, memory_mask=enc.memory_mask, cache=cache)
            assert out.cache is cache and cache.length == end
            logits.append(out.logits)
    torch.testing.assert_close(torch.cat(logits, dim=1), full.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked_maps.cross_attention(), full_maps.cross_attention(), atol=1e-5, rtol=0)


def test_cache_select_gathers_every_row_and_reorder_leaves_the_memory_keys():
    cache = LSTMCache()
    h, c = torch.arange(6.0).view(1, 3, 2), -torch.arange(6.0).view(1, 3, 2)  # [L=1, B=3, H=2]
    cache.update((h, c), 2)
    cache.memory_keys = torch.arange(3.0).view(3, 1, 1)  # [B, S=1, A=1]
    cache.reorder(torch.tensor([2, 2, 0]))
    assert torch.equal(cache.hidden[0], h[:, [2, 2, 0]]) and torch.equal(cache.hidden[1], c[:, [2, 2, 0]])
    assert torch.equal(cache.memory_keys.flatten(), torch.tensor([0.0, 1.0, 2.0]))
    cache.select(torch.tensor([1, 0]))
    assert torch.equal(cache.hidden[0], h[:, [2, 2]]) and torch.equal(cache.hidden[1], c[:, [2, 2]])
    assert torch.equal(cache.memory_keys.flatten(), torch.tensor([1.0, 0.0]))
    assert cache.length == 2


def run_beam(model: LSTMAttentionSeq2Seq, *, beam_size: int, n_best: int = 1):
    ids, mask = source_batch(SOURCES)
    state = Seq2SeqState(model, ids, mask)
    common = dict(batch_size=len(SOURCES), bos_id=BOS, eos_id=EOS, max_new_tokens=MAX_NEW_TOKENS)
    return beam_search(state, **common, beam_size=beam_size, length_penalty=0.0, n_best=n_best)


def test_beam_size_one_equals_greedy(eos_model):
    ids, mask = source_batch(SOURCES)
    greedy = greedy_search(
        Seq2SeqState(eos_model, ids, mask),
        batch_size=len(SOURCES),
        bos_id=BOS,
        eos_id=EOS,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    beam = run_beam(eos_model, beam_size=1)
    assert [hyps[0].tokens for hyps in beam] == [h.tokens for h in greedy]
    assert [hyps[0].score for hyps in beam] == pytest.approx([h.score for h in greedy], abs=1e-5)
    # The stress is real: sentences end at different steps, some at EOS and some at the length limit.
    lengths = {len(h.tokens) for h in greedy}
    assert len(lengths) > 2 and MAX_NEW_TOKENS in lengths and min(lengths) < MAX_NEW_TOKENS


@torch.no_grad()
def teacher_forced_log_prob(model: LSTMAttentionSeq2Seq, sentence: list[int], tokens: list[int]) -> float:
    """log p(tokens [+ EOS when it was emitted, i.e. the hypothesis ended before the limit] | sentence)."""
    targets = tokens + [EOS] if len(tokens) < MAX_NEW_TOKENS else tokens
    ids, mask = source_batch([sentence])
    logits = model(ids, torch.tensor([[BOS, *targets]])[:, : len(targets)], src_mask=mask).logits[0]
    return float(logits.log_softmax(dim=-1).gather(1, torch.tensor(targets)[:, None]).sum())


def test_beam_hypotheses_score_what_the_model_gives_them(eos_model):
    """Every one of the 4-best of beam 4 (reorders, expansions and drops of the cache in play) must score
    exactly the teacher-forced log-probability of its tokens: a cache row that followed the wrong beam would
    not. ("Beam >= greedy" is no invariant: greedy's prefix can fall off the beam.)"""
    beam = run_beam(eos_model, beam_size=4, n_best=4)
    for sentence, hyps in zip(SOURCES, beam, strict=True):
        assert len({tuple(h.tokens) for h in hyps}) == 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.log_prob == pytest.approx(
                teacher_forced_log_prob(eos_model, sentence, h.tokens), abs=1e-4
            )


def test_lstm_attention_learns_to_copy():
    """Held-out sequences never seen in training; >= 95% must come back exactly under greedy decoding."""
    model = seq2seq_model(d_embed=32, d_hidden=64, n_layers=1).train()
    held_out = held_out_set(seed=1234)
    batches = training_sources(random.Random(0), batch_size=64, exclude={tuple(s) for s in held_out})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):  # 100% from step 200 on, with data seeds 0, 1 and 2
        sources = next(batches)
        batch = make_seq2seq_batch(sources, sources, pad_id=PAD, bos_id=BOS, eos_id=EOS)
        logits = model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).logits  # [B, T, V]
        loss = label_smoothed_cross_entropy(logits, batch.tgt_out.masked_fill(~batch.tgt_mask, -100))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    outputs = greedy_outputs(model.eval(), held_out)
    exact = sum(out == src for out, src in zip(outputs, held_out, strict=True)) / len(held_out)
    assert exact >= 0.95, f"exact match {exact:.1%}; e.g. {list(zip(held_out, outputs, strict=True))[:3]}"


def lm_model(**overrides) -> LSTMLanguageModel:
    torch.manual_seed(0)
    fields = dict(vocab_size=VOCAB, d_embed=24, d_hidden=24, n_layers=2, dropout=0.0)
    return LSTMLanguageModel(LSTMLMConfig(**{**fields, **overrides})).eval()


def uncached_greedy(model: LSTMLanguageModel, prompt: Tensor, steps: int) -> list[list[int]]:
    """Re-run the whole sequence for every new token: the reference for cached generation."""
    ids = prompt
    for _ in range(steps):
        with torch.no_grad():
            next_ids = model(ids).logits[:, -1].argmax(dim=-1, keepdim=True)  # Long[B, 1]
        ids = torch.cat([ids, next_ids], dim=1)
    return ids[:, prompt.size(1) :].tolist()


def test_lm_cached_steps_equal_the_full_forward():
    model = lm_model()
    ids = random_targets(3, 9, seed=4)
    full = model(ids).logits
    cache = model.new_cache()
    steps = [model(ids[:, :4], cache=cache, last_only=True).logits]  # prefill, then one token at a time
    steps += [model(ids[:, t : t + 1], cache=cache).logits for t in range(4, 9)]
    assert cache.length == 9
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 3:], atol=1e-5, rtol=0)


# A short text with letters folded onto the symbol ids 4..13 and spaces as 3: "the" recurs, so the next
# symbol after "the " depends on more than the last few.
TEXT = [
    4 + (ord(ch) - ord("a")) % 10 if ch != " " else 3 for ch in "the quick brown fox jumps over the lazy dog"
]


@pytest.fixture(scope="module")
def text_lm() -> LSTMLanguageModel:
    """An LM trained to reproduce TEXT (a random LM at this init repeats one token whatever its context)."""
    model = lm_model(d_embed=48, d_hidden=48).train()
    ids = torch.tensor([TEXT])  # Long[1, N]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(ids[:, :-1]).logits.flatten(0, 1), ids[0, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def test_lm_overfits_a_short_text(text_lm):
    assert uncached_greedy(text_lm, torch.tensor([TEXT[:1]]), len(TEXT) - 1) == [TEXT[1:]]


def test_lm_generate_tokens_at_temperature_zero_equals_an_uncached_greedy_loop(text_lm):
    prompt = torch.tensor([TEXT[start : start + 5] for start in (0, 9, 20)])  # Long[3, 5]
    config = SamplingConfig(max_new_tokens=15, temperature=0.0)
    cached = torch.stack(list(generate_tokens(text_lm, prompt, config=config)), dim=1).tolist()  # [B, 15]
    assert cached == uncached_greedy(text_lm, prompt, 15)
    assert all(len(set(row)) > 5 for row in cached)  # the stress is real: the outputs follow their context


@pytest.mark.parametrize(
    ("config_type", "fields", "named"),
    [
        (LSTMSeq2SeqConfig, dict(d_hidden=33), "d_hidden"),
        (LSTMSeq2SeqConfig, dict(n_layers=0), "n_layers"),
        (LSTMSeq2SeqConfig, dict(src_vocab_size=0), "src_vocab_size"),
        (LSTMSeq2SeqConfig, dict(dropout=1.0), "dropout"),
        (LSTMSeq2SeqConfig, dict(share_embeddings=True, src_vocab_size=10), "share_embeddings"),
        (LSTMSeq2SeqConfig, dict(pad_id=8000), "pad_id"),
        (LSTMLMConfig, dict(d_embed=100), "tie_embeddings"),
        (LSTMLMConfig, dict(vocab_size=-1), "vocab_size"),
        (LSTMLMConfig, dict(context_length=0), "context_length"),
        (LSTMLMConfig, dict(dropout=-0.1), "dropout"),
    ],
)
def test_config_errors_name_the_field(config_type, fields, named):
    with pytest.raises(ValueError, match=named):
        config_type(**fields)


def test_encode_rejects_a_mask_that_is_not_right_padded():
    model = seq2seq_model()
    ids = torch.tensor([[5, 6, 2], [7, 2, 0]])
    with pytest.raises(ValueError, match="right-padded"):
        model.encode(ids, torch.tensor([[True, True, True], [False, True, True]]))


def test_an_empty_source_row_gives_zero_memory_and_zero_attention():
    model = seq2seq_model().eval()
    ids = torch.tensor([[5, 6, 2], [7, 2, 0]])
    encoded = model.encode(ids, torch.tensor([[True, True, True], [False, False, False]]))
    assert torch.equal(encoded.memory[1], torch.zeros_like(encoded.memory[1]))
    with capture_attention(model) as maps:
        out = model.decode(
            torch.tensor([[1, 5], [1, 7]]), memory=encoded.memory, memory_mask=encoded.memory_mask
        )
    assert torch.isfinite(out.logits).all()
    weights = maps.cross_attention()  # [B, 1, T, S]
    assert torch.equal(weights[1], torch.zeros_like(weights[1]))


def test_tied_and_shared_weights_are_one_tensor():
    model = seq2seq_model(tie_output=True, share_embeddings=True, d_embed=16)
    assert model.output_projection.weight is model.tgt_embed.weight is model.src_embed.weight
    ids, mask = source_batch(SOURCES[:2])
    assert model(ids, random_targets(2, 3, seed=6), src_mask=mask).logits.shape == (2, 3, VOCAB)
