from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from tformer.data.tokenizers import (
    UNK_ID,
    Tokenizer,
    train_bpe_tokenizer,
    train_char_tokenizer,
    train_word_tokenizer,
    train_wordpiece_tokenizer,
)

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "the lazy dog sleeps while the quick fox runs",
    "Héllo wörld, ça va? Très bien, merci!",
    "dates like 23 November 2026 and 2026-11-23",
] * 10

TRICKY_TEXTS = [
    "",
    " ",
    "  two  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n",
    "Héllo wörld, ça va? Très bien!",
    "e\u0301 decomposed accent and precomposed \u00e9",
    "emoji 😀 flags 🇩🇪 CJK 中文 Greek αβγ ß",
    "<eos> typed by a user is text, not a control token <pad>",
]


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_bpe_tokenizer(CORPUS, vocab_size=300, min_frequency=2)


@pytest.fixture(scope="module")
def wordpiece() -> Tokenizer:
    return train_wordpiece_tokenizer(CORPUS, vocab_size=120)


@pytest.fixture(scope="module")
def char() -> Tokenizer:
    return train_char_tokenizer(CORPUS)


@pytest.fixture(scope="module")
def word() -> Tokenizer:
    return train_word_tokenizer(CORPUS)


BUILDERS = {
    "char": lambda: train_char_tokenizer(CORPUS),
    "bpe": lambda: train_bpe_tokenizer(CORPUS, vocab_size=300),
    "wordpiece": lambda: train_wordpiece_tokenizer(CORPUS, vocab_size=120),
    "word": lambda: train_word_tokenizer(CORPUS),
}


@pytest.mark.parametrize("kind", BUILDERS)
def test_special_tokens_sit_at_fixed_ids(kind: str) -> None:
    tok = BUILDERS[kind]()
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert [tok.token_to_id(t) for t in ("<pad>", "<bos>", "<eos>", "<unk>")] == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", BUILDERS)
def test_json_round_trip_gives_the_same_encoding(kind: str, tmp_path) -> None:
    tok = BUILDERS[kind]()
    text = "the quick fox, ça va? 23 Nov 2026 <eos> 😀"
    rebuilt = Tokenizer.from_json(tok.to_json())
    assert rebuilt.encode(text) == tok.encode(text)
    assert rebuilt.vocab_size == tok.vocab_size
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.encode(text) == tok.encode(text)
    assert loaded.decode(tok.encode(text)) == tok.decode(tok.encode(text))


@pytest.mark.parametrize("kind", BUILDERS)
def test_encode_adds_no_specials_and_typed_special_text_is_plain_text(kind: str) -> None:
    tok = BUILDERS[kind]()
    for text in ["the quick fox", "<eos>", "x <bos> y <pad>"]:
        ids = tok.encode(text)
        assert not {tok.pad_id, tok.bos_id, tok.eos_id} & set(ids), (text, ids)
    assert tok.encode("") == []


def test_char_tokenizer_round_trips_every_seen_character_one_token_each() -> None:
    tok = train_char_tokenizer(TRICKY_TEXTS)
    for text in TRICKY_TEXTS:
        ids = tok.encode(text)
        assert len(ids) == len(text)  # one token per code point
        assert tok.decode(ids) == text


def test_char_tokenizer_vocab_is_specials_plus_distinct_characters() -> None:
    tok = train_char_tokenizer(["abca", "bd\n"])
    assert tok.vocab_size == 4 + len(set("abcd\n"))
    assert tok.encode("abcd\n") == [tok.token_to_id(c) for c in "abcd\n"]
    assert len(set(tok.encode("abcd\n"))) == 5


def test_char_tokenizer_maps_unknown_characters_to_unk() -> None:
    tok = train_char_tokenizer(["abc"])
    a, b = tok.token_to_id("a"), tok.token_to_id("b")
    assert tok.encode("abz😀a") == [a, b, tok.unk_id, tok.unk_id, a]
    assert tok.decode(tok.encode("abz")) == "ab<unk>"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_char_tokenizer_round_trips_arbitrary_unicode(text: str) -> None:
    tok = train_char_tokenizer([text])
    assert tok.decode(tok.encode(text)) == text


def test_bpe_round_trips_tricky_texts(bpe: Tokenizer) -> None:
    for text in TRICKY_TEXTS:
        assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_bpe_round_trips_arbitrary_unicode(bpe: Tokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert not {bpe.pad_id, bpe.bos_id, bpe.eos_id, bpe.unk_id} & set(ids)
    assert bpe.decode(ids) == text


def test_bpe_learns_merges_and_respects_vocab_size(bpe: Tokenizer) -> None:
    assert bpe.vocab_size == 300
    text = "the quick brown fox"
    assert len(bpe.encode(text)) < len(text.encode("utf-8"))  # merges were learned and used
    small = train_bpe_tokenizer(["ab ab"], vocab_size=400)
    assert 260 <= small.vocab_size <= 400  # cannot exceed the request; tiny corpus yields fewer merges


def test_bpe_rejects_a_vocab_too_small_for_the_byte_alphabet() -> None:
    with pytest.raises(ValueError, match="vocab_size must be an int >= 260"):
        train_bpe_tokenizer(CORPUS, vocab_size=100)


def test_wordpiece_vocab_unknowns_and_decode(wordpiece: Tokenizer) -> None:
    assert wordpiece.vocab_size == 120
    ids = wordpiece.encode("the quick fox, 😀")
    assert ids[-1] == wordpiece.unk_id  # no character of the word was seen in training
    assert wordpiece.unk_id not in ids[:-1]
    assert (
        wordpiece.decode(wordpiece.encode("the lazy dog, the quick fox!")) == "the lazy dog, the quick fox!"
    )
    assert wordpiece.decode(ids) == "the quick fox, <unk>"


def test_word_tokenizer_vocab_is_specials_then_words_by_count_then_alphabet(word: Tokenizer) -> None:
    tok = word
    counts = Counter(word for text in CORPUS for word in text.split())
    expected = sorted(counts, key=lambda word: (-counts[word], word))
    assert [tok.id_to_token(i) for i in range(4, tok.vocab_size)] == expected
    assert tok.vocab_size == 4 + len(counts)
    text = "merci! the lazy dog ça va?"
    assert tok.encode(text) == [tok.token_to_id(word) for word in text.split()]


def test_word_tokenizer_min_frequency_and_max_vocab_size() -> None:
    texts = ["c a b c", "d c a"]  # c: 3, a: 2, b: 1, d: 1
    assert _words(train_word_tokenizer(texts)) == ["c", "a", "b", "d"]
    assert _words(train_word_tokenizer(texts, min_frequency=2)) == ["c", "a"]
    assert _words(train_word_tokenizer(texts, max_vocab_size=7)) == ["c", "a", "b"]
    assert _words(train_word_tokenizer(texts, min_frequency=3, max_vocab_size=7)) == ["c"]
    assert train_word_tokenizer(texts, min_frequency=2).encode("b c") == [UNK_ID, 4]


def test_word_tokenizer_literal_unk_and_unseen_words_encode_to_unk_id() -> None:
    # WikiText-2 writes out-of-vocabulary words as the literal "<unk>"; it must not get an id of its own.
    tok = train_word_tokenizer(["the <unk> sat <unk> on the <unk>", "the cat"])
    assert tok.token_to_id("<unk>") == UNK_ID
    assert _words(tok) == ["the", "cat", "on", "sat"]  # no second "<unk>", no hole at id 3
    assert tok.encode("the <unk> dog") == [tok.token_to_id("the"), UNK_ID, UNK_ID]
    assert tok.decode(tok.encode("the dog  sat")) == "the <unk> sat"


def test_word_tokenizer_control_token_words_are_unknown_text() -> None:
    tok = train_word_tokenizer(["a <eos> b <pad> <bos>", "a<eos>b <eos>c"])
    assert _words(tok) == ["<eos>c", "a", "a<eos>b", "b"]  # only whole-word specials are rewritten
    a, b = tok.token_to_id("a"), tok.token_to_id("b")
    assert tok.encode("<bos> a <eos>\t<pad> b") == [UNK_ID, a, UNK_ID, UNK_ID, b]
    assert tok.encode("a<eos>b") == [tok.token_to_id("a<eos>b")]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["the", "quick", "fox", "ça", "2026-11-23"]), max_size=12),
    st.lists(st.sampled_from([" ", "  ", "\t", "\n", " \r\n "]), min_size=13, max_size=13),
)
def test_word_tokenizer_round_trip_normalises_whitespace(
    word: Tokenizer, words: list[str], gaps: list[str]
) -> None:
    text = gaps[0] + "".join(word + gap for word, gap in zip(words, gaps[1:], strict=False))
    ids = word.encode(text)
    assert UNK_ID not in ids
    assert word.decode(ids) == " ".join(words)


def test_word_tokenizer_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="min_frequency must be an int >= 1, got 0"):
        train_word_tokenizer(CORPUS, min_frequency=0)
    with pytest.raises(ValueError, match="max_vocab_size must be an int >= 5, got 4"):
        train_word_tokenizer(CORPUS, max_vocab_size=4)
    with pytest.raises(TypeError, match="single str"):
        train_word_tokenizer("the fox")


def _words(tok: Tokenizer) -> list[str]:
    return [tok.id_to_token(i) for i in range(4, tok.vocab_size)]


def test_decode_drops_pad_bos_eos_anywhere_but_keeps_unk(char: Tokenizer) -> None:
    body = char.encode("fox")
    ids = [char.bos_id, *body[:1], char.pad_id, *body[1:], char.eos_id, char.unk_id, char.pad_id]
    assert char.decode(ids) == "fox<unk>"
    assert char.decode(ids, skip_special=False) == "<bos>f<pad>ox<eos><unk><pad>"


def test_decode_accepts_tensors_and_batches(char: Tokenizer) -> None:
    texts = ["the fox", "", "dog"]
    batch = char.encode_batch(texts)
    assert batch == [char.encode(t) for t in texts]
    assert char.decode(torch.tensor(batch[0])) == "the fox"
    assert char.decode_batch(batch) == texts


def test_user_errors_name_the_bad_value(char: Tokenizer, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\[999\] are outside the vocabulary"):
        char.decode([5, 999])
    with pytest.raises(TypeError, match="text must be a str"):
        char.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single str"):
        char.encode_batch("abc")
    with pytest.raises(TypeError, match="single str"):
        train_char_tokenizer("abc")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Tokenizer.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not a valid tokenizer JSON"):
        Tokenizer.from_json("{not json")


def test_special_ids_are_read_from_the_backend_wherever_they_sit() -> None:
    vocab = {"<unk>": 0, "a": 1, "<pad>": 2, "<bos>": 3, "<eos>": 4}
    backend = HFTokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.add_special_tokens(["<unk>", "<pad>", "<bos>", "<eos>"])
    tokenizer = Tokenizer.from_json(backend.to_str())
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (2, 3, 4, 0)
    assert tokenizer.decode([3, 1, 4, 2]) == "a"  # pad/bos/eos dropped at their own ids


def test_tokenizers_trained_here_keep_the_specials_at_ids_0_to_3(char: Tokenizer) -> None:
    assert (char.pad_id, char.bos_id, char.eos_id, char.unk_id) == (0, 1, 2, 3)
    assert char.special_ids.cls is None and char.special_ids.mask is None


def test_a_backend_without_a_pad_or_unk_special_is_a_clear_error() -> None:
    vocab = {"<unk>": 0, "<pad>": 1, "a": 2}  # in the vocabulary, but not marked special
    backend = HFTokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    with pytest.raises(ValueError, match=r"no special token for pad, unk \(expected pad: <pad> or \[PAD\]"):
        Tokenizer.from_json(backend.to_str())


BERT_VOCAB = [
    "[PAD]",
    "[unused0]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "##s",
    ".",
    "un",
]


def test_a_bert_vocab_txt_loads_with_its_own_special_ids(tmp_path) -> None:
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in BERT_VOCAB), encoding="utf-8")
    tokenizer = Tokenizer.from_pretrained(tmp_path)
    ids = tokenizer.special_ids
    assert (ids.pad, ids.unk, ids.cls, ids.sep, ids.mask, ids.bos, ids.eos) == (0, 2, 3, 4, 5, None, None)
    assert tokenizer.encode("The cats SAT.") == [6, 7, 9, 8, 10]  # lowercased, "##s" continues "cat"
    assert tokenizer.encode("[SEP] dog") == [2, 2, 2, 2]  # typed specials are text: "[", "sep", "]"; "dog"
    assert tokenizer.decode([3, 6, 7, 9, 4, 0]) == "the cats"
    with pytest.raises(ValueError, match="no eos token"):
        _ = tokenizer.eos_id


def test_do_lower_case_false_keeps_the_case(tmp_path) -> None:
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in BERT_VOCAB), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}', encoding="utf-8")
    assert Tokenizer.from_pretrained(tmp_path).encode("The cat") == [2, 7]


def test_a_tokenizer_json_folder_loads_without_its_truncation_and_padding(tmp_path) -> None:
    backend = HFTokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(BERT_VOCAB)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    backend.enable_truncation(max_length=2)
    backend.enable_padding(length=8, pad_id=0, pad_token="[PAD]")
    backend.save(str(tmp_path / "tokenizer.json"))
    tokenizer = Tokenizer.from_pretrained(tmp_path)
    assert tokenizer.encode("the cat sat") == [6, 7, 8]


def test_pretrained_folder_errors_name_what_was_expected(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Tokenizer.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor vocab.txt"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\n[PAD]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.txt:4: token '\[PAD\]' is already on line 1"):
        Tokenizer.from_pretrained(tmp_path)


def test_a_lone_surrogate_is_a_clear_error_not_a_backend_crash():
    from tformer.data.tokenizers import train_char_tokenizer

    tokenizer = train_char_tokenizer(["abc"])
    with pytest.raises(ValueError, match=r"text holds a lone surrogate U\+D800 at character 1"):
        tokenizer.encode("a\ud800b")
    with pytest.raises(ValueError, match=r"texts\[1\] holds a lone surrogate"):
        tokenizer.encode_batch(["ok", "\udfff"])
