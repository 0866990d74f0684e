"""Beam search against scripted probabilities: the expected beams below are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tformer.decoding import Seq2SeqState, beam_search, greedy_search

from .fake import (
    BOS,
    EOS,
    A,
    B,
    C,
    CopyModel,
    ScriptedState,
    random_script,
    sequence_log_prob,
)

# Vocabulary: BOS, EOS, a, b, c. Unscripted prefixes get DEFAULT.
SCRIPT_1 = {
    (): [0, 0.30, 0.40, 0.20, 0.10],
    (A,): [0, 0.70, 0.15, 0.10, 0.05],
    (B,): [0, 0.05, 0.05, 0.85, 0.05],
    (C,): [0, 0.50, 0.30, 0.10, 0.10],
    (B, B): [0, 0.95, 0.02, 0.02, 0.01],
}
DEFAULT = [0, 0.50, 0.25, 0.15, 0.10]
# A garden path: the best sentence starts with the third most likely token.
SCRIPT_2 = {
    (): [0, 0.01, 0.35, 0.33, 0.31],
    (A,): [0, 0.30, 0.40, 0.20, 0.10],
    (B,): [0, 0.25, 0.45, 0.20, 0.10],
    (C,): [0, 0.99, 0.004, 0.003, 0.003],
}


def lp(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha


def run_beam(scripts, *, max_new_tokens=4, **options):
    state = ScriptedState(scripts, default=DEFAULT)
    hyps = beam_search(
        state, batch_size=len(scripts), bos_id=BOS, eos_id=EOS, max_new_tokens=max_new_tokens, **options
    )
    return hyps, state


def summary(hyps):
    return [(h.tokens, h.score, h.log_prob) for h in hyps]


def assert_hyps(actual, expected):
    """expected: (tokens, score, log_prob) triples, best first."""
    assert [h.tokens for h in actual] == [tokens for tokens, _, _ in expected]
    for h, (_, score, log_prob) in zip(actual, expected, strict=True):
        assert h.score == pytest.approx(score, rel=1e-5)
        assert h.log_prob == pytest.approx(log_prob, rel=1e-5)


# Beam 2, no length penalty. Step 1: candidates a .4, EOS .3, b .2, c .1; EOS (rank 1 < 2) finishes [] = .3;
# beams a, b. Step 2: a-EOS .28, b-b .17, a-a .06, a-b .04; a-EOS finishes [a] = .28; two finished (n_best)
# and the best beam (.17) cannot reach .28: done.
def test_beam2_without_length_penalty():
    (hyps,), state = run_beam([SCRIPT_1], beam_size=2, n_best=2, length_penalty=0.0)
    assert_hyps(hyps, [([], math.log(0.3), math.log(0.3)), ([A], math.log(0.28), math.log(0.28))])
    # The one row is expanded to two beams after step 1; after step 2 the sentence is done, so it stops.
    assert state.calls == [("step", [0]), ("select", [0, 0]), ("step", [0, 0])]


# Beam 2, length penalty 1 (lp(1) = 1, lp(2) = 7/6, lp(3) = 4/3, lp(4) = 1.5): [a] = log .28 / (7/6) = -1.091
# now beats [] = log .3 = -1.204. After step 2 beam b-b (.17) could still reach log .17 / lp(4) = -1.181 > -1.204,
# so step 3 runs: b-b-EOS .1615 (-1.367) and a-a-EOS .03 finish but do not enter the two best; beam a-a-a (.015)
# cannot reach -1.204: done.
def test_beam2_length_penalty_changes_the_winner():
    (hyps,), state = run_beam([SCRIPT_1], beam_size=2, n_best=2, length_penalty=1.0)
    assert_hyps(hyps, [([A], math.log(0.28) / (7 / 6), math.log(0.28)), ([], math.log(0.3), math.log(0.3))])
    # Expanded to two beams after step 1; after step 2 beam 0 (b-b) continues old row 1 (b), beam 1 (a-a) row 0.
    assert state.calls == [
        ("step", [0]),
        ("select", [0, 0]),
        ("step", [0, 0]),
        ("reorder", [1, 0]),
        ("step", [0, 0]),
    ]


# Beam 3, no length penalty. Step 1 keeps a, b, c. Step 2 top 6: a-EOS .28, b-b .17, a-a .06, c-EOS .05, a-b .04,
# c-a .03; c-EOS is ranked 3, outside the beam, so it is dropped. Step 3 top 6: b-b-EOS .1615, a-a-EOS .03,
# a-b-EOS .02, then beams; all three EOS finish, [b b] makes the three best.
def test_beam3_without_length_penalty():
    (hyps,), _ = run_beam([SCRIPT_1], beam_size=3, n_best=3, length_penalty=0.0)
    expected = [([], math.log(0.3)), ([A], math.log(0.28)), ([B, B], math.log(0.1615))]
    assert_hyps(hyps, [(tokens, log_prob, log_prob) for tokens, log_prob in expected])


def test_beam3_with_length_penalty():
    (hyps,), _ = run_beam([SCRIPT_1], beam_size=3, n_best=3, length_penalty=1.0)
    expected = [([A], 0.28, 2), ([], 0.3, 1), ([B, B], 0.1615, 3)]
    assert_hyps(hyps, [(tokens, math.log(p) / lp(n, 1.0), math.log(p)) for tokens, p, n in expected])


# Garden path, cut at 2 tokens. Beam 2 keeps a, b; step 2 best: b-a .1485, a-a .14, a-EOS .105 (rank 2: dropped);
# the cut beams b-a and a-a finish without EOS. Beam 3 also keeps c, and c-EOS (.3069) wins.
def test_wider_beam_finds_the_garden_path_and_cut_beams_finish_without_eos():
    (greedy,) = greedy_search(
        ScriptedState([SCRIPT_2]), batch_size=1, bos_id=BOS, eos_id=EOS, max_new_tokens=2
    )
    (beam2,), _ = run_beam([SCRIPT_2], beam_size=2, n_best=2, length_penalty=0.0, max_new_tokens=2)
    (beam3,), _ = run_beam([SCRIPT_2], beam_size=3, n_best=1, length_penalty=0.0, max_new_tokens=2)
    assert greedy.tokens == [A, A] and greedy.log_prob == pytest.approx(math.log(0.35 * 0.40), rel=1e-5)
    assert_hyps(
        beam2, [([B, A], math.log(0.1485), math.log(0.1485)), ([A, A], math.log(0.14), math.log(0.14))]
    )
    assert_hyps(beam3, [([C], math.log(0.3069), math.log(0.3069))])


# Cut after one token: EOS finishes [] = .3, then the beams a (.4) and b (.2) are finished as they are.
def test_max_new_tokens_finishes_active_beams():
    (hyps,), _ = run_beam([SCRIPT_1], beam_size=2, n_best=2, length_penalty=0.0, max_new_tokens=1)
    assert_hyps(hyps, [([A], math.log(0.4), math.log(0.4)), ([], math.log(0.3), math.log(0.3))])


# Step 1: a .45, b .35, EOS .2: the EOS is ranked 2, outside a beam of 2, so [] never finishes (fairseq and
# Hugging Face do the same), although .2 would beat everything but [a]. Step 2 (DEFAULT): a-EOS .225, b-EOS .175,
# a-a .1125, b-a .0875; both EOS finish and a-a cannot reach .175.
def test_eos_ranked_outside_the_beam_does_not_finish():
    script = {(): [0, 0.20, 0.45, 0.35, 0]}
    (hyps,), _ = run_beam([script], beam_size=2, n_best=2, length_penalty=0.0)
    assert_hyps(hyps, [([A], math.log(0.225), math.log(0.225)), ([B], math.log(0.175), math.log(0.175))])


# EOS is forbidden at step 1, so [] cannot finish; step 2 is then as in test_beam2_without_length_penalty. Scores
# stay the model's own log-probabilities (no renormalisation after masking EOS).
def test_min_new_tokens_forbids_early_eos():
    (hyps,), state = run_beam([SCRIPT_1], beam_size=2, length_penalty=0.0, min_new_tokens=1)
    assert_hyps(hyps, [([A], math.log(0.28), math.log(0.28))])
    (longer,), _ = run_beam([SCRIPT_1], beam_size=2, n_best=2, length_penalty=0.0, min_new_tokens=2)
    assert all(len(h.tokens) >= 2 for h in longer)


@pytest.mark.parametrize("seed", range(6))
def test_beam_size_one_is_greedy(seed):
    scripts = [random_script(seed * 10 + i) for i in range(3)] + [SCRIPT_2]
    greedy = greedy_search(
        ScriptedState(scripts, default=DEFAULT), batch_size=4, bos_id=BOS, eos_id=EOS, max_new_tokens=6
    )
    beams, _ = run_beam(scripts, beam_size=1, length_penalty=0.0, max_new_tokens=6)
    for g, (b,) in zip(greedy, beams, strict=True):
        assert b.tokens == g.tokens
        assert b.log_prob == pytest.approx(g.log_prob, abs=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, -0.5])
def test_n_best_are_distinct_consistent_and_best_first(length_penalty):
    max_new_tokens = 5
    scripts = [random_script(seed) for seed in range(4)]
    batch, state = run_beam(scripts, beam_size=3, n_best=3, length_penalty=length_penalty, max_new_tokens=5)
    for sentence, hyps in enumerate(batch):
        assert len(hyps) == 3
        assert len({tuple(h.tokens) for h in hyps}) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            ended = len(h.tokens) < max_new_tokens  # only a cut hypothesis reaches the limit
            length = len(h.tokens) + ended
            assert h.log_prob == pytest.approx(
                sequence_log_prob(state, sentence, h.tokens, ended=ended), abs=1e-5
            )
            assert h.score == pytest.approx(h.log_prob / lp(length, length_penalty), abs=1e-5)


def test_batch_gives_each_sentence_its_solo_result_and_drops_finished_sentences():
    scripts = [SCRIPT_1, random_script(7), SCRIPT_2, random_script(8)]
    options = dict(beam_size=3, n_best=2, length_penalty=1.0, max_new_tokens=6)
    batch, state = run_beam(scripts, **options)
    for sentence, script in enumerate(scripts):
        (alone,), solo_state = run_beam([script], **options)
        assert [h.tokens for h in batch[sentence]] == [h.tokens for h in alone]
        assert [h.score for h in batch[sentence]] == pytest.approx([h.score for h in alone], abs=1e-6)
        # A finished sentence leaves the batch: it is stepped exactly as often as when decoded alone.
        steps_in_batch = sum(rows.count(sentence) for call, rows in state.calls if call == "step")
        steps_alone = sum(len(rows) for call, rows in solo_state.calls if call == "step")
        assert steps_in_batch == steps_alone
    assert any(call == "select" and len(rows) < 12 for call, rows in state.calls[2:])


def test_beam_search_through_seq2seq_state_copies_the_source():
    model = CopyModel(vocab_size=6)
    src = torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0]])  # pad 0, BOS 1, EOS 2
    state = Seq2SeqState(model, src)
    batch = beam_search(state, batch_size=2, bos_id=1, eos_id=2, beam_size=2, max_new_tokens=6)
    assert model.encode_calls == 1
    assert [hyps[0].tokens for hyps in batch] == [[3, 4], [5]]
    assert state.cache.calls[0] == ("select", [0, 0, 1, 1])


def test_invalid_arguments_are_rejected():
    state = ScriptedState([SCRIPT_1], default=DEFAULT)
    good = dict(batch_size=1, bos_id=BOS, eos_id=EOS, beam_size=2, max_new_tokens=3)
    for bad, message in [
        (dict(beam_size=0), "beam_size"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(n_best=3), "n_best"),
        (dict(min_new_tokens=4), "min_new_tokens"),
        (dict(beam_size=5), "vocabulary"),
        (dict(eos_id=9), "eos_id"),
    ]:
        with pytest.raises(ValueError, match=message):
            beam_search(ScriptedState([SCRIPT_1], default=DEFAULT), **{**good, **bad})
    assert state.calls == []
