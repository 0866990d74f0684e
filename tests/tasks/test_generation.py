"""Streaming text out of token ids: stop strings cut the text, held-back tails, whole UTF-8 characters only."""

from __future__ import annotations

import pytest
import torch

from tformer.data.tokenizers import train_bpe_tokenizer, train_char_tokenizer
from tformer.decoding.causal_lm import SamplingConfig
from tformer.models.gpt import GPT, GPTConfig
from tformer.tasks.generation import _Continuation, generate_text
from tformer.tasks.language_model import TextCodec

TEXT = "hello world, hello there; the end.\n"


def _char_codec() -> TextCodec:
    return TextCodec(train_char_tokenizer([TEXT]), eos_ends_lines=False)


def _feed(codec: TextCodec, text: str, stops: list[str]) -> tuple[list[str], _Continuation]:
    row = _Continuation(codec, stops)
    pieces = []
    for token in codec.encode(text):
        if row.done:
            break
        pieces.append(row.add(token))
    pieces.append(row.finish())
    return pieces, row


def test_streamed_pieces_add_up_to_the_text_cut_before_the_stop_string():
    pieces, row = _feed(_char_codec(), TEXT, ["lo t"])
    assert "".join(pieces) == row.final_text == "hello world, hel"
    assert row.stop == "lo t"


def test_a_possible_stop_prefix_is_held_back_then_released():
    codec = _char_codec()
    row = _Continuation(codec, ["lo w"])
    out = [row.add(t) for t in codec.encode("hel")]
    assert "".join(out) == "he"  # the last "l" could start "lo w"
    out.append(row.add(codec.encode("l")[0]))
    assert "".join(out) == "hel"  # "hell": the new "l" is held, the old one released
    out.append(row.add(codec.encode(",")[0]))
    assert "".join(out) == "hell," and not row.done


def test_no_stop_strings_releases_every_character_at_once():
    pieces, row = _feed(_char_codec(), TEXT, [])
    assert pieces[:-1] == list(TEXT) and row.stop is None and row.final_text == TEXT


def test_an_incomplete_utf8_character_is_never_streamed():
    tokenizer = train_bpe_tokenizer(["plain ascii text only"] * 4, vocab_size=270)
    codec = TextCodec(tokenizer, eos_ends_lines=False)
    text = "aé€b"
    assert len(codec.encode(text)) > len(text)  # multi-byte characters span several tokens
    pieces, row = _feed(codec, text, [])
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == row.final_text == text


def test_word_codec_turns_line_ends_into_eos_and_back():
    from tformer.data.tokenizers import train_word_tokenizer

    tokenizer = train_word_tokenizer(["the cat sat", "on the mat"])
    codec = TextCodec(tokenizer, eos_ends_lines=True)
    ids = codec.encode("the cat\non the mat\n")
    assert ids.count(tokenizer.eos_id) == 2 and ids[-1] == tokenizer.eos_id
    assert codec.decode(ids) == "the cat\non the mat\n"
    assert codec.encode("the cat") == tokenizer.encode("the cat")  # no line end: no EOS
    assert codec.start_ids("") == [tokenizer.eos_id]


def _tiny_lm(vocab_size: int) -> GPT:
    torch.manual_seed(0)
    return GPT(
        GPTConfig(vocab_size=vocab_size, context_length=32, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    )


@pytest.mark.parametrize("seed", range(5))
def test_generate_text_streams_exactly_the_final_text_of_the_first_sample(seed):
    codec = _char_codec()
    model = _tiny_lm(codec.tokenizer.vocab_size)
    streamed: list[str] = []
    config = SamplingConfig(max_new_tokens=60, temperature=1.0)
    out = generate_text(
        model, codec, "hel", config=config, n_samples=3, seed=seed, stop=["e", "o,"], on_text=streamed.append
    )
    assert "".join(streamed) == out[0].text
    for generation in out:
        full = codec.decode(generation.tokens)
        if generation.stop is None:
            assert generation.text == full and len(generation.tokens) == 60
        else:  # one character per token: generation stops on the token that completes a stop string
            assert full.endswith(generation.stop)
            assert generation.text == full[: min(full.find(s) for s in ("e", "o,") if s in full)]
            assert all(s not in generation.text for s in ("e", "o,"))


def test_generate_text_is_reproducible_with_a_seed():
    codec = _char_codec()
    model = _tiny_lm(codec.tokenizer.vocab_size)
    config = SamplingConfig(max_new_tokens=30, temperature=1.0, top_k=5)
    first = generate_text(model, codec, "the", config=config, n_samples=2, seed=3)
    again = generate_text(model, codec, "the", config=config, n_samples=2, seed=3)
    assert [g.tokens for g in first] == [g.tokens for g in again]


def test_a_prompt_longer_than_the_window_keeps_its_end(caplog):
    codec = _char_codec()
    model = _tiny_lm(codec.tokenizer.vocab_size)
    out = generate_text(model, codec, TEXT * 3, config=SamplingConfig(max_new_tokens=5, temperature=0.0))
    assert len(out[0].tokens) == 5
    assert "exceeds the context window" in caplog.text


def test_generate_text_rejects_bad_arguments():
    codec = _char_codec()
    model = _tiny_lm(codec.tokenizer.vocab_size)
    with pytest.raises(ValueError, match="n_samples"):
        generate_text(model, codec, "h", config=SamplingConfig(), n_samples=0)
    with pytest.raises(ValueError, match="stop strings"):
        generate_text(model, codec, "h", config=SamplingConfig(), stop=[""])
