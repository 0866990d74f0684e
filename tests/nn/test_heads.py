"""The adaptive softmax head: Grave et al.'s formula by hand, torch's target-only loss, and the models and
language-model loss using it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tformer.data.text_stream import IGNORE_INDEX, LMBatch
from tformer.decoding.causal_lm import SamplingConfig, generate_tokens
from tformer.models.gpt import GPT, GPTConfig
from tformer.models.rnn import LSTMLanguageModel, LSTMLMConfig
from tformer.nn.heads import AdaptiveSoftmaxHead
from tformer.tasks.language_model import language_model_loss

D, V, CUTOFFS = 16, 50, (10, 30)


def _head() -> AdaptiveSoftmaxHead:
    torch.manual_seed(0)
    return AdaptiveSoftmaxHead(D, V, cutoffs=CUTOFFS, div_value=2.0)


def test_log_probs_follow_the_two_level_formula():
    # p(w) = softmax(head x)[w] for a frequent word; for a word of tail band i,
    # p(w) = softmax(head x)[cutoffs[0] + i] * softmax(tail_i x)[w - start of band i].
    head = _head()
    x = torch.randn(7, D)
    top = F.log_softmax(head.adaptive.head(x), dim=-1)  # [7, 10 + 2]
    expected = [top[:, : CUTOFFS[0]]]
    for i, (start, stop) in enumerate(zip(CUTOFFS, (*CUTOFFS[1:], V), strict=True)):
        tail = F.log_softmax(head.adaptive.tail[i](x), dim=-1)
        assert tail.shape == (7, stop - start)
        expected.append(top[:, CUTOFFS[0] + i : CUTOFFS[0] + i + 1] + tail)
    torch.testing.assert_close(head(x), torch.cat(expected, dim=-1))
    torch.testing.assert_close(head(x).logsumexp(dim=-1), torch.zeros(7), atol=1e-6, rtol=0)


def test_cross_entropy_on_the_log_probs_equals_torchs_target_only_loss_and_gradients():
    head = _head()
    x = torch.randn(2, 9, D, requires_grad=True)
    targets = torch.randint(0, V, (2, 9))
    targets[0, :3] = torch.tensor([0, 15, 49])  # one word from each band
    ours = F.cross_entropy(head(x).flatten(0, 1), targets.flatten())
    ours.backward()
    ours_grads = [x.grad.clone(), *(p.grad.clone() for p in head.parameters())]
    x.grad = None
    head.zero_grad()
    reference = head.adaptive(x.flatten(0, 1), targets.flatten()).loss  # torch's path: only the target bands
    reference.backward()
    torch.testing.assert_close(ours, reference)
    for got, want in zip(ours_grads, [x.grad, *(p.grad for p in head.parameters())], strict=True):
        torch.testing.assert_close(got, want)


def test_a_tail_band_costs_less_than_a_full_output_layer():
    head = AdaptiveSoftmaxHead(256, 33278, cutoffs=(2000, 10000), div_value=4.0)
    assert sum(p.numel() for p in head.parameters()) < 0.2 * 256 * 33278


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"adaptive_softmax_cutoffs": (30, 10), "tie_embeddings": False}, "rise strictly"),
        ({"adaptive_softmax_cutoffs": (0, 10), "tie_embeddings": False}, "rise strictly"),
        ({"adaptive_softmax_cutoffs": (10, 30), "adaptive_softmax_div": 0.0, "tie_embeddings": False}, "div"),
        (
            {"adaptive_softmax_cutoffs": (10, 30), "adaptive_softmax_div": 8.0, "tie_embeddings": False},
            "d_model=16",
        ),
        ({"adaptive_softmax_cutoffs": (10, 30)}, "tie_embeddings=False"),
    ],
)
def test_config_errors_name_the_field(kwargs, named):
    with pytest.raises(ValueError, match="adaptive_softmax") as error:
        GPTConfig(vocab_size=V, d_model=D, n_heads=2, d_ff=32, n_layers=1, context_length=16, **kwargs)
    assert named in str(error.value)
    with pytest.raises(ValueError, match="adaptive_softmax"):
        LSTMLMConfig(vocab_size=V, d_embed=D, d_hidden=D, n_layers=1, **kwargs)


def test_cutoffs_beyond_the_vocabulary_are_rejected_when_the_model_is_built():
    # A preset's config carries a placeholder vocab_size until the task knows its tokenizer's, so the bound is
    # checked by the head itself.
    config = GPTConfig(
        vocab_size=V,
        d_model=D,
        n_heads=2,
        d_ff=32,
        n_layers=1,
        context_length=16,
        adaptive_softmax_cutoffs=(10, V),
        tie_embeddings=False,
    )
    with pytest.raises(ValueError, match="to below vocab_size=50, got \\[10, 50\\]"):
        GPT(config)


def _adaptive_model(family: str) -> GPT | LSTMLanguageModel:
    """A small GPT or LSTM language model with the adaptive head (seeded, no dropout)."""
    torch.manual_seed(0)
    adaptive = {"adaptive_softmax_cutoffs": CUTOFFS, "tie_embeddings": False}
    if family == "gpt":
        return GPT(
            GPTConfig(vocab_size=V, d_model=32, n_heads=2, d_ff=64, n_layers=1, context_length=32, **adaptive)
        )
    return LSTMLanguageModel(
        LSTMLMConfig(vocab_size=V, d_embed=32, d_hidden=32, n_layers=1, dropout=0.0, **adaptive)
    )


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_language_models_with_the_adaptive_head_learn_and_generate(family):
    model = _adaptive_model(family)
    ids = torch.tensor([[3, 17, 42, 5, 33, 8, 21, 47, 12, 3, 17, 42, 5, 33, 8, 21, 47, 12]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(300):
        loss = F.cross_entropy(model(ids[:, :-1]).logits.flatten(0, 1), ids[0, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1  # words from every band are learnt
    model.eval()
    config = SamplingConfig(max_new_tokens=9, temperature=0.0)
    generated = torch.stack(list(generate_tokens(model, ids[:, :9], config=config)), dim=1)  # [1, 9]
    assert generated[0].tolist() == ids[0, 9:].tolist()


def test_target_log_probs_are_the_full_log_probs_at_the_targets_with_the_same_gradients():
    head = _head()
    x = torch.randn(3, 8, D, requires_grad=True)
    targets = torch.randint(0, V, (3, 8))
    targets[0, :3] = torch.tensor([0, 15, 49])  # every band
    targets[1, :4] = -100  # context-only positions of a sliding evaluation window
    scored = targets >= 0
    picked = head.target_log_probs(x, targets)
    full = head(x).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [3, 8]
    torch.testing.assert_close(picked[scored], full[scored])
    assert (picked[~scored] == 0).all()
    picked.sum().backward()
    grads = [x.grad.clone(), *(p.grad.clone() for p in head.parameters())]
    x.grad = None
    head.zero_grad()
    full[scored].sum().backward()
    for got, want in zip(grads, [x.grad, *(p.grad for p in head.parameters())], strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_the_language_model_loss_takes_the_target_path_and_equals_cross_entropy(family):
    model = _adaptive_model(family)
    ids = torch.randint(0, V, (2, 13))
    targets = ids[:, 1:].clone()
    targets[:, :5] = IGNORE_INDEX
    batch = LMBatch(input_ids=ids[:, :-1], targets=targets)
    out = model(batch.input_ids, targets=batch.targets)
    assert out.logits is None and out.target_log_probs.shape == (2, 12)
    loss = language_model_loss(model, batch)
    expected = F.cross_entropy(
        model(batch.input_ids).logits.flatten(0, 1),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    torch.testing.assert_close(loss.loss_sum, expected)
    assert loss.n_items == 14
