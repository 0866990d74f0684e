"""Logits at the real target positions only (forward(tgt_positions=...)): the same loss and the same gradient
as the full [B, T, V] computation with ignore_index, for both encoder-decoder families and through the
translation task's loss."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from tformer.data.batching import Seq2SeqBatch, make_seq2seq_batch
from tformer.models.rnn import LSTMAttentionSeq2Seq, LSTMSeq2SeqConfig
from tformer.models.seq2seq import Seq2SeqTransformer, preset_config
from tformer.nn.attention import AttentionKind
from tformer.registry import build_model
from tformer.tasks.translation import TranslationRunConfig, TranslationTask
from tformer.tasks.translation_data import TranslationDataConfig
from tformer.training.losses import label_smoothed_cross_entropy
from tformer.viz.capture import capture_attention

PAD, BOS, EOS = 0, 1, 2
SRC_VOCAB, TGT_VOCAB = 30, 40
SMOOTHING = 0.1
# float32; the two paths differ only in how matmuls and gradient sums are blocked over the rows
TOLERANCE = dict(atol=1e-6, rtol=1e-5)


def transformer(*, tie_output: bool) -> nn.Module:
    torch.manual_seed(0)
    config = preset_config("tiny", src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, tie_output=tie_output)
    assert config.dropout == 0.0 and config.attention_dropout == 0.0  # both paths deterministic
    return Seq2SeqTransformer(config)


def lstm(*, tie_output: bool) -> nn.Module:
    torch.manual_seed(0)
    config = LSTMSeq2SeqConfig(
        src_vocab_size=SRC_VOCAB,
        tgt_vocab_size=TGT_VOCAB,
        d_embed=16,
        d_hidden=32,
        n_layers=2,
        dropout=0.0,
        tie_output=tie_output,
    )
    return LSTMAttentionSeq2Seq(config)


MODELS = {
    "transformer": transformer,
    "lstm": lstm,
}


def padded_batch() -> Seq2SeqBatch:
    """Five pairs of different source and target lengths: most rows of tgt_out end in padding."""
    g = torch.Generator().manual_seed(1)

    def ids(n: int, vocab: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    src = [ids(n, SRC_VOCAB) for n in (6, 2, 9, 4, 1)]
    tgt = [ids(n, TGT_VOCAB) for n in (3, 7, 1, 5, 8)]
    return make_seq2seq_batch(src, tgt, pad_id=PAD, bos_id=BOS, eos_id=EOS)


def full_loss(model: nn.Module, batch: Seq2SeqBatch) -> tuple[Tensor, Tensor]:
    """Today's computation: logits [B, T, V], padding left out by ignore_index."""
    logits = model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).logits  # [B, T, V]
    loss = label_smoothed_cross_entropy(
        logits, batch.tgt_out, smoothing=SMOOTHING, ignore_index=PAD, reduction="sum"
    )
    return loss, logits


def selected_loss(model: nn.Module, batch: Seq2SeqBatch) -> tuple[Tensor, Tensor]:
    out = model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask, tgt_positions=batch.tgt_positions)
    targets = batch.tgt_out.flatten().index_select(0, batch.tgt_positions)  # [N]
    loss = label_smoothed_cross_entropy(
        out.logits, targets, smoothing=SMOOTHING, ignore_index=PAD, reduction="sum"
    )
    return loss, out.logits


def gradients(model: nn.Module, loss: Tensor) -> dict[str, Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert len(grads) == len(list(model.parameters())), "every parameter takes part in the loss"
    return grads


def test_the_batch_lists_its_real_target_positions_row_major() -> None:
    batch = padded_batch()
    B, T = batch.tgt_mask.shape
    expected = [row * T + t for row in range(B) for t in range(T) if batch.tgt_mask[row, t]]
    assert batch.tgt_positions.tolist() == expected
    assert batch.tgt_positions.numel() == batch.n_tgt_tokens < B * T  # padding is there to skip
    assert (batch.tgt_out.flatten()[batch.tgt_positions] != PAD).all()


@pytest.mark.parametrize("tie_output", [False, True])
@pytest.mark.parametrize("family", MODELS)
def test_selected_positions_give_the_full_loss_and_gradients(family: str, tie_output: bool) -> None:
    batch = padded_batch()
    n, positions = batch.n_tgt_tokens, batch.tgt_positions
    assert n < batch.tgt_mask.numel()  # else both paths compute the same rows and the test proves nothing

    model = MODELS[family](tie_output=tie_output).train()
    loss, logits = full_loss(model, batch)
    expected = gradients(model, loss)
    selected, selected_logits = selected_loss(model, batch)
    got = gradients(model, selected)

    assert selected_logits.shape == (n, TGT_VOCAB)
    torch.testing.assert_close(selected_logits, logits.flatten(0, 1)[positions], **TOLERANCE)
    torch.testing.assert_close(selected, loss, **TOLERANCE)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, **TOLERANCE, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("family", MODELS)
def test_cross_attention_keeps_every_target_position(family: str) -> None:
    batch = padded_batch()
    model = MODELS[family](tie_output=False).eval()
    with torch.no_grad(), capture_attention(model) as full:
        model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask)
    with torch.no_grad(), capture_attention(model) as selected:
        model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask, tgt_positions=batch.tgt_positions)
    (b, t), s = batch.tgt_in.shape, batch.src_ids.size(1)
    for name in full.names(kind=AttentionKind.CROSS):
        weights = selected.weights(name)  # [B, H, T, S]: every target position, not only the selected ones
        assert (weights.size(0), weights.size(2), weights.size(3)) == (b, t, s)
        torch.testing.assert_close(weights, full.weights(name), atol=0, rtol=0)


@pytest.mark.parametrize("family", MODELS)
def test_a_bool_mask_is_refused_with_the_way_to_indices(family: str) -> None:
    batch = padded_batch()
    model = MODELS[family](tie_output=False)
    with pytest.raises(TypeError, match=r"tgt_positions must be Long\[N\].*nonzero"):
        model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask, tgt_positions=batch.tgt_mask)


def test_the_batch_refuses_positions_that_cannot_index_it() -> None:
    good = padded_batch()
    fields = (good.src_ids, good.src_mask, good.tgt_in, good.tgt_out, good.tgt_mask)
    with pytest.raises(TypeError, match="tgt_positions must be a 1-d torch.int64"):
        Seq2SeqBatch(*fields, tgt_positions=good.tgt_mask)
    with pytest.raises(ValueError, match="must index the 45 target positions"):
        Seq2SeqBatch(*fields, tgt_positions=torch.arange(46))


@pytest.mark.parametrize(
    "model_config",
    [
        preset_config("tiny", n_encoder_layers=1, n_decoder_layers=1),
        LSTMSeq2SeqConfig(d_embed=16, d_hidden=32, dropout=0.0),
    ],
    ids=["transformer", "lstm"],
)
def test_the_translation_loss_equals_the_full_computation(model_config) -> None:
    data = TranslationDataConfig(dataset="dates", n_train=64, n_valid=8, max_tokens=512, eval_decode=0)
    task = TranslationTask(TranslationRunConfig(data=data, model=model_config))
    # dates targets all have one length, so cut them to different lengths to give the batch padding
    pairs = task.train_pairs[:8]
    src = task.tokenizers.source.encode_batch([s for s, _ in pairs])
    tgt = task.tokenizers.target.encode_batch([t[: 2 + i] for i, (_, t) in enumerate(pairs)])
    tok = task.tokenizers.target
    batch = make_seq2seq_batch(src, tgt, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    assert batch.n_tgt_tokens < batch.tgt_mask.numel()
    torch.manual_seed(0)
    model = build_model(task.model_config()).train()

    out = task.loss(model, batch)
    got = gradients(model, out.loss_sum)
    logits = model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).logits  # [B, T, V]
    smoothing = data.label_smoothing
    assert smoothing > 0
    loss = label_smoothed_cross_entropy(
        logits,
        batch.tgt_out,
        smoothing=smoothing,
        ignore_index=task.tokenizers.target.pad_id,
        reduction="sum",
    )
    expected = gradients(model, loss)

    torch.testing.assert_close(out.loss_sum, loss, **TOLERANCE)
    assert int(out.n_items) == batch.n_tgt_tokens
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, **TOLERANCE, msg=lambda m, name=name: f"{name}: {m}")
