"""Logits at the real target positions only ([N, V] through Seq2SeqBatch.tgt_positions) give the same loss and
the same gradients as the full [B, T, V] computation with an ignore index, for both translation models."""

from __future__ import annotations

import pytest
import torch

from tformer.data.batching import Seq2SeqBatch, pad_sequences
from tformer.models.rnn import LSTMAttentionSeq2Seq, LSTMSeq2SeqConfig
from tformer.models.seq2seq import Seq2SeqTransformer, preset_config
from tformer.training.losses import label_smoothed_cross_entropy

PAD, BOS, EOS, VOCAB = 0, 2, 3, 40


def _batch() -> Seq2SeqBatch:
    g = torch.Generator().manual_seed(0)
    sources = [torch.randint(4, VOCAB, (n,), generator=g).tolist() + [EOS] for n in (7, 3, 5, 1)]
    targets = [torch.randint(4, VOCAB, (n,), generator=g).tolist() for n in (2, 6, 4, 5)]
    src_ids, src_mask = pad_sequences(sources, pad_id=PAD)
    tgt_in, tgt_mask = pad_sequences([[BOS, *t] for t in targets], pad_id=PAD)
    tgt_out, _ = pad_sequences([[*t, EOS] for t in targets], pad_id=PAD)
    return Seq2SeqBatch(src_ids=src_ids, src_mask=src_mask, tgt_in=tgt_in, tgt_out=tgt_out, tgt_mask=tgt_mask)


def _models() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    transformer = Seq2SeqTransformer(preset_config("tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB))
    lstm = LSTMAttentionSeq2Seq(
        LSTMSeq2SeqConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_embed=16, d_hidden=32, dropout=0.0)
    )
    return [transformer, lstm]


@pytest.mark.parametrize("model", _models(), ids=["transformer", "lstm"])
def test_selected_positions_give_the_full_loss_and_gradients(model: torch.nn.Module) -> None:
    batch = _batch()
    n_real = int(batch.tgt_mask.sum())
    assert 0 < n_real < batch.tgt_mask.numel()  # the batch has padding to skip
    assert batch.tgt_positions.shape == (n_real,)

    def loss_and_grads(selected: bool) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        if selected:
            logits = model(
                batch.src_ids, batch.tgt_in, src_mask=batch.src_mask, tgt_positions=batch.tgt_positions
            ).logits  # [N, V]
            targets = batch.tgt_out.flatten().index_select(0, batch.tgt_positions)
        else:
            logits, targets = (
                model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).logits,
                batch.tgt_out,
            )
        loss = label_smoothed_cross_entropy(logits, targets, smoothing=0.1, ignore_index=PAD, reduction="sum")
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), logits.detach(), grads

    full_loss, full_logits, full_grads = loss_and_grads(selected=False)
    loss, logits, grads = loss_and_grads(selected=True)
    assert logits.shape == (n_real, VOCAB)
    torch.testing.assert_close(logits, full_logits[batch.tgt_mask], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == full_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_positions_must_be_flat_long_indices() -> None:
    batch = _batch()
    model = _models()[0]
    with pytest.raises(TypeError, match=r"tgt_positions must be Long\[N\]"):
        model(batch.src_ids, batch.tgt_in, tgt_positions=batch.tgt_mask)
