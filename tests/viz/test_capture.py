"""Attention capture by hooks: the weights any model computes, with no argument or output of its own."""

from __future__ import annotations

import pytest
import torch

from tformer.decoding import Seq2SeqState
from tformer.models.gpt import GPT, preset_config
from tformer.models.rnn import LSTMAttentionSeq2Seq, LSTMSeq2SeqConfig
from tformer.models.seq2seq import PRESETS, Seq2SeqConfig, Seq2SeqTransformer
from tformer.nn.attention import AttentionKind
from tformer.viz.capture import capture_attention

SRC = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])  # pad 0, EOS 2
TGT = torch.tensor([[1, 10, 11, 12], [1, 13, 14, 0]])  # BOS 1


def seq2seq() -> Seq2SeqTransformer:
    torch.manual_seed(0)
    return Seq2SeqTransformer(
        Seq2SeqConfig(**{**PRESETS["tiny"], "src_vocab_size": 40, "tgt_vocab_size": 40})
    ).eval()


def test_every_attention_module_of_an_encoder_decoder_is_captured_per_head():
    model = seq2seq()
    with torch.no_grad():
        plain = model(SRC, TGT).logits
        with capture_attention(model) as maps:
            captured = model(SRC, TGT).logits
    torch.testing.assert_close(captured, plain, rtol=1e-5, atol=1e-5)  # the reference path, same numbers
    n_layers = PRESETS["tiny"]["n_encoder_layers"]
    assert len(maps.names(kind=AttentionKind.CROSS)) == PRESETS["tiny"]["n_decoder_layers"]
    assert len(maps.names(kind=AttentionKind.SELF)) == n_layers + PRESETS["tiny"]["n_decoder_layers"]
    encoder_self = maps.weights(maps.names(kind=AttentionKind.SELF)[0])  # [B, H, S, S]
    assert encoder_self.shape == (2, PRESETS["tiny"]["n_heads"], 4, 4)
    assert torch.all(encoder_self[1, :, :, 3] == 0)  # nobody attends to the padding of sentence 1
    torch.testing.assert_close(encoder_self.sum(-1), torch.ones(2, PRESETS["tiny"]["n_heads"], 4))
    # What the capture holds is what the last cross-attention module computes when asked for its weights.
    last = dict(model.named_modules())[maps.names(kind=AttentionKind.CROSS)[-1]]
    seen = {}
    handle = last.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.update(args=args, kwargs=kwargs), with_kwargs=True
    )
    with torch.no_grad():
        model(SRC, TGT)
        handle.remove()
        _, direct = last(*seen["args"], **{**seen["kwargs"], "need_weights": True})
    torch.testing.assert_close(maps.cross_attention(layer=-1), direct)


def test_incremental_decoding_attends_as_teacher_forcing_does():
    model = seq2seq()
    with torch.no_grad(), capture_attention(model) as forced:
        model(SRC, TGT)
    state = Seq2SeqState(model, SRC)
    with capture_attention(model) as stepped:
        for t in range(TGT.size(1)):
            state.step(TGT[:, t : t + 1])
    for layer in range(PRESETS["tiny"]["n_decoder_layers"]):
        torch.testing.assert_close(
            stepped.cross_attention(layer=layer), forced.cross_attention(layer=layer), rtol=1e-5, atol=1e-6
        )


def test_the_recurrent_baseline_attention_is_captured_one_step_per_call():
    torch.manual_seed(0)
    model = LSTMAttentionSeq2Seq(
        LSTMSeq2SeqConfig(src_vocab_size=40, tgt_vocab_size=40, d_embed=8, d_hidden=16)
    ).eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(SRC, TGT)
    assert maps.names() == maps.names(kind=AttentionKind.CROSS) == ["attention"]
    assert len(maps.calls["attention"]) == TGT.size(1)
    weights = maps.cross_attention()[:, 0]  # [B, 1, T, S] -> [B, T, S]
    real = SRC != 0
    assert torch.all(weights.masked_select(~real[:, None, :]) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, TGT.size(1)))


def test_hooks_are_gone_after_the_block_and_errors_name_the_choices():
    model = seq2seq()
    with capture_attention(model) as maps:
        pass
    with torch.no_grad():
        model(SRC, TGT)
    assert all(calls == [] for calls in maps.calls.values())
    with pytest.raises(ValueError, match="was not called"):
        maps.cross_attention()
    with pytest.raises(
        ValueError, match=r"layer 5 is out of range: the model has 2 cross-attention layer\(s\), valid: -2..1"
    ):
        maps.cross_attention(layer=5)
    with pytest.raises(KeyError, match="no attention captured from 'nowhere'"):
        maps.weights("nowhere")
    gpt = GPT(preset_config("tiny", {"vocab_size": 40})).eval()
    with torch.no_grad(), capture_attention(gpt) as lm_maps:
        gpt(TGT)
    assert len(lm_maps.names(kind=AttentionKind.SELF)) == 2
    with pytest.raises(ValueError, match="no cross-attention"):
        lm_maps.cross_attention()
