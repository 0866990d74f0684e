"""tformer.nn.Dropout: the function of torch.nn.Dropout (drop rate, scaling, gradient), drawn from 16-bit lanes."""

from __future__ import annotations

import math

import pytest
import torch

from tformer.nn import Dropout
from tformer.nn.dropout import drop_threshold, dropout, keep_mask

N = 1 << 20  # elements: the drop rate's standard error is sqrt(p (1 - p) / N) ~ 3e-4 at p = 0.1


def _within_five_sigma(observed: float, p: float, n: int) -> bool:
    return abs(observed - p) <= 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_of_the_four_16_bit_lanes_drops_at_rate_p(p):
    # Lanes are the four 16-bit slices of one 64-bit draw: a lane with fewer random bits (a sign bit that is
    # always 0, say) would drop at the wrong rate while the overall rate might still look close.
    torch.manual_seed(0)
    dropped = ~keep_mask(torch.Size([N]), p=p, device=torch.device("cpu"))
    rate = drop_threshold(p) / 65536
    for lane in range(4):
        assert _within_five_sigma(dropped[lane::4].float().mean().item(), rate, N // 4), lane


def test_neighbours_are_dropped_independently():
    torch.manual_seed(1)
    dropped = ~keep_mask((N,), p=0.3, device=torch.device("cpu"))  # a plain tuple works as well as a Size
    rate = drop_threshold(0.3) / 65536
    both = (dropped[:-1] & dropped[1:]).float().mean().item()  # within a word and across words
    assert _within_five_sigma(both, rate * rate, N)


def test_drop_probability_is_p_rounded_to_a_multiple_of_2_to_the_minus_16():
    for p in (0.1, 0.3, 1 / 3, 0.25, 1e-6):
        assert abs(drop_threshold(p) / 65536 - p) <= 2**-17
    assert drop_threshold(0.25) == 16384


def test_kept_values_are_scaled_so_the_expectation_is_the_input():
    torch.manual_seed(2)
    x = torch.randn(N)
    y = dropout(x, 0.1, training=True)
    kept = y != 0
    scale = 65536 / (65536 - drop_threshold(0.1))
    torch.testing.assert_close(y[kept], x[kept] * scale, rtol=1e-6, atol=0)
    ones = dropout(torch.ones(N), 0.1, training=True)
    assert abs(ones.mean().item() - 1.0) <= 5 * math.sqrt(0.1 / 0.9 / N)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(3)
    x = torch.randn(64, 33, requires_grad=True)
    weights = torch.randn(64, 33)
    y = dropout(x, 0.4, training=True)
    (y * weights).sum().backward()
    scale = 65536 / (65536 - drop_threshold(0.4))
    torch.testing.assert_close(x.grad, weights * (y != 0) * scale)


def test_eval_mode_and_p_zero_are_the_identity_and_p_one_zeroes_everything():
    x = torch.randn(8, 8)
    module = Dropout(0.5).eval()
    assert module(x) is x
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_same_seed_same_mask_and_the_generator_state_replays_it():
    x = torch.randn(1000)
    torch.manual_seed(4)
    first = dropout(x, 0.2, training=True)
    state = torch.get_rng_state()
    second = dropout(x, 0.2, training=True)
    torch.manual_seed(4)
    assert torch.equal(dropout(x, 0.2, training=True), first)
    torch.set_rng_state(state)
    assert torch.equal(dropout(x, 0.2, training=True), second)
    assert not torch.equal(first, second)


def test_low_precision_input_keeps_its_dtype():
    torch.manual_seed(5)
    x = torch.randn(4096, dtype=torch.bfloat16)
    y = dropout(x, 0.1, training=True)
    assert y.dtype == torch.bfloat16
    kept = y != 0
    scale = 65536 / (65536 - drop_threshold(0.1))
    torch.testing.assert_close(y[kept], (x[kept].float() * scale).bfloat16())


def test_other_devices_use_torch_dropout(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, p, training: calls.append(p) or x)
    x = torch.empty(3, 4, device="meta")
    assert dropout(x, 0.3, training=True) is x
    assert calls == [0.3]


@pytest.mark.parametrize("p", [-0.1, 1.5, True, "0.1", float("nan")])
def test_invalid_probability_is_rejected(p):
    with pytest.raises(ValueError, match="dropout probability must be a number in \\[0, 1\\]"):
        Dropout(p)
    with pytest.raises(ValueError, match="dropout probability must be a number in \\[0, 1\\]"):
        dropout(torch.ones(3), p, training=True)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_dropout_on_cpu_is_the_formula_with_tformers_mask(causal):
    # Training attention on CPU drops out softmax weights with tformer's mask: the same arithmetic as SDPA's math
    # path, so replaying the generator and writing the formula out must give the same output.
    from tformer.nn.attention import attend

    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))  # [B, H, T, K]
    key_padding = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]  # [B,1,1,S]
    torch.manual_seed(7)
    out, weights = attend(q, k, v, mask=key_padding, causal=causal, dropout_p=0.25)
    assert weights is None
    allowed = key_padding & torch.ones(5, 5, dtype=torch.bool).tril() if causal else key_padding
    probs = (q @ k.transpose(-2, -1) / 2.0).masked_fill(~allowed, float("-inf")).softmax(-1)  # [B, H, T, S]
    torch.manual_seed(7)
    keep = keep_mask(probs.shape, p=0.25, device=torch.device("cpu"))
    expected = (probs * keep * (65536 / (65536 - drop_threshold(0.25)))) @ v
    torch.testing.assert_close(out, expected)


def test_a_training_model_compiles_into_one_graph():
    # torch.compile cannot trace random_: under compilation the model must fall back to torch's dropout.
    from tformer.models.seq2seq import Seq2SeqTransformer, preset_config

    config = preset_config("tiny", src_vocab_size=30, tgt_vocab_size=30, dropout=0.2, attention_dropout=0.1)
    model = Seq2SeqTransformer(config).train()
    src, tgt = torch.randint(1, 30, (2, 7)), torch.randint(1, 30, (2, 6))
    explained = torch._dynamo.explain(model)(src, tgt)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_attention_checks_its_dropout_probability_when_built():
    # On CUDA the probability goes straight to SDPA, so it must be checked before any forward pass.
    from tformer.nn.attention import MultiHeadAttention

    with pytest.raises(ValueError, match="dropout probability must be a number in \\[0, 1\\], got 1.5"):
        MultiHeadAttention(16, 4, dropout=1.5)
