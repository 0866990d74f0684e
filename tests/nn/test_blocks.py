"""Encoder/decoder blocks and stacks against torch.nn.TransformerEncoderLayer / TransformerDecoderLayer."""

import math

import pytest
import torch
from torch import nn

from tformer.nn.blocks import BlockConfig, DecoderBlock, EncoderBlock, NormPosition
from tformer.nn.feedforward import FeedForward, FeedForwardKind, GatedFeedForward, make_feedforward
from tformer.nn.kv_cache import KVCache
from tformer.nn.masks import causal_mask, key_mask
from tformer.nn.stacks import Decoder, Encoder

D, H, F = 32, 4, 64


def config(norm, kind=FeedForwardKind.RELU):
    return BlockConfig(d_model=D, n_heads=H, d_ff=F, dropout=0.0, norm_position=norm, feedforward=kind)


def copy_attention(mine, ref, cross=False):
    with torch.no_grad():
        if cross:
            mine.q_proj.weight.copy_(ref.in_proj_weight[:D])
            mine.q_proj.bias.copy_(ref.in_proj_bias[:D])
            mine.kv_proj.weight.copy_(ref.in_proj_weight[D:])
            mine.kv_proj.bias.copy_(ref.in_proj_bias[D:])
        else:
            mine.qkv_proj.weight.copy_(ref.in_proj_weight)
            mine.qkv_proj.bias.copy_(ref.in_proj_bias)
        mine.out_proj.load_state_dict(ref.out_proj.state_dict())


def copy_ffn(mine, ref):
    mine.linear1.load_state_dict(ref.linear1.state_dict())
    mine.linear2.load_state_dict(ref.linear2.state_dict())


def torch_layer(cls, norm, activation="relu"):
    # train() with dropout 0 keeps torch off its inference fast path, which zeroes padded positions.
    return cls(
        D, H, F, dropout=0.0, activation=activation, batch_first=True, norm_first=norm is NormPosition.PRE
    ).train()


def padding(lengths, total):
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("norm", list(NormPosition))
@pytest.mark.parametrize("kind,activation", [(FeedForwardKind.RELU, "relu"), (FeedForwardKind.GELU, "gelu")])
def test_encoder_block_matches_torch(norm, kind, activation):
    torch.manual_seed(0)
    ref = torch_layer(nn.TransformerEncoderLayer, norm, activation)
    mine = EncoderBlock(config(norm, kind))
    copy_attention(mine.self_attn, ref.self_attn)
    copy_ffn(mine.feedforward, ref)
    mine.attn_residual.norm.load_state_dict(ref.norm1.state_dict())
    mine.ff_residual.norm.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(3, 6, D)
    keep = padding([6, 4, 1], 6)
    expected = ref(x, src_key_padding_mask=~keep)
    torch.testing.assert_close(mine(x, mask=key_mask(keep)), expected, atol=1e-5, rtol=0)
    expected_causal = ref(x, src_mask=~causal_mask(6), is_causal=True)
    torch.testing.assert_close(mine(x, causal=True), expected_causal, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", list(NormPosition))
def test_decoder_block_matches_torch(norm):
    torch.manual_seed(1)
    ref = torch_layer(nn.TransformerDecoderLayer, norm)
    mine = DecoderBlock(config(norm))
    copy_attention(mine.self_attn, ref.self_attn)
    copy_attention(mine.cross_attn, ref.multihead_attn, cross=True)
    copy_ffn(mine.feedforward, ref)
    for mine_norm, ref_norm in [
        (mine.self_residual.norm, ref.norm1),
        (mine.cross_residual.norm, ref.norm2),
        (mine.ff_residual.norm, ref.norm3),
    ]:
        mine_norm.load_state_dict(ref_norm.state_dict())
    x, memory = torch.randn(3, 5, D), torch.randn(3, 7, D)
    memory_keep = padding([7, 3, 5], 7)
    expected = ref(
        x, memory, tgt_mask=~causal_mask(5), tgt_is_causal=True, memory_key_padding_mask=~memory_keep
    )
    out = mine(x, memory, memory_mask=key_mask(memory_keep))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", list(NormPosition))
def test_stacks_match_torch_transformer(norm):
    """Whole encoder + decoder stacks against nn.Transformer (whose stacks always end in a LayerNorm)."""
    torch.manual_seed(2)
    ref = nn.Transformer(
        D, H, 2, 2, F, dropout=0.0, batch_first=True, norm_first=norm is NormPosition.PRE
    ).train()
    enc, dec = Encoder(config(norm), 2), Decoder(config(norm), 2)
    for mine, theirs in zip(enc.layers, ref.encoder.layers, strict=True):
        copy_attention(mine.self_attn, theirs.self_attn)
        copy_ffn(mine.feedforward, theirs)
        mine.attn_residual.norm.load_state_dict(theirs.norm1.state_dict())
        mine.ff_residual.norm.load_state_dict(theirs.norm2.state_dict())
    for mine, theirs in zip(dec.layers, ref.decoder.layers, strict=True):
        copy_attention(mine.self_attn, theirs.self_attn)
        copy_attention(mine.cross_attn, theirs.multihead_attn, cross=True)
        copy_ffn(mine.feedforward, theirs)
        mine.self_residual.norm.load_state_dict(theirs.norm1.state_dict())
        mine.cross_residual.norm.load_state_dict(theirs.norm2.state_dict())
        mine.ff_residual.norm.load_state_dict(theirs.norm3.state_dict())
    src, tgt = torch.randn(2, 6, D), torch.randn(2, 4, D)
    keep = padding([6, 3], 6)
    expected = ref(
        src, tgt, tgt_mask=~causal_mask(4), src_key_padding_mask=~keep, memory_key_padding_mask=~keep
    )
    memory = enc(src, mask=key_mask(keep))
    if norm is NormPosition.POST:  # torch adds a final norm to post-norm stacks too; the paper does not
        memory = ref.encoder.norm(memory)
    out = dec(tgt, memory, memory_mask=key_mask(keep))
    if norm is NormPosition.POST:
        out = ref.decoder.norm(out)
    else:
        enc.norm.load_state_dict(ref.encoder.norm.state_dict())
        dec.norm.load_state_dict(ref.decoder.norm.state_dict())
        out = dec(tgt, enc(src, mask=key_mask(keep)), memory_mask=key_mask(keep))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_decoder_cache_equals_full_pass_after_beam_reorder():
    torch.manual_seed(3)
    dec = Decoder(config(NormPosition.PRE), 2).eval()
    memory = torch.randn(1, 5, D).expand(3, -1, -1)  # beams of one sentence share its memory
    x = torch.randn(3, 4, D)
    cache = KVCache(2)
    for t in range(2):
        dec(x[:, t : t + 1], memory, cache=cache)
    order = torch.tensor([2, 2, 0])  # rows 0 and 1 continue from row 2's history, row 2 from row 0's
    cache.reorder(order)
    history = x[order, :2]
    step_in = x[:, 2:3]
    cached = dec(step_in, memory, cache=cache)
    full = dec(torch.cat([history, step_in], dim=1), memory)
    torch.testing.assert_close(cached, full[:, -1:], atol=1e-5, rtol=0)
    assert cache.length == 3


def test_kv_cache_select_crop_and_errors():
    cache = KVCache(1)
    k = torch.arange(2 * 1 * 3 * 1.0).view(2, 1, 3, 1)
    cache[0].append(k, k)
    cache[0].cross_k = cache[0].cross_v = torch.tensor([[[[1.0]]], [[[2.0]]]])
    cache.select(torch.tensor([1, 1, 0]))
    assert cache[0].cross_k.flatten().tolist() == [2.0, 2.0, 1.0]
    k_all, _ = cache[0].append(torch.zeros(3, 1, 1, 1), torch.zeros(3, 1, 1, 1))
    assert k_all[:, 0, :, 0].tolist() == [[3, 4, 5, 0], [3, 4, 5, 0], [0, 1, 2, 0]]
    cache.crop(2)
    assert cache.length == 2
    with pytest.raises(ValueError, match="crop length"):
        cache.crop(5)
    with pytest.raises(ValueError, match="n_layers"):
        KVCache(0)


def test_feedforward_variants():
    torch.manual_seed(4)
    x = torch.randn(2, 3, D)
    relu = FeedForward(D, F)
    expected = relu.linear2(torch.relu(relu.linear1(x)))
    torch.testing.assert_close(relu(x), expected)
    gated = GatedFeedForward(D, F, kind=FeedForwardKind.SWIGLU)
    w1, w3 = gated.gate_up.weight[:F], gated.gate_up.weight[F:]
    expected = (torch.nn.functional.silu(x @ w1.T) * (x @ w3.T)) @ gated.linear2.weight.T
    torch.testing.assert_close(gated(x), expected, atol=1e-5, rtol=0)
    assert isinstance(make_feedforward(D, F, kind=FeedForwardKind.GEGLU, dropout=0.0), GatedFeedForward)
    with pytest.raises(ValueError, match="gated"):
        FeedForward(D, F, kind=FeedForwardKind.SWIGLU)


def test_gelu_tanh_is_gpt2_gelu_new():
    torch.manual_seed(6)
    ffn = FeedForward(D, F, kind=FeedForwardKind.GELU_TANH)
    x = torch.linspace(-6, 6, 2 * 3 * D).view(2, 3, D)
    h = ffn.linear1(x)
    gelu_new = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    torch.testing.assert_close(ffn(x), ffn.linear2(gelu_new), atol=1e-6, rtol=0)
    # and it is not the exact (erf) GELU, which differs by up to ~1e-3
    assert (gelu_new - torch.nn.functional.gelu(h)).abs().max() > 1e-4


def test_bias_false_removes_every_bias_of_a_block_and_stack():
    cfg = BlockConfig(d_model=D, n_heads=H, d_ff=F, norm_position=NormPosition.PRE, bias=False)
    names = [n for n, _ in Encoder(cfg, 1).named_parameters()]
    assert not [n for n in names if n.endswith("bias")]
    assert len(names) == 2 + 2 + 2 + 1  # attention qkv/out, FFN linear1/2, two block norms, the final norm
