"""Attention against torch.nn.MultiheadAttention and between its own two paths."""

import pytest
import torch
from torch import nn

from tformer.nn.attention import AdditiveAttention, AttentionKind, MultiHeadAttention, attend
from tformer.nn.kv_cache import LayerKV
from tformer.nn.masks import causal_mask, key_mask, padding_mask

torch.manual_seed(0)
B, T, S, D, H = 3, 5, 7, 32, 4


def copy_into(mine: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        if mine.kind is AttentionKind.SELF:
            mine.qkv_proj.weight.copy_(ref.in_proj_weight)
            mine.qkv_proj.bias.copy_(ref.in_proj_bias)
        else:
            mine.q_proj.weight.copy_(ref.in_proj_weight[:D])
            mine.q_proj.bias.copy_(ref.in_proj_bias[:D])
            mine.kv_proj.weight.copy_(ref.in_proj_weight[D:])
            mine.kv_proj.bias.copy_(ref.in_proj_bias[D:])
        mine.out_proj.load_state_dict(ref.out_proj.state_dict())


def lengths_mask(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("need_weights", [False, True])
def test_self_attention_matches_torch_with_padding(need_weights):
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    mine = MultiHeadAttention(D, H)
    copy_into(mine, ref)
    x = torch.randn(B, S, D)
    keep = lengths_mask([7, 4, 2], S)
    expected, expected_w = ref(x, x, x, key_padding_mask=~keep, average_attn_weights=False)
    out, weights = mine(x, mask=key_mask(keep), need_weights=need_weights)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights, expected_w, atol=1e-5, rtol=0)


def test_causal_self_attention_matches_torch():
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    mine = MultiHeadAttention(D, H)
    copy_into(mine, ref)
    x = torch.randn(B, T, D)
    expected, _ = ref(x, x, x, attn_mask=~causal_mask(T))
    out, _ = mine(x, causal=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_cross_attention_matches_torch():
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    mine = MultiHeadAttention(D, H, kind=AttentionKind.CROSS)
    copy_into(mine, ref)
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    keep = lengths_mask([7, 3, 5], S)
    expected, _ = ref(x, memory, memory, key_padding_mask=~keep)
    out, _ = mine(x, memory=memory, mask=key_mask(keep))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_sdpa_path_equals_reference_path(causal, n_kv):
    q = torch.randn(B, H, S, 8)
    k, v = torch.randn(B, n_kv, S, 8), torch.randn(B, n_kv, S, 8)
    mask = key_mask(lengths_mask([7, 5, 1], S))
    fast, none = attend(q, k, v, mask=mask, causal=causal)
    slow, weights = attend(q, k, v, mask=mask, causal=causal, need_weights=True)
    assert none is None
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights.sum(-1)[0], torch.ones(H, S))


def test_grouped_query_heads_share_keys():
    """With G key/value heads, query head h must use key head h // (H/G): compare to explicit copies."""
    q = torch.randn(1, 4, 3, 8)
    k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    out, _ = attend(q, k, v)
    k_full, v_full = k[:, [0, 0, 1, 1]], v[:, [0, 0, 1, 1]]
    expected, _ = attend(q, k_full, v_full)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_row_is_finite_and_zero(need_weights):
    q, k, v = torch.randn(2, H, 3, 8), torch.randn(2, H, 4, 8), torch.randn(2, H, 4, 8)
    keep = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out, weights = attend(q, k, v, mask=key_mask(keep), need_weights=need_weights)
    assert torch.isfinite(out).all()
    assert out[1].abs().max() == 0
    assert out[0].abs().max() > 0
    if need_weights:
        assert weights[1].abs().max() == 0
        assert weights[0, :, :, 2:].abs().max() == 0


def test_gradient_through_fully_masked_row_is_finite():
    q = torch.randn(1, 1, 2, 4, requires_grad=True)
    k, v = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    out, _ = attend(q, k, v, mask=key_mask(torch.zeros(1, 3, dtype=torch.bool)))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("new_tokens", [1, 3])
def test_cached_queries_align_causal_mask_bottom_right(new_tokens):
    """k new queries after a cache must equal the last k rows of full causal attention."""
    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, S, D)
    full, _ = mha(x, causal=True)
    cache = LayerKV()
    split = S - new_tokens
    mha(x[:, :split], causal=True, cache=cache)
    tail, _ = mha(x[:, split:], causal=True, cache=cache)
    torch.testing.assert_close(tail, full[:, split:], atol=1e-5, rtol=0)
    assert cache.length == S


def test_static_cache_equals_growing_cache():
    mha = MultiHeadAttention(D, H, n_kv_heads=2).eval()
    x = torch.randn(B, S, D)
    growing, static = LayerKV(), LayerKV(max_length=S + 2)
    for t in range(S):
        a, _ = mha(x[:, t : t + 1], causal=True, cache=growing)
        b, _ = mha(x[:, t : t + 1], causal=True, cache=static)
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="max_length"):
        full = LayerKV(max_length=1)
        mha(x[:, :2], causal=True, cache=full)


def test_invalid_head_counts_are_rejected():
    with pytest.raises(ValueError, match="n_heads=5 must divide d_model=32"):
        MultiHeadAttention(32, 5)
    with pytest.raises(ValueError, match="n_kv_heads=3"):
        MultiHeadAttention(32, 4, n_kv_heads=3)


def test_padding_mask_polarity():
    ids = torch.tensor([[5, 6, 0, 0]])
    assert padding_mask(ids, pad_id=0).tolist() == [[True, True, False, False]]


def test_additive_attention_matches_the_formula_and_ignores_padding():
    torch.manual_seed(0)
    attention = AdditiveAttention(6, 4, 5)
    query, memory = torch.randn(2, 6), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    context, weights = attention(
        query, memory=memory, memory_keys=attention.memory_proj(memory), memory_mask=mask
    )
    w_q, w_m, b_m, v = (
        attention.query_proj.weight,
        attention.memory_proj.weight,
        attention.memory_proj.bias,
        attention.score.weight[0],
    )
    for b in range(2):
        n = int(mask[b].sum())
        scores = torch.stack([v @ torch.tanh(w_q @ query[b] + w_m @ memory[b, j] + b_m) for j in range(n)])
        expected = scores.softmax(dim=0)
        torch.testing.assert_close(weights[b, :n], expected)
        assert torch.all(weights[b, n:] == 0)
        torch.testing.assert_close(context[b], expected @ memory[b, :n])
