import math

import pytest
import torch

from tformer.nn.embeddings import TokenEmbedding
from tformer.nn.masks import causal_mask, combine, key_mask
from tformer.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)


def test_causal_mask_polarity_and_offset():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # one query after 3 cached keys sees all four keys
    assert causal_mask(1, 4).tolist() == [[True, True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    with pytest.raises(ValueError, match="key_len >= query_len"):
        causal_mask(3, 2)


def test_combine_and_key_mask():
    keep = torch.tensor([[True, True, False]])
    combined = combine(causal_mask(3), key_mask(keep))
    assert combined.shape == (1, 1, 3, 3)
    assert combined[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    assert combine(None, None) is None


@pytest.mark.parametrize("pos,i", [(0, 0), (1, 0), (7, 3), (50, 10), (999, 31)])
def test_sinusoidal_equals_formula(pos, i):
    d_model = 64
    table = sinusoidal_table(1000, d_model)
    angle = pos / 10000 ** (2 * i / d_model)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_offset_and_growth():
    pe = SinusoidalPositionalEncoding(8, max_len=4)
    x = torch.zeros(1, 3, 8)
    torch.testing.assert_close(pe(x, offset=5), sinusoidal_table(8, 8)[5:8].unsqueeze(0))


def test_learned_positions_reject_overflow():
    pe = LearnedPositionalEmbedding(8, max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        pe(torch.zeros(1, 5, 8))


def test_rotary_preserves_norm_and_encodes_relative_position():
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    torch.testing.assert_close(rope(q, offset=3).norm(), q.norm())
    # <R(m) q, R(n) k> depends only on m - n
    a = (rope(q, offset=5) * rope(k, offset=2)).sum()
    b = (rope(q, offset=13) * rope(k, offset=10)).sum()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # and equals the explicit 2-d rotation of feature pairs (j, j + 4) by angle pos * base^(-2j/8)
    pos, x = 3, torch.randn(8)
    out = rope(x.view(1, 1, 1, 8), offset=pos).flatten()
    for j in range(4):
        theta = pos * 10000 ** (-2 * j / 8)
        c, s = math.cos(theta), math.sin(theta)
        assert out[j].item() == pytest.approx(c * x[j].item() - s * x[j + 4].item(), abs=1e-5)
        assert out[j + 4].item() == pytest.approx(s * x[j].item() + c * x[j + 4].item(), abs=1e-5)


def test_token_embedding_is_scaled_by_sqrt_d_model():
    emb = TokenEmbedding(10, 16)
    ids = torch.tensor([[1, 2]])
    torch.testing.assert_close(emb(ids), emb.embedding(ids) * 4.0)


def test_make_positions_builds_the_module_of_each_kind():
    from tformer.nn.positional import (
        LearnedPositionalEmbedding,
        NoAddedPositions,
        PositionalKind,
        RotaryEmbedding,
        SinusoidalPositionalEncoding,
        make_positions,
        make_rotary,
    )

    expected = {
        PositionalKind.SINUSOIDAL: SinusoidalPositionalEncoding,
        PositionalKind.LEARNED: LearnedPositionalEmbedding,
        PositionalKind.ROTARY: NoAddedPositions,  # rotary positions are applied inside attention
    }
    x = torch.randn(2, 5, 8)
    for kind, module_type in expected.items():
        positions = make_positions(kind, 8, max_len=16)
        assert type(positions) is module_type
        assert positions(x, offset=3).shape == x.shape  # one call for every kind
        assert isinstance(make_rotary(kind, 4), RotaryEmbedding) is (kind is PositionalKind.ROTARY)
    assert torch.equal(make_positions(PositionalKind.ROTARY, 8, max_len=16)(x, offset=3), x)
