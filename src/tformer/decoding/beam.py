"""Batched beam search with GNMT length penalty and early stopping.

Rows of the decoder state are sentence-major: row = sentence * n_beams + beam. Active beams are ranked by
their summed log-probability (they all have the same length, so a length penalty could not change the order);
finished hypotheses are ranked by score = log_prob / lp(len), lp(len) = ((5 + len) / 6) ** length_penalty
(Wu et al. 2016), len counting the EOS. Shape legend: N active sentences, k beam size, C candidates,
V vocabulary, t tokens so far, S source length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.checks import check_positive_int
from tformer.decoding.state import (
    DecoderState,
    Hypothesis,
    StepOutput,
    check_batch_size,
    check_lengths,
    check_step,
    forbid_token,
)


@torch.no_grad()
def beam_search(
    state: DecoderState,
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    length_penalty: float = 1.0,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """Return the `n_best` best hypotheses of every sentence, best first, sentences in input order.

    Each step takes the top 2k of the k*V extensions of a sentence's beams. An EOS among the first k of them
    becomes a finished hypothesis (as in fairseq and Hugging Face: one ranked below k would have fallen off
    the beam anyway); the best k non-EOS extensions stay active. A sentence stops when it holds `n_best`
    finished hypotheses and no active beam can still beat the worst of them; it then leaves the state's
    batch. At `max_new_tokens` the active beams are finished as they are, without EOS.
    """
    _check_beam_args(batch_size=batch_size, beam_size=beam_size, n_best=n_best, length_penalty=length_penalty)
    check_lengths(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
    search = _Search(
        beam_size=beam_size,
        eos_id=eos_id,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        length_penalty=length_penalty,
    )
    finished = [_BestFinished(n_best) for _ in range(batch_size)]
    # One beam per sentence at first, so that the k beams of the first step are k different tokens.
    beams = _Beams(
        sentences=list(range(batch_size)),
        tokens=torch.empty(batch_size, 0, dtype=torch.long),
        log_probs=torch.zeros(batch_size, 1),
    )
    last = torch.full((batch_size, 1), bos_id, dtype=torch.long)  # Long[N * n_beams, 1]
    for step in range(1, max_new_tokens + 1):
        out = state.step(last)
        check_step(out, rows=beams.tokens.size(0), eos_id=eos_id)
        if step == 1 and beam_size >= out.logits.size(1):
            raise ValueError(
                f"beam_size must be smaller than the vocabulary ({out.logits.size(1)}), got {beam_size}"
            )
        # rows: Long[N, k]; log_probs: the new beams' log-probs, read to the host
        beams, rows, log_probs = _advance(beams, out, finished, step=step, search=search)
        if step == max_new_tokens:
            histories = beams.tokens.tolist()
            for row, (sentence, log_prob) in enumerate(beams.flat(log_probs)):
                finished[sentence].add(_finished(histories[row], log_prob, step, length_penalty))
            break
        running = _can_still_improve(beams, log_probs, finished, step=step, search=search)
        if not any(running):
            break
        beams = _align_state(state, beams, rows, running, step=step, beam_size=beam_size)
        last = beams.tokens[:, -1:]  # Long[N * k, 1]
    return [f.hypotheses for f in finished]


@dataclass
class _Beams:
    """The active beams, sentence-major."""

    sentences: list[int]  # input index of each active sentence
    tokens: Tensor  # Long[N * n_beams, t]: tokens after BOS
    log_probs: Tensor  # Float[N, n_beams]

    @property
    def n_beams(self) -> int:
        return self.log_probs.size(1)

    def to(self, device: torch.device) -> _Beams:
        return _Beams(self.sentences, self.tokens.to(device), self.log_probs.to(device))

    def extend(self, rows: Tensor, tokens: Tensor, log_probs: Tensor) -> _Beams:
        """New beams: row i continues old row rows[i] with tokens.view(-1)[i]; log_probs is Float[N, k]."""
        return _Beams(
            sentences=self.sentences,
            tokens=torch.cat([self.tokens[rows], tokens.view(-1, 1)], dim=1),  # Long[N * k, t + 1]
            log_probs=log_probs,
        )

    def flat(self, per_sentence: list[list[float]]) -> list[tuple[int, float]]:
        """(input sentence, value) of every row, in row order, from one list of n_beams values per sentence."""
        return [
            (sentence, value)
            for sentence, values in zip(self.sentences, per_sentence, strict=True)
            for value in values
        ]

    def keep(self, kept: list[int]) -> _Beams:
        """Only the sentences at positions `kept` (ascending)."""
        indices = torch.tensor(kept, device=self.tokens.device)  # Long[N']
        rows = (indices[:, None] * self.n_beams + torch.arange(self.n_beams, device=indices.device)).view(-1)
        return _Beams(
            sentences=[self.sentences[i] for i in kept],
            tokens=self.tokens.index_select(0, rows),
            log_probs=self.log_probs.index_select(0, indices),
        )


class _BestFinished:
    """The `n_best` highest-scoring finished hypotheses of one sentence, best first."""

    def __init__(self, n_best: int) -> None:
        self.n_best = n_best
        self.hypotheses: list[Hypothesis] = []

    def add(self, hypothesis: Hypothesis) -> None:
        self.hypotheses.append(hypothesis)
        self.hypotheses.sort(
            key=lambda h: h.score, reverse=True
        )  # stable: on a tie the earlier one stays first
        del self.hypotheses[self.n_best :]

    def unbeatable(self, bound: float) -> bool:
        """True when the list is full and no hypothesis scoring at most `bound` could enter it."""
        return len(self.hypotheses) == self.n_best and bound <= self.hypotheses[-1].score


@dataclass(frozen=True)
class _Search:
    """The settings of one beam_search call that its step helpers need."""

    beam_size: int
    eos_id: int
    max_new_tokens: int
    min_new_tokens: int
    length_penalty: float


def _advance(
    beams: _Beams, out: StepOutput, finished: list[_BestFinished], *, step: int, search: _Search
) -> tuple[_Beams, Tensor, list[list[float]]]:
    """Extend every sentence's beams by one token, given the step's logits for the old beams.

    An EOS among a sentence's best k candidates goes to its finished hypotheses; its best k non-EOS candidates
    become the new beams. Returns the new beams, Long[N, k] the old row each of them continues, and the new
    beams' log-probs as host lists [N][k].
    """
    beams = beams.to(out.logits.device)
    log_probs = out.logits.float().log_softmax(dim=-1)  # Float[N * n_beams, V]
    if step <= search.min_new_tokens:
        log_probs = forbid_token(log_probs, search.eos_id)
    k = search.beam_size
    scores, rows, tokens = _top_candidates(log_probs, beams.log_probs, size=2 * k)  # each [N, C]
    ends = tokens == search.eos_id  # Bool[N, C]
    # A stable sort brings each sentence's non-EOS candidates to the front, still in rank order.
    pick = ends.int().sort(dim=1, stable=True).indices[:, :k]  # Long[N, k]
    new_rows, new_tokens, new_scores = rows.gather(1, pick), tokens.gather(1, pick), scores.gather(1, pick)
    # One read from the device per step (on a GPU each read waits for it): which of the top k candidates
    # end, with their rows and scores, and the new beams' log-probs. Row indices are exact in float64.
    ended, ended_rows, ended_scores, kept_scores = torch.stack(
        [ends[:, :k].double(), rows[:, :k].double(), scores[:, :k].double(), new_scores.double()]
    ).tolist()
    finishing = [(i, rank) for i, row in enumerate(ended) for rank in range(k) if row[rank]]
    if finishing:
        finishing_rows = [int(ended_rows[i][rank]) for i, rank in finishing]
        histories = beams.tokens[finishing_rows].tolist()  # a second read, only on a step where beams end
        for (i, rank), history in zip(finishing, histories, strict=True):
            hypothesis = _finished(history, ended_scores[i][rank], step, search.length_penalty)
            finished[beams.sentences[i]].add(hypothesis)
    return beams.extend(new_rows.view(-1), new_tokens, new_scores), new_rows, kept_scores


def _can_still_improve(
    beams: _Beams, log_probs: list[list[float]], finished: list[_BestFinished], *, step: int, search: _Search
) -> list[bool]:
    """Per active sentence: whether its best active beam (log-probs: the beams' [N][k], best first) could
    still enter its n-best finished list."""
    # Log-probs only fall, so the best an active beam can reach is its log-prob over the largest length
    # penalty it can still get: at the longest length when the penalty grows with length, else the shortest.
    alpha = search.length_penalty
    best_penalty = _lp(search.max_new_tokens if alpha > 0 else step + 1, alpha)
    return [
        not finished[s].unbeatable(beam_log_probs[0] / best_penalty)
        for s, beam_log_probs in zip(beams.sentences, log_probs, strict=True)
    ]


def _align_state(
    state: DecoderState, beams: _Beams, rows: Tensor, running: list[bool], *, step: int, beam_size: int
) -> _Beams:
    """Give the state one row per new beam (row i continues old row rows.view(-1)[i]); drop stopped sentences.

    Returns `beams` without the stopped sentences.
    """
    expanding = step == 1 and beam_size > 1  # the state still holds one row per sentence
    if expanding or not all(running):
        kept = [i for i, keep in enumerate(running) if keep]
        # expands to k beams and drops finished sentences
        state.select(rows.index_select(0, torch.tensor(kept, device=rows.device)).view(-1))
        return beams.keep(kept)
    if beam_size > 1:
        state.reorder(rows.view(-1))
    return beams


def _top_candidates(log_probs: Tensor, beam_log_probs: Tensor, *, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The `size` best one-token extensions of each sentence's beams: (log-probs, source rows, tokens), [N, C]."""
    n_sentences, n_beams = beam_log_probs.shape
    vocab = log_probs.size(-1)
    totals = beam_log_probs.unsqueeze(-1) + log_probs.view(
        n_sentences, n_beams, vocab
    )  # Float[N, n_beams, V]
    scores, flat = totals.view(n_sentences, n_beams * vocab).topk(min(size, n_beams * vocab), dim=1)  # [N, C]
    first_row = torch.arange(n_sentences, device=flat.device).unsqueeze(1) * n_beams  # Long[N, 1]
    return scores, first_row + flat // vocab, flat % vocab


def _finished(tokens: list[int], log_prob: float, length: int, length_penalty: float) -> Hypothesis:
    """A finished hypothesis of `length` tokens (EOS included, when emitted), scored with the length penalty."""
    return Hypothesis(tokens=tokens, score=log_prob / _lp(length, length_penalty), log_prob=log_prob)


def _lp(length: int, alpha: float) -> float:
    """GNMT length penalty; alpha = 0 gives 1, i.e. raw log-probabilities."""
    return ((5 + length) / 6) ** alpha


def _check_beam_args(*, batch_size: int, beam_size: int, n_best: int, length_penalty: float) -> None:
    check_batch_size(batch_size)
    check_positive_int("beam_size", beam_size)
    if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be an int in [1, beam_size={beam_size}], got {n_best!r}")
    if not isinstance(length_penalty, (int, float)) or length_penalty != length_penalty:
        raise ValueError(f"length_penalty must be a real number, got {length_penalty!r}")
