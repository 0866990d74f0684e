"""The attention kernel as a config value: read from a model config by its `type`, handed to every block's
self-attention (cross-attention stays full), and replaceable by any object with the kernel's `attend`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tformer.config import from_dict, to_dict
from tformer.models.gpt import GPT, GPTConfig
from tformer.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from tformer.nn import BlockConfig, DecoderBlock, EncoderBlock, FullAttention, MultiHeadAttention, attend
from tformer.nn.masks import combine, key_mask

D, H, T = 16, 2, 6


@dataclasses.dataclass(frozen=True)
class BandedAttention:
    """A test kernel: full attention restricted to keys at most `reach` positions away from the query."""

    reach: int = 1
    calls: list = dataclasses.field(default_factory=list, compare=False)

    def band(self, t: int, s: int) -> torch.Tensor:
        rows, cols = torch.arange(t)[:, None] + (s - t), torch.arange(s)[None, :]
        return (rows - cols).abs() <= self.reach  # [T, S], aligned bottom-right like `causal`

    def attend(self, q, k, v, *, mask, causal, dropout_p, need_weights):
        self.calls.append(q.shape)
        banded = combine(self.band(q.shape[-2], k.shape[-2]), mask)
        return attend(q, k, v, mask=banded, causal=causal, dropout_p=dropout_p, need_weights=need_weights)


def test_a_block_uses_the_kernel_of_its_config():
    # the injected kernel gives exactly what full attention gives with the kernel's mask passed in by hand
    torch.manual_seed(0)
    kernel = BandedAttention(reach=1)
    banded = EncoderBlock(BlockConfig(d_model=D, n_heads=H, d_ff=32, dropout=0.0, attention=kernel))
    full = EncoderBlock(BlockConfig(d_model=D, n_heads=H, d_ff=32, dropout=0.0))
    full.load_state_dict(banded.state_dict())
    x = torch.randn(2, T, D)
    keep = torch.tensor([[True] * T, [True] * 4 + [False] * 2])
    expected = full(x, mask=combine(kernel.band(T, T), key_mask(keep)))
    torch.testing.assert_close(banded(x, mask=key_mask(keep)), expected, atol=1e-6, rtol=0)
    assert len(kernel.calls) == 1
    assert not torch.allclose(full(x, mask=key_mask(keep)), expected, atol=1e-3)  # the band changed something


def test_cross_attention_stays_full():
    block = DecoderBlock(BlockConfig(d_model=D, n_heads=H, d_ff=32, attention=BandedAttention()))
    assert isinstance(block.self_attn.kernel, BandedAttention)
    assert block.cross_attn.kernel == FullAttention()
    assert MultiHeadAttention(D, H).kernel == FullAttention()  # the default


def test_models_hand_their_configured_kernel_to_every_self_attention():
    sizes = {"d_model": D, "n_heads": H, "d_ff": 32}
    gpt_kernel, s2s_kernel = BandedAttention(), BandedAttention()
    gpt = GPT(GPTConfig(vocab_size=11, context_length=8, n_layers=2, attention=gpt_kernel, **sizes))
    gpt(torch.randint(0, 11, (2, 5)))
    assert len(gpt_kernel.calls) == 2  # one per layer
    s2s = Seq2SeqTransformer(
        Seq2SeqConfig(
            src_vocab_size=11,
            tgt_vocab_size=11,
            n_encoder_layers=2,
            n_decoder_layers=3,
            attention=s2s_kernel,
            **sizes,
        )
    )
    s2s(src_ids=torch.randint(1, 11, (2, 5)), tgt_ids=torch.randint(1, 11, (2, 4)))
    assert len(s2s_kernel.calls) == 2 + 3  # encoder and decoder self-attention; cross-attention stays full


def test_the_kernel_is_read_from_a_config_by_its_type_and_written_back():
    config = from_dict(GPTConfig, {"n_layers": 2, "attention": {"type": "full"}})
    assert config.attention == FullAttention()
    assert to_dict(config)["attention"] == {"type": "full"}
    assert from_dict(GPTConfig, {"n_layers": 2}).attention == FullAttention()  # configs written before it
    with pytest.raises(
        ValueError, match=r"preset.yaml: invalid value 'sliding' for 'attention.type' \(valid: 'full'\)"
    ):
        from_dict(GPTConfig, {"attention": {"type": "sliding"}}, where="preset.yaml")
