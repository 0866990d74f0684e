"""Decoding: greedy search, beam search and sampling over a `DecoderState` (a model behind a small protocol)."""

from tformer.decoding.beam import beam_search
from tformer.decoding.greedy import greedy_search
from tformer.decoding.sampling import filter_logits, sample
from tformer.decoding.state import DecoderState, Hypothesis, Seq2SeqState, StepOutput

__all__ = [
    "DecoderState",
    "Hypothesis",
    "Seq2SeqState",
    "StepOutput",
    "beam_search",
    "filter_logits",
    "greedy_search",
    "sample",
]
