import pytest
import torch

from tformer.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, preset_config
from tformer.models.summary import count_parameters
from tformer.nn.attention import AttentionKind
from tformer.viz.capture import capture_attention


def tiny(**overrides):
    torch.manual_seed(0)
    return Seq2SeqTransformer(preset_config("tiny", src_vocab_size=30, tgt_vocab_size=40, **overrides)).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 30, (3, 7), generator=g)
    src[1, 4:] = 0
    src[2, 2:] = 0
    tgt = torch.randint(4, 40, (3, 6), generator=g)
    return src, tgt


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rotary"])
@pytest.mark.parametrize("max_length", [None, 8])
def test_cached_decoding_equals_teacher_forcing(positional, max_length):
    from tformer.models.seq2seq import PositionalKind

    model = tiny(positional=PositionalKind(positional))
    src, tgt = batch()
    full = model(src, tgt).logits
    enc = model.encode(src)
    cache = model.new_cache(max_length=max_length)
    for t in range(tgt.shape[1]):
        step = model.decode(tgt[:, t : t + 1], memory=enc.memory, memory_mask=enc.memory_mask, cache=cache)
        torch.testing.assert_close(step.logits[:, 0], full[:, t], atol=1e-5, rtol=0)
    assert cache.length == tgt.shape[1]


def test_cached_decoding_after_beam_reorder_and_select():
    model = tiny()
    src, tgt = batch()
    enc = model.encode(src[:1])
    beams = torch.zeros(4, dtype=torch.long)  # one sentence, 4 beams sharing its memory
    memory, memory_mask = enc.memory[beams], enc.memory_mask[beams]
    prefixes = torch.tensor([[5, 6, 7], [8, 9, 10], [11, 12, 13], [14, 15, 16]])
    cache = model.new_cache()
    for t in range(3):
        model.decode(prefixes[:, t : t + 1], memory=memory, memory_mask=memory_mask, cache=cache)
    order = torch.tensor([3, 0, 0, 2])
    cache.reorder(order)
    nxt = torch.tensor([[20], [21], [22], [23]])
    cached = model.decode(nxt, memory=memory, memory_mask=memory_mask, cache=cache).logits[:, 0]
    full = model.decode(torch.cat([prefixes[order], nxt], 1), memory=memory, memory_mask=memory_mask).logits[
        :, -1
    ]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    # dropping finished rows keeps the survivors' histories
    cache.select(torch.tensor([1, 3]))
    nxt2 = torch.tensor([[24], [25]])
    cached = model.decode(nxt2, memory=memory[:2], memory_mask=memory_mask[:2], cache=cache).logits[:, 0]
    history = torch.cat([prefixes[order], nxt], 1)[[1, 3]]
    full = model.decode(torch.cat([history, nxt2], 1), memory=memory[:2], memory_mask=memory_mask[:2]).logits[
        :, -1
    ]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)


def test_padding_does_not_change_the_result():
    model = tiny()
    src, tgt = batch()
    short = model(src[2:3, :2], tgt[2:3]).logits
    padded = model(src[2:3], tgt[2:3]).logits  # same sentence with 5 pads
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=0)


def test_cross_attention_weights_cover_real_source_tokens_only():
    model = tiny()
    src, tgt = batch()
    with capture_attention(model) as maps:
        model(src, tgt)
    for name in maps.names(kind=AttentionKind.CROSS):  # every layer, every head
        attn = maps.weights(name)  # [B, H, T, S]
        assert attn.shape == (3, model.config.n_heads, 6, 7)
        torch.testing.assert_close(attn.sum(-1), torch.ones(3, model.config.n_heads, 6))
        assert attn[2, :, :, 2:].abs().max() == 0


def test_tied_and_shared_embeddings():
    model = tiny(tie_output=True)
    assert model.output_projection.weight is model.tgt_embed.weight
    shared = Seq2SeqTransformer(
        Seq2SeqConfig(
            src_vocab_size=50,
            tgt_vocab_size=50,
            d_model=32,
            n_heads=4,
            d_ff=64,
            n_encoder_layers=1,
            n_decoder_layers=1,
            share_embeddings=True,
        )
    )
    assert shared.src_embed is shared.tgt_embed
    with pytest.raises(ValueError, match="joint vocabulary"):
        Seq2SeqConfig(src_vocab_size=50, tgt_vocab_size=51, share_embeddings=True)


def test_base_parameter_count_matches_the_formula():
    """base with a 37k shared, tied vocabulary: embeddings + 6 encoder + 6 decoder layers."""
    d, f, v = 512, 2048, 37000
    attention = 4 * d * d + 4 * d
    ffn = 2 * d * f + f + d
    norm = 2 * d
    expected = v * d + 6 * (attention + ffn + 2 * norm) + 6 * (2 * attention + ffn + 3 * norm)
    model = Seq2SeqTransformer(preset_config("base", share_embeddings=True))
    assert count_parameters(model) == expected == 63_082_496


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(d_model=30, n_heads=4), "must divide d_model=30"),
        (dict(n_encoder_layers=0), "n_encoder_layers must be an int >= 1"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_config_errors_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        Seq2SeqConfig(**bad)


def test_unknown_preset():
    with pytest.raises(ValueError, match="valid: base, small, tiny"):
        preset_config("huge")


@pytest.mark.parametrize("pad_id", [0, 5, 9])
def test_example_inputs_never_hold_padding_wherever_it_sits(pad_id):
    from tformer.models.seq2seq import example_inputs

    config = Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=10, pad_id=pad_id)
    inputs = example_inputs(config, batch_size=4, length=50)
    for ids in inputs.values():
        assert (ids != pad_id).all() and ids.min() >= 0 and ids.max() < 10
        assert len(ids.unique()) == 9  # every other id can occur
