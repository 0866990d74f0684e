"""Seq2SeqState(compile=True): the same hypotheses as eager decoding, from a handful of graphs.

torch.compile runs with the aot_eager backend here (graph capture and autograd tracing without inductor's C++
build, which would take half a minute on CPU): what could change the function is the capture, not the backend.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from tformer.decoding import Seq2SeqState, beam_search, greedy_search
from tformer.models.seq2seq import Seq2SeqTransformer, preset_config

LENGTHS = dict(bos_id=1, eos_id=2, max_new_tokens=10)


@pytest.fixture
def compile_with_aot_eager(monkeypatch):
    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    yield
    torch._dynamo.reset()


def _model() -> Seq2SeqTransformer:
    torch.manual_seed(0)
    return Seq2SeqTransformer(preset_config("tiny", src_vocab_size=40, tgt_vocab_size=40, pad_id=0)).eval()


def _sources(batch: int, length: int, seed: int) -> torch.Tensor:
    ids = torch.randint(3, 40, (batch, length), generator=torch.Generator().manual_seed(seed))
    ids[0, length - 2 :] = 0  # one padded sentence
    return ids


@pytest.mark.usefixtures("compile_with_aot_eager")
def test_compiled_greedy_and_beam_equal_eager_from_few_graphs():
    model, src = _model(), _sources(4, 9, seed=0)
    greedy = functools.partial(greedy_search, batch_size=4, **LENGTHS)
    eager, compiled = greedy(Seq2SeqState(model, src)), greedy(Seq2SeqState(model, src, compile=True))
    beam = functools.partial(beam_search, batch_size=4, beam_size=3, n_best=2, **LENGTHS)
    eager += [h for best in beam(Seq2SeqState(model, src)) for h in best]
    compiled += [h for best in beam(Seq2SeqState(model, src, compile=True)) for h in best]
    assert len(compiled) == len(eager) == 4 + 4 * 2
    for e, c in zip(eager, compiled, strict=True):
        assert e.tokens == c.tokens
        assert c.score == pytest.approx(e.score, abs=1e-5)
    # Dynamic shapes: graphs for the first step (it projects the memory), the second (dynamo specialises sizes
    # of 1) and all steps after, and again for beam search's batch of beams: never one per cache length.
    assert counters["stats"]["unique_graphs"] <= 6
