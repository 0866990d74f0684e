from __future__ import annotations

import math

import pytest
import torch

from tformer.models.word2vec import Word2Vec, Word2VecConfig, Word2VecMode, negative_sampling_loss


def _two_word_model() -> Word2Vec:
    model = Word2Vec(Word2VecConfig(vocab_size=2, dim=2))
    with torch.no_grad():
        model.input_vectors.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
        model.output_vectors.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, -0.25]]))
    return model


def test_init_is_the_c_codes() -> None:
    torch.manual_seed(0)
    model = Word2Vec(Word2VecConfig(vocab_size=500, dim=50))
    weight = model.input_vectors.weight
    assert weight.abs().max() <= 0.5 / 50
    assert weight.abs().max() > 0.45 / 50  # spread over the whole interval, not a narrower one
    assert abs(weight.mean().item()) < 1e-3
    assert torch.count_nonzero(model.output_vectors.weight) == 0


def test_sgns_loss_and_gradient_by_hand() -> None:
    # Word 0 predicts word 1, with word 0 drawn as the negative. h = v0 = (1, 2).
    # positive logit h.u1 = 0.5 - 0.5 = 0;  negative logit h.u0 = 1.
    # loss = -log s(0) - log s(-1) = log 2 + log(1 + e).
    model = _two_word_model()
    out = model(torch.tensor([[0]]), targets=torch.tensor([1]), negatives=torch.tensor([[0]]))
    assert out.positive_logits.tolist() == [0.0]
    assert out.negative_logits.tolist() == [[1.0]]
    loss = negative_sampling_loss(out.positive_logits, out.negative_logits)
    assert loss.item() == pytest.approx(math.log(2) + math.log(1 + math.e), rel=1e-6)
    loss.backward()
    # dL/dh = -(1 - s(0)) u1 + s(1) u0: word2vec.c's g = (label - s(f)) terms, with the sign of a loss.
    s1 = 1 / (1 + math.exp(-1))
    expected = [-0.5 * 0.5 + s1 * 1.0, -0.5 * -0.25 + s1 * 0.0]
    grad = model.input_vectors.weight.grad.to_dense()
    assert grad[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert grad[1].tolist() == [0.0, 0.0]


def test_negative_mask_reduction_and_sum() -> None:
    positive = torch.tensor([0.3, -1.2])
    negative = torch.tensor([[0.5, 2.0], [-0.7, 0.1]])
    mask = torch.tensor([[True, False], [True, True]])
    per_example = [
        -math.log(torch.sigmoid(positive[0]).item()) - math.log(torch.sigmoid(-negative[0, 0]).item()),
        -math.log(torch.sigmoid(positive[1]).item())
        - sum(math.log(torch.sigmoid(-x).item()) for x in negative[1]),
    ]
    total = negative_sampling_loss(positive, negative, negative_mask=mask, reduction="sum")
    mean = negative_sampling_loss(positive, negative, negative_mask=mask)
    assert total.item() == pytest.approx(sum(per_example), rel=1e-6)
    assert mean.item() == pytest.approx(sum(per_example) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        negative_sampling_loss(positive, negative, reduction="max")


def test_cbow_hidden_is_the_mean_of_the_real_context_words() -> None:
    torch.manual_seed(0)
    model = Word2Vec(Word2VecConfig(vocab_size=6, dim=4, mode="cbow"))
    torch.nn.init.normal_(model.output_vectors.weight)
    inputs = torch.tensor([[1, 2, 5, 0], [3, 0, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    out = model(inputs, input_mask=mask, targets=torch.tensor([4, 4]), negatives=torch.tensor([[0], [1]]))
    v, u = model.input_vectors.weight.detach(), model.output_vectors.weight.detach()
    hidden = torch.stack([(v[1] + v[2] + v[5]) / 3, v[3]])
    torch.testing.assert_close(out.positive_logits.detach(), hidden @ u[4])
    torch.testing.assert_close(out.negative_logits.detach()[:, 0], (hidden * u[[0, 1]]).sum(-1))


def test_config_mode_and_errors() -> None:
    assert Word2VecConfig(vocab_size=3, mode="cbow").mode is Word2VecMode.CBOW
    with pytest.raises(ValueError, match="mode must be one of skipgram, cbow, got 'glove'"):
        Word2VecConfig(vocab_size=3, mode="glove")
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        Word2VecConfig(vocab_size=3, dim=0)
    model = Word2Vec(Word2VecConfig(vocab_size=3, dim=2))
    with pytest.raises(ValueError, match="inputs \\[B, C\\]"):
        model(torch.tensor([0]), targets=torch.tensor([1]), negatives=torch.tensor([[2]]))
